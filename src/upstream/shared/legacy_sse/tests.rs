//! Tests of [`super`] against a tiny legacy SSE server on port 0.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // a test server, not the request path
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use std::sync::Mutex;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// A tiny legacy SSE server: `GET /sse` streams, `POST /messages?sessionId=abc` echoes
/// requests back on the stream.
struct TestState {
    /// The `endpoint` event's data; `None` sends none.
    endpoint: Option<String>,
    /// The open stream (dropping it ends the response).
    stream: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    /// Method and headers of every request seen.
    seen: Mutex<Vec<(String, HeaderMap)>>,
}

async fn open_stream(State(s): State<Arc<TestState>>, headers: HeaderMap) -> Response {
    s.seen.lock().unwrap().push(("GET".into(), headers));
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    tx.send(Bytes::from_static(
        b": welcome\n\nevent: other\ndata: x\n\n",
    ))
    .unwrap();
    if let Some(endpoint) = &s.endpoint {
        // Split in two writes: the framer must join them.
        tx.send(Bytes::from(format!("event: endpoint\r\ndata: {endpoint}")))
            .unwrap();
        tx.send(Bytes::from_static(b"\r\n\r\n")).unwrap();
    }
    *s.stream.lock().unwrap() = Some(tx);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn message(
    State(s): State<Arc<TestState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    s.seen.lock().unwrap().push(("POST".into(), headers));
    if uri.query() != Some("sessionId=abc") {
        return StatusCode::NOT_FOUND;
    }
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let method = msg["method"].as_str().unwrap_or_default();
    if method == "fail" {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let (Some(id), true) = (msg.get("id"), msg.get("method").is_some()) {
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"echo": msg["params"]}});
        let event = match method {
            // No event name: the default type, `message`.
            "plain" => format!("data: {reply}\n\n"),
            // Pretty-printed over several `data:` lines.
            "pretty" => {
                let mut ev = String::new();
                for line in serde_json::to_string_pretty(&reply).unwrap().lines() {
                    ev.push_str(&format!("data: {line}\n"));
                }
                ev + "\n"
            }
            _ => format!(": ping\n\nevent: message\ndata: {reply}\n\n"),
        };
        if let Some(stream) = &*s.stream.lock().unwrap() {
            let _ = stream.send(Bytes::from(event));
        }
    }
    StatusCode::ACCEPTED
}

async fn not_sse() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], "{}")
}

/// Serve on a free port; returns the state and the base URL.
async fn serve(endpoint: Option<&str>) -> (Arc<TestState>, Url) {
    let state = Arc::new(TestState {
        endpoint: endpoint.map(str::to_string),
        stream: Mutex::new(None),
        seen: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/sse", get(open_stream))
        .route("/messages", axum::routing::post(message))
        .route("/json", get(not_sse))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, Url::parse(&format!("http://{addr}/")).unwrap())
}

async fn link_to(base: &Url, path: &str) -> Result<Link, String> {
    let headers = [(
        HeaderName::from_static("x-api-key"),
        HeaderValue::from_static("sekrit"),
    )];
    connect("test", &base.join(path).unwrap(), &headers, None, WAIT).await
}

async fn recv(link: &mut Link) -> Value {
    let msg = tokio::time::timeout(WAIT, link.rx.recv())
        .await
        .expect("a message in time")
        .expect("the link is open");
    serde_json::from_slice(&msg).unwrap()
}

async fn send(link: &Link, msg: Value) {
    link.tx.send(Bytes::from(msg.to_string())).await.unwrap();
}

#[tokio::test]
async fn requests_are_posted_and_answers_streamed_with_injected_headers() {
    let (state, base) = serve(Some("/messages?sessionId=abc")).await;
    let mut link = link_to(&base, "/sse").await.unwrap();
    assert_eq!(link.pid, None);
    send(
        &link,
        json!({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"a": 1}}),
    )
    .await;
    send(
        &link,
        json!({"jsonrpc": "2.0", "id": "two", "method": "plain", "params": [2]}),
    )
    .await;
    send(
        &link,
        json!({"jsonrpc": "2.0", "id": 3, "method": "pretty", "params": {"b": "c"}}),
    )
    .await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(recv(&mut link).await);
    }
    // POSTs run concurrently: answers may arrive in any order.
    answers.sort_by_key(|a| a["id"].to_string());
    assert_eq!(
        answers,
        vec![
            json!({"jsonrpc": "2.0", "id": "two", "result": {"echo": [2]}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"echo": {"a": 1}}}),
            json!({"jsonrpc": "2.0", "id": 3, "result": {"echo": {"b": "c"}}}),
        ]
    );
    // Comments and other event types were not forwarded.
    assert!(link.rx.try_recv().is_err());

    let seen = state.seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for (method, headers) in seen.iter() {
        assert_eq!(headers["x-api-key"], "sekrit", "{method}");
        if method == "GET" {
            assert_eq!(headers[ACCEPT], "text/event-stream");
        } else {
            assert_eq!(headers[CONTENT_TYPE], "application/json");
        }
    }
    assert_eq!(seen[0].0, "GET");
}

