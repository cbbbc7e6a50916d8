//! Per-caller filtering of list answers (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`): only what the caller may use stays. Applied to a whole JSON
//! answer or to each SSE event's data; anything that is not such a result passes untouched.
//! Key order is preserved (serde_json `preserve_order`), and a filtered result is never left
//! marked `cacheScope: public`.

use std::collections::BTreeSet;

use serde_json::Value;

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

    fn fields(self) -> (&'static str, &'static str, Kind) {
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
    pub fn apply(&self, message: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(message).ok()?;
        let (list, field, kind) = self.kind.fields();
        let result = v.get_mut("result")?.as_object_mut()?;
        let items = result.get_mut(list)?.as_array_mut()?;
        items.retain(|item| {
            item.get(field)
                .and_then(Value::as_str)
                .is_some_and(|name| self.policy.visible(self.scopes, kind, self.server, name))
        });
        if result.get("cacheScope").and_then(Value::as_str) == Some("public") {
            result.insert("cacheScope".into(), Value::from("private"));
        }
        serde_json::to_vec(&v).ok()
    }
}
