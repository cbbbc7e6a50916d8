#!/usr/bin/env bash
# Runs this recipe against a real n8n and prints a transcript (secrets redacted): n8n 2.41.1 with
# an MCP Server Trigger (Header Auth) exposing two tools, the test suite's Okta-like OpenID
# provider issuing tokens, and Portcullis with examples/n8n-sidecar/gateway.yaml in front.
#
#   N8N_DIR=/path/where/n8n/is/installed examples/n8n-sidecar/verify.sh > TRANSCRIPT.md
#
# n8n is heavy (2.9 GB, ~9 minutes; see ../../README.md and the project's peers notes):
#   npm install --ignore-scripts n8n@2.41.1 (with npm_config_nodedir at Node 24), then
#   npm rebuild sqlite3 isolated-vm. Needs scripts/peers.sh (Node 24, oidc-provider) first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
: "${N8N_DIR:?set N8N_DIR to the folder holding node_modules/n8n}"
# shellcheck source=/dev/null
. .peers/env.sh
N8N=$N8N_DIR/node_modules/.bin/n8n
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ok() { for _ in $(seq 1 240); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.5; done; echo "timeout: $1" >&2; exit 1; }

IDP_PORT=$(free_port); N8N_PORT=$(free_port); GW_PORT=$(free_port)
N8N_PROXY_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export N8N_PROXY_KEY

# 1. The OpenID provider (Okta-style issuer under /oauth2/default; groups Admin / User).
PORT=$IDP_PORT KEY_FILE=$ROOT/tests/fixtures/jwt/rsa1.pem OIDC_PROVIDER=$ROOT/.peers/node/node_modules/oidc-provider \
    node tests/e2e/idp/server.mjs >"$WORK/idp.log" 2>&1 &
pids+=($!)
ISSUER=http://127.0.0.1:$IDP_PORT/oauth2/default
wait_ok "$ISSUER/.well-known/openid-configuration"

# 2. n8n: a Header Auth credential (x-n8n-key) and a workflow whose MCP Server Trigger exposes
#    the Calculator tool (named `calculator`) and the Think tool (named `think`).
export N8N_USER_FOLDER=$WORK/n8n N8N_PORT N8N_DIAGNOSTICS_ENABLED=false N8N_PERSONALIZATION_ENABLED=false \
    N8N_SECURE_COOKIE=false N8N_RUNNERS_ENABLED=false DB_SQLITE_POOL_SIZE=1 N8N_LOG_LEVEL=warn
cat >"$WORK/credentials.json" <<EOF
[{"id": "pcCred00000001", "name": "Portcullis key", "type": "httpHeaderAuth",
  "data": {"name": "x-n8n-key", "value": "$N8N_PROXY_KEY"}}]
EOF
cat >"$WORK/workflow.json" <<'EOF'
{"id": "pcWorkflow0001", "name": "Portcullis sidecar demo", "active": false,
 "nodes": [
  {"id": "0b1d7f3e-1c2a-4c3b-9d4e-5f6a7b8c9d01", "name": "MCP Server Trigger",
   "type": "@n8n/n8n-nodes-langchain.mcpTrigger", "typeVersion": 2, "position": [0, 0],
   "webhookId": "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5",
   "parameters": {"authentication": "headerAuth", "path": "portcullis-demo"},
   "credentials": {"httpHeaderAuth": {"id": "pcCred00000001", "name": "Portcullis key"}}},
  {"id": "0b1d7f3e-1c2a-4c3b-9d4e-5f6a7b8c9d02", "name": "calculator",
   "type": "@n8n/n8n-nodes-langchain.toolCalculator", "typeVersion": 1, "position": [0, 200],
   "parameters": {}},
  {"id": "0b1d7f3e-1c2a-4c3b-9d4e-5f6a7b8c9d03", "name": "think",
   "type": "@n8n/n8n-nodes-langchain.toolThink", "typeVersion": 1.1, "position": [200, 200],
   "parameters": {}}
 ],
 "connections": {
  "calculator": {"ai_tool": [[{"node": "MCP Server Trigger", "type": "ai_tool", "index": 0}]]},
  "think": {"ai_tool": [[{"node": "MCP Server Trigger", "type": "ai_tool", "index": 0}]]}
 },
 "settings": {}}
EOF
"$N8N" import:credentials --input="$WORK/credentials.json" >"$WORK/n8n-import.log" 2>&1
"$N8N" import:workflow --input="$WORK/workflow.json" >>"$WORK/n8n-import.log" 2>&1
"$N8N" publish:workflow --id=pcWorkflow0001 >>"$WORK/n8n-import.log" 2>&1
"$N8N" start >"$WORK/n8n.log" 2>&1 &
pids+=($!)
wait_ok "http://127.0.0.1:$N8N_PORT/healthz"
N8N_URL=http://127.0.0.1:$N8N_PORT/mcp/portcullis-demo
# /healthz answers before the published workflows are active: wait for the trigger itself.
for _ in $(seq 1 240); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "x-n8n-key: $N8N_PROXY_KEY" \
        -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
        -d '{"jsonrpc":"2.0","id":0,"method":"ping"}' "$N8N_URL" || true)
    [ "$code" != 404 ] && [ "$code" != 000 ] && break
    sleep 0.5
