#!/usr/bin/env bash
# Run the gateway on the default gateway.yaml: the README's first command.
#
#   scripts/run.sh                 # the gateway on 127.0.0.1:8080, serving /mcp/everything
#   scripts/run.sh --config F      # arguments go to `portcullis serve`
#
# Needs Rust and Node.js. Building needs `cmake` too (pingora-core compresses with zlib-ng,
# built by cmake): installed here with apt-get when missing and run as root, else named.
# gateway.yaml runs the reference MCP server `server-everything` (pinned) as a stdio child
# through `npx`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v npx >/dev/null || { echo "run.sh: gateway.yaml starts its upstream with npx; install Node.js" >&2; exit 1; }
command -v cargo >/dev/null || { echo "run.sh: install Rust (https://rustup.rs)" >&2; exit 1; }
if ! command -v cmake >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing cmake (pingora-core builds zlib-ng with it)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends cmake >/dev/null
    else
        echo "run.sh: building needs cmake (pingora-core builds zlib-ng with it): sudo apt-get install cmake" >&2
        exit 1
    fi
fi
exec cargo run --release --locked --quiet -- serve "$@"
