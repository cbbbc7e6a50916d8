//! JSON-RPC classification of a request body in one streaming pass.
//!
//! The gateway must decide before contacting an upstream, so every POST body is checked here:
//! strict UTF-8 JSON (no trailing data, nesting capped by serde_json's recursion limit), no
//! duplicate key in any object at any depth (so the gateway and the upstream can never read the
//! same bytes differently), and the JSON-RPC 2.0 envelope. Only the fields a decision needs are
//! kept (`id`, `method`, and `params.name` / `params.uri` for the methods that address a tool,
//! prompt or resource); everything else is validated and dropped. The body itself is forwarded
//! byte for byte: nothing here re-serializes it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    /// Not UTF-8 JSON, trailing bytes, too deep, or empty.
    #[error("Parse error: {0}")]
    Parse(String),
    /// Valid JSON, but not an acceptable JSON-RPC 2.0 message.
    #[error("Invalid Request: {0}")]
    Invalid(String),
}

impl RpcError {
    /// The JSON-RPC error code for this refusal.
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => -32700,
            RpcError::Invalid(_) => -32600,
        }
    }
}

/// One JSON-RPC message, reduced to what a routing or policy decision needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: has `method` and `id`.
    Request {
        /// The request id (string or number), echoed in gateway errors.
        id: Value,
        /// The method name.
        method: String,
        /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read, subscribe).
        target: Option<String>,
    },
    /// A notification: `method` without `id`.
    Notification {
        /// The method name.
        method: String,
    },
    /// A response from the client to a server-initiated request (`result` or `error`).
    Response {
        /// The id of the server's request this answers.
        id: Value,
    },
}

impl Message {
    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method } => Some(method),
            Message::Response { .. } => None,
        }
    }

    /// The id, for requests and responses.
    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Request { id, .. } | Message::Response { id } => Some(id),
            Message::Notification { .. } => None,
        }
    }
}

/// A classified body: one message, or a batch (2025-03-26) of several.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The messages in body order.
    pub messages: Vec<Message>,
    /// True when the body was a JSON array.
    pub batch: bool,
}

impl Envelope {
    /// The id to echo in an error answering the whole body: the single request's id, else null.
    /// True for a single `initialize` request.
    pub fn is_initialize(&self) -> bool {
        !self.batch && self.messages.first().and_then(Message::method) == Some("initialize")
    }

    /// The tool of a single `tools/call` request.
    pub fn single_tool_call(&self) -> Option<&str> {
        match (self.batch, self.messages.first()) {
            (
                false,
                Some(Message::Request {
                    method,
                    target: Some(name),
                    ..
                }),
            ) if method == "tools/call" => Some(name),
            _ => None,
        }
    }

    /// The id to answer an error with (null for batches and notifications).
    pub fn error_id(&self) -> Value {
        match (self.batch, self.messages.first()) {
            (false, Some(m)) => m.id().cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// True when the body contains at least one request (which expects an answer).
    pub fn has_request(&self) -> bool {
        self.messages
            .iter()
            .any(|m| matches!(m, Message::Request { .. }))
    }
}

/// Methods whose `params` name a tool, prompt or resource the policy decides on.
fn wants_target(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    }
}

/// Classify a request body. See the module docs for what is checked.
pub fn classify(body: &[u8]) -> Result<Envelope, RpcError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RpcError::Parse("empty body".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = de.deserialize_any(TopVisitor).map_err(map_json_err)?;
    de.end().map_err(map_json_err)?;
    top
}

/// serde_json reports our own semantic errors as `custom`; split them back out.
fn map_json_err(e: serde_json::Error) -> RpcError {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix(INVALID_MARK) {
        // Drop serde_json's " at line X column Y" suffix only for our own messages' marker.
        RpcError::Invalid(rest.to_string())
    } else {
        RpcError::Parse(text)
    }
}

/// Prefix marking a semantic (not syntactic) error raised from inside the visitors.
const INVALID_MARK: &str = "\u{1}invalid:";

fn invalid<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(format_args!("{INVALID_MARK}{msg}"))
}

