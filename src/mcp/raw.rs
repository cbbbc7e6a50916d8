//! JSON read without building a tree: an object as its members in order, each value a raw
//! slice of the input, so an answer or a request can be rewritten in one place and otherwise
//! passed on byte for byte (list filtering, restoring a name on `/mcp`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

pub(crate) fn write_key(out: &mut Vec<u8>, key: &Key<'_>) {
    // Keys that needed no unescaping are written back as they came.
    match &key.0 {
        Cow::Borrowed(k) => {
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(k) => {
            // Serializing a string cannot fail.
            let _ = serde_json::to_writer(&mut *out, k);
        }
    }
    out.push(b':');
}

/// A JSON string, borrowed from the input when it holds no escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object as its members in order, each value a raw slice of the input.
pub(crate) struct RawObject<'a>(pub(crate) Vec<(Key<'a>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k.0 == key).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<RawObject<'de>, M::Error> {
                let mut members = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(entry) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// `json` with the string at `path` (a chain of object keys) replaced by `value`; every other
/// byte as it came. `None` when `json` is not an object or the path does not lead to a string.
pub(crate) fn replace_string(json: &[u8], path: &[&str], value: &str) -> Option<Vec<u8>> {
    let (first, rest) = path.split_first()?;
    let obj: RawObject<'_> = serde_json::from_slice(json).ok()?;
    let mut out = Vec::with_capacity(json.len() + value.len());
    let mut found = false;
    out.push(b'{');
    for (i, (key, raw)) in obj.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, key);
        if key.0 == *first && !found {
            found = true;
            if rest.is_empty() {
                serde_json::from_str::<Key<'_>>(raw.get()).ok()?;
                serde_json::to_writer(&mut out, value).ok()?;
            } else {
                out.extend_from_slice(&replace_string(raw.get().as_bytes(), rest, value)?);
            }
        } else {
            out.extend_from_slice(raw.get().as_bytes());
        }
    }
    out.push(b'}');
    found.then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_string_is_replaced_and_every_other_byte_kept() {
        let input = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wf__calc","arguments":{"b":[1, 2],"a":"x"}}}"#;
        let out = replace_string(input, &["params", "name"], "calc\"ulator").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calc\"ulator","arguments":{"b":[1, 2],"a":"x"}}}"#
        );
        // Escaped keys are matched unescaped and written back escaped.
        let escaped = br#"{"params":{"n\u0061me":"x"}}"#;
        let out = replace_string(escaped, &["params", "name"], "y").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"params":{"name":"y"}}"#
        );
        assert_eq!(
            replace_string(br#"{"params":{"name":7}}"#, &["params", "name"], "y"),
            None
        );
        assert_eq!(
            replace_string(br#"{"params":{}}"#, &["params", "name"], "y"),
            None
        );
        assert_eq!(replace_string(b"[1]", &["params"], "y"), None);
    }
}
