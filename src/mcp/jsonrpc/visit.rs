//! The serde visitors behind [`super::classify`]: one pass over the body, every object's keys
//! checked for duplicates, only what a decision needs kept.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{
    describe_target, invalid, invalid_params, Envelope, Message, RpcError, Use, MAX_BATCH,
};
use crate::policy::{covered, Kind, Target};

/// The top level: an object (one message) or an array (a batch).
pub(super) struct TopVisitor;

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
        let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(MAX_BATCH));
        while let Some(m) = seq.next_element_seed(MessageSeed)? {
            if messages.len() == MAX_BATCH {
                // Refused before the rest is read: a 4 MiB body of tiny messages would
                // otherwise be classified (and each checked) a hundred thousand times.
                return Err(invalid(format!(
                    "a batch holds at most {MAX_BATCH} messages"
                )));
            }
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
        let mut uses: Option<Use> = None;
        let mut has_result_or_error = false;
        // `params` may come before `method`: keep every name it could use until both are known.
        let mut params_seen: Option<ParamsSeen> = None;

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
        let target = method.as_deref().and_then(covered);
        if let (Some(m), Some(t), false) = (method.as_deref(), target, has_result_or_error) {
            if id.is_none() {
                return Err(invalid(format_args!(
                    "`{m}` must be sent as a request with an `id` (the gateway decides it and answers)"
                )));
            }
            uses = Some(ParamsSeen::target(params_seen.as_ref(), t).ok_or_else(|| {
                invalid_params::<A::Error>(
                    id.as_ref(),
                    format_args!("`{m}` needs {}", describe_target(t)),
                )
            })?);
        }
        match (method, id, has_result_or_error) {
            (Some(method), Some(id), false) => Ok(Message::Request { id, method, uses }),
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

/// What `params` could name, kept until the method is known (`params` may come first): its
/// string members `name` and `uri`, and `ref`'s `type`, `name` and `uri`. The rest is only
/// checked.
#[derive(Default)]
struct ParamsSeen {
    object: bool,
    name: Option<SeenStr>,
    uri: Option<SeenStr>,
    reference: Option<RefSeen>,
}

/// `params.ref` of `completion/complete`.
#[derive(Default)]
struct RefSeen {
    kind: Option<SeenStr>,
    name: Option<SeenStr>,
    uri: Option<SeenStr>,
}

impl ParamsSeen {
    /// The use `params` names for a covered method's target, if it names one decidably.
    fn target(params: Option<&ParamsSeen>, target: Target) -> Option<Use> {
        let p = params.filter(|p| p.object)?;
        let (kind, name) = match target {
            Target::Param(kind, "name") => (kind, p.name.as_ref()?),
            Target::Param(kind, _) => (kind, p.uri.as_ref()?),
            Target::CompletionRef => {
                let r = p.reference.as_ref()?;
                match r.kind.as_ref()?.text.as_str() {
                    "ref/prompt" => (Kind::Prompt, r.name.as_ref()?),
                    "ref/resource" => (Kind::Resource, r.uri.as_ref()?),
                    _ => return None,
                }
            }
        };
        Some(Use {
            kind,
            name: name.text.clone(),
            span: name.at.clone(),
        })
    }
}

struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = ParamsSeen;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ParamsSeen, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = ParamsSeen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`params` as an object or array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParamsSeen, A::Error> {
                let mut keys = KeySet::default();
                let mut out = ParamsSeen {
                    object: true,
                    ..ParamsSeen::default()
                };
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "name" => out.name = map.next_value_seed(MaybeString)?,
                        "uri" => out.uri = map.next_value_seed(MaybeString)?,
                        "ref" => out.reference = map.next_value_seed(RefSeed)?,
                        _ => map.next_value_seed(Checked)?,
                    }
                    keys.insert(key)?;
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParamsSeen, A::Error> {
                while seq.next_element_seed(Checked)?.is_some() {}
                Ok(ParamsSeen::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<ParamsSeen, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ParamsSeen, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ParamsSeen, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ParamsSeen, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ParamsSeen, E> {
                Err(invalid("`params` must be an object or an array"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ParamsSeen, E> {
                Err(invalid("`params` must be an object or an array"))
            }
        }
        d.deserialize_any(ParamsVisitor)
    }
}

/// `params.ref`: its string members `type`, `name`, `uri` when it is an object; otherwise only
/// checked.
struct RefSeed;

impl<'de> DeserializeSeed<'de> for RefSeed {
    type Value = Option<RefSeen>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<RefSeen>, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = Option<RefSeen>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut keys = KeySet::default();
                let mut out = RefSeen::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "type" => out.kind = map.next_value_seed(MaybeString)?,
                        "name" => out.name = map.next_value_seed(MaybeString)?,
                        "uri" => out.uri = map.next_value_seed(MaybeString)?,
                        _ => map.next_value_seed(Checked)?,
                    }
                    keys.insert(key)?;
                }
                Ok(Some(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                CheckedVisitor.visit_seq(seq).map(|()| None)
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
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(RefVisitor)
    }
}

/// A value that is kept when it is a string and otherwise only checked.
struct MaybeString;

/// A string seen in the body: its text, and the address range of its bytes in the input when
/// it was read without unescaping (made an offset by `classify`).
#[derive(Default)]
struct SeenStr {
    text: String,
    at: Option<std::ops::Range<usize>>,
}

impl<'de> DeserializeSeed<'de> for MaybeString {
    type Value = Option<SeenStr>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<SeenStr>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<SeenStr>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                let start = v.as_ptr() as usize;
                Ok(Some(SeenStr {
                    text: v.to_owned(),
                    at: Some(start..start + v.len()),
                }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(SeenStr {
                    text: v.to_owned(),
                    at: None,
                }))
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
