#!/usr/bin/env bash
# Load benchmark: Portcullis against nginx, in one run, on loopback. See bench/README.md.
#
#   bench/run.sh                              # 3 rounds x 3 targets x 10 s
#   BENCH_DURATION=5s BENCH_ROUNDS=5 bench/run.sh
#
# Targets, each hit by the same wrk Lua script (a JSON-RPC tools/call POST):
#   direct       nginx answering a canned JSON-RPC result (the upstream itself; the ceiling)
#   nginx-proxy  nginx as a plain keepalive reverse proxy to `direct`
#   portcullis   the Portcullis release binary proxying /mcp/bench to `direct`
# Rounds alternate the targets (direct, nginx-proxy, portcullis, direct, ...) so drift on a noisy
# machine spreads over all of them; the table shows the median over rounds.
#
# Environment (defaults in brackets):
#   BENCH_JWT [0: no auth; 1: an RS256 bearer on every request, verified, 50-pattern policy]
#   BENCH_FAST_PATH [1; 0: the gateway (not portcullis-b) runs with server.fast_path: false, so
#                    every request takes Pingora's path]
#   BENCH_H2C [0; 1: HTTP/2 with prior knowledge (h2c) from the client to every target, with
#              h2load instead of wrk (the nginx listeners the client hits speak h2c; the proxies'
#              upstream hop stays HTTP/1.1, to a listener of `direct` of its own; the latency
#              columns are h2load's mean, p99 is not measured)]
#   BENCH_TLS [0; 1: HTTPS with HTTP/2 by ALPN from the client to every target (h2load; a
#              certificate made here with openssl): nginx terminates TLS and proxies over plain
#              HTTP/1.1, Portcullis serves `server.tls`; `direct` answers on a TLS listener of its
#              own; latency as under h2c; h1: HTTPS with HTTP/1.1, wrk as usual (the front door
#              serves it over TLS)]
#   BENCH_RATE_LIMIT [0; 1: a `principal` and a `tool` rate limit checked on every request, never
#                     refusing]
#   BENCH_DURATION [10s]  BENCH_ROUNDS [3]  BENCH_WARMUP [2s]  BENCH_CONNECTIONS [32]
#   BENCH_WRK_THREADS [1]  BENCH_GATEWAY_THREADS [1]  BENCH_PIN [1: taskset when >= 2 cpus]
#   BENCH_SERVER_CPUS [0]  BENCH_CLIENT_CPUS [1]
#   PORTCULLIS_BIN [target/release/portcullis, built with cargo build --release --locked]
#   PORTCULLIS_BIN_B [unset: a second gateway binary, same config, as a fourth target
#                     `portcullis-b`: two builds compared in one run]
#   BENCH_AGGREGATE [0; 1: one more target, `portcullis-mcp`: the same gateway process on the
#                    aggregated /mcp (a session opened by `initialize`, the tool called as
#                    `bench__echo`), to compare /mcp with /mcp/{server} in one run; not with h2c]
#   BENCH_KEEP [0: 1 keeps the scratch folder with configs, logs and raw wrk output]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DEFAULT_CONNECTIONS=32
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

require "scripts/peers.sh installs wrk and nginx" wrk nginx curl python3
H2C=${BENCH_H2C:-0}
TLS=${BENCH_TLS:-0}
case $TLS in 0 | 1 | h1) ;; *) die "BENCH_TLS is 0, 1 (HTTP/2) or h1" ;; esac
TLS_ON=0
[ "$TLS" != 0 ] && TLS_ON=1
[ "$H2C" = 1 ] && [ "$TLS_ON" = 1 ] && die "BENCH_H2C=1 and BENCH_TLS exclude each other"
# The client speaks HTTP/2 (h2load) under h2c and under TLS.
H2=0
{ [ "$H2C" = 1 ] || [ "$TLS" = 1 ]; } && H2=1
if [ "$H2" = 1 ]; then
    require "scripts/peers.sh installs h2load (nghttp2-client)" h2load
fi
[ "$TLS_ON" = 1 ] && require "openssl makes the benchmark's certificate" openssl
LISTEN_OPT=""
[ "$H2C" = 1 ] && LISTEN_OPT=" http2"
[ "$TLS" = 1 ] && LISTEN_OPT=" ssl http2"
[ "$TLS" = h1 ] && LISTEN_OPT=" ssl"
SCHEME=http
[ "$TLS_ON" = 1 ] && SCHEME=https