#[tokio::test]
async fn a_rejected_request_is_answered_with_an_error() {
    let (_state, base) = serve(Some("/messages?sessionId=abc")).await;
    let mut link = link_to(&base, "/sse").await.unwrap();
    send(
        &link,
        json!({"jsonrpc": "2.0", "id": "x-7", "method": "fail"}),
    )
    .await;
    // A rejected notification has nobody to answer; it is only logged.
    send(&link, json!({"jsonrpc": "2.0", "method": "fail"})).await;
    send(
        &link,
        json!({"jsonrpc": "2.0", "id": 8, "method": "echo", "params": 1}),
    )
    .await;
    // The notification waits for the request before it and holds back the one after it.
    assert_eq!(
        recv(&mut link).await,
        json!({"jsonrpc": "2.0", "id": "x-7", "error": {
            "code": -32603, "message": "upstream rejected the message: HTTP 500"}})
    );
    assert_eq!(
        recv(&mut link).await,
        json!({"jsonrpc": "2.0", "id": 8, "result": {"echo": 1}})
    );
}

#[tokio::test]
async fn the_server_closing_the_stream_ends_the_link() {
    let (state, base) = serve(Some("/messages?sessionId=abc")).await;
    let mut link = link_to(&base, "/sse").await.unwrap();
    state.stream.lock().unwrap().take();
    let next = tokio::time::timeout(WAIT, link.rx.recv()).await.unwrap();
    assert!(next.is_none());
    let reason = tokio::time::timeout(WAIT, link.ended)
        .await
        .unwrap()
        .unwrap();
    assert!(reason.contains("closed the SSE stream"), "{reason}");
}

#[tokio::test]
async fn stop_ends_the_link_and_is_idempotent() {
    let (_state, base) = serve(Some("/messages?sessionId=abc")).await;
    let mut link = link_to(&base, "/sse").await.unwrap();
    link.stopper.stop().await;
    link.stopper.stop().await;
    assert!(link.rx.recv().await.is_none());
    assert_eq!(link.ended.await.unwrap(), "stopped by the gateway");
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused() {
    for endpoint in [
        "http://127.0.0.1:1/messages?sessionId=abc",
        "//evil.example/messages",
        "https://evil.example/messages",
    ] {
        let (_state, base) = serve(Some(endpoint)).await;
        let err = link_to(&base, "/sse").await.err().unwrap();
        assert!(err.contains("another origin"), "{endpoint}: {err}");
    }
}

#[tokio::test]
async fn a_failed_get_is_an_error() {
    let (_state, base) = serve(Some("/messages?sessionId=abc")).await;
    let err = link_to(&base, "/missing").await.err().unwrap();
    assert_eq!(err, "GET answered HTTP 404");
    let err = link_to(&base, "/json").await.err().unwrap();
    assert_eq!(err, "GET did not answer with text/event-stream");
}

#[tokio::test]
async fn a_missing_endpoint_event_times_out() {
    let (_state, base) = serve(None).await;
    let url = base.join("/sse").unwrap();
    let err = connect("test", &url, &[], None, Duration::from_millis(200))
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("no `endpoint` event within"), "{err}");
}

#[test]
fn events_are_classified() {
    assert_eq!(
        classify(b"event: endpoint\ndata: /m?s=1\n\n"),
        Kind::Endpoint(b"/m?s=1".to_vec())
    );
    assert_eq!(
        classify(b"event: message\ndata: {}\n\n"),
        Kind::Message(Bytes::from_static(b"{}"))
    );
    assert_eq!(
        classify(b"id: 4\ndata: {}\n\n"),
        Kind::Message(Bytes::from_static(b"{}"))
    );
    assert_eq!(classify(b": keep-alive\n\n"), Kind::Other);
    assert_eq!(classify(b"event: ping\ndata: {}\n\n"), Kind::Other);
    assert_eq!(classify(b"data:\n\n"), Kind::Other);
    assert_eq!(event_type(b"event\ndata: x\n\n"), Some(&b""[..]));
    assert_eq!(event_type(b"event:a\nevent: b\n\n"), Some(&b"b"[..]));
    assert_eq!(event_type(b"data: x\n\n"), None);
}

#[test]
fn endpoints_resolve_against_the_stream_url() {
    let base = Url::parse("https://up.example/mcp/sse?x=1").unwrap();
    let resolve = |d: &str| resolve_endpoint(&base, d.as_bytes()).map(String::from);
    assert_eq!(
        resolve(" /messages?sessionId=abc \n").unwrap(),
        "https://up.example/messages?sessionId=abc"
    );
    assert_eq!(
        resolve("messages?s=1").unwrap(),
        "https://up.example/mcp/messages?s=1"
    );
    assert_eq!(
        resolve("https://up.example:443/m").unwrap(),
        "https://up.example/m"
    );
    assert!(resolve("http://up.example/m").is_err());
    assert!(resolve("https://up.example:8443/m").is_err());
    assert!(resolve("").is_err());
}

#[test]
fn only_requests_get_synthesized_errors() {
    let replies = |m: &str| -> Vec<Value> {
        failure_replies(m.as_bytes(), "why")
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    };
    let err = |id: Value| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "why"}});
    assert_eq!(
        replies(r#"{"jsonrpc":"2.0","id":5,"method":"m"}"#),
        vec![err(json!(5))]
    );
    assert!(replies(r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#).is_empty());
    assert!(replies(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#).is_empty());
    assert!(replies(r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#).is_empty());
    assert!(replies("not json").is_empty());
    assert_eq!(
        replies(r#"[{"id":"a","method":"m"},{"method":"n"},{"id":"b","method":"m"}]"#),
        vec![err(json!("a")), err(json!("b"))]
    );
    // The id is echoed byte for byte, even past what a float holds.
    let big = failure_replies(
        br#"{"id":123456789012345678901234567890,"method":"m"}"#,
        "r",
    );
    assert!(std::str::from_utf8(&big[0])
        .unwrap()
        .contains(r#""id":123456789012345678901234567890,"#));
    assert!(is_notification(
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    ));
    assert!(!is_notification(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
    ));
    assert!(!is_notification(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
}
