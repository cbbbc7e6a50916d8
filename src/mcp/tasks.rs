//! Tasks (2025-11-25, SEP-1686) on the aggregated `/mcp`: the task ids upstreams hand out are
//! namespaced and bound, without state, to the caller and the tool whose call made the task.
//!
//! ```text
//!  upstream's taskId T of server S, made by a call of tool N for caller P
//!    -> S's prefix + "__" + b64(N) "." b64(T) "." b64(HMAC(P, S, N, T))   (16 bytes)
//! ```
//!
//! The id is the same every time (a client matches ids), lets any replica sharing the session
//! key check it, names no caller, and cannot be made for another caller, another server or
//! another tool: `tasks/get`, `tasks/result` and `tasks/cancel` with it are authorized like a
//! call of that tool, then sent to that server with `T`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use super::names::Names;
use super::session::SessionKey;

/// The task methods a client sends, routed by their task id.
pub const ROUTED: [&str; 3] = ["tasks/get", "tasks/result", "tasks/cancel"];

/// The `_meta` key naming the task a message belongs to.
pub const RELATED: &str = "io.modelcontextprotocol/related-task";

/// What a task id of one routed call is bound to.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The caller ([`crate::auth::Principal::tag`]).
    pub principal: [u8; 16],
    /// The tool whose call made the task (upstream name).
    pub tool: String,
}

fn tag(key: &SessionKey, principal: &[u8; 16], server: &str, tool: &str, task: &str) -> [u8; 16] {
    let mut data = Vec::with_capacity(16 + server.len() + tool.len() + task.len() + 24);
    data.extend_from_slice(principal);
    // Each field with its length first: no two field lists read as the same bytes.
    for field in [server, tool, task] {
        data.extend_from_slice(&(field.len() as u64).to_be_bytes());
        data.extend_from_slice(field.as_bytes());
    }
    key.task_tag(&data)
}

/// The id of upstream task `task` of `server` on `/mcp`.
pub fn expose(names: &Names, key: &SessionKey, server: &str, b: &Binding, task: &str) -> String {
    let t = tag(key, &b.principal, server, &b.tool, task);
    format!(
        "{}{}.{}.{}",
        names.head(server),
        URL_SAFE_NO_PAD.encode(b.tool.as_bytes()),
        URL_SAFE_NO_PAD.encode(task.as_bytes()),
        URL_SAFE_NO_PAD.encode(t)
    )
}

