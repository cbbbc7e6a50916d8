//! The MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.x) through the gateway.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{run_bounded, Stack};

/// Runs `mcp-inspector --cli <gateway> --transport http <args>` and parses its JSON output.
async fn inspector(stack: &Stack, name: &str, args: &[&str]) -> Value {
    let home = stack.dir().join("inspector-home");
    std::fs::create_dir_all(&home).expect("inspector HOME");
    let mut cmd = Command::new(stack.peers.inspector());
    cmd.arg("--cli")
        .arg(stack.mcp_url())
        .args(["--transport", "http"])
        .args(args)
        .env("HOME", &home)
        .env("PATH", stack.peers.path_env());
    let out = run_bounded(name, cmd, stack.dir(), Duration::from_secs(60)).await;
    out.assert_success(name);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{name} output is not JSON ({e}): {}", out.stdout))
}

#[tokio::test]
async fn inspector_cli_lists_and_calls_tools_through_gateway() {
    let mut stack = Stack::start().await;

    let listed = inspector(&stack, "inspector-tools-list", &["--method", "tools/list"]).await;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools array: {listed}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");

    let called = inspector(
        &stack,
        "inspector-tools-call",
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=hi",
        ],
    )
    .await;
    assert_ne!(called["isError"], true, "{called}");
    let text = called["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("hi"), "{called}");
    stack.assert_running();
}
