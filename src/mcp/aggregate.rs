//! The messages of the aggregated `/mcp`, transformed without I/O: a request's target renamed
//! to the upstream's own name, an upstream's messages namespaced on their way to the client
//! (its requests' ids, resource URIs), the client's answers to those requests routed back,
//! `initialize` results and list pages merged.
//!
//! A server-to-client request's id becomes the string `PREFIX{separator}ID-AS-JSON`: the
//! client's answer carries it back, and any replica finds the upstream (and its original id)
//! by reading it. Nothing is remembered.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::era::MODERN;
use super::filter::ListKind;
use super::jsonrpc::Use;
use super::names::Names;
use crate::policy::{Kind, Policy, Target};

/// A covered request (`body`) with its target `used` (per [`Target`]) set to `original`, the
/// upstream's own name; every other byte as received. The name is replaced where the
/// classifier saw it ([`Use::span`]); a name written with escapes is found by reading the body
/// again. `None` when the body has no such string (the classifier refuses those before).
pub fn rename_target(body: &[u8], used: &Use, target: Target, original: &str) -> Option<Vec<u8>> {
    if let Some(span) = used.span.clone() {
        let quoted = span.start > 0
            && body.get(span.start - 1) == Some(&b'"')
            && body.get(span.end) == Some(&b'"');
        if quoted {
            let mut out = Vec::with_capacity(body.len() + original.len());
            out.extend_from_slice(&body[..span.start - 1]);
            serde_json::to_writer(&mut out, original).ok()?;
            out.extend_from_slice(&body[span.end + 1..]);
            return Some(out);
        }
    }
    let field = match target {
        Target::Param(_, field) => field,
        Target::CompletionRef if used.kind == Kind::Prompt => "name",
        Target::CompletionRef => "uri",
    };
    let nested = ["params", "ref", field];
    let path: &[&str] = match target {
        Target::Param(..) => &[nested[0], field],
        Target::CompletionRef => &nested,
    };
    super::raw::replace_string(body, path, original)
}

/// The id a server-to-client request of `server` carries to the client.
pub fn outward_id(names: &Names, server: &str, id: &Value) -> Value {
    Value::from(format!(
        "{}{}",
        names.head(server),
        serde_json::to_string(id).unwrap_or_default()
    ))
}

/// The server and original id of a client's answer to a request [`outward_id`] named.
pub fn inward_id<'n>(names: &'n Names, id: &Value) -> Option<(&'n str, Value)> {
    let (server, rest) = names.split(id.as_str()?)?;
    Some((server, serde_json::from_str(rest).ok()?))
}

/// Namespace one upstream message of `server` for the client: a request's id, the URI of
/// `notifications/resources/updated`, and resource URIs in a result (`resources/read`
/// contents, embedded resources and resource links of a tool result). `None`: unchanged.
pub fn outward(names: &Names, server: &str, message: &[u8]) -> Option<Bytes> {
    if !mentions(message) {
        return None;
    }
    let mut v: Value = serde_json::from_slice(message).ok()?;
    let mut changed = false;
    let is_request = v.get("method").is_some() && v.get("id").is_some_and(|i| !i.is_null());
    if is_request {
        if let Some(id) = v.get_mut("id") {
            *id = outward_id(names, server, id);
            changed = true;
        }
    }
    if v.get("method").and_then(Value::as_str) == Some("notifications/resources/updated") {
        changed |= namespace_uri(names, server, v.pointer_mut("/params/uri"));
    }
    if let Some(result) = v.get_mut("result") {
        for key in ["contents", "content"] {
            if let Some(Value::Array(items)) = result.get_mut(key) {
                for item in items {
                    let linked = item.get("type").and_then(Value::as_str) == Some("resource_link")
                        || key == "contents";
                    if linked {
                        changed |= namespace_uri(names, server, item.get_mut("uri"));
                    }
                    changed |= namespace_uri(names, server, item.pointer_mut("/resource/uri"));
                }
            }
        }
    }
    changed.then(|| Bytes::from(v.to_string()))
}

/// Cheap test for a message that may need [`outward`]: it names a method or a URI.
fn mentions(message: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static METHOD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"method\""));
    static URI: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"uri\""));
    // A key written with escapes (`"\u0075ri"`) is not seen: an upstream that does so gets its
    // own messages un-namespaced (its requests' answers and URIs then do not find it again);
    // nothing of another upstream's or caller's is reachable that way.
    METHOD.find(message).is_some() || URI.find(message).is_some()
}

fn namespace_uri(names: &Names, server: &str, slot: Option<&mut Value>) -> bool {
    match slot {
        Some(v) => match v.as_str() {
            Some(uri) => {
                *v = Value::from(names.expose_uri(server, uri));
                true
            }
            None => false,
        },
        None => false,
    }
}

/// One upstream's `initialize` result, for [`merge_initialize`].
pub struct Initialized<'a> {
    /// The server's name.
    pub server: &'a str,
    /// Its `result`.
    pub result: &'a Value,
}

