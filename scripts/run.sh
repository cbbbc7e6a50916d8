#!/usr/bin/env bash
# Run the gateway on the default gateway.yaml, with the upstream it names.
#
#   scripts/run.sh                 # server-everything on 127.0.0.1:3001 + the gateway on :8080
#   scripts/run.sh --config F      # arguments after the script go to `portcullis serve`
#
# gateway.yaml points at the reference MCP server `server-everything` over Streamable HTTP;
# this script installs it (pinned, with Node 24, via scripts/peers.sh), starts it in the
# background on $EVERYTHING_PORT (default 3001), stops it when the gateway exits, and runs the
# release build of the gateway in the foreground. Ctrl-C stops both.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
EVERYTHING_PORT=${EVERYTHING_PORT:-3001}

scripts/peers.sh
# shellcheck source=/dev/null
. "${PORTCULLIS_PEERS_DIR:-$ROOT/.peers}/env.sh"

cargo build --release --quiet

EVERYTHING_JS=$PORTCULLIS_PEERS/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js
PORT=$EVERYTHING_PORT node "$EVERYTHING_JS" streamableHttp >"$PORTCULLIS_PEERS/server-everything.log" 2>&1 &
everything_pid=$!
trap 'kill "$everything_pid" 2>/dev/null || true' EXIT INT TERM
echo "server-everything on 127.0.0.1:$EVERYTHING_PORT (log: $PORTCULLIS_PEERS/server-everything.log)" >&2

export EVERYTHING_URL=${EVERYTHING_URL:-http://127.0.0.1:$EVERYTHING_PORT/mcp}
[ "$#" -gt 0 ] || set -- --config gateway.yaml
target/release/portcullis serve "$@"
