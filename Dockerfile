# syntax=docker/dockerfile:1
# Portcullis container image.
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -v "$PWD/gateway.yaml:/etc/portcullis/gateway.yaml:ro" \
#       -e OKTA_ISSUER=https://ORG.okta.com/oauth2/default portcullis
#
# The config inside the container must listen on 0.0.0.0:8080 (`server.listen`). In Kubernetes
# mount it as a directory (charts/portcullis does), never with subPath, so hot reload sees updates.

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
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid portcullis --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin portcullis
COPY --from=builder /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY gateway.yaml /etc/portcullis/gateway.yaml
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["portcullis"]
CMD ["serve", "--config", "/etc/portcullis/gateway.yaml"]