/// The top level: an object (one message) or an array (a batch).
struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Result<Envelope, RpcError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC object or batch array")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let msg = MessageVisitor.visit_map(map)?;
        Ok(Ok(Envelope {
            messages: vec![msg],
            batch: false,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(m) = seq.next_element_seed(MessageSeed)? {
            messages.push(m);
        }
        if messages.is_empty() {
            return Ok(Err(RpcError::Invalid("empty batch".into())));
        }
        Ok(Ok(Envelope {
            messages,
            batch: true,
        }))
    }

    // Scalars at the top level are valid JSON but not JSON-RPC.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(invalid("expected a JSON-RPC object, found a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(invalid("expected a JSON-RPC object, found a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(invalid("expected a JSON-RPC object, found a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(invalid("expected a JSON-RPC object, found a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(invalid("expected a JSON-RPC object, found a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(invalid("expected a JSON-RPC object, found null"))
    }
}

struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Message;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Message, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}

/// Tracks the keys of one object to reject duplicates. Small objects (the common case) scan a
/// short vector; past `SMALL` keys a hash set keeps a hostile object with 100k keys linear.
#[derive(Default)]
struct KeySet<'de> {
    small: Vec<Cow<'de, str>>,
    large: Option<std::collections::HashSet<Cow<'de, str>>>,
}

const SMALL: usize = 16;

impl<'de> KeySet<'de> {
    fn insert<E: de::Error>(&mut self, key: Cow<'de, str>) -> Result<(), E> {
        let duplicate = match &mut self.large {
            Some(set) => !set.insert(key.clone()),
            None if self.small.contains(&key) => true,
            None if self.small.len() < SMALL => {
                self.small.push(key.clone());
                false
            }
            None => {
                let mut set: std::collections::HashSet<_> = self.small.drain(..).collect();
                set.insert(key.clone());
                self.large = Some(set);
                false
            }
        };
        if duplicate {
            return Err(invalid(format_args!("duplicate key `{key}` in an object")));
        }
        Ok(())
    }
}

/// A key, borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut keys = KeySet::default();
        let mut version_ok = false;
        let mut id: Option<Value> = None;
        let mut method: Option<String> = None;
        let mut target: Option<String> = None;
        let mut has_result_or_error = false;
        // `params` may come before `method`; keep what it names under both spellings.
        let mut params_seen: Option<ParamsTargets> = None;

        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "jsonrpc" => {
                    let v: Cow<'de, str> = map.next_value::<CowStr<'de>>()?.0;
                    if v != "2.0" {
                        return Err(invalid("`jsonrpc` must be \"2.0\""));
                    }
                    version_ok = true;
                }
                "id" => id = Some(map.next_value_seed(IdSeed)?),
                "method" => method = Some(map.next_value::<CowStr<'de>>()?.0.into_owned()),
                "params" => params_seen = Some(map.next_value_seed(ParamsSeed)?),
                "result" | "error" => {
                    map.next_value_seed(Checked)?;
                    has_result_or_error = true;
                }
                _ => map.next_value_seed(Checked)?,
            }
            keys.insert(key)?;
        }
        if !version_ok {
            return Err(invalid("missing `\"jsonrpc\": \"2.0\"`"));
        }
        if let (Some(m), Some(p)) = (method.as_deref(), params_seen) {
            target = match wants_target(m) {
                Some("name") => p.name,
                Some(_) => p.uri,
                None => None,
            };
        }
        match (method, id, has_result_or_error) {
            (Some(method), Some(id), false) => Ok(Message::Request { id, method, target }),
            (Some(method), None, false) => Ok(Message::Notification { method }),
            (None, Some(id), true) => Ok(Message::Response { id }),
            (None, None, true) => Err(invalid("a response needs an `id`")),
            (Some(_), _, true) => Err(invalid("a message cannot have both `method` and `result`")),
            (None, _, false) => Err(invalid("missing `method`")),
        }
    }
}

/// A string, borrowed when possible.
struct CowStr<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Key::deserialize(d).map(|k| CowStr(k.0))
    }
}

