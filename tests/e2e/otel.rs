//! OTLP trace export (`telemetry.otlp_endpoint`) from a real `portcullis serve` to a receiver
//! this test runs (OTLP/HTTP JSON on `/v1/traces`), which also plays the upstream MCP server:
//! a `server` span per request continuing the caller's `traceparent`, a `client` span per
//! upstream call under it, and the upstream told the request span's id in its `traceparent`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::harness::{free_port, gateway_command, start_gateway};

#[derive(Default)]
struct Seen {
    exports: Mutex<Vec<Value>>,
    traceparents: Mutex<Vec<String>>,
}

async fn traces(State(seen): State<Arc<Seen>>, body: String) -> &'static str {
    seen.exports
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap_or(Value::Null));
    "{}"
}

async fn mcp(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
) -> ([(&'static str, &'static str); 1], String) {
    if let Some(tp) = headers.get("traceparent") {
        seen.traceparents
            .lock()
            .unwrap()
            .push(tp.to_str().unwrap().to_owned());
    }
    (
        [("content-type", "application/json")],
        json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}})
            .to_string(),
    )
}

/// Every exported span: (name, kind, traceId, spanId, parentSpanId, attributes).
fn spans(exports: &[Value]) -> Vec<(String, i64, String, String, String, Value)> {
    let mut out = Vec::new();
    for e in exports {
        for rs in e["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some(json!("gateway-under-test")));
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for sp in ss["spans"].as_array().into_iter().flatten() {
                    let s = |k: &str| sp[k].as_str().unwrap_or_default().to_owned();
                    out.push((
                        s("name"),
                        sp["kind"].as_i64().unwrap_or_default(),
                        s("traceId"),
                        s("spanId"),
                        s("parentSpanId"),
                        sp["attributes"].clone(),
                    ));
                }
            }
        }
    }
    out
}

fn attr(attrs: &Value, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v["stringValue"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| v["intValue"].as_str().map(str::to_owned))
            .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn requests_and_upstream_calls_are_exported_as_one_trace() {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/mcp", post(mcp).delete(mcp))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:{port}"
oauth:
  enabled: false
telemetry:
  otlp_endpoint: "http://{receiver}"
  service_name: gateway-under-test
proxy:
  servers:
    - name: up
      type: streamable-http
      connection: {{ url: "http://{receiver}/mcp" }}
"#
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let client = reqwest::Client::new();
    let (mut gw, base) = start_gateway(gateway_command(&path), port, &client, dir.path()).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let resp = client
        .post(format!("{base}/mcp/up"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A DELETE (no body) gets its upstream span too.
    let ended = "5bf92f3577b34da6a3ce929d0e0e4737";
    let resp = client
        .delete(format!("{base}/mcp/up"))
        .header("mcp-session-id", "s-1")
        .header("traceparent", format!("00-{ended}-{caller}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Shutdown flushes what the batch processor holds.
    gw.signal("TERM");
    assert!(
        gw.wait_exit(Duration::from_secs(10)).await.is_some(),
        "{}",
        gw.log_tail()
    );

    let exported = spans(&seen.exports.lock().unwrap());
    let deleted: Vec<_> = exported.iter().filter(|s| s.2 == ended).collect();
    let request = deleted.iter().find(|s| s.0 == "DELETE /mcp/up");
    let upstream = deleted.iter().find(|s| s.0 == "upstream up");
    match (request, upstream) {
        (Some(r), Some(u)) => assert_eq!(u.4, r.3, "the DELETE upstream is a child"),
        _ => panic!("no DELETE request and upstream spans in {deleted:?}"),
    }
    let sent_up = seen.traceparents.lock().unwrap().clone();
    let sent_up: Vec<&String> = sent_up.iter().filter(|t| t.contains(trace)).collect();
    assert_eq!(sent_up.len(), 1, "{sent_up:?}");
    let upstream_parent = sent_up[0].split('-').nth(2).unwrap().to_owned();
    let exports = seen.exports.lock().unwrap().clone();
    let all = spans(&exports);
    let ours: Vec<_> = all.iter().filter(|s| s.2 == trace).collect();
    let request = ours
        .iter()
        .find(|s| s.0 == "POST /mcp/up")
        .unwrap_or_else(|| panic!("no request span in {all:?}"));
    let upstream = ours
        .iter()
        .find(|s| s.0 == "upstream up")
        .unwrap_or_else(|| panic!("no upstream span in {all:?}"));
    // OTLP kinds: 2 server, 3 client.
    assert_eq!((request.1, upstream.1), (2, 3));
    assert_eq!(
        request.4, caller,
        "the request span continues the caller's span"
    );
    assert_eq!(
        upstream.4, request.3,
        "the upstream call is a child of the request"
    );
    assert_eq!(
        request.3, upstream_parent,
        "the upstream was told the request span's id"
    );
    assert_eq!(
        attr(&request.5, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&request.5, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(attr(&upstream.5, "server.name").as_deref(), Some("up"));
}
