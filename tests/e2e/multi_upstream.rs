//! `examples/multi-upstream/gateway.yaml` as shipped: a stdio child (server-everything by npx),
//! the Python SDK's server over Streamable HTTP and server-everything over legacy HTTP+SSE
//! behind one `/mcp`, listed and called through one session.

use serde_json::{json, Value};

use crate::harness::{free_port, gateway_command, start_gateway, start_peer, Peers, Upstream};

async fn rpc(
    client: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: Value,
) -> (Option<String>, Value) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|d| d.contains("\"id\""))
        .map(str::to_owned)
        .unwrap_or(text);
    (sid, serde_json::from_str(&data).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_example_serves_three_upstream_kinds_on_one_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let peers = Peers::locate();
    let (_py, py_url) = start_peer(Upstream::Python, &peers, dir.path()).await;
    let (_sse, sse_url) = start_peer(Upstream::EverythingSse, &peers, dir.path()).await;
    let port = free_port();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/multi-upstream/gateway.yaml"
    );
    let mut cmd = gateway_command(std::path::Path::new(example));
    cmd.env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "PORTCULLIS_SESSION_KEY",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        )
        .env("PY_MCP_URL", &py_url)
        .env("SSE_MCP_URL", &sse_url)
        .env("PATH", peers.path_env());
    let client = reqwest::Client::new();
    let (mut gw, base) = start_gateway(cmd, port, &client, dir.path()).await;
    let mcp = format!("{base}/mcp");
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
    // The stdio child may still be fetched by npx: initialize until all three answer.
    let mut sid = None;
    let mut names: Vec<String> = Vec::new();
    for _ in 0..60 {
        let (s, v) = rpc(&client, &mcp, None, init.clone()).await;
        assert!(v["result"]["protocolVersion"].is_string(), "{v}");
        let s = s.expect("a session id");
        let (_, list) = rpc(
            &client,
            &mcp,
            Some(&s),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
        names = list["result"]["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ["everything__", "py__", "legacy__"]
            .iter()
            .all(|p| names.iter().any(|n| n.starts_with(p)))
        {
            sid = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    gw.assert_running();
    let sid =
        sid.unwrap_or_else(|| panic!("not every upstream listed: {names:?}\n{}", gw.log_tail()));
    for (tool, says) in [
        ("everything__echo", "hi"),
        ("py__test_simple_text", "simple text"),
        ("legacy__echo", "hi"),
    ] {
        assert!(names.iter().any(|n| n == tool), "{tool} in {names:?}");
        let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":tool,"arguments":{"message":"hi"}}});
        let (_, v) = rpc(&client, &mcp, Some(&sid), call).await;
        let text = v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.to_lowercase().contains(says), "{tool}: {v}");
    }
}