# --- CPU pinning: servers on one core, the load generator on the other ------------------------
setup_pinning

# --- The gateway binary ---------------------------------------------------------------------------
gateway_binary

# --- Scratch folder, ports, cleanup ---------------------------------------------------------------
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $WORK (configs, logs, raw wrk output)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

PORT_DIRECT=$(free_port)
# The client's listener of `direct`: under h2c a port of its own (nginx speaks either HTTP/1.1
# or h2c on a plain port, and the proxies' upstream hop is HTTP/1.1 on PORT_DIRECT).
PORT_DIRECT_CLIENT=$PORT_DIRECT
{ [ "$H2" = 1 ] || [ "$TLS_ON" = 1 ]; } && PORT_DIRECT_CLIENT=$(free_port)
PORT_PROXY=$(free_port)
PORT_GATEWAY=$(free_port)
PORT_GATEWAY_B=$(free_port)

# The canned answer: what server-everything's echo tool returns, as plain JSON.
CANNED='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Echo: hi"}]}}'

# BENCH_TLS: one self-signed certificate for every TLS listener (ECDSA P-256, as is common).
SSL_LINES=""
if [ "$TLS_ON" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
    SSL_LINES="
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        ssl_session_cache shared:SSL:1m;"
fi

# nginx_conf NAME SERVER-BLOCK: a foreground nginx with its pid, logs and temp files in $WORK.
nginx_conf() {
    local name=$1 server=$2 dir=$WORK/nginx-$1
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
$server
}
EOF
    printf '%s\n' "$dir"
}


CURL_H2C=""
[ "$H2C" = 1 ] && CURL_H2C="--http2-prior-knowledge"
[ "$TLS" = 1 ] && CURL_H2C="--http2 --insecure"
[ "$TLS" = h1 ] && CURL_H2C="--http1.1 --insecure"
wait_ok() { # wait_ok NAME URL: poll a POST until it answers 200 (bounded)
    local name=$1 url=$2 i
    for i in $(seq 1 300); do
        # shellcheck disable=SC2086 # CURL_H2C holds zero, one or two options
        if curl -fsS $CURL_H2C -o "$WORK/$name.preflight" -X POST -H 'Content-Type: application/json' \
            -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer ${TOKEN:-none}" \
            --data '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}' \
            "$url" 2>/dev/null; then
            grep -q '"jsonrpc"' "$WORK/$name.preflight" || die "$name answered 200 without JSON-RPC: $(cat "$WORK/$name.preflight")"
            return 0
        fi
        [ "$i" -lt 300 ] && sleep 0.1
    done
    log "$name not ready at $url after 30 s; its log:"
    tail -n 40 "$WORK/$name.log" >&2 || true
    exit 1
}

dir=$(nginx_conf direct "    server {
        listen 127.0.0.1:$PORT_DIRECT;$([ "$PORT_DIRECT_CLIENT" != "$PORT_DIRECT" ] && printf '\n        listen 127.0.0.1:%s%s;' "$PORT_DIRECT_CLIENT" "$LISTEN_OPT")$SSL_LINES
        location / {
            default_type application/json;
            return 200 '$CANNED';
        }
    }")
start nginx-direct nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf"
DIRECT_MASTER=${pids[-1]}

