//! How a call ended, read off its answer the same way on every upstream kind: `ok` is a result
//! that is not `isError: true`; `error` a JSON-RPC error or a result with `isError: true`.
//! [`answer_is_error`] reads one message; [`Watch`] follows an HTTP answer (JSON or SSE) as it is
//! relayed, without changing a byte of it.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::sse::Framer;

/// Most bytes of a JSON answer held to read its outcome; a larger answer is not read.
const MAX_JSON: usize = 16 * 1024 * 1024;

/// For a JSON-RPC response: `Some(true)` when it reports an error (an `error` member, or a
/// `result` with `isError: true`), `Some(false)` for a result. `None` for anything else (a
/// request, a notification, not JSON).
///
/// A message whose text holds `"result"` and neither `"error"` nor `"isError"` nor `"method"`
/// nor an escape is a plain result without a parse (the common answer); anything else is
/// parsed. (So an object that is not a JSON-RPC response but holds a `"result"` key deeper
/// down, say `{"data":{"result":1}}`, counts as a result: only the tool-call metric reads this,
/// and only for a malformed answer.)
pub fn answer_is_error(message: &[u8]) -> Option<bool> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static RESULT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"result\""));
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"rror\""));
    static METHOD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"method\""));
    let has = |needle: &Finder<'static>| needle.find(message).is_some();
    if has(&RESULT)
        && !has(&ERROR)
        && !has(&METHOD)
        && memchr::memchr(b'\\', message).is_none()
        && message.trim_ascii().first() == Some(&b'{')
        && message.trim_ascii().last() == Some(&b'}')
    {
        return Some(false);
    }
    let mut de = serde_json::Deserializer::from_slice(message);
    de.deserialize_map(TopVisitor).ok().flatten()
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<bool>, A::Error> {
        let (mut method, mut error, mut result) = (false, false, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "method" => {
                    method = true;
                    map.next_value::<IgnoredAny>()?;
                }
                "error" => {
                    error = true;
                    map.next_value::<IgnoredAny>()?;
                }
                "result" => result = Some(map.next_value::<ResultFlag>()?.0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match (method, error, result) {
            (true, _, _) => None,
            (false, true, _) => Some(true),
            (false, false, r) => r,
        })
    }
}

/// `result.isError == true`.
struct ResultFlag(bool);

impl<'de> de::Deserialize<'de> for ResultFlag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResultFlag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a result")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultFlag, A::Error> {
                let mut flag = false;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "isError" {
                        flag =
                            map.next_value::<serde_json::Value>()? == serde_json::Value::Bool(true);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ResultFlag(flag))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ResultFlag, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ResultFlag(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ResultFlag, E> {
                Ok(ResultFlag(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ResultFlag, E> {
                Ok(ResultFlag(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ResultFlag, E> {
                Ok(ResultFlag(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ResultFlag, E> {
                Ok(ResultFlag(false))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ResultFlag, E> {
                Ok(ResultFlag(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ResultFlag, E> {
                Ok(ResultFlag(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// What an HTTP answer said of the call it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A JSON-RPC response: `is_error` for an error or a result with `isError: true`.
    Answer {
        /// Whether it reports an error.
        is_error: bool,
    },
    /// No JSON-RPC response in it (an empty or non-JSON-RPC body).
    NoAnswer,
    /// Not read: too large (over 16 MiB) or not well framed.
    Unread,
}

/// Follows one HTTP answer to find the response to the request it answers.
pub struct Watch {
    kind: WatchKind,
    /// The first response seen: its error flag.
    seen: Option<bool>,
}

enum WatchKind {
    /// An SSE stream: each event's data is a message.
    Sse(Box<Framer>),
    /// A JSON body, held as the chunks that were relayed (no copy until the end).
    Json(Vec<Bytes>, usize),
    /// Gave up (too large, malformed framing).
    Blind,
}

impl Watch {
    /// A watch over an answer that is an SSE stream (`sse`) or a JSON body.
    pub fn new(sse: bool) -> Self {
        let kind = if sse {
            WatchKind::Sse(Box::default())
        } else {
            WatchKind::Json(Vec::new(), 0)
        };
        Watch { kind, seen: None }
    }

    /// Look at the next relayed piece of the answer.
    pub fn feed(&mut self, chunk: &Bytes) {
        if self.seen.is_some() {
            return;
        }
        match &mut self.kind {
            WatchKind::Sse(framer) => match framer.push(chunk) {
                Ok(events) => {
                    self.seen = events
                        .iter()
                        .filter_map(|ev| super::sse::event_data(ev))
                        .find_map(|data| answer_is_error(&data));
                }
                Err(_) => self.kind = WatchKind::Blind,
            },
            WatchKind::Json(chunks, len) => {
                *len += chunk.len();
                if *len > MAX_JSON {
                    self.kind = WatchKind::Blind;
                } else {
                    chunks.push(chunk.clone());
                }
            }
            WatchKind::Blind => {}
        }
    }

    /// The answer ended: what it said of the call.
    pub fn finish(self) -> Seen {
        if let Some(is_error) = self.seen {
            return Seen::Answer { is_error };
        }
        let found = match self.kind {
            WatchKind::Json(chunks, len) => match chunks.as_slice() {
                [one] => answer_is_error(one),
                _ => {
                    let mut all = BytesMut::with_capacity(len);
                    chunks.iter().for_each(|c| all.extend_from_slice(c));
                    answer_is_error(&all)
                }
            },
            WatchKind::Sse(mut framer) => {
                let rest = framer.rest();
                super::sse::event_data(&rest).and_then(|d| answer_is_error(&d))
            }
            WatchKind::Blind => return Seen::Unread,
        };
        match found {
            Some(is_error) => Seen::Answer { is_error },
            None => Seen::NoAnswer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_of_messages() {
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#),
            Some(false)
        );
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#),
            Some(true)
        );
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":1,"result":{"isError":false}}"#),
            Some(false)
        );
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#),
            Some(true)
        );
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#),
            None
        );
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage"}"#),
            None
        );
        assert_eq!(answer_is_error(b"not json"), None);
        // Escaped keys are read as what they mean.
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":1,"result":{"is\u0045rror":true}}"#),
            Some(true)
        );
        assert_eq!(
            answer_is_error(br#"{"jsonrpc":"2.0","id":1,"result":{"text":"the \"result\""}}"#),
            Some(false)
        );
    }

    #[test]
    fn watches_follow_json_and_sse_answers_split_anywhere() {
        let json = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}],"isError":true}}"#;
        for step in [1, 7, json.len()] {
            let mut w = Watch::new(false);
            json.chunks(step)
                .for_each(|c| w.feed(&Bytes::copy_from_slice(c)));
            assert_eq!(w.finish(), Seen::Answer { is_error: true }, "step {step}");
        }
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        for step in [1, 5, sse.len()] {
            let mut w = Watch::new(true);
            sse.chunks(step)
                .for_each(|c| w.feed(&Bytes::copy_from_slice(c)));
            assert_eq!(w.finish(), Seen::Answer { is_error: false }, "step {step}");
        }
        let mut w = Watch::new(true);
        w.feed(&Bytes::from_static(b": keepalive\n\n"));
        assert_eq!(w.finish(), Seen::NoAnswer);
    }
}
