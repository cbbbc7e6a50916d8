//! `rate_limits` enforced: buckets per principal, server, tool and claim value, `tools`
//! overrides, batches counted per element, 429 with `Retry-After` outside a session and a
//! JSON-RPC error inside one, nothing over a limit reaching the upstream (on both front ends
//! and on `/mcp`), denied names never answered 429, buckets kept across reloads of unchanged
//! rules.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::jwt::{oauth_section, token};
use crate::common::{client, Gateway, Upstream};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);
const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// Authentication on, one HTTP upstream `up` (everything allowed to `scope:user` except
/// `up:secret_*`), the given `rate_limits` and `server` extras.
fn config(upstream: std::net::SocketAddr, server: &str, limits: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
{server}
{oauth}auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "up:*": ["scope:user"]
    "up:secret_*": ["scope:nobody"]
proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
rate_limits:
{limits}
"#,
        oauth = oauth_section()
    )
}

fn call(id: u32, name: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{}}})
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn send(gw: &Gateway, path: &str, token: &str, sid: Option<&str>, body: &Value) -> Answer {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let text = resp.text().await.unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .map(str::to_owned)
        .unwrap_or(text);
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&data).unwrap_or(Value::Null),
    }
}

/// Asserts `a` is the over-limit answer of `rule`, with HTTP `status`.
fn assert_limited(a: &Answer, status: u16, rule: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"]["code"], -32029, "{}", a.body);
    assert_eq!(a.body["error"]["data"]["rule"], rule, "{}", a.body);
    let secs = a.body["error"]["data"]["retryAfter"].as_u64().unwrap();
    assert!(secs >= 1, "{}", a.body);
    assert_eq!(a.retry_after, Some(secs), "Retry-After matches error.data");
}

const SLOW: &str = "requests_per_second: 0.001"; // one unit per 1000 s: a spent bucket stays spent

