//! Request bodies far above Pingora's 64 KiB replay buffer, through the gateway to a real
//! upstream: a 1 MiB and a 3 MiB `echo` come back whole. A body over `max_body_bytes` (default
//! 4 MiB) must be answered 413 with a JSON-RPC error that the client can read, and the gateway
//! keeps serving.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Stack;
use crate::session::{text_content, Session};

#[tokio::test]
async fn large_bodies_pass_through_gateway() {
    let mut stack = Stack::start().await;
    let mut session = Session::new(&stack);
    session.initialize().await;

    for size in [1 << 20, 3 << 20] {
        let message = "x".repeat(size);
        let (_, echo) = session
            .request(
                "tools/call",
                json!({"name": "echo", "arguments": {"message": message}}),
            )
            .await;
        let text = text_content(&echo);
        assert_eq!(text.len(), "Echo: ".len() + size, "echo of {size} bytes");
        assert!(text.starts_with("Echo: xxx") && text.ends_with("xxx"));
    }
    drop(session);
    stack.assert_running();
}

/// The gateway answers 413 from the declared length, before reading the 5 MiB body, then drains
/// what the client still sends (bounded) before closing, so the client reads the 413 instead of
/// failing its body write with EPIPE.
#[tokio::test]
async fn oversized_body_is_answered_413() {
    let mut stack = Stack::start().await;
    let mut session = Session::new(&stack);
    session.initialize().await;

    let oversized = json!({
        "jsonrpc": "2.0", "id": 99, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x".repeat(5 << 20)}},
    });
    let response = session.post(&oversized).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("413 body")).expect("JSON body");
    assert!(body["error"]["code"].is_i64(), "JSON-RPC error: {body}");

    let (_, echo) = session
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert!(text_content(&echo).contains("hi"), "{echo}");
    drop(session);
    stack.assert_running();
}
