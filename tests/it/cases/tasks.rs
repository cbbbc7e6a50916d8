//! Tasks on the aggregated `/mcp` (legacy era), with authentication on: a task's id is
//! namespaced and bound to the caller and the tool whose call made it; `tasks/get` with it is
//! authorized like a call of that tool (a reload that takes the tool away takes the task too),
//! and another caller's, an altered or a made-up id reaches nothing.

use serde_json::{json, Value};

use crate::common::jwt::{oauth_section, token};
use crate::common::{client, Gateway, Upstream};

fn config(up: &Upstream, research: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
{oauth}
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "up:research": ["{research}"]
    "up:other": ["scope:user"]
proxy:
  session_key: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
  servers:
    - name: up
      type: streamable-http
      connection: {{ url: "http://{addr}/mcp" }}
"#,
        oauth = oauth_section(),
        addr = up.addr,
    )
}

async fn rpc(gw: &Gateway, user: &str, sid: Option<&str>, body: Value) -> (Value, Option<String>) {
    let mut req = client()
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", token(user, &["User"])),
        )
        .header("x-test-reply", "task")
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.json().await.unwrap_or(Value::Null), sid)
}

async fn session(gw: &Gateway, user: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    rpc(gw, user, None, init).await.1.expect("a session id")
}

fn get(task: &str) -> Value {
    json!({"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":task}})
}

#[tokio::test]
async fn a_task_is_its_callers_and_is_authorized_like_its_tool() {
    let up = Upstream::start().await;
    let text = config(&up, "scope:user");
    let gw = Gateway::start(&text).await;
    let (alice, bob) = (session(&gw, "alice").await, session(&gw, "bob").await);
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"up__research","arguments":{},"task":{"ttl":1000}}});
    let (v, _) = rpc(&gw, "alice", Some(&alice), call).await;
    let task = v["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert!(task.starts_with("up__") && task != "up__t-1", "{task}");
    // Her own id: the upstream gets its own task id, she gets hers back.
    let (v, _) = rpc(&gw, "alice", Some(&alice), get(&task)).await;
    assert_eq!(v["result"]["taskId"], task.as_str(), "{v}");
    let sent: Value =
        serde_json::from_slice(up.seen.last_body.lock().unwrap().as_ref().unwrap()).unwrap();
    assert_eq!(sent["params"]["taskId"], "t-1");
    // Another caller, an altered id, the upstream's bare id: unknown, never sent.
    let posts = up.posts();
    let altered = format!("{}A", &task[..task.len() - 1]);
    for (who, sid, id) in [
        ("bob", &bob, task.as_str()),
        ("alice", &alice, altered.as_str()),
        ("alice", &alice, "up__t-1"),
    ] {
        let (v, _) = rpc(&gw, who, Some(sid), get(id)).await;
        assert_eq!(v["error"]["code"], -32602, "{who} {id}: {v}");
    }
    assert_eq!(up.posts(), posts);
    // The tool is taken away: so is its task.
    gw.apply(&config(&up, "scope:admin")).await;
    let (v, _) = rpc(&gw, "alice", Some(&alice), get(&task)).await;
    assert_eq!(
        v["error"]["message"], "Unknown tool: research",
        "denied as the tool: {v}"
    );
    assert_eq!(up.posts(), posts);
}
