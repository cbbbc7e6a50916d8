//! A legacy (2025-11-25) Streamable HTTP session through the gateway, spoken by hand: the session
//! and protocol headers pass both ways, SSE answers are parsed, and progress notifications of a
//! long-running tool arrive one by one before the result (the gateway does not buffer).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Stack;
use crate::sse::{read_messages, Arrival, Messages};

const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPT: &str = "application/json, text/event-stream";

/// A client session over raw HTTP.
struct Session<'a> {
    stack: &'a Stack,
    session_id: Option<String>,
    protocol_version: Option<String>,
    next_id: u64,
}

impl<'a> Session<'a> {
    fn new(stack: &'a Stack) -> Self {
        Self {
            stack,
            session_id: None,
            protocol_version: None,
            next_id: 1,
        }
    }

    fn with_headers(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut request = request.header("accept", ACCEPT);
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        if let Some(version) = &self.protocol_version {
            request = request.header("mcp-protocol-version", version);
        }
        request
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.with_headers(self.stack.client.post(self.stack.mcp_url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("POST to the gateway")
    }

    /// Sends a request and returns every message of its answer, asserting the last one is the
    /// response to it.
    async fn request(&mut self, method: &str, params: Value) -> (Vec<Arrival>, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let response = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{method}: HTTP status");
        let messages = read_messages(response).await;
        let last = messages
            .last()
            .unwrap_or_else(|| panic!("{method}: empty answer"));
        assert_eq!(
            last.message["id"],
            json!(id),
            "{method}: {:?}",
            last.message
        );
        let result = last
            .message
            .get("result")
            .unwrap_or_else(|| panic!("{method} failed: {}", last.message))
            .clone();
        (messages, result)
    }
}

fn text_content(result: &Value) -> String {
    result["content"]
        .as_array()
        .expect("content array")
        .iter()
        .filter(|c| c["type"] == "text")
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn legacy_session_streams_progress_through_gateway() {
    let mut stack = Stack::start().await;
    let mut session = Session::new(&stack);

    // initialize: the session id comes back in a response header.
    let response = session
        .post(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "portcullis-e2e", "version": "0"},
            },
        }))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "initialize");
    let session_id = response
        .headers()
        .get("mcp-session-id")
        .expect("initialize answer has Mcp-Session-Id")
        .to_str()
        .expect("ASCII session id")
        .to_owned();
    let messages = read_messages(response).await;
    let init = &messages.last().expect("initialize result").message;
    assert_eq!(init["id"], 0);
    assert_eq!(init["result"]["protocolVersion"], PROTOCOL_VERSION);
    session.session_id = Some(session_id.clone());
    session.protocol_version = Some(PROTOCOL_VERSION.to_owned());

    // notifications/initialized: accepted, no body.
    let response = session
        .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "initialized");

    // tools/list
    let (_, tools) = session.request("tools/list", json!({})).await;
    let tools = tools["tools"].as_array().expect("tools array");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for wanted in ["echo", "trigger-long-running-operation"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let long_running = tools
        .iter()
        .find(|t| t["name"] == "trigger-long-running-operation")
        .expect("long-running tool");
    let properties = &long_running["inputSchema"]["properties"];
    assert!(
        properties.get("duration").is_some() && properties.get("steps").is_some(),
        "unexpected input schema: {}",
        long_running["inputSchema"]
    );

    // tools/call echo
    let (_, echo) = session
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_ne!(echo["isError"], true, "{echo}");
    assert!(text_content(&echo).contains("hi"), "{echo}");

    // tools/call trigger-long-running-operation with a progress token: 3 steps over 3 s.
    let steps = 3;
    let token = "e2e-progress-1";
    let sent = Instant::now();
    let (messages, result) = session
        .request(
            "tools/call",
            json!({
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 3, "steps": steps},
                "_meta": {"progressToken": token},
            }),
        )
        .await;
    assert_ne!(result["isError"], true, "{result}");
    let result_at = messages.last().expect("result").at;
    let progress: Vec<&Arrival> = messages
        .iter()
        .filter(|a| a.message["method"] == "notifications/progress")
        .collect();
    let timeline: Vec<String> = messages
        .iter()
        .map(|a| {
            format!(
                "+{:?} {}",
                a.at - sent,
                a.message
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or("result")
            )
        })
        .collect();
    assert_eq!(progress.len(), steps, "progress events: {timeline:?}");
    // Only progress precedes the result, in order, for our token.
    assert_eq!(messages.len(), steps + 1, "{timeline:?}");
    for (i, event) in progress.iter().enumerate() {
        let params = &event.message["params"];
        assert_eq!(params["progressToken"], token);
        assert_eq!(params["progress"].as_f64(), Some((i + 1) as f64));
    }
    // Streamed, not buffered: each event arrived on its own, spaced like the tool emits them
    // (about 1 s apart), and the first long before the result.
    let min_gap = Duration::from_millis(300);
    for pair in progress.windows(2) {
        assert!(
            pair[1].at - pair[0].at > min_gap,
            "progress events bunched together (buffered?): {timeline:?}"
        );
    }
    assert!(
        result_at - progress[0].at > 2 * min_gap,
        "first progress arrived with the result (buffered?): {timeline:?}"
    );

    // Resumption: a GET with Last-Event-ID (the first progress event) replays, on the standalone
    // SSE stream, what followed it: the later progress events and the result.
    let first_event_id = progress[0]
        .id
        .clone()
        .expect("progress events carry SSE ids");
    let response = session
        .with_headers(stack.client.get(stack.mcp_url()))
        .header("last-event-id", &first_event_id)
        .send()
        .await
        .expect("GET with Last-Event-ID");
    assert_eq!(response.status(), StatusCode::OK, "GET with Last-Event-ID");
    let mut replay = Messages::new(response);
    let mut replayed = Vec::new();
    let call_id = messages.last().expect("result").message["id"].clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(arrival) = replay.next().await {
            let done = arrival.message["id"] == call_id;
            replayed.push(arrival.message);
            if done {
                return;
            }
        }
        panic!("GET stream ended before the replayed result: {replayed:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no replayed result within 10 s: {replayed:?}"));
    drop(replay);
    let replayed_progress: Vec<&Value> = replayed
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| &m["params"]["progress"])
        .collect();
    assert_eq!(replayed_progress, [&json!(2), &json!(3)], "{replayed:?}");

    // DELETE ends the session.
    let response = session
        .with_headers(stack.client.delete(stack.mcp_url()))
        .send()
        .await
        .expect("DELETE");
    assert!(
        response.status().is_success(),
        "DELETE: HTTP {}",
        response.status()
    );
    drop(session);
    stack.assert_running();
}