/// A JSON-RPC id: string, integer or null (kept as a `Value` for echoing).
struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
                Err(invalid("`id` must be a string or an integer"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
                Err(invalid("`id` must be a string or an integer"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
                Err(invalid("`id` must be a string or an integer"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
                Err(invalid("`id` must be a string or an integer"))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// `params.name` and `params.uri` when they are strings; the rest is only checked.
#[derive(Default)]
struct ParamsTargets {
    name: Option<String>,
    uri: Option<String>,
}

struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = ParamsTargets;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ParamsTargets, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = ParamsTargets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`params` as an object or array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParamsTargets, A::Error> {
                let mut keys = KeySet::default();
                let mut out = ParamsTargets::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "name" => out.name = map.next_value_seed(MaybeString)?,
                        "uri" => out.uri = map.next_value_seed(MaybeString)?,
                        _ => map.next_value_seed(Checked)?,
                    }
                    keys.insert(key)?;
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParamsTargets, A::Error> {
                while seq.next_element_seed(Checked)?.is_some() {}
                Ok(ParamsTargets::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<ParamsTargets, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ParamsTargets, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ParamsTargets, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ParamsTargets, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ParamsTargets, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ParamsTargets, E> {
                Err(invalid("`params` must be an object or an array"))
            }
        }
        d.deserialize_any(ParamsVisitor)
    }
}

/// A value that is kept when it is a string and otherwise only checked.
struct MaybeString;

impl<'de> DeserializeSeed<'de> for MaybeString {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_map(map).map(|()| None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_seq(seq).map(|()| None)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, walked only to reject duplicate keys; nothing is kept.
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = KeySet::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            map.next_value_seed(Checked)?;
            keys.insert(key)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(body: &str) -> Message {
        classify(body.as_bytes()).unwrap().messages.remove(0)
    }

    #[test]
    fn tool_call_target_is_extracted() {
        let m = req(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
        );
        assert_eq!(
            m,
            Message::Request {
                id: Value::from(7),
                method: "tools/call".into(),
                target: Some("echo".into())
            }
        );
    }

    #[test]
    fn params_before_method_still_yields_target() {
        let m = req(
            r#"{"params":{"uri":"file:///a"},"method":"resources/read","id":"x","jsonrpc":"2.0"}"#,
        );
        assert_eq!(
            m,
            Message::Request {
                id: Value::from("x"),
                method: "resources/read".into(),
                target: Some("file:///a".into())
            }
        );
    }

    #[test]
    fn other_methods_keep_no_target() {
        let m = req(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#);
        assert!(matches!(m, Message::Request { target: None, .. }));
    }

    #[test]
    fn notification_and_response() {
        assert!(matches!(
            req(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Message::Notification { .. }
        ));
        assert!(matches!(
            req(r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#),
            Message::Response { .. }
        ));
    }

    #[test]
    fn batch_is_classified_element_by_element() {
        let e = classify(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#).unwrap();
        assert!(e.batch);
        assert_eq!(e.messages.len(), 2);
        assert_eq!(e.error_id(), Value::Null);
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"x":1,"x":2}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[{"a":1,"\u0061":2}]}"#,
        ] {
            let err = classify(body.as_bytes()).unwrap_err();
            assert!(
                matches!(err, RpcError::Invalid(ref m) if m.contains("duplicate key")),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_parse_errors() {
        for body in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"jsonrpc\":\"2.0\",}",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"} trailing",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\"}",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\\ud800\"}",
        ] {
            let err = classify(body).unwrap_err();
            assert_eq!(
                err.code(),
                -32700,
                "{:?}: {err:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn envelope_errors_are_invalid_requests() {
        for body in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
            r#"[]"#,
            r#"42"#,
        ] {
            let err = classify(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), -32600, "{body}: {err:?}");
        }
    }

    #[test]
    fn large_objects_are_checked_in_linear_time() {
        let n = 100_000;
        let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{}}}}}"#,
            keys.join(",")
        );
        let start = std::time::Instant::now();
        classify(body.as_bytes()).unwrap();
        assert!(start.elapsed().as_secs() < 5, "quadratic key check");
        let dup = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{},"k5":1}}}}"#,
            keys.join(",")
        );
        assert!(classify(dup.as_bytes()).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(classify(body.as_bytes()).unwrap_err().code(), -32700);
    }
}
