#!/usr/bin/env bash
# Fan-out latency of the aggregated /mcp: `tools/list` over 2 and over 8 upstreams against the
# slowest of them asked directly, in one run. See bench/README.md.
#
#   bench/fanout.sh                       # 3 rounds x 5 s per target, 4 connections
#   BENCH_DURATION=10s BENCH_ROUNDS=5 bench/fanout.sh
#
# Upstreams are bench/slow_mcp.py (stateless, answer after a fixed delay: the slowest takes
# 20 ms, the others 6..18 ms, 20 tools each); the gateway runs the release build with no auth.
# Targets per scenario (rounds alternate them):
#   slowest   the 20 ms upstream directly (tools/list)
#   mcp-N     tools/list on /mcp over N upstreams (a session opened once by initialize)
# The figure of merit is p50 (and p99) of mcp-N over slowest: what the fan-out adds to the wait
# for the slowest upstream (issue target: <= 1.2x).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEFAULT_CONNECTIONS=4
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
DURATION=${BENCH_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-1s}

require "scripts/peers.sh installs wrk" wrk curl python3
BENCH_PIN=0
setup_pinning
gateway_binary

WORK=$(mktemp -d /tmp/portcullis-fanout.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

LIST='{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
wait_port() { # wait_port PORT: until a TCP connect succeeds (bounded)
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $1"
}

lua() { # lua FILE [SESSION]: a wrk script POSTing tools/list
    {
        printf 'wrk.method = "POST"\n'
        printf "wrk.body = '%s'\n" "$LIST"
        printf 'wrk.headers["Content-Type"] = "application/json"\n'
        printf 'wrk.headers["Accept"] = "application/json, text/event-stream"\n'
        [ -z "${2:-}" ] || printf 'wrk.headers["Mcp-Session-Id"] = "%s"\n' "$2"
    } >"$1"
}

RESULTS=$WORK/results.tsv
run() { # run LABEL URL SCRIPT ROUND
    local out=$WORK/wrk-$1-$4.txt
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$3" "$2" >"$out" 2>&1
    awk -v label="$1" -v round="$4" '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return v * 1000
            if (v ~ /s$/) return v * 1000000
            return v + 0
        }
        $1 == "50.000%" || $1 == "50%" { p50 = us($2) }
        $1 == "99.000%" || $1 == "99%" { p99 = us($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%s\t%s\t%s\t%s\t%s\t%d\n", label, round, rps, p50, p99, bad + 0 }' "$out" >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "bench: round %s %-8s p50 %7.0f us  p99 %7.0f us  %6.0f req/s  non-2xx %s\n", $2, $1, $4, $5, $3, $6 }' >&2
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
SLOW_PORT=$(free_port)
start slow python3 "$ROOT/bench/slow_mcp.py" "$SLOW_PORT" 20
wait_port "$SLOW_PORT"
lua "$WORK/direct.lua"

for n in 2 8; do
    # n upstreams: the slowest (20 ms) shared with the direct target, the others faster.
    servers="    - name: s0
      type: streamable-http
      connection: { url: \"http://127.0.0.1:$SLOW_PORT/mcp\", timeout: 30s }"
    for i in $(seq 1 $((n - 1))); do
        port=$(free_port)
        delay=$((20 - i * 14 / (n - 1)))
        start "up-$n-$i" python3 "$ROOT/bench/slow_mcp.py" "$port" "$delay"
        wait_port "$port"
        servers="$servers
    - name: s$i
      type: streamable-http
      connection: { url: \"http://127.0.0.1:$port/mcp\", timeout: 30s }"
    done
    gw_port=$(free_port)
    cat >"$WORK/gateway-$n.yaml" <<YAML
server:
  listen: "127.0.0.1:$gw_port"
  threads: $GATEWAY_THREADS
  grace_period: 1s
oauth:
  enabled: false
proxy:
  servers:
$servers
YAML
    start "portcullis-$n" "$PORTCULLIS_BIN" serve --config "$WORK/gateway-$n.yaml"
    wait_port "$gw_port"
    sid=$(curl -fsS -D - -o "$WORK/init-$n.json" -X POST -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' \
        --data '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
        "http://127.0.0.1:$gw_port/mcp" | tr -d '\r' | awk 'tolower($1) == "mcp-session-id:" { print $2 }')
    [ -n "$sid" ] || die "no session from /mcp over $n upstreams: $(cat "$WORK/init-$n.json")"
    lua "$WORK/mcp-$n.lua" "$sid"
    curl -fsS -X POST -H 'Content-Type: application/json' -H "Mcp-Session-Id: $sid" --data "$LIST" \
        "http://127.0.0.1:$gw_port/mcp" >"$WORK/list-$n.json"
    got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["result"]["tools"]))' "$WORK/list-$n.json")
    [ "$got" = $((n * 20)) ] || die "/mcp over $n upstreams listed $got tools, wanted $((n * 20))"
    wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s "$WORK/mcp-$n.lua" "http://127.0.0.1:$gw_port/mcp" >/dev/null
    for round in $(seq 1 "$ROUNDS"); do
        run slowest "http://127.0.0.1:$SLOW_PORT/mcp" "$WORK/direct.lua" "$n.$round"
        run "mcp-$n" "http://127.0.0.1:$gw_port/mcp" "$WORK/mcp-$n.lua" "$n.$round"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p bench/out
SUMMARY=$WORK/summary.md
python3 - "$RESULTS" >"$SUMMARY" <<'PY'
import statistics
import sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def med(label, col, scenario=None):
    vals = [float(r[col]) for r in rows if r[0] == label and (scenario is None or r[1].startswith(scenario + "."))]
    return statistics.median(vals)
print("| target | p50 | p99 | req/s | non-2xx |")
print("|---|---:|---:|---:|---:|")
for label in ["slowest", "mcp-2", "mcp-8"]:
    bad = sum(int(r[5]) for r in rows if r[0] == label)
    print(f"| {label} | {med(label, 3) / 1000:.2f} ms | {med(label, 4) / 1000:.2f} ms | {med(label, 2):.0f} | {bad} |")
print()
print("| ratio (same rounds) | p50 | p99 |")
print("|---|---:|---:|")
for n in ["2", "8"]:
    s50, s99 = med("slowest", 3, n), med("slowest", 4, n)
    print(f"| mcp-{n} / slowest | {med('mcp-' + n, 3) / s50:.2f} | {med('mcp-' + n, 4) / s99:.2f} |")
PY
{
    printf '\n## fan-out %s\n\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf -- "- command: \`%s\`%s\n" "$COMMAND" "${ENV_USED:+ with env \`${ENV_USED% }\`}"
    printf -- '- %s rounds x %s per target, wrk -t1 -c%s --latency, POST tools/list; upstreams bench/slow_mcp.py (20 ms slowest)\n' "$ROUNDS" "$DURATION" "$CONNECTIONS"
    printf -- '- load average before %s, after %s; portcullis %s\n\n' "$LOAD_BEFORE" "$LOAD_AFTER" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    cat "$SUMMARY"
} >>bench/out/latest.md
cat "$SUMMARY"
log "appended to bench/out/latest.md"
