# syntax=docker/dockerfile:1
# Portcullis container image.
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -v "$PWD/deploy:/etc/portcullis:ro" \
#       -e OKTA_ISSUER=https://ORG.okta.com/oauth2/default portcullis
#
# Mount a folder holding your gateway.yaml at /etc/portcullis (a folder, not the file: editors and
# Kubernetes replace files by rename, which a single-file bind mount never sees, so hot reload
# would miss it). Your config listens on 0.0.0.0:8080 with auth on.
# The bundled default (the repository's gateway.yaml) listens on $PORTCULLIS_LISTEN, set to
# 0.0.0.0:8080 below, and has auth off: the gateway refuses to serve that on a non-loopback
# listener, so the image does nothing unprotected by default. In Kubernetes the chart mounts its
# ConfigMap as that folder (never with subPath) for the same reason.
#
# stdio upstreams run inside this container: the image has no Node.js or Python, so build on it
# (`FROM portcullis` + your runtime, and a writable HOME if the server caches, as npx does).
# tini runs as PID 1 so that processes orphaned by a stdio server (a grandchild of an `npx` that
# was killed) are reaped; the gateway stops and reaps its own children itself.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
# cmake builds pingora's native dependencies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# rust-toolchain.toml is left out by .dockerignore: the image's toolchain (1.95) builds it, with
# no toolchain download during the build.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

# --- runtime -----------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid portcullis --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin portcullis
COPY --from=builder /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY gateway.yaml /etc/portcullis/gateway.yaml
ENV PORTCULLIS_LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "portcullis"]
CMD ["serve", "--config", "/etc/portcullis/gateway.yaml"]
