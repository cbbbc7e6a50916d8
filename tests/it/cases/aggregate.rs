//! The aggregated `/mcp` over two stdio children (`tests/it/fixtures/stdio_server.py`), with
//! authentication on: sealed sessions, merged and filtered lists, names namespaced and routed
//! back (prefix, alias), denials that never reach an upstream whatever the name's shape, ids
//! of server-to-client requests mapped without state, and session ids that do not open.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::jwt::{fixture, token, ISSUER};
use crate::common::{client, Gateway};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);
const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

fn config() -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
  admin_scope: "scope:admin"
oauth:
  enabled: true
  provider: okta
  authorization_servers: ["{ISSUER}"]
  audiences: ["api://default"]
  jwks_uri: "file://{jwks}"
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
    "groups:Admin": ["scope:admin"]
  permissions:
    "a:echo": ["scope:user"]
    "a:stats": ["scope:user", "scope:admin"]
    "b:*": ["scope:admin"]
    "b:echo": ["scope:user", "scope:admin"]
proxy:
  session_key: "{KEY}"
  servers:
    - name: a
      type: stdio
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 20s }}
    - name: b
      type: stdio
      prefix: bee
      aliases: {{ echo: say }}
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 20s }}
"#,
        jwks = fixture("jwks.json")
    )
}

async fn gateway() -> Gateway {
    let gw = Gateway::start(&config()).await;
    for name in ["a", "b"] {
        let mux = gw
            .store
            .load()
            .upstreams
            .get(name)
            .and_then(|u| u.shared.clone())
            .unwrap();
        assert!(mux.until_ready(Duration::from_secs(20)).await, "{name}");
    }
    gw
}

fn post(gw: &Gateway, token: &str, sid: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
    let mut req = client()
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    req
}

async fn initialize(gw: &Gateway, token: &str) -> String {
    let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"it","version":"1"}}});
    let resp = post(gw, token, None, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"]["serverInfo"]["name"], "portcullis", "{v}");
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "{v}");
    assert_eq!(
        v["result"]["capabilities"]["tools"]["listChanged"], true,
        "{v}"
    );
    assert!(sid.starts_with("pcs1."), "{sid}");
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let resp = post(gw, token, Some(&sid), &note).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    sid
}

fn call(id: u32, name: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"message":"m"}}})
}

async fn json_of(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    // An SSE answer: the last event's data.
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .map(str::to_owned)
        .unwrap_or(text);
    (status, serde_json::from_str(&data).unwrap_or(Value::Null))
}

fn tool_names(v: &Value) -> Vec<String> {
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// How often the child behind `/mcp/{server}` ran each tool (its `stats` tool).
async fn calls_seen(gw: &Gateway, server: &str) -> Value {
    let admin = token("ops", &["Admin"]);
    let (_, v) = json_of(
        client()
            .post(gw.url(&format!("/mcp/{server}")))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {admin}"))
            .body(
                json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stats"}})
                    .to_string(),
            ),
    )
    .await;
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    serde_json::from_str::<Value>(text).unwrap()["calls"].clone()
}

#[tokio::test]
async fn one_session_lists_every_upstream_filtered_and_routes_calls_by_name() {
    let gw = gateway().await;
    let user = token("alice", &["User"]);
    let sid = initialize(&gw, &user).await;

    let (status, v) = json_of(post(
        &gw,
        &user,
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    ))
    .await;
    assert_eq!(status, 200);
    // Config order, filtered per caller, prefixed; b's `echo` under its alias.
    assert_eq!(tool_names(&v), ["a__echo", "a__stats", "bee__say"], "{v}");
    let admin = token("ops", &["Admin"]);
    let admin_sid = initialize(&gw, &admin).await;
    let (_, v) = json_of(post(
        &gw,
        &admin,
        Some(&admin_sid),
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    ))
    .await;
    let names = tool_names(&v);
    assert!(
        names.contains(&"bee__sample".to_owned()) && names.contains(&"a__stats".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "a__echo" || n == "bee__echo"),
        "{names:?}"
    );

    // /status shows how each server appears on /mcp, and what its live list showed.
    let status: Value = client()
        .get(gw.url("/status"))
        .header(
            "authorization",
            format!("Bearer {}", token("ops", &["Admin"])),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b = &status["upstreams"][1]["on_mcp"];
    assert_eq!(
        (b["prefix"].as_str(), &b["aliases"]),
        (Some("bee"), &json!({"echo": "say"})),
        "{status}"
    );
    assert_eq!(b["tools_seen"]["collisions"], json!([]), "{status}");
    let (_, v) = json_of(post(&gw, &user, Some(&sid), &call(2, "a__echo"))).await;
    assert_eq!(v["result"]["content"][0]["text"], "Echo: m", "{v}");
    assert_eq!(v["id"], 2);
    let (_, v) = json_of(post(&gw, &user, Some(&sid), &call(3, "bee__say"))).await;
    assert_eq!(v["result"]["content"][0]["text"], "Echo: m", "{v}");
    assert_eq!(calls_seen(&gw, "b").await["echo"], 1);

    let (status, v) = json_of(post(
        &gw,
        &user,
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":4,"method":"ping"}),
    ))
    .await;
    assert_eq!((status, &v["result"]), (200, &json!({})));

    // DELETE ends the session on every upstream: the stdio sessions are closed.
    let resp = client()
        .delete(gw.url("/mcp"))
        .header("authorization", format!("Bearer {user}"))
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = json_of(post(&gw, &user, Some(&sid), &call(5, "a__echo"))).await;
    assert_eq!(
        status, 404,
        "a call after DELETE reaches a closed upstream session"
    );
    // A list too: the upstreams no longer know the session, so neither does /mcp.
    let list = json!({"jsonrpc":"2.0","id":6,"method":"tools/list"});
    let (status, v) = json_of(post(&gw, &user, Some(&sid), &list)).await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test]
async fn denied_unknown_and_oddly_shaped_names_never_reach_an_upstream() {
    let gw = gateway().await;
    let user = token("alice", &["User"]);
    let sid = initialize(&gw, &user).await;
    let before = calls_seen(&gw, "a").await;
    for name in [
        "a__slow",      // no rule: denied by default
        "bee__echo",    // aliased away: only `bee__say` names it
        "b__say",       // the server's name is not its prefix
        "A__echo",      // other case
        "a__echo ",     // trailing space
        "a__echo\u{0}", // NUL
        "a\u{2217}echo",
        "nobody__echo",
        "a__",
        "__echo",
    ] {
        let (status, v) = json_of(post(&gw, &user, Some(&sid), &call(9, name))).await;
        assert_eq!(status, 200, "{name:?}: {v}");
        assert_eq!(v["error"]["code"], -32602, "{name:?}: {v}");
        assert_eq!(v["id"], 9, "{name:?}");
    }
    // Escaped in the JSON text: decided on the unescaped name.
    let escaped =
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a__\u0073low"}}"#;
    let resp = post(&gw, &user, Some(&sid), &Value::Null)
        .body(escaped)
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32602, "{v}");
    // Other message shapes: a notification, params not an object, a batch.
    for body in [
        json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"a__slow"}}),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a__slow"]}),
        json!([call(1, "a__echo"), call(2, "a__slow")]),
    ] {
        let (status, v) = json_of(post(&gw, &user, Some(&sid), &body)).await;
        assert_eq!(status, 400, "{body}: {v}");
    }
    // Step-up and forbidden modes are covered on /mcp/{server}; here: nothing ran.
    assert_eq!(calls_seen(&gw, "a").await, {
        let mut b = before.clone();
        b["stats"] = json!(b["stats"].as_u64().unwrap_or(0) + 1);
        b
    });
}

