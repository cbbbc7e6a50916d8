//! A legacy (2025-11-25) Streamable HTTP session through the gateway, spoken by hand: the session
//! and protocol headers pass both ways, SSE answers are parsed, and progress notifications of a
//! long-running tool arrive one by one before the result (the gateway does not buffer).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Stack;
use crate::session::{text_content, Session};
use crate::sse::{Arrival, Messages};

#[tokio::test]
async fn legacy_session_streams_progress_through_gateway() {
    let mut stack = Stack::start().await;
    let mut session = Session::new(&stack);

    // initialize (the session id comes back in a response header), then initialized.
    session.initialize().await;

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
