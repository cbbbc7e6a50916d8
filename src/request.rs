//! The request as any front end presents it to the gateway: a read-only view of its head
//! ([`RequestView`]) and a source for its body ([`BodySource`]). No sockets and no Pingora types:
//! the HTTP/1.1 front door builds a view over the bytes it parsed, Pingora's path over its
//! `RequestHeader`, and tests over plain values. Rules that read header values (one
//! `Content-Length` parser, what counts as JSON, what counts as a duplicate) live here, once.

use std::ops::Range;

use bytes::Bytes;

/// A header that may appear at most once, as the request carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Single<'a> {
    /// Not sent.
    #[default]
    Absent,
    /// Sent once, with this value.
    One(&'a [u8]),
    /// Sent more than once: ambiguous, so refused where it matters.
    Many,
}

impl<'a> Single<'a> {
    /// Record one more occurrence of the header.
    pub fn push(&mut self, value: &'a [u8]) {
        *self = match self {
            Single::Absent => Single::One(value),
            _ => Single::Many,
        };
    }

    /// The value when sent exactly once.
    pub fn one(self) -> Option<&'a [u8]> {
        match self {
            Single::One(v) => Some(v),
            _ => None,
        }
    }

    /// True when the header was sent at all.
    pub fn present(self) -> bool {
        !matches!(self, Single::Absent)
    }
}

/// Every header field of the request, in order, as the front end holds them.
#[derive(Clone, Copy)]
pub enum Fields<'a> {
    /// Ranges into the bytes a front end read (name, value).
    Wire {
        /// The buffer the ranges index.
        buf: &'a [u8],
        /// Name and value of each field.
        fields: &'a [(Range<usize>, Range<usize>)],
    },
    /// A parsed header map (Pingora's path, tests).
    Map(&'a http::HeaderMap),
}

impl<'a> Fields<'a> {
    /// Each field as (name, value); names of a `Map` are lowercase, `Wire` names as sent (both
    /// are tokens: ASCII).
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let (wire, map) = match *self {
            Fields::Wire { buf, fields } => (Some((buf, fields)), None),
            Fields::Map(m) => (None, Some(m)),
        };
        let wire = wire.into_iter().flat_map(|(buf, fields)| {
            fields
                .iter()
                .map(move |(n, v)| (&buf[n.clone()], &buf[v.clone()]))
        });
        let map = map
            .into_iter()
            .flat_map(|m| m.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())));
        wire.chain(map)
    }

    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may hold credentials: names only.
        f.debug_list()
            .entries(self.iter().map(|(n, _)| String::from_utf8_lossy(n)))
            .finish()
    }
}

/// The head of one request, read-only, with the fields the gateway decides on picked out once.
#[derive(Debug, Clone)]
pub struct RequestView<'a> {
    /// The method.
    pub method: http::Method,
    /// The path of the target, without the query (`None`: the target is not in origin form).
    pub path: Option<&'a str>,
    /// The query, without `?`, as sent.
    pub query: Option<&'a [u8]>,
    /// HTTP/2 (the `:authority` stands in for `Host`).
    pub http2: bool,
    /// `Host`, or the `:authority` of an HTTP/2 request.
    pub host: Single<'a>,
    /// `Origin`.
    pub origin: Single<'a>,
    /// `Authorization`.
    pub authorization: Single<'a>,
    /// `Content-Type`.
    pub content_type: Single<'a>,
    /// `Content-Length` (its value; [`parse_content_length`] reads it).
    pub content_length: Single<'a>,
    /// `Mcp-Session-Id`.
    pub session_id: Single<'a>,
    /// `traceparent` (W3C trace context).
    pub traceparent: Single<'a>,
    /// `Connection` (its tokens name more hop-by-hop headers).
    pub connection: Single<'a>,
    /// `MCP-Protocol-Version` (its value says the era: 2026-07-28 is stateless).
    pub protocol_version: Single<'a>,
    /// `Mcp-Method` (2026-07-28: must name the body's method).
    pub mcp_method: Single<'a>,
    /// `Mcp-Name` (2026-07-28: must name the tool, prompt or resource the body names).
    pub mcp_name: Single<'a>,
    /// Every field, for what is forwarded.
    pub fields: Fields<'a>,
    /// Bytes of the head as HTTP/1.1 would carry it: the request line and every field
    /// (`name: value` CRLF). What `server.max_header_bytes` bounds, on every front end.
    pub head_bytes: usize,
    /// Header fields sent.
    pub field_count: usize,
}

