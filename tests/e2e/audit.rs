//! The audit trail and what logs never hold, on a real `portcullis serve` at the most verbose
//! log level: a stdio upstream and the Python SDK's server over HTTP (with an upstream bearer
//! credential), allowed and denied calls on `/mcp/{server}` and `/mcp`, a bad token, a token in
//! the query. Every decision is one JSON line in `--audit-log`; no log line holds the token
//! (nor its signature), the upstream credential, the stdio child's secret or the session key.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::{free_port, gateway_command, start_gateway, start_peer, Peers, Upstream};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);
const ISSUER: &str = "https://issuer.example.com/oauth2/default";
const SESSION_KEY: &str = "c2Vzc2lvbi1rZXktb2YtdGhlLWF1ZGl0LXRlc3QtMzI=";
const UPSTREAM_SECRET: &str = "upstream-bearer-7f3a9c2e51";
const CHILD_SECRET: &str = "child-env-secret-b81d44";

fn jwt(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn token(sub: &str, groups: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({"iss": ISSUER, "aud": "api://default", "sub": sub, "cid": "audit-client",
        "iat": now, "exp": now + 600, "groups": groups});
    let key = EncodingKey::from_rsa_pem(&std::fs::read(jwt("rsa1.pem")).unwrap()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn every_decision_is_audited_and_no_secret_reaches_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let peers = Peers::locate();
    let (_python, python_url) = start_peer(Upstream::Python, &peers, dir.path()).await;
    let port = free_port();
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:{port}"
oauth:
  enabled: true
  authorization_servers: ["{ISSUER}"]
  audiences: ["api://default"]
  jwks_uri: "file://{jwks}"
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "fixture:echo": ["scope:user"]
    "fixture:stats": ["scope:admin"]
    "py:*": ["scope:user"]
rate_limits:
  - key: principal
    requests_per_second: 0.001
    burst: 1
    tools: ["py:test_simple_text"]
proxy:
  session_key: "{SESSION_KEY}"
  servers:
    - name: fixture
      type: stdio
      connection:
        command: python3
        args: ["-u", "{FIXTURE}"]
        env: {{ API_TOKEN: "{CHILD_SECRET}" }}
    - name: py
      type: streamable-http
      connection: {{ url: "{python_url}" }}
      auth: {{ type: bearer, value: "{UPSTREAM_SECRET}" }}
"#,
        jwks = jwt("jwks.json")
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let mut cmd = gateway_command(&path);
    cmd.arg("--log-format")
        .arg("json")
        .arg("--audit-log")
        .arg(&audit_path)
        .env("RUST_LOG", "trace");
    let client = reqwest::Client::new();
    let (mut gw, base) = start_gateway(cmd, port, &client, dir.path()).await;
    let alice = token("alice", &["User"]);
    let post = |path: &str, body: Value, token: &str, sid: Option<&str>| {
        let mut req = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .body(body.to_string());
        if let Some(s) = sid {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let call = |name: &str| json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{"message":"m"}}});
    // Allowed and denied on /mcp/fixture.
    let r = post("/mcp/fixture", call("echo"), &alice, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Echo: m"));
    let r = post("/mcp/fixture", call("stats"), &alice, None)
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Unknown tool"));
    // A bad token, and a token in the query.
    let r = post("/mcp/fixture", call("echo"), "not.a.token", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{base}/mcp/fixture?access_token={alice}"))
        .header("content-type", "application/json")
        .body(call("echo").to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    // /mcp: a sealed session, an allowed and a denied call.
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
    let r = post("/mcp", init, &alice, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let r = post("/mcp", call("fixture__echo"), &alice, Some(&sid))
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Echo: m"));
    let r = post("/mcp", call("fixture__stats"), &alice, Some(&sid))
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Unknown tool"));
    // The HTTP upstream, through its credential.
    let r = post("/mcp", call("py__echo"), &alice, Some(&sid))
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("\"result\""), "{text}");
    // A prompt and a resource of it, by their names on /mcp.
    let get = json!({"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"py__test_simple_prompt"}});
    let text = post("/mcp", get, &alice, Some(&sid))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("simple prompt"), "{text}");
    let read = json!({"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"mcp://py/test://static-text"}});
    let text = post("/mcp", read, &alice, Some(&sid))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("static text resource"), "{text}");
    // A tool with a rate limit of one: the second call is refused, and audited so.
    for limited in [false, true] {
        let r = post("/mcp", call("py__test_simple_text"), &alice, Some(&sid))
            .await
            .unwrap();
        // (In a session the refusal is a JSON-RPC error, so the session's stream survives.)
        let text = r.text().await.unwrap();
        assert_eq!(text.contains("-32029"), limited, "{text}");
    }
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).await.is_some());

    // The audit trail: one line per decision, every field set.
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let seen: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            [s("decision"), s("server"), s("kind"), s("name"), s("rule")]
        })
        .collect();
    let expect = |d: &str, server: &str, kind: &str, name: &str, rule: &str| {
        [d, server, kind, name, rule].map(str::to_owned)
    };
    assert_eq!(
        seen,
        vec![
            expect("allow", "fixture", "tool", "echo", "fixture:echo"),
            expect("deny", "fixture", "tool", "stats", "fixture:stats"),
            expect("allow", "fixture", "tool", "echo", "fixture:echo"),
            expect("deny", "fixture", "tool", "stats", "fixture:stats"),
            expect("allow", "py", "tool", "echo", "py:*"),
            // The upstream's own names, as for tools.
            expect("allow", "py", "prompt", "test_simple_prompt", "py:*"),
            expect("allow", "py", "resource", "test://static-text", "py:*"),
            expect("allow", "py", "tool", "test_simple_text", "py:*"),
            expect(
                "limited",
                "py",
                "tool",
                "test_simple_text",
                "rate_limits[0]"
            ),
        ],
        "{audit}"
    );
    for e in &events {
        assert_eq!(e["target"], "portcullis::audit");
        assert_eq!(e["sub"], "alice");
        assert_eq!(e["iss"], ISSUER);
        assert_eq!(e["client"], "audit-client");
        assert_eq!(e["request_id"].as_str().unwrap().len(), 32, "{e}");
        assert_eq!(e["config"].as_str().unwrap().len(), 64, "{e}");
    }
    // Nothing secret in any log line (the gateway's trace-level log and the audit trail).
    let log = gw.log();
    assert!(log.lines().count() > 50, "the trace-level log is written");
    let signature = alice.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("token", alice.as_str()),
        ("token signature", signature),
        ("upstream credential", UPSTREAM_SECRET),
        ("stdio child's secret", CHILD_SECRET),
        ("session key", SESSION_KEY),
    ] {
        assert!(!log.contains(secret), "the log holds the {what}");
        assert!(!audit.contains(secret), "the audit trail holds the {what}");
    }
}
