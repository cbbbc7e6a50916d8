#!/usr/bin/env bash
# The test command: install the pinned peers (scripts/peers.sh), then run every test target,
# the end-to-end suite against real MCP peers included.
#
#   scripts/test.sh                  # cargo test --all-targets
#   scripts/test.sh --test e2e       # other cargo test arguments replace --all-targets
#
# The exit code is cargo test's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/peers.sh
# shellcheck source=/dev/null
. "${PORTCULLIS_PEERS_DIR:-$ROOT/.peers}/env.sh"

[ "$#" -gt 0 ] || set -- --all-targets
exec cargo test "$@"
