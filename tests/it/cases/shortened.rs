//! A tool name too long for `/mcp`: listed shortened (deterministically, a valid name), and
//! callable by that name in both eras: the gateway finds the upstream's own name in its list
//! (at 2026-07-28 with a list request of its own, its routing headers its own) and the
//! upstream is called by it.

use serde_json::{json, Value};

use crate::common::upstream::LONG_TOOL;
use crate::common::{client, config_for, Gateway, Upstream};

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}})
}

async fn post(gw: &Gateway, headers: &[(&str, &str)], body: Value) -> (Value, Option<String>) {
    let mut req = client()
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-test-reply", "long-tools")
        .body(body.to_string());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.json().await.unwrap_or(Value::Null), sid)
}

fn valid(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[tokio::test]
async fn a_shortened_name_is_called_by_the_upstreams_own_in_both_eras() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    // Legacy era: a session, the list, the call.
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let (_, sid) = post(&gw, &[], init).await;
    let sid = sid.expect("a session");
    let s = [("mcp-session-id", sid.as_str())];
    let (v, _) = post(
        &gw,
        &s,
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    let exposed = v["result"]["tools"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert!(valid(&exposed) && exposed.starts_with("up__"), "{exposed}");
    assert_ne!(exposed, format!("up__{LONG_TOOL}"));
    let call = |id: u64| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":exposed,"arguments":{},"_meta":meta()}});
    let (v, _) = post(&gw, &s, call(2)).await;
    assert_eq!(v["result"]["content"][0]["text"], LONG_TOOL, "{v}");
    // 2026-07-28: the same name, the same upstream tool.
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let list = json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":meta()}});
    let (v, _) = post(&gw, &modern, list).await;
    assert_eq!(v["result"]["tools"][0]["name"], exposed.as_str(), "{v}");
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", exposed.as_str()),
    ];
    let (v, _) = post(&gw, &modern, call(4)).await;
    assert_eq!(v["result"]["content"][0]["text"], LONG_TOOL, "{v}");
    // The list the gateway read to find it at 2026-07-28 was its own request: its own
    // Mcp-Method, no Mcp-Name of the client's.
    let routing = up.seen.routing.lock().unwrap().clone();
    let modern_lists: Vec<_> = routing
        .iter()
        .filter(|(m, method, _)| m == "tools/list" && method.is_some())
        .collect();
    assert!(!modern_lists.is_empty(), "{routing:?}");
    for (_, method, name) in &modern_lists {
        assert_eq!(method.as_deref(), Some("tools/list"), "{routing:?}");
        assert_eq!(name, &None, "{routing:?}");
    }
    // The upstream was called by its own name, in the body and in Mcp-Name.
    assert_eq!(up.last_headers()["mcp-name"], LONG_TOOL);
    let sent: Value =
        serde_json::from_slice(up.seen.last_body.lock().unwrap().as_ref().unwrap()).unwrap();
    assert_eq!(sent["params"]["name"], LONG_TOOL);
    // A shortened-looking name that names nothing: unknown.
    let mut wrong = exposed.clone();
    wrong.pop();
    wrong.push(if exposed.ends_with('a') { 'b' } else { 'a' });
    let bad = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":wrong,"arguments":{},"_meta":meta()}});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", wrong.as_str()),
    ];
    let (v, _) = post(&gw, &headers, bad).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
}