/// `portcullis_rate_limited_total` of `server` and `rule` (the registry is shared by every test
/// of this process: a test reading it uses a server name of its own).
fn metric(text: &str, server: &str, rule: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("portcullis_rate_limited_total{"))
        .filter(|l| {
            l.contains(&format!("rule=\"{rule}\"")) && l.contains(&format!("server=\"{server}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_principal_over_its_burst_gets_429_and_nothing_reaches_the_upstream() {
    for fast_path in [true, false] {
        let up = Upstream::start().await;
        let limits = format!("  - key: principal\n    {SLOW}\n    burst: 2");
        let server = format!("  fast_path: {fast_path}");
        // A server name of its own: the metric below is read from the process-wide registry.
        let yaml = config(up.addr, &server, &limits)
            .replace("name: up", "name: burst")
            .replace("\"up:", "\"burst:");
        assert!(yaml.contains("name: burst"));
        let gw = Gateway::start(&yaml).await;
        let (alice, bob) = (token("alice", &["User"]), token("bob", &["User"]));
        let before = client().get(gw.url("/metrics")).send().await.unwrap();
        let before = metric(&before.text().await.unwrap(), "burst", "rate_limits[0]");
        for i in 0..2 {
            let a = send(&gw, "/mcp/burst", &alice, None, &call(i, "echo")).await;
            assert_eq!(a.status, 200, "{}", a.body);
        }
        let a = send(&gw, "/mcp/burst", &alice, None, &call(3, "echo")).await;
        assert_limited(&a, 429, "rate_limits[0]");
        assert_eq!(a.body["id"], 3);
        assert_eq!(up.posts(), 2, "the refused call never reached the upstream");
        // Inside a legacy session: HTTP 200 and the same JSON-RPC error, for the agent.
        let a = send(&gw, "/mcp/burst", &alice, Some("s-1"), &call(4, "echo")).await;
        assert_limited(&a, 200, "rate_limits[0]");
        // Another caller has its own bucket.
        let a = send(&gw, "/mcp/burst", &bob, None, &call(5, "echo")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(up.posts(), 3);
        // Notifications are not counted, and pass.
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let a = send(&gw, "/mcp/burst", &alice, None, &note).await;
        assert_ne!(a.status, 429);
        let after = client().get(gw.url("/metrics")).send().await.unwrap();
        let after = metric(&after.text().await.unwrap(), "burst", "rate_limits[0]");
        assert_eq!(after - before, 2, "fast_path {fast_path}");
    }
}

#[tokio::test]
async fn a_batch_counts_each_request_and_is_refused_whole() {
    let up = Upstream::start().await;
    let limits = format!("  - key: principal\n    {SLOW}\n    burst: 3");
    let gw = Gateway::start(&config(up.addr, "", &limits)).await;
    let alice = token("alice", &["User"]);
    // More than the burst: never passes, and says so without a retry time.
    let four = json!([
        call(1, "echo"),
        call(2, "echo"),
        call(3, "echo"),
        call(4, "echo")
    ]);
    let a = send(&gw, "/mcp/up", &alice, None, &four).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["code"], -32600, "{}", a.body);
    assert!(a.retry_after.is_none());
    let two = json!([call(1, "echo"), call(2, "echo")]);
    assert_eq!(send(&gw, "/mcp/up", &alice, None, &two).await.status, 200);
    assert_eq!(up.posts(), 1, "the batch went up as one request");
    // Two more do not fit in the one unit left: refused whole; the unit is still there.
    let a = send(&gw, "/mcp/up", &alice, None, &two).await;
    assert_limited(&a, 429, "rate_limits[0]");
    assert_eq!(a.body["id"], Value::Null);
    assert_eq!(up.posts(), 1);
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(5, "echo"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn get_and_delete_are_charged_too() {
    let up = Upstream::start().await;
    let limits = format!("  - key: principal\n    {SLOW}\n    burst: 1");
    let gw = Gateway::start(&config(up.addr, "", &limits)).await;
    let alice = token("alice", &["User"]);
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(1, "echo"))
            .await
            .status,
        200
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = client()
            .request(method.clone(), gw.url("/mcp/up"))
            .header("accept", "text/event-stream")
            .header("authorization", format!("Bearer {alice}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429, "{method}");
        assert!(resp.headers().contains_key("retry-after"));
    }
    assert_eq!(up.seen.gets.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(up.seen.deletes.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_tools_rule_overrides_the_general_one_for_its_tools() {
    let up = Upstream::start().await;
    let limits = format!(
        "  - key: principal\n    requests_per_second: 1000\n    burst: 1000\n  - key: principal\n    {SLOW}\n    burst: 1\n    tools: [\"up:delete_*\"]\n  - key: tool\n    {SLOW}\n    burst: 2\n    tools: [\"up__write_*\"]"
    );
    let gw = Gateway::start(&config(up.addr, "", &limits)).await;
    let alice = token("alice", &["User"]);
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(1, "delete_a"))
            .await
            .status,
        200
    );
    // Any `delete_*` tool shares the principal's one unit.
    let a = send(&gw, "/mcp/up", &alice, None, &call(2, "delete_b")).await;
    assert_limited(&a, 429, "rate_limits[1]");
    // Other tools use the general budget.
    for i in 0..5 {
        assert_eq!(
            send(&gw, "/mcp/up", &alice, None, &call(10 + i, "echo"))
                .await
                .status,
            200
        );
    }
    // `tool` key: each tool its own bucket.
    for name in ["write_a", "write_a", "write_b", "write_b"] {
        assert_eq!(
            send(&gw, "/mcp/up", &alice, None, &call(20, name))
                .await
                .status,
            200,
            "{name}"
        );
    }
    let a = send(&gw, "/mcp/up", &alice, None, &call(21, "write_a")).await;
    assert_limited(&a, 429, "rate_limits[2]");
    assert_eq!(up.posts(), 1 + 5 + 4);
}

#[tokio::test]
async fn a_claim_rule_shares_a_bucket_per_claim_value() {
    let up = Upstream::start().await;
    let limits = format!("  - key: claim:groups\n    {SLOW}\n    burst: 2");
    let gw = Gateway::start(&config(up.addr, "", &limits)).await;
    let (alice, bob) = (token("alice", &["User"]), token("bob", &["User", "Ops"]));
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(1, "echo"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&gw, "/mcp/up", &bob, None, &call(2, "echo"))
            .await
            .status,
        200
    );
    // `User` is spent by alice and bob together.
    let a = send(&gw, "/mcp/up", &alice, None, &call(3, "echo")).await;
    assert_limited(&a, 429, "rate_limits[0]");
    assert_eq!(up.posts(), 2);
}

#[tokio::test]
async fn a_denied_name_is_answered_as_denied_not_as_limited() {
    let up = Upstream::start().await;
    let limits = format!("  - key: principal\n    {SLOW}\n    burst: 1");
    let gw = Gateway::start(&config(up.addr, "", &limits)).await;
    let alice = token("alice", &["User"]);
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(1, "echo"))
            .await
            .status,
        200
    );
    // The bucket is empty; a hidden tool still reads "Unknown tool" (no 429 reveals it).
    for name in ["secret_x", "secret_y"] {
        let a = send(&gw, "/mcp/up", &alice, None, &call(2, name)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["error"]["code"], -32602, "{}", a.body);
    }
    assert_eq!(up.posts(), 1);
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_of_unchanged_rules() {
    let up = Upstream::start().await;
    let limits = format!("  - key: principal\n    {SLOW}\n    burst: 1");
    let gw = Gateway::start(&config(up.addr, "", &limits)).await;
    let alice = token("alice", &["User"]);
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(1, "echo"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(2, "echo"))
            .await
            .status,
        429
    );
    // Another field changes; the rule does not: still spent.
    let same = config(up.addr, "  max_body_bytes: 1048576", &limits);
    gw.apply(&same).await;
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(3, "echo"))
            .await
            .status,
        429
    );
    // The rule changes: a new bucket.
    let changed = format!("  - key: principal\n    {SLOW}\n    burst: 2");
    gw.apply(&config(up.addr, "", &changed)).await;
    assert_eq!(
        send(&gw, "/mcp/up", &alice, None, &call(4, "echo"))
            .await
            .status,
        200
    );
    assert_eq!(up.posts(), 2);
}

/// `/mcp` over two stdio children: a routed call is charged to its owner and its own tool
/// name (an alias on `/mcp` does not escape a rule written with the upstream's name), and
/// lists are charged to the caller.
#[tokio::test]
async fn on_mcp_calls_are_charged_by_server_and_upstream_tool_name() {
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:8080"
{oauth}auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "*:*": ["scope:user"]
proxy:
  session_key: "{KEY}"
  servers:
    - name: a
      type: stdio
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 20s }}
    - name: b
      type: stdio
      aliases: {{ echo: say }}
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 20s }}
rate_limits:
  - key: server
    {SLOW}
    burst: 2
    tools: ["b:echo"]
  - key: principal
    {SLOW}
    burst: 6
