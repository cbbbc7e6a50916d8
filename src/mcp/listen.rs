//! 2026-07-28 `subscriptions/listen`, the message shapes: the filter a client asks for, the
//! acknowledgment that opens the stream, the events it carries (each stamped with the
//! subscription id, the listen request's JSON-RPC id) and the result that closes it gracefully.
//! The gateway serves it over several upstreams on `/mcp` (`http::listen`) and over the shared
//! session of a legacy-only upstream (`upstream::shared::session`).

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// The `_meta` key of every frame of a listen stream.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The method that opens a listen stream.
pub const METHOD: &str = "subscriptions/listen";

/// The first frame of a listen stream.
pub const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";

/// Most resource URIs one listen request may name.
pub const MAX_URIS: usize = 1000;

/// What a client opts in to (`params.notifications`), or what a server honors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
    /// `notifications/resources/updated` for these URIs.
    pub uris: Vec<String>,
}

/// One event of a listen stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The tool list changed.
    Tools,
    /// The prompt list changed.
    Prompts,
    /// The resource list changed.
    Resources,
    /// The resource at this URI changed.
    Updated(&'a str),
}

impl<'a> Event<'a> {
    /// The event a notification announces (`None`: not one a listen stream carries).
    pub fn of(message: &'a Value) -> Option<Event<'a>> {
        match message.get("method")?.as_str()? {
            "notifications/tools/list_changed" => Some(Event::Tools),
            "notifications/prompts/list_changed" => Some(Event::Prompts),
            "notifications/resources/list_changed" => Some(Event::Resources),
            "notifications/resources/updated" => message
                .pointer("/params/uri")
                .and_then(Value::as_str)
                .map(Event::Updated),
            _ => None,
        }
    }
}

impl Filter {
    /// The filter of a listen request's `params` (`Err`: why it is not one).
    pub fn from_params(params: Option<&Value>) -> Result<Filter, String> {
        let Some(n) = params.and_then(|p| p.get("notifications")) else {
            return Err("`params.notifications` is required".into());
        };
        let Some(n) = n.as_object() else {
            return Err("`params.notifications` must be an object".into());
        };
        let flag = |key: &str| match n.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("`params.notifications.{key}` must be a boolean")),
        };
        let uris = match n.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_URIS {
                    return Err(format!("at most {MAX_URIS} resourceSubscriptions"));
                }
                let mut uris = Vec::with_capacity(items.len());
                for item in items {
                    let Some(uri) = item.as_str() else {
                        return Err("`resourceSubscriptions` must hold strings".into());
                    };
                    if !uris.iter().any(|u| u == uri) {
                        uris.push(uri.to_owned());
                    }
                }
                uris
            }
            Some(_) => return Err("`resourceSubscriptions` must be an array".into()),
        };
        Ok(Filter {
            tools: flag("toolsListChanged")?,
            prompts: flag("promptsListChanged")?,
            resources: flag("resourcesListChanged")?,
            uris,
        })
    }

    /// The filter as sent on the wire (false flags and an empty URI list left out).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                m.insert(key.into(), Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(m)
    }

    /// Whether `event` is within this filter (a URI exactly as subscribed).
    pub fn admits(&self, event: Event<'_>) -> bool {
        match event {
            Event::Tools => self.tools,
            Event::Prompts => self.prompts,
            Event::Resources => self.resources,
            Event::Updated(uri) => self.uris.iter().any(|u| u == uri),
        }
    }

    /// Also honor what `other` honors.
    pub fn join(&mut self, other: &Filter) {
        self.tools |= other.tools;
        self.prompts |= other.prompts;
        self.resources |= other.resources;
        for u in &other.uris {
            if !self.uris.contains(u) {
                self.uris.push(u.clone());
            }
        }
    }
}

/// `message` (a notification) with the subscription id `id` in its `params._meta`.
pub fn stamp(mut message: Value, id: &Value) -> Bytes {
    if let Some(obj) = message.as_object_mut() {
        let params = obj.entry("params").or_insert_with(|| json!({}));
        if !params.is_object() {
            *params = json!({});
        }
        if let Some(p) = params.as_object_mut() {
            let meta = p.entry("_meta").or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            if let Some(m) = meta.as_object_mut() {
                m.insert(SUBSCRIPTION_ID.into(), id.clone());
            }
        }
    }
    Bytes::from(message.to_string())
}

