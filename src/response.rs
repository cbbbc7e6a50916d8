//! A response head as the gateway passes it on: the status, the fields (an upstream's kept as
//! ranges of the bytes it sent, the gateway's own appended), and the body length, which each
//! front end renders with its own framing. No header map is built per request: an upstream's
//! answer head goes from the bytes it sent to the bytes the client gets with a scan, not a parse
//! into a map and back.
//!
//! Hop-by-hop fields never get in: the upstream parser leaves them out (and reads what framing
//! they announce), so what is here is passed on as it is.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

/// Response fields that never cross the gateway (RFC 9110 §7.6.1), plus `content-length` and
/// `transfer-encoding`, which each front end writes for its own framing.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "proxy-connection",
    "trailer",
    "upgrade",
    "te",
    "content-length",
];

/// True when `name` is one of [`HOP_BY_HOP`].
pub fn hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.len() == name.len() && h.as_bytes().eq_ignore_ascii_case(name))
}

/// True when the `Connection` field value `list` names the field `name` (it is then hop-by-hop
/// too, RFC 9110 §7.6.1).
pub fn named_in(list: &[u8], name: &[u8]) -> bool {
    list.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
}

/// A response head.
#[derive(Clone)]
pub struct Head {
    status: u16,
    /// The bytes an upstream's fields are ranges of (empty for a head the gateway makes).
    raw: Bytes,
    fields: Vec<(Range<usize>, Range<usize>)>,
    own: Vec<(&'static str, Cow<'static, str>)>,
    length: Option<u64>,
}

/// Field names only: values may carry credentials (`Set-Cookie`, tokens) and must not reach
/// a log line by way of `{:?}`.
impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("status", &self.status)
            .field(
                "fields",
                &self
                    .fields()
                    .map(|(n, _)| String::from_utf8_lossy(n))
                    .collect::<Vec<_>>(),
            )
            .field("length", &self.length)
            .finish()
    }
}

impl Head {
    /// A head the gateway makes, with `status` and no fields yet.
    pub fn new(status: u16) -> Head {
        Head {
            status,
            raw: Bytes::new(),
            fields: Vec::new(),
            own: Vec::with_capacity(4),
            length: None,
        }
    }

    /// An upstream's head: `fields` are ranges of `raw` (no hop-by-hop field among them),
    /// `length` its body length when it announced one.
    pub fn from_upstream(
        status: u16,
        raw: Bytes,
        fields: Vec<(Range<usize>, Range<usize>)>,
        length: Option<u64>,
    ) -> Head {
        Head {
            status,
            raw,
            fields,
            own: Vec::new(),
            length,
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body length sent as `Content-Length` (`None`: the front end frames the body).
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// Set or clear the body length.
    pub fn set_length(&mut self, length: Option<u64>) {
        self.length = length;
    }

    /// Append a field.
    pub fn push(&mut self, name: &'static str, value: impl Into<Cow<'static, str>>) {
        self.own.push((name, value.into()));
    }

    /// Every field in order (an upstream's first, then the gateway's), `Content-Length` aside.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let raw = &self.raw;
        self.fields
            .iter()
            .map(move |(n, v)| (&raw[n.clone()], &raw[v.clone()]))
            .chain(self.own.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// The first value of field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// True when the head announces an SSE stream (`Content-Type: text/event-stream`).
    pub fn is_event_stream(&self) -> bool {
        self.get("content-type").is_some_and(|v| {
            v.trim_ascii_start()
                .get(..17)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"text/event-stream"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_an_upstream_head_and_the_gateways() {
        let raw = Bytes::from_static(b"Content-Type: text/event-stream\r\nMcp-Session-Id: s\r\n");
        let mut h = Head::from_upstream(200, raw, vec![(0..12, 14..31), (33..47, 49..50)], None);
        h.push("x-accel-buffering", "no");
        assert!(h.is_event_stream());
        assert_eq!(h.get("mcp-session-id"), Some(&b"s"[..]));
        let names: Vec<_> = h.fields().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(
            names,
            [
                &b"Content-Type"[..],
                b"Mcp-Session-Id",
                b"x-accel-buffering"
            ]
        );
        assert!(hop_by_hop(b"Transfer-Encoding") && hop_by_hop(b"content-length"));
        assert!(!hop_by_hop(b"content-type"));
    }
}