"#,
        oauth = oauth_section()
    );
    let gw = Gateway::start(&yaml).await;
    for name in ["a", "b"] {
        let mux = gw
            .store
            .load()
            .upstreams
            .get(name)
            .and_then(|u| u.shared.clone())
            .unwrap();
        assert!(mux.until_ready(Duration::from_secs(20)).await, "{name}");
    }
    let alice = token("alice", &["User"]);
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
    let resp = client()
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {alice}"))
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // initialize: 1 unit of 6.
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        send(&gw, "/mcp", &alice, Some(&sid), &list).await.status,
        200
    ); // 2
       // `b__say` is b's `echo`: the server rule on `b:echo` counts it.
    for id in 2..4 {
        let a = send(&gw, "/mcp", &alice, Some(&sid), &call(id, "b__say")).await; // 3, 4
        assert!(a.body["result"].is_object(), "{}", a.body);
    }
    let a = send(&gw, "/mcp", &alice, Some(&sid), &call(4, "b__say")).await;
    assert_limited(&a, 200, "rate_limits[0]");
    // `a__echo` is not b's: only the principal rule.
    let a = send(&gw, "/mcp", &alice, Some(&sid), &call(5, "a__echo")).await; // 5
    assert!(a.body["result"].is_object(), "{}", a.body);
    assert_eq!(
        send(&gw, "/mcp", &alice, Some(&sid), &list).await.status,
        200
    ); // 6
    let a = send(&gw, "/mcp", &alice, Some(&sid), &list).await;
    assert_limited(&a, 200, "rate_limits[1]");
    // A name that must be looked up in b's list (not a valid exposed name): the lookup
    // reaches b, so it is charged first, and refused here before anything is sent.
    let a = send(&gw, "/mcp", &alice, Some(&sid), &call(8, "b__x y")).await;
    assert_limited(&a, 200, "rate_limits[1]");
    // A 2026-07-28 request is outside any session: 429.
    let meta = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    let modern = json!({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":meta}});
    let resp = client()
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {alice}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(modern.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
}