done

# 3. Portcullis, the recipe's file as it is.
BIN=${PORTCULLIS_BIN:-target/release/portcullis}
[ -x "$BIN" ] || cargo build --release --locked
PORTCULLIS_LISTEN=127.0.0.1:$GW_PORT OIDC_ISSUER=$ISSUER N8N_URL=$N8N_URL \
    "$BIN" serve --config examples/n8n-sidecar/gateway.yaml >"$WORK/gateway.log" 2>&1 &
pids+=($!)
wait_ok "http://127.0.0.1:$GW_PORT/ready"
GW=http://127.0.0.1:$GW_PORT/mcp/n8n

token() {
    curl -fsS -u "$1" -d "grant_type=client_credentials&scope=mcp&resource=api://default" "$ISSUER/token" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
USER_TOKEN=$(token user-client:user-client-secret)
ADMIN_TOKEN=$(token admin-client:admin-client-secret)
redact() { sed -e "s/$N8N_PROXY_KEY/<N8N_PROXY_KEY>/g" -e "s/$USER_TOKEN/<user token>/g" -e "s/$ADMIN_TOKEN/<admin token>/g" \
    -e "s/127.0.0.1:$N8N_PORT/127.0.0.1:<n8n>/g" -e "s/127.0.0.1:$GW_PORT/127.0.0.1:<gateway>/g" -e "s/127.0.0.1:$IDP_PORT/127.0.0.1:<idp>/g"; }
SID=""
call() { # call TITLE URL TOKEN BODY: prints the request and the answer's head and body
    local title=$1 url=$2 tok=$3 body=$4
    local hdrs=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream')
    [ -n "$tok" ] && hdrs+=(-H "authorization: Bearer $tok")
    [ -n "$SID" ] && hdrs+=(-H "mcp-session-id: $SID")
    printf '\n### %s\n\n```text\n$ curl -si %s' "$title" "$url"
    [ -n "$tok" ] && printf ' -H "authorization: Bearer %s"' "$tok"
    [ -n "$SID" ] && printf ' -H "mcp-session-id: %s"' "$SID"
    printf " -d '%s'\n" "$body"
    curl -si -N --max-time 30 "${hdrs[@]}" -d "$body" "$url" >"$WORK/answer" || true
    tr -d '\r' <"$WORK/answer" | grep -viE '^(date|vary|server):'
    printf '```\n'
    local sid
    sid=$(tr -d '\r' <"$WORK/answer" | awk -F': ' 'tolower($1) == "mcp-session-id" {print $2}')
    [ -n "$sid" ] && SID=$sid
    return 0
}
INIT='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
{
echo "# n8n sidecar: transcript of examples/n8n-sidecar/verify.sh"
echo
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) against n8n $("$N8N" --version 2>/dev/null | tail -1), Portcullis $("$BIN" --version | cut -d' ' -f2-)."
echo "Secrets, tokens and ports are redacted. The n8n trigger requires \`x-n8n-key\` (Header Auth)."
call "n8n directly, without its key: refused by n8n" "$N8N_URL" "" "$INIT"
call "Through Portcullis without a token: 401 and where to get one" "$GW" "" "$INIT"
call "A user (groups: User) initializes; Portcullis injects x-n8n-key, n8n's SSE answer is relayed as is" "$GW" "$USER_TOKEN" "$INIT"
call "initialized" "$GW" "$USER_TOKEN" '{"jsonrpc":"2.0","method":"notifications/initialized"}'
call "The user's tools/list: only what the user may call" "$GW" "$USER_TOKEN" '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
call "The user calls calculator" "$GW" "$USER_TOKEN" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"calculator","arguments":{"input":"2 + 3 * 4"}}}'
call "The user calls think: denied by Portcullis, never sent to n8n" "$GW" "$USER_TOKEN" '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"think","arguments":{"input":"x"}}}'
SID=""
call "An admin (groups: Admin) initializes" "$GW" "$ADMIN_TOKEN" "$INIT"
call "The admin's tools/list: every tool" "$GW" "$ADMIN_TOKEN" '{"jsonrpc":"2.0","id":4,"method":"tools/list"}'
call "The admin calls think" "$GW" "$ADMIN_TOKEN" '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"think","arguments":{"input":"Portcullis passed this through"}}}'
echo
echo "Gateway log (the policy decisions):"
echo
echo '```text'
grep -iE "denied|error|warn" "$WORK/gateway.log" | sed -E 's/\x1b\[[0-9;]*m//g' | tail -n 20 || true
echo '```'
} | redact
