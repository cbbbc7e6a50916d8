//! The upstream interface composes without a front end: a `tools/call` sent with
//! `Upstream::call` and read with `Answer::into_messages` gives the answer's JSON-RPC messages in
//! order (progress first, the response last, then the end), whatever the upstream's transport:
//! Streamable HTTP answering JSON or SSE, or a shared stdio session. This is what an endpoint
//! that merges several upstreams' answers builds on.

use bytes::Bytes;
use serde_json::{json, Value};

use portcullis::auth::principal::Principal;
use portcullis::mcp::jsonrpc::classify;
use portcullis::policy::Kind;
use portcullis::request::RequestView;
use portcullis::upstream::{Request, SessionId};

use crate::common::{Gateway, Upstream};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Send `body` as a `tools/call` of `tool` to `server` through the interface, with `headers`
/// as the client's, and read every message of the answer.
async fn call_messages(
    gw: &Gateway,
    server: &str,
    tool: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Vec<Value> {
    let snap = gw.store.load();
    let upstream = snap.upstreams.get(server).unwrap();
    let principal = Principal::anonymous();
    let permit = snap
        .policy
        .permit(&principal, server, [(Kind::Tool, tool)])
        .map_err(|(i, _)| i)
        .unwrap();
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let uri: http::Uri = format!("/mcp/{server}").parse().unwrap();
    let view = RequestView::from_parts(&http::Method::POST, &uri, &map, false);
    let bytes = Bytes::from(body.to_string());
    let envelope = classify(&bytes).unwrap();
    let req = Request {
        view: &view,
        body: bytes.clone(),
        envelope: Some(&envelope),
        traceparent: TRACEPARENT,
        session: SessionId::Client,
        mcp_name: None,
        protocol_version: None,
        mcp_method: None,
    };
    let answer = upstream.call(&permit, req).await.unwrap();
    let mut reader = answer.into_messages();
    let mut out = Vec::new();
    while let Some(m) = reader.next().await.unwrap() {
        out.push(serde_json::from_slice(&m).unwrap());
    }
    out
}

fn progress_then_answer(messages: &[Value], progress: usize) {
    assert_eq!(messages.len(), progress + 1, "{messages:?}");
    for m in &messages[..progress] {
        assert_eq!(m["method"], "notifications/progress", "{m}");
    }
    let last = &messages[progress];
    assert_eq!(last["id"], 1, "{last}");
    assert!(last.get("result").is_some(), "{last}");
}

#[tokio::test]
async fn a_call_reads_as_its_messages_in_order_on_every_upstream_kind() {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
proxy:
  servers:
    - name: mx-http
      type: streamable-http
      connection:
        url: "http://{}/mcp"
    - name: mx-stdio
      type: stdio
      connection:
        command: python3
        args: ["-u", "{FIXTURE}"]
        timeout: 20s
"#,
        up.addr
    );
    let gw = Gateway::start(&yaml).await;
    let mux = gw
        .store
        .load()
        .upstreams
        .get("mx-stdio")
        .unwrap()
        .shared
        .clone()
        .unwrap();
    assert!(mux.until_ready(std::time::Duration::from_secs(20)).await);

    let accept = ("accept", "application/json, text/event-stream");
    let ctype = ("content-type", "application/json");
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"echo","arguments":{}}});

    // Streamable HTTP, a JSON answer: one message, the response.
    let m = call_messages(&gw, "mx-http", "echo", &call, &[ctype, accept]).await;
    progress_then_answer(&m, 0);
    // Streamable HTTP, an SSE answer: three progress events, then the response.
    let m = call_messages(
        &gw,
        "mx-http",
        "echo",
        &call,
        &[ctype, accept, ("x-test-reply", "sse:3:1")],
    )
    .await;
    progress_then_answer(&m, 3);
    assert_eq!(up.posts(), 2, "each call sent once");

    // stdio: progress the server sends for the call's token, then the response.
    let slow = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"slow","arguments":{"steps":2,"ms":1},"_meta":{"progressToken":"p1"}}});
    let m = call_messages(&gw, "mx-stdio", "slow", &slow, &[ctype, accept]).await;
    progress_then_answer(&m, 2);
    assert_eq!(m[0]["params"]["progressToken"], "p1", "the caller's token");
    assert_eq!(m[2]["result"]["content"][0]["text"], "done 2", "{}", m[2]);
    // Read as messages, a call yields every one whatever the client accepts (JSON only here):
    // the endpoint that merges answers decides what its client gets.
    let m = call_messages(
        &gw,
        "mx-stdio",
        "slow",
        &slow,
        &[ctype, ("accept", "application/json")],
    )
    .await;
    progress_then_answer(&m, 2);
}
