//! `portcullis_tool_calls_total{outcome}` means the same on every upstream kind: `ok` a result,
//! `error` a JSON-RPC error or a result with `isError: true` (in JSON or in SSE), `failed` no
//! answer, `denied` refused by policy. Each case is counted once, whichever front end served it.

use serde_json::{json, Value};

use crate::common::{client, Gateway, Upstream};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);

fn call(tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{}}})
        .to_string()
}

async fn metrics(gw: &Gateway) -> String {
    client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn count(text: &str, server: &str, tool: &str, outcome: &str) -> u64 {
    let series = format!(
        "portcullis_tool_calls_total{{outcome=\"{outcome}\",server=\"{server}\",tool=\"{tool}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn tool_call_outcomes_mean_the_same_on_every_upstream_kind() {
    let up = Upstream::start().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
proxy:
  servers:
    - name: oc-http
      type: streamable-http
      connection:
        url: "http://{}/mcp"
    - name: oc-down
      type: streamable-http
      connection:
        url: "http://{dead}/mcp"
    - name: oc-stdio
      type: stdio
      connection:
        command: python3
        args: ["-u", "{FIXTURE}"]
        timeout: 20s
"#,
        up.addr
    );
    let gw = Gateway::start(&yaml).await;
    let stdio = gw.store.load();
    let mux = stdio
        .upstreams
        .get("oc-stdio")
        .unwrap()
        .shared
        .clone()
        .unwrap();
    assert!(mux.until_ready(std::time::Duration::from_secs(20)).await);

    let post = |server: &str, tool: &str, reply: Option<&str>, sse: bool| {
        let mut r = client()
            .post(gw.url(&format!("/mcp/{server}")))
            .header("content-type", "application/json")
            .header(
                "accept",
                if sse {
                    "application/json, text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(call(tool));
        if let Some(mode) = reply {
            r = r.header("x-test-reply", mode);
        }
        r
    };
    // Streamable HTTP: a result, a result with isError (JSON and SSE), a JSON-RPC error, an
    // answer without a JSON-RPC response, an upstream that is down.
    for (tool, reply) in [
        ("ok-json", None),
        ("err-json", Some("tool-error")),
        ("err-sse", Some("sse-tool-error")),
        ("err-rpc", Some("rpc-error")),
        ("no-answer", Some("status:500")),
    ] {
        let r = post("oc-http", tool, reply, true).send().await.unwrap();
        let _ = r.bytes().await.unwrap();
    }
    let r = post("oc-down", "down", None, false).send().await.unwrap();
    assert_eq!(r.status(), 502);
    // stdio: a result (JSON and SSE), a JSON-RPC error, a result with isError (sampling refused:
    // the client declared no sampling).
    for (tool, sse) in [
        ("echo", false),
        ("echo", true),
        ("nope", false),
        ("sample", true),
    ] {
        let r = post("oc-stdio", tool, None, sse).send().await.unwrap();
        let v: Value = match sse {
            false => r.json().await.unwrap(),
            true => {
                let text = r.text().await.unwrap();
                let data = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap()
                    .to_string();
                serde_json::from_str(&data).unwrap()
            }
        };
        assert_eq!(v["id"], 1, "{v}");
    }

    let m = metrics(&gw).await;
    let expect = [
        ("oc-http", "ok-json", "ok"),
        ("oc-http", "err-json", "error"),
        ("oc-http", "err-sse", "error"),
        ("oc-http", "err-rpc", "error"),
        ("oc-http", "no-answer", "failed"),
        ("oc-down", "down", "failed"),
        ("oc-stdio", "nope", "error"),
        ("oc-stdio", "sample", "error"),
    ];
    for (server, tool, outcome) in expect {
        assert_eq!(
            count(&m, server, tool, outcome),
            1,
            "{server} {tool} {outcome}\n{m}"
        );
    }
    assert_eq!(count(&m, "oc-stdio", "echo", "ok"), 2, "{m}");
    // Each call counted once, under one outcome.
    for (server, tool, _) in expect {
        let total: u64 = ["ok", "error", "denied", "failed"]
            .iter()
            .map(|o| count(&m, server, tool, o))
            .sum();
        assert_eq!(total, 1, "{server} {tool}");
    }
    // The failure kinds are the same names whatever the front end.
    assert!(
        m.contains("portcullis_upstream_errors_total{kind=\"connect\",server=\"oc-down\"} 1"),
        "{m}"
    );
}
