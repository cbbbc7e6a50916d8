#!/usr/bin/env bash
# Run the gateway on the default gateway.yaml (same as `cargo run --release`).
#
#   scripts/run.sh                 # the gateway on 127.0.0.1:8080, serving /mcp/everything
#   scripts/run.sh --config F      # arguments go to `portcullis serve`
#
# gateway.yaml runs the reference MCP server `server-everything` (pinned) as a stdio child
# through `npx`, so Rust and Node.js are all this needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v npx >/dev/null || { echo "run.sh: gateway.yaml starts its upstream with npx; install Node.js" >&2; exit 1; }
exec cargo run --release --quiet -- serve "$@"
