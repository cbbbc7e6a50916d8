//! 2026-07-28 callers of a Streamable HTTP upstream that speaks only the legacy era: the
//! gateway asks the upstream once which era it speaks, then keeps a legacy session with it
//! per caller (never shared), answers `server/discover` from that session's `initialize`,
//! completes results for the caller's era, and opens a new session when the upstream forgot
//! one (the request then goes once more: the upstream did not act on it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::common::jwt::{oauth_section, token};
use crate::common::{client, Gateway};

/// A legacy-only Streamable HTTP server: sessions from `initialize`, 400 for a request without
/// one (a 2026-07-28 `server/discover` included), 404 for a session it does not know.
#[derive(Default)]
struct Legacy {
    initialized: AtomicUsize,
    discover_probes: AtomicUsize,
    /// (session, tool) of every call it acted on.
    calls: Mutex<Vec<(String, String)>>,
    /// Sessions it knows.
    sessions: Mutex<Vec<String>>,
    /// Answer "Session not found" with the request's own id (else null).
    echo_404_id: std::sync::atomic::AtomicBool,
}

async fn legacy(
    State(s): State<Arc<Legacy>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let method = v["method"].as_str().unwrap_or_default().to_owned();
    let json = |status: StatusCode, v: Value| {
        (
            status,
            [("content-type", "application/json")],
            v.to_string(),
        )
    };
    if method == "initialize" {
        let n = s.initialized.fetch_add(1, Ordering::SeqCst) + 1;
        let sid = format!("s-{n}");
        s.sessions.lock().unwrap().push(sid.clone());
        let result = json!({"jsonrpc":"2.0","id":v["id"],"result":{
            "protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}},
            "serverInfo":{"name":"legacy-only","version":"1"}}});
        let mut resp = json(StatusCode::OK, result).into_response();
        resp.headers_mut()
            .insert("mcp-session-id", sid.parse().unwrap());
        return resp;
    }
    if method == "server/discover" {
        s.discover_probes.fetch_add(1, Ordering::SeqCst);
    }
    let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return json(StatusCode::BAD_REQUEST, json!({"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: Server not initialized"}})).into_response();
    };
    if !s.sessions.lock().unwrap().iter().any(|k| k == sid) {
        let id = if s.echo_404_id.load(Ordering::SeqCst) {
            v["id"].clone()
        } else {
            Value::Null
        };
        return json(
            StatusCode::NOT_FOUND,
            json!({"jsonrpc":"2.0","id":id,"error":{"code":-32001,"message":"Session not found"}}),
        )
        .into_response();
    }
    assert_eq!(
        headers["mcp-protocol-version"], "2025-11-25",
        "the negotiated version"
    );
    match method.as_str() {
        "notifications/initialized" => StatusCode::ACCEPTED.into_response(),
        "tools/call" => {
            let tool = v["params"]["name"].as_str().unwrap_or_default().to_owned();
            s.calls.lock().unwrap().push((sid.to_owned(), tool.clone()));
            json(StatusCode::OK, json!({"jsonrpc":"2.0","id":v["id"],"result":{"content":[{"type":"text","text":format!("{tool} in {sid}")}]}})).into_response()
        }
        "tools/list" => json(StatusCode::OK, json!({"jsonrpc":"2.0","id":v["id"],"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}})).into_response(),
        _ => json(StatusCode::OK, json!({"jsonrpc":"2.0","id":v["id"],"error":{"code":-32601,"message":"Method not found"}})).into_response(),
    }
}

async fn start() -> (Arc<Legacy>, std::net::SocketAddr) {
    let state = Arc::new(Legacy::default());
    let app = Router::new()
        .route("/mcp", post(legacy))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, addr)
}

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
{oauth}
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "old:*": ["scope:user"]
proxy:
  servers:
    - name: old
      type: streamable-http
      connection: {{ url: "http://{addr}/mcp" }}
"#,
        oauth = oauth_section()
    )
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}})
}

async fn modern(
    gw: &Gateway,
    path: &str,
    user: &str,
    method: &str,
    name: Option<&str>,
) -> (u16, Value) {
    let params = match name {
        Some(n) => json!({"name": n, "arguments": {}, "_meta": meta()}),
        None => json!({"_meta": meta()}),
    };
    send(gw, path, user, method, name, params).await
}

