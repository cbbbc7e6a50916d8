//! The official Python SDK (`mcp` 2.x, `tests/e2e/py/client.py`) through the gateway:
//! initialize, list, call with progress callbacks, DELETE on close.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{run_bounded, Stack};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/py/client.py");

#[tokio::test]
async fn python_sdk_session_through_gateway() {
    let mut stack = Stack::start().await;
    let steps = 3;
    let mut cmd = Command::new(stack.peers.python());
    cmd.arg(CLIENT)
        .arg(stack.mcp_url())
        .args(["--steps", &steps.to_string(), "--duration", "1.5"])
        .env("PYTHONUNBUFFERED", "1");
    let out = run_bounded("python-client", cmd, stack.dir(), Duration::from_secs(90)).await;
    out.assert_success("python SDK client");
    let report: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {}", out.stdout));

    let tools: Vec<&str> = report["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in ["echo", "trigger-long-running-operation"] {
        assert!(tools.contains(&wanted), "{wanted} missing from {tools:?}");
    }
    assert_eq!(report["echo"]["is_error"], false, "{report}");
    let echo_text = report["echo"]["text"].to_string();
    assert!(echo_text.contains("hi"), "{report}");
    assert_eq!(report["long_running"]["is_error"], false, "{report}");
    let progress = report["progress"].as_array().expect("progress");
    assert!(
        progress.len() >= steps,
        "{} progress callbacks, wanted {steps}: {report}",
        progress.len()
    );
    assert_eq!(report["closed"], true);
    stack.assert_running();
}