/// The server, tool and upstream task id of a task id on `/mcp`, if this caller was handed it
/// (`None`: not one, another caller's, or altered).
pub fn resolve<'n>(
    names: &'n Names,
    key: &SessionKey,
    principal: &[u8; 16],
    exposed: &str,
) -> Option<(&'n str, String, String)> {
    let (server, rest) = names.split(exposed)?;
    let mut parts = rest.split('.');
    let (tool, task, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let tool = String::from_utf8(URL_SAFE_NO_PAD.decode(tool).ok()?).ok()?;
    let task = String::from_utf8(URL_SAFE_NO_PAD.decode(task).ok()?).ok()?;
    let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
    let want = tag(key, principal, server, &tool, &task);
    // Compared in constant time: the tag is what keeps ids from being made up.
    let differs = mac
        .iter()
        .zip(want.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if mac.len() != want.len() || differs != 0 {
        return None;
    }
    Some((server, tool, task))
}

/// One upstream message of a routed call bound by `b`, its task ids made `/mcp` ones: a
/// created task (`result.task.taskId`), a task (`result.taskId`), related-task `_meta` in a
/// result or a message's params, and `notifications/tasks/status`. `None`: unchanged.
pub fn outward(
    names: &Names,
    key: &SessionKey,
    server: &str,
    b: &Binding,
    message: &[u8],
) -> Option<Bytes> {
    memchr::memmem::find(message, b"taskId")?;
    let mut v: Value = serde_json::from_slice(message).ok()?;
    let mut changed = false;
    let mut swap = |slot: Option<&mut Value>| {
        if let Some(slot) = slot {
            if let Some(task) = slot.as_str() {
                *slot = Value::from(expose(names, key, server, b, task));
                changed = true;
            }
        }
    };
    if let Some(result) = v.get_mut("result") {
        swap(result.pointer_mut("/task/taskId"));
        if result.get("status").is_some() {
            swap(result.get_mut("taskId"));
        }
        swap(
            result
                .get_mut("_meta")
                .and_then(|m| m.get_mut(RELATED))
                .and_then(|r| r.get_mut("taskId")),
        );
    }
    let status = v.get("method").and_then(Value::as_str) == Some("notifications/tasks/status");
    if let Some(params) = v.get_mut("params") {
        if status {
            swap(params.get_mut("taskId"));
        }
        swap(
            params
                .get_mut("_meta")
                .and_then(|m| m.get_mut(RELATED))
                .and_then(|r| r.get_mut("taskId")),
        );
    }
    changed.then(|| Bytes::from(v.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Names {
        let yaml = "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: a\n      type: streamable-http\n      connection: { url: \"http://127.0.0.1:9/mcp\" }\n    - name: b\n      type: streamable-http\n      prefix: bee\n      connection: { url: \"http://127.0.0.1:9/mcp\" }\n";
        let config = crate::config::load_str(yaml, "t.yaml", &|_| None).unwrap();
        Names::new(&config)
    }

    #[test]
    fn a_task_id_opens_for_its_caller_server_and_tool_only() {
        let (names, key) = (names(), SessionKey::new(Some(&[3u8; 32])));
        let alice = Binding {
            principal: [1; 16],
            tool: "research".into(),
        };
        let id = expose(&names, &key, "b", &alice, "task-9");
        assert!(id.starts_with("bee__"), "{id}");
        assert_eq!(id, expose(&names, &key, "b", &alice, "task-9"), "stable");
        assert_eq!(
            resolve(&names, &key, &[1; 16], &id),
            Some(("b", "research".into(), "task-9".into()))
        );
        // Another caller, another key, another server's prefix, an altered tool or task.
        assert_eq!(resolve(&names, &key, &[2; 16], &id), None);
        let other = SessionKey::new(Some(&[4u8; 32]));
        assert_eq!(resolve(&names, &other, &[1; 16], &id), None);
        assert_eq!(
            resolve(&names, &key, &[1; 16], &id.replacen("bee__", "a__", 1)),
            None
        );
        let parts: Vec<&str> = id.trim_start_matches("bee__").split('.').collect();
        let echo = URL_SAFE_NO_PAD.encode("echo");
        let forged = format!("bee__{echo}.{}.{}", parts[1], parts[2]);
        assert_eq!(resolve(&names, &key, &[1; 16], &forged), None);
        let t = URL_SAFE_NO_PAD.encode("task-8");
        let forged = format!("bee__{}.{t}.{}", parts[0], parts[2]);
        assert_eq!(resolve(&names, &key, &[1; 16], &forged), None);
        for junk in ["bee__", "bee__a.b", "bee__a.b.c.d", "bee__!.!.!", "task-9"] {
            assert_eq!(resolve(&names, &key, &[1; 16], junk), None, "{junk}");
        }
    }

    #[test]
    fn task_ids_in_upstream_messages_become_mcp_ones() {
        let (names, key) = (names(), SessionKey::new(Some(&[3u8; 32])));
        let b = Binding {
            principal: [1; 16],
            tool: "research".into(),
        };
        let mine = expose(&names, &key, "a", &b, "t1");
        for (msg, path) in [
            (
                json!({"id":1,"result":{"task":{"taskId":"t1","status":"working"}}}),
                "/result/task/taskId",
            ),
            (
                json!({"id":1,"result":{"taskId":"t1","status":"completed"}}),
                "/result/taskId",
            ),
            (
                json!({"id":1,"result":{"content":[],"_meta":{RELATED:{"taskId":"t1"}}}}),
                "/result/_meta/io.modelcontextprotocol~1related-task/taskId",
            ),
            (
                json!({"method":"notifications/tasks/status","params":{"taskId":"t1","status":"working"}}),
                "/params/taskId",
            ),
            (
                json!({"id":5,"method":"elicitation/create","params":{"_meta":{RELATED:{"taskId":"t1"}}}}),
                "/params/_meta/io.modelcontextprotocol~1related-task/taskId",
            ),
        ] {
            let out = outward(&names, &key, "a", &b, msg.to_string().as_bytes()).unwrap();
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v.pointer(path).unwrap(), &json!(mine), "{msg}");
        }
        let plain = json!({"id":1,"result":{"content":[{"type":"text","text":"taskId"}]}});
        assert!(outward(&names, &key, "a", &b, plain.to_string().as_bytes()).is_none());
    }
}
