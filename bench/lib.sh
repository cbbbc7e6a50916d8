# Shared by the load scripts (bench/run.sh, bench/stdio.sh); sourced, never run.
# The caller sets ROOT (the repository) and DEFAULT_CONNECTIONS first.
# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings and pin arrays are read by the sourcing script

DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-$DEFAULT_CONNECTIONS}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
GATEWAY_THREADS=${BENCH_GATEWAY_THREADS:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-1}
COMMAND="$0${*:+ $*}"
ENV_USED=$(env | grep -E '^(BENCH_|PORTCULLIS_BIN=|PORTCULLIS_BIN_B=|RUST_LOG=)' | sort | tr '\n' ' ' || true)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

require() { # require HINT TOOL...: every tool on PATH, else stop with HINT
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found ($hint)"
    done
}

# CPU pinning: servers on one core, the load generator on the other. Sets server_pin,
# client_pin (command prefixes) and PINNING (for the report).
setup_pinning() {
    server_pin=()
    client_pin=()
    if [ "${BENCH_PIN:-1}" = 1 ] && command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
        server_pin=(taskset -c "$SERVER_CPUS")
        client_pin=(taskset -c "$CLIENT_CPUS")
        PINNING="servers on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS"
    else
        PINNING="none"
    fi
}

# The gateway binary: PORTCULLIS_BIN, or a release build of this tree.
gateway_binary() {
    if [ -z "${PORTCULLIS_BIN:-}" ]; then
        log "cargo build --release --locked"
        cargo build --release --locked --quiet
        PORTCULLIS_BIN=$ROOT/target/release/portcullis
    fi
    [ -x "$PORTCULLIS_BIN" ] || die "no gateway binary at $PORTCULLIS_BIN"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() { # start NAME CMD...: run in the background on the server cpus, output to $WORK/NAME.log
    local name=$1
    shift
    "${server_pin[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    pids+=("$!")
}

# CPU time of a process so far, in clock ticks (utime + stime from /proc/PID/stat: the fields
# after the parenthesised command name). Divide a difference by HZ for seconds.
HZ=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
