# syntax=docker/dockerfile:1
# Portcullis container image.
#
#   docker build --build-arg PORTCULLIS_COMMIT="$(git rev-parse --short=12 HEAD)" -t portcullis .
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
# The health check GETs /live with the gateway's own `probe` (the image has no curl); when your
# config moves the admin endpoints (`server.admin_listen`) or the listener, set
# PORTCULLIS_PROBE_URL to the /live it serves.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-trixie AS builder
# The commit `portcullis --version` names (the build context has no .git).
ARG PORTCULLIS_COMMIT=unknown
# cmake builds pingora's native dependencies. Versions are Debian's stable ones (not pinned: a
# pin breaks the build as soon as the archive moves on).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# rust-toolchain.toml is left out by .dockerignore: the image's toolchain (1.95) builds it, with
# no toolchain download during the build.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    PORTCULLIS_COMMIT="$PORTCULLIS_COMMIT" cargo build --release --locked --bin portcullis \
    && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

# --- runtime -----------------------------------------------------------------------------------
FROM debian:trixie-slim
ARG PORTCULLIS_COMMIT=unknown
LABEL org.opencontainers.image.title="Portcullis" \
      org.opencontainers.image.description="A declarative MCP gateway: JWT scopes, per-tool policy, streamed JSON-RPC filtering" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${PORTCULLIS_COMMIT}" \
      org.opencontainers.image.base.name="docker.io/library/debian:trixie-slim"
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid portcullis --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin portcullis
COPY --from=builder /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY gateway.yaml /etc/portcullis/gateway.yaml
ENV PORTCULLIS_LISTEN=0.0.0.0:8080 \
    PORTCULLIS_PROBE_URL=http://127.0.0.1:8080/live
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "exec portcullis probe \"$PORTCULLIS_PROBE_URL\" --timeout 3s"]
ENTRYPOINT ["/usr/bin/tini", "--", "portcullis"]
CMD ["serve", "--config", "/etc/portcullis/gateway.yaml"]
