//! Per-caller filtering of list answers (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`): only what the caller may use stays. Applied to a whole JSON
//! answer or to each SSE event's data; anything that is not such a result passes untouched.
//! Key order is preserved (serde_json `preserve_order`), and a filtered result is never left
//! marked `cacheScope: public`.

use std::collections::BTreeSet;

use serde_json::value::RawValue;

use super::raw::{write_key, Key, RawObject};

use crate::policy::{Kind, Policy};

/// Which list a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `resources/templates/list`: `result.resourceTemplates[].uriTemplate`.
    Templates,
}

impl ListKind {
    /// The list kind of a JSON-RPC method, if it is a list method.
    pub fn for_method(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::Templates),
            _ => None,
        }
    }

    /// The JSON-RPC method that asks for this list.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The result's list member, each item's name member, and what the policy calls an item.
    pub fn fields(self) -> (&'static str, &'static str, Kind) {
        match self {
            ListKind::Tools => ("tools", "name", Kind::Tool),
            ListKind::Prompts => ("prompts", "name", Kind::Prompt),
            ListKind::Resources => ("resources", "uri", Kind::Resource),
            ListKind::Templates => ("resourceTemplates", "uriTemplate", Kind::Resource),
        }
    }
}

/// Filters one caller's list answers from one server.
#[derive(Clone, Copy)]
pub struct ListFilter<'a> {
    /// The compiled policy of the request's snapshot.
    pub policy: &'a Policy,
    /// The caller's scopes.
    pub scopes: &'a BTreeSet<String>,
    /// The upstream server's name.
    pub server: &'a str,
    /// The list asked for.
    pub kind: ListKind,
}

impl ListFilter<'_> {
    /// Filter one JSON-RPC message. `None`: not a list result (or not JSON); pass it unchanged.
    ///
    /// The answer is not rebuilt as a `Value` tree: its objects are split into raw members
    /// (`RawValue` slices of the input), each item's name is read, and the output is the input's
    /// own bytes with the denied items left out (and `cacheScope: "public"` made private).
    pub fn apply(&self, message: &[u8]) -> Option<Vec<u8>> {
        let (list, field, kind) = self.kind.fields();
        let top: RawObject<'_> = serde_json::from_slice(message).ok()?;
        let result: RawObject<'_> = serde_json::from_str(top.get("result")?.get()).ok()?;
        let items: Vec<&RawValue> = serde_json::from_str(result.get(list)?.get()).ok()?;
        let mut out = Vec::with_capacity(message.len());
        out.push(b'{');
        for (i, (key, value)) in top.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(&mut out, key);
            if key.0 != "result" {
                out.extend_from_slice(value.get().as_bytes());
                continue;
            }
            out.push(b'{');
            for (j, (rkey, rvalue)) in result.0.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_key(&mut out, rkey);
                if rkey.0 == list {
                    out.push(b'[');
                    let mut first = true;
                    for item in &items {
                        if !self.item_visible(item, field, kind) {
                            continue;
                        }
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        out.extend_from_slice(item.get().as_bytes());
                    }
                    out.push(b']');
                } else if rkey.0 == "cacheScope" && rvalue.get() == "\"public\"" {
                    out.extend_from_slice(b"\"private\"");
                } else {
                    out.extend_from_slice(rvalue.get().as_bytes());
                }
            }
            out.push(b'}');
        }
        out.push(b'}');
        Some(out)
    }

    fn item_visible(&self, item: &RawValue, field: &str, kind: Kind) -> bool {
        let Ok(obj) = serde_json::from_str::<RawObject<'_>>(item.get()) else {
            return false;
        };
        let Some(name) = obj.get(field) else {
            return false;
        };
        match serde_json::from_str::<Key<'_>>(name.get()) {
            Ok(Key(name)) => self.policy.visible(self.scopes, kind, self.server, &name),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn policy() -> (Policy, BTreeSet<String>) {
        let yaml = "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nauth:\n  permissions:\n    \"s:ok*\": [scope:u]\n    \"s:file:///pub/*\": [scope:u]\nproxy:\n  servers:\n    - name: s\n      type: streamable-http\n      connection:\n        url: \"http://127.0.0.1:1/mcp\"\n";
        let rt = crate::config::load_str(yaml, "t.yaml", &|_| None).expect("config");
        (Policy::from_config(&rt), ["scope:u".to_string()].into())
    }

    #[test]
    fn filters_in_place_keeping_order_bytes_and_other_members() {
        let (policy, scopes) = policy();
        let f = ListFilter {
            policy: &policy,
            scopes: &scopes,
            server: "s",
            kind: ListKind::Tools,
        };
        let input = br#"{"jsonrpc":"2.0","id":"x","result":{"tools":[{"name":"ok_1","inputSchema":{"z":1,"a":[1, 2]}},{"name":"secret","x":1},{"name":"ok\u005f2"},{"noname":true}],"nextCursor":"c","cacheScope":"public","_meta":{"k":"v"}}}"#;
        let out = f.apply(input).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":"x","result":{"tools":[{"name":"ok_1","inputSchema":{"z":1,"a":[1, 2]}},{"name":"ok\u005f2"}],"nextCursor":"c","cacheScope":"private","_meta":{"k":"v"}}}"#
        );
    }

    #[test]
    fn resources_and_non_list_messages() {
        let (policy, scopes) = policy();
        let f = ListFilter {
            policy: &policy,
            scopes: &scopes,
            server: "s",
            kind: ListKind::Resources,
        };
        let input = json!({"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///pub/a"},{"uri":"file:///priv/b"}]}});
        let out: Value =
            serde_json::from_slice(&f.apply(input.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(out["result"]["resources"], json!([{"uri":"file:///pub/a"}]));
        // Not a list result: left alone.
        assert!(f
            .apply(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#)
            .is_none());
        assert!(f
            .apply(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#)
            .is_none());
        assert!(f.apply(b"not json").is_none());
        assert!(f
            .apply(br#"{"result":{"resources":{"not":"an array"}}}"#)
            .is_none());
    }
}
