#!/usr/bin/env python3
"""Writes the seed corpus of the `differential` fuzz target (fuzz/corpus/differential): whole
HTTP/1.1 requests with tokens signed by the test key tests/fixtures/jwt/rsa1.pem (kid rsa-1,
valid until 2100; test key material, not a secret). Needs Python `cryptography`.

    python3 fuzz/make_differential_corpus.py
"""
import base64, json, os, pathlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus" / "differential"
KEY = serialization.load_pem_private_key((ROOT / "tests/fixtures/jwt/rsa1.pem").read_bytes(), None)
ISS = "https://issuer.example.com/oauth2/default"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(sub, groups, **extra):
    head = {"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}
    claims = {"iss": ISS, "aud": "api://default", "sub": sub, "iat": 1764000000,
              "exp": 4102444800, "groups": groups, **extra}
    signing = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    sig = KEY.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing}.{b64(sig)}"


USER = token("alice", ["User"])
ADMIN = token("ops", ["Admin", "User"])


def request(method, path, body=b"", token=USER, extra=(), content_type="application/json"):
    lines = [f"{method} {path} HTTP/1.1", "host: mcp.example.com"]
    if token:
        lines.append(f"authorization: Bearer {token}")
    if body or method == "POST":
        lines.append(f"content-type: {content_type}")
        lines.append("accept: application/json, text/event-stream")
        lines.append(f"content-length: {len(body)}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def rpc(method, params=None, id=1):
    m = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        m["params"] = params
    return json.dumps(m).encode()


def call(name, id=1):
    return rpc("tools/call", {"name": name, "arguments": {"x": 1}}, id)


INIT = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "c", "version": "1"}})
MODERN = ["mcp-protocol-version: 2026-07-28", "mcp-method: tools/call", "mcp-name: echo"]
MODERN_META = {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                         "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
                         "io.modelcontextprotocol/clientCapabilities": {}}}

SEEDS = {
    "call_allowed": request("POST", "/mcp/up", call("echo")),
    "call_denied": request("POST", "/mcp/up", call("secret_key")),
    "call_admin": request("POST", "/mcp/up", call("secret_key"), token=ADMIN),
    "call_escaped": request("POST", "/mcp/up", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secr\\u0065t_x"}}'),
    "call_duplicate_key": request("POST", "/mcp/up", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"secret_x"}}'),
    "batch_mixed": request("POST", "/mcp/up", b"[" + call("echo", 1) + b"," + call("secret_x", 2) + b"]"),
    "list_tools": request("POST", "/mcp/up", rpc("tools/list")),
    "prompt": request("POST", "/mcp/other", rpc("prompts/get", {"name": "greet"})),
    "resource": request("POST", "/mcp/up", rpc("resources/read", {"uri": "file:///etc/passwd"})),
    "notification": request("POST", "/mcp/up", b'{"jsonrpc":"2.0","method":"notifications/initialized"}'),
    "initialize_agg": request("POST", "/mcp", INIT),
    "call_agg_alias": request("POST", "/mcp", call("oth__say"), extra=["mcp-session-id: pcs1.AAAA"]),
    "list_agg": request("POST", "/mcp", rpc("tools/list"), extra=["mcp-session-id: pcs1.AAAA"]),
    "get_stream": request("GET", "/mcp/up", extra=["accept: text/event-stream", "mcp-session-id: s1"]),
    "delete": request("DELETE", "/mcp/up", extra=["mcp-session-id: s1"]),
    "no_token": request("POST", "/mcp/up", call("echo"), token=None),
    "bad_token": request("POST", "/mcp/up", call("echo"), token=USER[:-4] + "AAAA"),
    "two_tokens": request("POST", "/mcp/up", call("echo"), extra=[f"authorization: Bearer {ADMIN}"]),
    "query_token": request("POST", "/mcp/up?access_token=abc", call("echo")),
    "foreign_host": request("POST", "/mcp/up", call("echo")).replace(b"host: mcp.example.com", b"host: evil.example"),
    "bad_origin": request("POST", "/mcp/up", call("echo"), extra=["origin: https://evil.example"]),
    "good_origin": request("POST", "/mcp/up", call("echo"), extra=["origin: https://app.example.com"]),
    "text_plain": request("POST", "/mcp/up", call("echo"), content_type="text/plain"),
    "parse_error": request("POST", "/mcp/up", b'{"jsonrpc":"2.0","id":1,'),
    "modern_call": request("POST", "/mcp/up", rpc("tools/call", {"name": "echo", "arguments": {}, **MODERN_META}), extra=MODERN),
    "modern_mismatch": request("POST", "/mcp/up", rpc("tools/call", {"name": "secret_x", "arguments": {}, **MODERN_META}), extra=MODERN),
    "modern_discover": request("POST", "/mcp", rpc("server/discover", MODERN_META), extra=["mcp-protocol-version: 2026-07-28", "mcp-method: server/discover"]),
    "metadata": request("GET", "/.well-known/oauth-protected-resource/mcp/up", token=None),
    "status": request("GET", "/status", token=ADMIN),
    "unknown_server": request("POST", "/mcp/nope", call("echo")),
    "put": request("PUT", "/mcp/up", call("echo")),
    "encoded_path": request("POST", "/mcp/%75p", call("echo")),
    "dot_path": request("POST", "/mcp/../mcp/up", call("echo")),
}

OUT.mkdir(parents=True, exist_ok=True)
for name, data in SEEDS.items():
    (OUT / name).write_bytes(data)
print(f"{len(SEEDS)} seeds in {OUT.relative_to(ROOT)}")