#[tokio::test]
async fn session_ids_that_do_not_open_for_this_caller_are_404() {
    let gw = gateway().await;
    let alice = token("alice", &["User"]);
    let sid = initialize(&gw, &alice).await;
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    // Another caller with the same scopes.
    let bob = token("bob", &["User"]);
    let (status, v) = json_of(post(&gw, &bob, Some(&sid), &list)).await;
    assert_eq!(status, 404, "{v}");
    // Tampered: every position of the sealed part flipped in turn (a sample).
    let bytes = sid.as_bytes();
    for i in (6..bytes.len()).step_by(7) {
        let mut t = bytes.to_vec();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        let (status, _) = json_of(post(&gw, &alice, Some(&t), &list)).await;
        assert_eq!(status, 404, "tampered at {i}");
    }
    // Sealed under another key, for the right caller.
    let other = portcullis::mcp::session::SessionKey::new(Some(&[9; 32]));
    let principal = portcullis::auth::Principal {
        subject: "alice".into(),
        issuer: ISSUER.into(),
        ..Default::default()
    };
    let foreign = other
        .seal(&portcullis::mcp::session::Session {
            created: portcullis::mcp::session::now(),
            principal: portcullis::mcp::session::principal_tag(&principal),
            protocol: "2025-11-25".into(),
            upstreams: vec![portcullis::mcp::session::Held {
                server: "a".into(),
                session: String::new(),
                version: "2025-11-25".into(),
            }],
        })
        .unwrap();
    for bad in [foreign.as_str(), "pcs1.", "garbage", "ps1-deadbeef"] {
        let (status, _) = json_of(post(&gw, &alice, Some(bad), &list)).await;
        assert_eq!(status, 404, "{bad}");
    }
    // No session: 400; the right one still works; GET without a session: 400.
    let (status, _) = json_of(post(&gw, &alice, None, &list)).await;
    assert_eq!(status, 400);
    let (status, v) = json_of(post(&gw, &alice, Some(&sid), &list)).await;
    assert_eq!(status, 200, "{v}");
    let resp = client()
        .get(gw.url("/mcp"))
        .header("authorization", format!("Bearer {alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // No token at all: 401 pointing at /mcp's metadata.
    let resp = client()
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .body(list.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/mcp\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_server_request_round_trips_with_a_namespaced_id() {
    let gw = gateway().await;
    let admin = token("ops", &["Admin"]);
    let sid = initialize(&gw, &admin).await;
    let resp = post(&gw, &admin, Some(&sid), &json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"bee__sample","arguments":{"prompt":"hello"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    let mut buf = String::new();
    let request = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        if let Some(data) = buf.lines().find_map(|l| l.strip_prefix("data: ")) {
            break serde_json::from_str::<Value>(data).unwrap();
        }
    };
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let id = request["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("bee__"), "{id}");
    // The answer, on another connection, routed back by its id alone.
    let answer = json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","content":{"type":"text","text":"hi back"},"model":"m"}});
    let resp = post(&gw, &admin, Some(&sid), &answer).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let mut rest = String::new();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(20), stream.next()).await
    {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let result: Value = serde_json::from_str(
        rest.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(result["id"], "c1");
    assert_eq!(
        result["result"]["content"][0]["text"], "sampled: hi back",
        "{result}"
    );
    // An answer naming no request of this session is refused.
    let stray = json!({"jsonrpc":"2.0","id":"nobody__1","result":{}});
    let resp = post(&gw, &admin, Some(&sid), &stray).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}