/// The gateway's `initialize` result over the upstreams that answered: the capabilities any
/// of them has (list changes and subscriptions where any offers them), the negotiated version,
/// the gateway's identity, and each upstream's instructions under its name.
pub fn merge_initialize(version: &str, answered: &[Initialized<'_>]) -> Value {
    let has = |path: &str| answered.iter().any(|a| a.result.pointer(path).is_some());
    let flag = |path: &str| {
        answered
            .iter()
            .any(|a| a.result.pointer(path).and_then(Value::as_bool) == Some(true))
    };
    let mut caps = Map::new();
    if has("/capabilities/tools") {
        caps.insert(
            "tools".into(),
            json!({ "listChanged": flag("/capabilities/tools/listChanged") }),
        );
    }
    if has("/capabilities/prompts") {
        caps.insert(
            "prompts".into(),
            json!({ "listChanged": flag("/capabilities/prompts/listChanged") }),
        );
    }
    if has("/capabilities/resources") {
        caps.insert(
            "resources".into(),
            json!({
                "subscribe": flag("/capabilities/resources/subscribe"),
                "listChanged": flag("/capabilities/resources/listChanged"),
            }),
        );
    }
    for plain in ["logging", "completions"] {
        if has(&format!("/capabilities/{plain}")) {
            caps.insert(plain.into(), json!({}));
        }
    }
    // Tasks of tool calls (their ids namespaced and bound to the caller: `super::tasks`);
    // `tasks/list` is not served on `/mcp`, so not offered.
    if has("/capabilities/tasks/requests/tools/call") {
        let mut tasks = json!({ "requests": { "tools": { "call": {} } } });
        if has("/capabilities/tasks/cancel") {
            tasks["cancel"] = json!({});
        }
        caps.insert("tasks".into(), tasks);
    }
    let instructions: Vec<String> = answered
        .iter()
        .filter_map(|a| {
            a.result
                .get("instructions")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(|s| format!("[{}] {}", a.server, s.trim()))
        })
        .collect();
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") },
    });
    if !instructions.is_empty() {
        result["instructions"] = Value::from(instructions.join("\n"));
    }
    result
}

/// `_meta` of a result the gateway composes at 2026-07-28: its own identity.
pub fn gateway_meta() -> Value {
    json!({ "io.modelcontextprotocol/serverInfo": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") } })
}

/// The gateway's 2026-07-28 `server/discover` result over the upstreams that answered: the
/// capabilities any of them has (list changes and resource updates where any offers them: a
/// `subscriptions/listen` on `/mcp` merges theirs), the gateway's identity, each upstream's
/// instructions.
pub fn merge_discover(answered: &[Initialized<'_>]) -> Value {
    let mut result = merge_initialize(MODERN, answered);
    let Some(obj) = result.as_object_mut() else {
        return result;
    };
    obj.remove("protocolVersion");
    obj.remove("serverInfo");
    // Tasks are served on `/mcp` in the legacy era only.
    if let Some(caps) = obj.get_mut("capabilities").and_then(Value::as_object_mut) {
        caps.remove("tasks");
    }
    obj.insert("supportedVersions".into(), json!([MODERN]));
    obj.insert("resultType".into(), Value::from("complete"));
    obj.insert("ttlMs".into(), Value::from(0));
    obj.insert("cacheScope".into(), Value::from("private"));
    obj.insert("_meta".into(), gateway_meta());
    result
}

/// Who reads a merged list: the policy and the caller's scopes (`None`: no authentication,
/// nothing is filtered).
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    /// The snapshot's policy.
    pub policy: &'a Policy,
    /// The caller's scopes, when the policy applies.
    pub scopes: Option<&'a BTreeSet<String>>,
}

/// Append one upstream's list page to `items`: what `reader` may use, namespaced. Returns the
/// upstream's next cursor.
pub fn merge_page(
    kind: ListKind,
    names: &Names,
    reader: Reader<'_>,
    server: &str,
    result: Value,
    items: &mut Vec<Value>,
) -> Option<Value> {
    let (list, field, policy_kind) = kind.fields();
    let Value::Object(mut result) = result else {
        return None;
    };
    let next = result
        .remove("nextCursor")
        .filter(|c| c.as_str().is_some_and(|s| !s.is_empty()));
    let Some(Value::Array(page)) = result.remove(list) else {
        return next;
    };
    let mut seen = crate::mcp::names::Seen::default();
    let head_len = names.head(server).len();
    let mut exposed_here: std::collections::HashMap<String, String> = Default::default();
    for mut item in page {
        let Some(name) = item.get(field).and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        let exposed = match policy_kind {
            Kind::Resource => names.expose_uri(server, &name),
            _ => names.expose(server, &name),
        };
        if policy_kind != Kind::Resource {
            // The name must lead back to this tool: an alias that equals another tool's
            // name takes that name, and the other tool cannot be reached on /mcp.
            match names.resolve(&exposed) {
                Some((_, super::names::Resolved::Name(back))) if back == name.as_str() => {}
                Some((_, super::names::Resolved::Shortened)) => {
                    // (A name that only looks shortened is exposed as it is.)
                    if exposed.len() != head_len + name.len() || !exposed.ends_with(name.as_str()) {
                        seen.shortened.push((name.clone(), exposed.clone()));
                    }
                }
                _ => {
                    seen.collisions.push(format!(
                        "`{name}` is hidden: `{exposed}` is another tool's alias"
                    ));
                    continue;
                }
            }
        }
        // Two upstream names that would still be one name here: the first keeps it.
        if let Some(first) = exposed_here.get(&exposed) {
            seen.collisions
                .push(format!("`{first}` and `{name}` both become `{exposed}`"));
            continue;
        }
        exposed_here.insert(exposed.clone(), name.clone());
        if let Some(scopes) = reader.scopes {
            if !reader.policy.visible(scopes, policy_kind, server, &name) {
                continue;
            }
        }
        item[field] = Value::from(exposed);
        items.push(item);
    }
    if kind == ListKind::Tools {
        names.observe(server, seen);
    }
    next
}

/// The list field of `kind` in a result.
pub fn list_field(kind: ListKind) -> &'static str {
    kind.fields().0
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