/// Most header fields a request may carry (431 past it), on every front end.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Headers the view picks out, by lowercase name.
const PICKED: [&str; 11] = [
    "host",
    "origin",
    "authorization",
    "content-type",
    "content-length",
    "mcp-session-id",
    "traceparent",
    "connection",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

impl<'a> RequestView<'a> {
    /// A view over `fields`; the picked-out headers are found in one pass.
    pub fn new(
        method: http::Method,
        path: Option<&'a str>,
        query: Option<&'a [u8]>,
        http2: bool,
        fields: Fields<'a>,
    ) -> Self {
        let mut picked = [Single::Absent; PICKED.len()];
        // "METHOD target HTTP/1.1\r\n" and the final CRLF.
        let mut head_bytes = method.as_str().len()
            + path.map_or(1, str::len)
            + query.map_or(0, |q| q.len() + 1)
            + 13;
        let mut field_count = 0;
        for (name, value) in fields.iter() {
            head_bytes += name.len() + value.len() + 4;
            field_count += 1;
            // Lengths first: most fields are not picked, and most lengths rule a name out.
            if let Some(i) = PICKED
                .iter()
                .position(|p| p.len() == name.len() && p.as_bytes().eq_ignore_ascii_case(name))
            {
                picked[i].push(value);
            }
        }
        let [host, origin, authorization, content_type, content_length, session_id, traceparent, connection, protocol_version, mcp_method, mcp_name] =
            picked;
        RequestView {
            method,
            path,
            query,
            http2,
            host,
            origin,
            authorization,
            content_type,
            content_length,
            session_id,
            traceparent,
            connection,
            protocol_version,
            mcp_method,
            mcp_name,
            fields,
            head_bytes,
            field_count,
        }
    }

    /// A view of a parsed `http` request head (Pingora's path; HTTP/2's `:authority` counts as
    /// `Host` when no `Host` field was sent).
    pub fn from_parts(
        method: &http::Method,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
        http2: bool,
    ) -> Self {
        let path = Some(uri.path()).filter(|p| p.starts_with('/'));
        let mut view = Self::new(
            method.clone(),
            path,
            uri.query().map(str::as_bytes),
            http2,
            Fields::Map(headers),
        );
        if let Some(a) = uri.authority() {
            // HTTP/2's `:authority` (or an absolute-form target) is part of the head too.
            view.head_bytes += a.as_str().len() + 8;
            if !view.host.present() {
                view.host = Single::One(a.as_str().as_bytes());
            }
        }
        view
    }

    /// True when a value of `Accept` names `text/event-stream`.
    pub fn accepts_sse(&self) -> bool {
        self.fields.all("accept").any(|v| {
            v.windows(17)
                .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
        })
    }

    /// The declared body length: `Ok(None)` when no `Content-Length` was sent, `Err` when it is
    /// malformed or sent twice.
    pub fn declared_length(&self) -> Result<Option<usize>, BodyError> {
        match self.content_length {
            Single::Absent => Ok(None),
            Single::One(v) => parse_content_length(v)
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or(BodyError::BadLength),
            Single::Many => Err(BodyError::BadLength),
        }
    }

    /// True when `Content-Type` is sent once and names `application/json`.
    pub fn is_json(&self) -> bool {
        self.content_type.one().is_some_and(is_json_media_type)
    }
}

/// A `Content-Length` value: digits only (no sign, no inner spaces, at most 19 digits). The one
/// parser of the gateway, for requests and upstream answers alike.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A `Content-Type` value naming `application/json` (parameters allowed), visible ASCII only.
pub fn is_json_media_type(value: &[u8]) -> bool {
    if !value
        .iter()
        .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
    {
        return false;
    }
    let mime = value.split(|b| *b == b';').next().unwrap_or_default();
    mime.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The body is (or declares to be) larger than the cap.
    #[error("request body exceeds {limit} bytes")]
    TooLarge {
        /// The configured cap.
        limit: usize,
    },
    /// A malformed or repeated `Content-Length`.
    #[error("malformed Content-Length header")]
    BadLength,
    /// The client went away or timed out while sending.
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// Where a request body comes from. A front end implements it over its connection; the
/// gateway reads the body at most once, and only after the head was accepted.
pub trait BodySource {
    /// Read the whole body, refusing anything over `limit` bytes (a declared length over it is
    /// refused before a byte is read).
    fn read(
        &mut self,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Bytes, BodyError>> + Send;
}

/// A body already in memory (tests, and front ends that read it ahead).
impl BodySource for Bytes {
    async fn read(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        if self.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        Ok(std::mem::take(self))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(parse_content_length(b"12"), Some(12));
        assert_eq!(parse_content_length(b" 0 "), Some(0));
        for bad in [
            &b"+2"[..],
            b"2 2",
            b"",
            b"-1",
            b"0x2",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type(b"application/json"));
        assert!(is_json_media_type(b"Application/JSON; charset=utf-8"));
        assert!(!is_json_media_type(b"text/plain"));
        assert!(!is_json_media_type(b"application/json; x=\xe9"));
    }

    #[test]
    fn picked_headers_and_duplicates() {
        let mut map = http::HeaderMap::new();
        map.append("host", "a".parse().unwrap());
        map.append("host", "b".parse().unwrap());
        map.append("accept", "application/json".parse().unwrap());
        map.append("accept", "text/event-stream".parse().unwrap());
        map.append("content-length", "3".parse().unwrap());
        let uri: http::Uri = "/mcp/x?q=1".parse().unwrap();
        let v = RequestView::from_parts(&http::Method::POST, &uri, &map, false);
        assert_eq!(v.host, Single::Many);
        assert!(v.accepts_sse());
        assert_eq!(v.declared_length(), Ok(Some(3)));
        assert_eq!(v.path, Some("/mcp/x"));
        assert_eq!(v.query, Some(&b"q=1"[..]));
        assert_eq!(
            format!("{:?}", v.fields),
            r#"["host", "host", "accept", "accept", "content-length"]"#
        );
    }
}