/// A 2026-07-28 request with these `params`; the answer's last message (JSON or SSE).
async fn send(
    gw: &Gateway,
    path: &str,
    user: &str,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> (u16, Value) {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "authorization",
            format!("Bearer {}", token(user, &["User"])),
        )
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .body(json!({"jsonrpc":"2.0","id":9,"method":method,"params":params}).to_string());
    if let Some(n) = name {
        req = req.header("mcp-name", n);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .map(str::to_owned)
        .unwrap_or(text);
    (status, serde_json::from_str(&data).unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_caller_gets_a_legacy_session_of_its_own() {
    let (up, addr) = start().await;
    let gw = Gateway::start(&config(addr)).await;
    for _ in 0..2 {
        let (status, v) = modern(&gw, "/mcp/old", "alice", "tools/call", Some("echo")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"]["content"][0]["text"], "echo in s-1", "{v}");
        assert_eq!(v["result"]["resultType"], "complete", "{v}");
    }
    // Another caller: a session of its own, on /mcp as on /mcp/old.
    let (_, v) = modern(&gw, "/mcp", "bob", "tools/call", Some("old__echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], "echo in s-2", "{v}");
    let (_, v) = modern(&gw, "/mcp", "alice", "tools/call", Some("old__echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], "echo in s-1", "{v}");
    assert_eq!(up.initialized.load(Ordering::SeqCst), 2);
    assert_eq!(up.discover_probes.load(Ordering::SeqCst), 1, "asked once");
    // Lists are completed for the caller's era; discover comes from the session's handshake.
    let (_, v) = modern(&gw, "/mcp/old", "alice", "tools/list", None).await;
    let r = &v["result"];
    assert_eq!(
        (
            r["resultType"].as_str(),
            r["ttlMs"].as_u64(),
            r["cacheScope"].as_str()
        ),
        (Some("complete"), Some(0), Some("private")),
        "{v}"
    );
    let (_, v) = modern(&gw, "/mcp/old", "alice", "server/discover", None).await;
    assert_eq!(
        v["result"]["supportedVersions"],
        json!(["2026-07-28"]),
        "{v}"
    );
    assert_eq!(
        v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "legacy-only"
    );
    let (_, v) = modern(&gw, "/mcp", "alice", "tools/list", None).await;
    assert!(
        v["result"]["tools"].to_string().contains("old__echo"),
        "{v}"
    );
    // Not mapped: a listen stream.
    let (status, v) = listen(&gw, "alice").await;
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (404, Some(-32601)),
        "{v}"
    );
    assert_eq!(up.initialized.load(Ordering::SeqCst), 2);
    // The upstream forgets alice's session: her next call opens a new one, and the upstream
    // acts on it exactly once.
    up.sessions.lock().unwrap().retain(|s| s != "s-1");
    let before = up.calls.lock().unwrap().len();
    let (_, v) = modern(&gw, "/mcp/old", "alice", "tools/call", Some("echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], "echo in s-3", "{v}");
    assert_eq!(up.calls.lock().unwrap().len(), before + 1);
    // A 404 that answers the request itself: the caller gets it, the session is dropped all
    // the same (the next call opens a new one), and the request is not sent twice.
    up.sessions.lock().unwrap().retain(|s| s != "s-3");
    up.echo_404_id.store(true, Ordering::SeqCst);
    let (status, v) = modern(&gw, "/mcp/old", "alice", "tools/call", Some("echo")).await;
    assert_eq!((status, v["id"].clone()), (404, json!(9)), "{v}");
    up.echo_404_id.store(false, Ordering::SeqCst);
    let (_, v) = modern(&gw, "/mcp/old", "alice", "tools/call", Some("echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], "echo in s-4", "{v}");
    // A legacy client of the same upstream: its own session, passed through as it is.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let resp = client()
        .post(gw.url("/mcp/old"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "authorization",
            format!("Bearer {}", token("alice", &["User"])),
        )
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["mcp-session-id"], "s-5");
}

async fn listen(gw: &Gateway, user: &str) -> (u16, Value) {
    let params = json!({"notifications":{"toolsListChanged":true},"_meta":meta()});
    send(gw, "/mcp/old", user, "subscriptions/listen", None, params).await
}

/// An upstream that refuses the probe for a reason that says nothing about the protocol
/// (here 401): the era stays undecided, requests pass through as they are, and it is asked
/// again only after a while.
#[tokio::test]
async fn an_undecided_era_passes_requests_through_and_is_not_asked_at_every_request() {
    #[derive(Default)]
    struct Picky {
        probes: AtomicUsize,
        posts: AtomicUsize,
    }
    async fn picky(State(s): State<Arc<Picky>>, body: String) -> axum::response::Response {
        if body.contains("portcullis-discover") {
            s.probes.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::UNAUTHORIZED, "no").into_response();
        }
        s.posts.fetch_add(1, Ordering::SeqCst);
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let result =
            json!({"jsonrpc":"2.0","id":v["id"],"result":{"content":[],"resultType":"complete"}});
        ([("content-type", "application/json")], result.to_string()).into_response()
    }
    let state = Arc::new(Picky::default());
    let app = Router::new()
        .route("/mcp", post(picky))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = Gateway::start(&config(addr)).await;
    for _ in 0..5 {
        let (status, v) = modern(&gw, "/mcp/old", "alice", "tools/call", Some("echo")).await;
        assert_eq!(status, 200, "{v}");
        assert!(v["result"].is_object(), "passed through: {v}");
    }
    assert_eq!(state.posts.load(Ordering::SeqCst), 5);
    assert_eq!(
        state.probes.load(Ordering::SeqCst),
        1,
        "asked once, not per request"
    );
}