/// The acknowledgment that opens the stream of listen request `id`, honoring `honored`.
pub fn acknowledged(id: &Value, honored: &Filter) -> Bytes {
    Bytes::from(
        json!({
            "jsonrpc": "2.0",
            "method": ACKNOWLEDGED,
            "params": { "notifications": honored.to_json(), "_meta": { SUBSCRIPTION_ID: id } },
        })
        .to_string(),
    )
}

/// The result that ends the stream of listen request `id` gracefully (reload, shutdown, the
/// upstream ended it).
pub fn closed(id: &Value) -> Bytes {
    Bytes::from(
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": { "resultType": "complete", "_meta": { SUBSCRIPTION_ID: id } },
        })
        .to_string(),
    )
}

/// The filter an acknowledgment honors (`None`: the message is not an acknowledgment).
pub fn honored(message: &Value) -> Option<Filter> {
    if message.get("method").and_then(Value::as_str) != Some(ACKNOWLEDGED) {
        return None;
    }
    Filter::from_params(message.get("params")).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_reads_and_writes_the_wire_form() {
        let p = json!({ "notifications": {
            "toolsListChanged": true, "promptsListChanged": false,
            "resourceSubscriptions": ["a://1", "a://1", "b://2"] } });
        let f = Filter::from_params(Some(&p)).unwrap();
        assert_eq!(
            f,
            Filter {
                tools: true,
                prompts: false,
                resources: false,
                uris: vec!["a://1".into(), "b://2".into()],
            }
        );
        assert_eq!(
            f.to_json(),
            json!({ "toolsListChanged": true, "resourceSubscriptions": ["a://1", "b://2"] })
        );
        assert_eq!(
            Filter::from_params(Some(&json!({ "notifications": {} }))).unwrap(),
            Filter::default()
        );
    }

    #[test]
    fn a_bad_filter_is_refused_with_the_reason() {
        for bad in [
            json!({}),
            json!({ "notifications": [] }),
            json!({ "notifications": { "toolsListChanged": "yes" } }),
            json!({ "notifications": { "resourceSubscriptions": "a://1" } }),
            json!({ "notifications": { "resourceSubscriptions": [1] } }),
        ] {
            assert!(Filter::from_params(Some(&bad)).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_URIS).map(|i| format!("u://{i}")).collect();
        let p = json!({ "notifications": { "resourceSubscriptions": many } });
        assert!(Filter::from_params(Some(&p)).is_err());
    }

    #[test]
    fn events_are_admitted_only_as_asked() {
        let f = Filter {
            tools: true,
            uris: vec!["a://1".into()],
            ..Filter::default()
        };
        let updated =
            json!({ "method": "notifications/resources/updated", "params": { "uri": "a://1" } });
        let other =
            json!({ "method": "notifications/resources/updated", "params": { "uri": "a://2" } });
        let tools = json!({ "method": "notifications/tools/list_changed" });
        let prompts = json!({ "method": "notifications/prompts/list_changed" });
        let log = json!({ "method": "notifications/message", "params": {} });
        assert!(f.admits(Event::of(&updated).unwrap()));
        assert!(!f.admits(Event::of(&other).unwrap()));
        assert!(f.admits(Event::of(&tools).unwrap()));
        assert!(!f.admits(Event::of(&prompts).unwrap()));
        assert_eq!(Event::of(&log), None);
    }

    #[test]
    fn frames_carry_the_subscription_id() {
        let id = json!("listen-1");
        let ev: Value = serde_json::from_slice(&stamp(
            json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": { "_meta": { "x": 1, SUBSCRIPTION_ID: 9 } } }),
            &id,
        ))
        .unwrap();
        assert_eq!(ev["params"]["_meta"][SUBSCRIPTION_ID], id);
        assert_eq!(ev["params"]["_meta"]["x"], 1);
        let bare: Value = serde_json::from_slice(&stamp(
            json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }),
            &id,
        ))
        .unwrap();
        assert_eq!(bare["params"]["_meta"][SUBSCRIPTION_ID], id);
        let f = Filter {
            prompts: true,
            ..Filter::default()
        };
        let ack: Value = serde_json::from_slice(&acknowledged(&id, &f)).unwrap();
        assert_eq!(
            ack["params"]["notifications"],
            json!({ "promptsListChanged": true })
        );
        assert_eq!(honored(&ack), Some(f));
        let end: Value = serde_json::from_slice(&closed(&id)).unwrap();
        assert_eq!(end["id"], id);
        assert_eq!(end["result"]["_meta"][SUBSCRIPTION_ID], id);
        assert_eq!(end["result"]["resultType"], "complete");
    }
}