dir=$(nginx_conf proxy "    upstream canned {
        server 127.0.0.1:$PORT_DIRECT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$PORT_PROXY$LISTEN_OPT;$SSL_LINES
        location / {
            proxy_pass http://canned;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }")
start nginx-proxy nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf"
PROXY_MASTER=${pids[-1]}

# BENCH_JWT=1: every request carries an RS256 bearer (signed here with the test key of
# tests/fixtures/jwt) and the gateway verifies it and checks a policy of 50 patterns.
TOKEN=none
OAUTH_YAML="oauth:
  enabled: false"
if [ "${BENCH_JWT:-0}" = 1 ]; then
    b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
    now=$(date +%s)
    head_b64=$(printf '{"alg":"RS256","kid":"rsa-1","typ":"JWT"}' | b64url)
    body_b64=$(printf '{"iss":"https://bench.example/oauth2/default","aud":"api://bench","sub":"bench","iat":%s,"exp":%s,"groups":["Bench"]}' "$now" "$((now + 86400))" | b64url)
    sig_b64=$(printf '%s.%s' "$head_b64" "$body_b64" | openssl dgst -sha256 -sign "$ROOT/tests/fixtures/jwt/rsa1.pem" | b64url)
    TOKEN="$head_b64.$body_b64.$sig_b64"
    OAUTH_YAML="oauth:
  enabled: true
  authorization_servers: [\"https://bench.example/oauth2/default\"]
  audiences: [\"api://bench\"]
  jwks_uri: \"file://$ROOT/tests/fixtures/jwt/jwks.json\"
auth:
  claims: [groups]
  mappings:
    \"groups:Bench\": [scope:bench]
  permissions:"
    for i in $(seq 1 48); do
        OAUTH_YAML="$OAUTH_YAML
    \"bench:tool_$i\": [scope:admin]"
    done
    OAUTH_YAML="$OAUTH_YAML
    \"bench:echo\": [scope:bench]
    \"bench:*\": [scope:admin]"
fi

cat >"$WORK/gateway.yaml" <<EOF
# Generated by bench/run.sh
server:
  listen: "127.0.0.1:$PORT_GATEWAY"
  threads: $GATEWAY_THREADS
  grace_period: 1s
$OAUTH_YAML
proxy:
  servers:
    - name: bench
      type: streamable-http
      connection:
        url: "http://127.0.0.1:$PORT_DIRECT/mcp"
        timeout: 30s
EOF
# BENCH_RATE_LIMIT=1: rules that never refuse (a huge budget) but are checked on every request:
# the cost of the limiter (an older portcullis-b parses the key and ignores it).
if [ "${BENCH_RATE_LIMIT:-0}" = 1 ]; then
    cat >>"$WORK/gateway.yaml" <<EOF
rate_limits:
  - key: principal
    requests_per_second: 100000000
    burst: 1000000
  - key: tool
    requests_per_second: 100000000
    burst: 1000000
EOF
fi
# portcullis-b (an older build) may not know newer keys: it runs on the file as generated so far.
cp "$WORK/gateway.yaml" "$WORK/gateway-base.yaml"
if [ "$TLS_ON" = 1 ]; then
    sed -i "s|^  grace_period: 1s\$|  grace_period: 1s\n  tls: { cert_file: $WORK/tls.crt, key_file: $WORK/tls.key }|" "$WORK/gateway.yaml"
    cp "$WORK/gateway.yaml" "$WORK/gateway-base.yaml"
fi
if [ "${BENCH_FAST_PATH:-1}" = 0 ]; then
    sed -i 's/^  grace_period: 1s$/  grace_period: 1s\n  fast_path: false/' "$WORK/gateway.yaml"
fi
start portcullis "$PORTCULLIS_BIN" serve --config "$WORK/gateway.yaml"
GATEWAY_PID=${pids[-1]}

declare -A URL=(
    [direct]="$SCHEME://127.0.0.1:$PORT_DIRECT_CLIENT/mcp"
    [nginx-proxy]="$SCHEME://127.0.0.1:$PORT_PROXY/mcp"
    [portcullis]="$SCHEME://127.0.0.1:$PORT_GATEWAY/mcp/bench"
)
TARGETS=(direct nginx-proxy portcullis)
if [ -n "${PORTCULLIS_BIN_B:-}" ]; then
    [ -x "$PORTCULLIS_BIN_B" ] || die "no gateway binary at PORTCULLIS_BIN_B=$PORTCULLIS_BIN_B"
    sed "s/127.0.0.1:$PORT_GATEWAY/127.0.0.1:$PORT_GATEWAY_B/" "$WORK/gateway-base.yaml" >"$WORK/gateway-b.yaml"
    start portcullis-b "$PORTCULLIS_BIN_B" serve --config "$WORK/gateway-b.yaml"
    GATEWAY_B_PID=${pids[-1]}
    URL[portcullis-b]="$SCHEME://127.0.0.1:$PORT_GATEWAY_B/mcp/bench"
    TARGETS+=(portcullis-b)
fi
for t in "${TARGETS[@]}"; do
    wait_ok "$t" "${URL[$t]}"
done

# BENCH_AGGREGATE=1: the same gateway on /mcp, in a session opened once here.
declare -A SCRIPT=()
if [ "${BENCH_AGGREGATE:-0}" = 1 ]; then
    [ "$H2" = 1 ] && die "BENCH_AGGREGATE=1 runs over HTTP/1.1 only"
    MCP_URL="http://127.0.0.1:$PORT_GATEWAY/mcp"
    MCP_CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"bench__echo","arguments":{"message":"hi"}}}'
    SID=$(curl -fsS -D - -o "$WORK/initialize.json" -X POST -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $TOKEN" \
        --data '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
        "$MCP_URL" | tr -d '\r' | awk 'tolower($1) == "mcp-session-id:" { print $2 }')
    [ -n "$SID" ] || die "initialize on /mcp gave no session id: $(cat "$WORK/initialize.json")"
    {
        printf 'wrk.method = "POST"\n'
        printf "wrk.body = '%s'\n" "$MCP_CALL"
        printf 'wrk.headers["Content-Type"] = "application/json"\n'
        printf 'wrk.headers["Accept"] = "application/json, text/event-stream"\n'
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$TOKEN"
        printf 'wrk.headers["Mcp-Session-Id"] = "%s"\n' "$SID"
    } >"$WORK/post-mcp.lua"
    curl -fsS -o "$WORK/mcp.preflight" -X POST -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $TOKEN" \
        -H "Mcp-Session-Id: $SID" --data "$MCP_CALL" "$MCP_URL" || die "tools/call on /mcp failed"
    grep -q '"Echo: hi"' "$WORK/mcp.preflight" || die "/mcp answered: $(cat "$WORK/mcp.preflight")"
    URL[portcullis-mcp]=$MCP_URL
    SCRIPT[portcullis-mcp]=$WORK/post-mcp.lua
    TARGETS+=(portcullis-mcp)
fi

# The process whose CPU time each target costs: the nginx worker (one per instance) for the two
# nginx targets, the gateway for portcullis. For the proxies this is their own work only (the
# upstream's is the `direct` row): CPU per request is steadier than req/s on a shared machine.
worker_of() { ps -o pid= --ppid "$1" | tr -d ' ' | head -n 1; }
declare -A SERVER_PID=(
    [direct]=$(worker_of "$DIRECT_MASTER")
    [nginx-proxy]=$(worker_of "$PROXY_MASTER")
    [portcullis]=$GATEWAY_PID
)
[ -z "${GATEWAY_B_PID:-}" ] || SERVER_PID[portcullis-b]=$GATEWAY_B_PID
[ "${BENCH_AGGREGATE:-0}" != 1 ] || SERVER_PID[portcullis-mcp]=$GATEWAY_PID
for t in "${TARGETS[@]}"; do
    [ -n "${SERVER_PID[$t]}" ] || die "no server process found for $t"
done

cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Authorization"] = "Bearer $TOKEN"
EOF

printf '%s' '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}' >"$WORK/body.json"

seconds() { # seconds 10s|2m|30: whole seconds
    case $1 in
        *ms) echo 1 ;;
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}

run_wrk() { # run_wrk DURATION URL OUT [SCRIPT] (wrk's report, or h2load's rewritten in wrk's words)
    if [ "$H2" = 1 ]; then
        "${client_pin[@]}" h2load -t"$WRK_THREADS" -c"$CONNECTIONS" -m1 -D "$(seconds "$1")" \
            -d "$WORK/body.json" -H 'Content-Type: application/json' \
            -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $TOKEN" \
            "$2" >"$3.h2load" 2>&1 || { cat "$3.h2load" >&2; return 1; }
        awk '
            function us(v) {
                if (v ~ /us$/) return v + 0
                if (v ~ /ms$/) return v * 1000
                if (v ~ /s$/) return v * 1000000
                return v + 0
            }
            /^finished in/ { rps = $4 }
            /^requests:/ { done = $6 }
            /^status codes:/ { bad = $7 + $9 }  # 4xx and 5xx, as wrk counts
            /^time for request:/ { mean = us($6) }
            END {
                printf "Requests/sec: %s\n%s requests in h2load\n50.000%% %sus\n99.000%% 0us\n", rps, done, mean
                if (bad > 0) printf "Non-2xx or 3xx responses: %d\n", bad
            }' "$3.h2load" >"$3"
    else
        "${client_pin[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$1" --latency -s "${4:-$WORK/post.lua}" "$2" >"$3" 2>&1
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "targets: ${TARGETS[*]}; $ROUNDS rounds x $DURATION, wrk -t$WRK_THREADS -c$CONNECTIONS; pinning: $PINNING; load $LOAD_BEFORE"
for t in "${TARGETS[@]}"; do
    run_wrk "$WARMUP" "${URL[$t]}" "$WORK/warmup-$t.txt" "${SCRIPT[$t]:-}"
done

RESULTS=$WORK/results.tsv
for round in $(seq 1 "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        out=$WORK/wrk-$round-$t.txt
        ticks0=$(cpu_ticks "${SERVER_PID[$t]}")
        run_wrk "$DURATION" "${URL[$t]}" "$out" "${SCRIPT[$t]:-}"
        ticks=$(($(cpu_ticks "${SERVER_PID[$t]}") - ticks0))
        # requests/s, p50, p99 (converted to microseconds), non-2xx count, socket errors, and
        # the server process's CPU microseconds per request.
        awk -v round="$round" -v target="$t" -v ticks="$ticks" -v hz="$HZ" '
            function us(v) {
                if (v ~ /us$/) return v + 0
                if (v ~ /ms$/) return v * 1000
                if (v ~ /s$/) return v * 1000000
                return v + 0
            }
            $1 == "50.000%" || $1 == "50%" { p50 = us($2) }
            $1 == "99.000%" || $1 == "99%" { p99 = us($2) }
            /^Requests\/sec:/ { rps = $2 }
            / requests in / { reqs = $1 }
            /Non-2xx or 3xx responses:/ { bad = $NF }
            /Socket errors:/ { errs = $0 }
            END {
                if (rps == "") { print "unparsable wrk output for " target > "/dev/stderr"; exit 1 }
                cpu = reqs > 0 ? ticks * 1000000 / hz / reqs : 0
                printf "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%.2f\n", round, target, rps, p50, p99, bad + 0, (errs == "" ? "-" : errs), cpu
            }' "$out" >>"$RESULTS" || { cat "$out" >&2; exit 1; }
        tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "bench: round %s %-12s %10.0f req/s  p50 %6.0f us  p99 %6.0f us  cpu/req %5.1f us  non-2xx %s\n", $1, $2, $3, $4, $5, $8, $6 }' >&2
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Summary: medians per target, ratios, appended to bench/out/latest.md ---------------------
mkdir -p bench/out
SUMMARY=$WORK/summary.md
python3 - "$RESULTS" >"$SUMMARY" <<'EOF'
import statistics
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
order = [t for t in ["direct", "nginx-proxy", "portcullis", "portcullis-b", "portcullis-mcp"] if any(r[1] == t for r in rows)]
med = {}
for target in order:
    mine = [r for r in rows if r[1] == target]
    med[target] = {
        "rps": statistics.median(float(r[2]) for r in mine),
        "p50": statistics.median(float(r[3]) for r in mine),
        "p99": statistics.median(float(r[4]) for r in mine),
        "bad": sum(int(r[5]) for r in mine),
        "cpu": statistics.median(float(r[7]) for r in mine),
        "rounds": " / ".join(f"{float(r[2]):.0f}" for r in mine),
    }
print("| target | req/s (median) | p50 | p99 | CPU/req (own process) | non-2xx | req/s per round |")
print("|---|---:|---:|---:|---:|---:|---|")
for t in order:
    m = med[t]
    print(f"| {t} | {m['rps']:.0f} | {m['p50']:.0f} µs | {m['p99']:.0f} µs | {m['cpu']:.1f} µs | {m['bad']} | {m['rounds']} |")
print()
p, n, d = med["portcullis"], med["nginx-proxy"], med["direct"]


def r(a, b):
    # A ratio, or n/a when the figure was not measured (h2load gives no p99).
    return f"{a / b:.2f}" if b else "n/a"


print("| ratio | req/s | p50 | p99 | CPU/req |")
print("|---|---:|---:|---:|---:|")
print(f"| portcullis / nginx-proxy | {p['rps'] / n['rps']:.2f} | {p['p50'] / n['p50']:.2f} | {r(p['p99'], n['p99'])} | {p['cpu'] / n['cpu']:.2f} |")
print(f"| portcullis / direct | {p['rps'] / d['rps']:.2f} | {p['p50'] / d['p50']:.2f} | {r(p['p99'], d['p99'])} | |")
if "portcullis-b" in med:
    b = med["portcullis-b"]
    print(f"| portcullis-b / nginx-proxy | {b['rps'] / n['rps']:.2f} | {b['p50'] / n['p50']:.2f} | {r(b['p99'], n['p99'])} | {b['cpu'] / n['cpu']:.2f} |")
    print(f"| portcullis / portcullis-b | {p['rps'] / b['rps']:.2f} | {p['p50'] / b['p50']:.2f} | {r(p['p99'], b['p99'])} | {p['cpu'] / b['cpu']:.2f} |")
if "portcullis-mcp" in med:
    a = med["portcullis-mcp"]
    print(f"| portcullis-mcp / nginx-proxy | {a['rps'] / n['rps']:.2f} | {a['p50'] / n['p50']:.2f} | {r(a['p99'], n['p99'])} | {a['cpu'] / n['cpu']:.2f} |")
    print(f"| portcullis-mcp (/mcp) / portcullis (/mcp/bench) | {a['rps'] / p['rps']:.2f} | {a['p50'] / p['p50']:.2f} | {r(a['p99'], p['p99'])} | {a['cpu'] / p['cpu']:.2f} |")
if any(med[t]["bad"] for t in order):
    print()
    print("**Warning: some responses were not 2xx; those numbers do not measure proxying.**")
EOF

{
    printf '\n## %s\n\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf -- "- command: \`%s\`%s\n" "$COMMAND" "${ENV_USED:+ with env \`${ENV_USED% }\`}"
    if [ "$TLS" = h1 ]; then
        printf -- '- %s rounds x %s per target (warm-up %s), TLS 1.3 + HTTP/1.1: wrk -t%s -c%s --latency, POST tools/call; nginx terminates TLS, upstream hop plain HTTP/1.1\n' \
            "$ROUNDS" "$DURATION" "$WARMUP" "$WRK_THREADS" "$CONNECTIONS"
    elif [ "$TLS" = 1 ]; then
        printf -- '- %s rounds x %s per target (warm-up %s), TLS 1.3 + h2 by ALPN: h2load -t%s -c%s -m1, POST tools/call (latency: mean; p99 not measured); nginx terminates TLS, upstream hop plain HTTP/1.1\n' \
            "$ROUNDS" "$DURATION" "$WARMUP" "$WRK_THREADS" "$CONNECTIONS"
    elif [ "$H2C" = 1 ]; then
        printf -- '- %s rounds x %s per target (warm-up %s), h2c: h2load -t%s -c%s -m1, POST tools/call (latency: mean; p99 not measured)\n' \
            "$ROUNDS" "$DURATION" "$WARMUP" "$WRK_THREADS" "$CONNECTIONS"
    else
        printf -- '- %s rounds x %s per target (warm-up %s), wrk -t%s -c%s --latency, POST tools/call\n' \
            "$ROUNDS" "$DURATION" "$WARMUP" "$WRK_THREADS" "$CONNECTIONS"
    fi
    printf -- '- nproc %s; pinning: %s; nginx worker_processes 1; portcullis threads %s\n' \
        "$(nproc)" "$PINNING" "$GATEWAY_THREADS"
    printf -- '- load average (1/5/15 min) before %s, after %s: other work on the machine skews results\n' \
        "$LOAD_BEFORE" "$LOAD_AFTER"
    printf -- '- portcullis %s (%s); %s; %s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$PORTCULLIS_BIN" "$(nginx -v 2>&1)" "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    [ -z "${PORTCULLIS_BIN_B:-}" ] || printf -- '- portcullis-b: %s\n' "$PORTCULLIS_BIN_B"
    printf '\n'
    cat "$SUMMARY"
} >>bench/out/latest.md
cat "$SUMMARY"
log "appended to bench/out/latest.md"
