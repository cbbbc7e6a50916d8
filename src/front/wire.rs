//! HTTP/1.1 on the downstream connection, for the hot path only: the connection and its read
//! buffer, the request head (parsed once with `httparse`, fields kept as ranges into the
//! buffer), and the response head and chunk framing the hot path writes.
//!
//! Anything unusual about a request (a second `Content-Length`, any `Transfer-Encoding`,
//! `Expect`, `Upgrade`, HTTP/1.0, too many headers, a head that does not parse) is only recorded
//! here; the caller hands such requests to Pingora, which owns every edge case of HTTP.

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::date::get_cached_date;
use pingora_core::protocols::Stream;
use pingora_http::ResponseHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most header fields the hot path parses; a request with more goes to Pingora.
const MAX_HEADERS: usize = 64;
/// Largest request head the hot path buffers; a larger one goes to Pingora.
pub const MAX_HEAD: usize = 64 * 1024;
/// Answers up to this size are written with one system call.
const GATHER: usize = 16 * 1024;
/// Read buffer capacity a connection keeps between requests.
const KEEP_BUFFER: usize = 32 * 1024;

/// One downstream connection and the bytes read from it that no request has consumed yet.
pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Read more bytes into the buffer within `timeout`. `Ok(0)` is end of stream; a timeout
    /// is an error.
    pub async fn fill(&mut self, timeout: Duration) -> std::io::Result<usize> {
        pingora_timeout::fast_timeout::fast_timeout(timeout, self.fill_now())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))?
    }

    /// Read more bytes into the buffer (no timeout). Cancel-safe.
    pub async fn fill_now(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8 * 1024);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Write `parts` and flush them. Small answers (the common case) are gathered into one
    /// buffer first: the stream's own write buffer is one segment wide (or absent), and would
    /// otherwise send a head, a chunk and its framing as separate packets.
    pub async fn send(&mut self, parts: &[&[u8]]) -> std::io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if parts.len() > 1 && total <= GATHER {
            let mut one = Vec::with_capacity(total);
            for p in parts {
                one.extend_from_slice(p);
            }
            self.stream.write_all(&one).await?;
        } else {
            for p in parts {
                self.stream.write_all(p).await?;
            }
        }
        self.stream.flush().await
    }

    /// Keep the buffer small between requests: after a large head or body it would otherwise
    /// hold that allocation for the life of the connection.
    pub fn shrink(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = BytesMut::from(&self.buf[..]);
        }
    }
}

/// A parsed request head. Ranges index the connection buffer the head was parsed from (the
/// head starts at offset 0).
pub struct Head {
    /// Bytes of the head, CRLF CRLF included.
    pub len: usize,
    pub post: bool,
    /// HTTP/1.1 (HTTP/1.0 goes to Pingora).
    pub http11: bool,
    /// The path of an origin-form target (`None` for any other form: Pingora's).
    pub path: Option<Range<usize>>,
    /// The query of the target, without the `?`.
    pub query: Option<Range<usize>>,
    /// Every header field: name, value.
    pub fields: Vec<(Range<usize>, Range<usize>)>,
    /// The one valid `Content-Length`, if exactly one was sent.
    pub content_length: Option<usize>,
    /// Something only Pingora handles: `Transfer-Encoding`, `Expect`, `Upgrade`, a duplicate or
    /// malformed `Content-Length`.
    pub unusual: bool,
    /// `Content-Type: application/json` (parameters allowed).
    pub json: bool,
    /// `Connection: close`.
    pub close: bool,
    pub connection: Option<Range<usize>>,
    pub origin: Option<Range<usize>>,
    pub authorization: Option<Range<usize>>,
}

impl Head {
    /// The path of the target (`None` when it is not in origin form).
    pub fn path<'b>(&self, buf: &'b [u8]) -> Option<&'b str> {
        std::str::from_utf8(&buf[self.path.clone()?]).ok()
    }

    /// The query of the target, if any.
    pub fn query<'b>(&self, buf: &'b [u8]) -> Option<&'b str> {
        std::str::from_utf8(&buf[self.query.clone()?]).ok()
    }

    /// The bytes of the whole request (head and body) when its framing is plain: a valid
    /// `Content-Length` or none (no body), nothing unusual. `None` when only Pingora can tell.
    pub fn request_len(&self) -> Option<usize> {
        (!self.unusual).then(|| self.len + self.content_length.unwrap_or(0))
    }

    /// The header fields as (`name`, `value`) slices of `buf`.
    pub fn headers<'b>(&'b self, buf: &'b [u8]) -> impl Iterator<Item = (&'b str, &'b [u8])> {
        self.fields.iter().map(move |(n, v)| {
            // Names were checked as tokens by httparse: ASCII.
            let name = std::str::from_utf8(&buf[n.clone()]).unwrap_or_default();
            (name, &buf[v.clone()])
        })
    }
}

/// What the buffer holds.
pub enum Parsed {
    /// A complete request head.
    Complete(Head),
    /// Not a complete head yet.
    Partial,
    /// Not something the hot path parses (Pingora answers it).
    Other,
}

/// Parse the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::Other,
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(range(q.as_bytes()))),
        None => (target, None),
    };
    let mut head = Head {
        len,
        post: method == "POST",
        http11: version == 1,
        path: path.starts_with('/').then(|| range(path.as_bytes())),
        query,
        fields: Vec::with_capacity(req.headers.len()),
        content_length: None,
        unusual: false,
        json: false,
        close: false,
        connection: None,
        origin: None,
        authorization: None,
    };
    // Pingora refuses a duplicate `Host` and reads the first `Content-Type`; such requests
    // and targets with a fragment are left to it.
    head.unusual |= target.contains('#');
    let (mut lengths, mut content_types, mut hosts) = (0, 0, 0);
    for h in req.headers.iter() {
        let (name, value) = (h.name, h.value);
        head.fields.push((range(name.as_bytes()), range(value)));
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            head.content_length =
                crate::upstream::h1::parse_length(value).and_then(|n| usize::try_from(n).ok());
            if head.content_length.is_none() || lengths > 1 {
                head.unusual = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            head.unusual = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            head.unusual |= content_types > 0;
            content_types += 1;
            // Pingora reads it as visible ASCII (else 415).
            head.unusual |= !value
                .iter()
                .all(|b| (0x20..0x7f).contains(b) || *b == b'\t');
            head.json = crate::proxy::is_json_media_type(value);
        } else if name.eq_ignore_ascii_case("host") {
            // Pingora refuses an authority with user info (400).
            head.unusual |= hosts > 0 || value.contains(&b'@');
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            if head.connection.is_some() {
                head.unusual = true;
            }
            head.connection = Some(range(value));
        } else if name.eq_ignore_ascii_case("origin") {
            head.unusual |= head.origin.is_some();
            head.origin = Some(range(value));
        } else if name.eq_ignore_ascii_case("authorization") {
            head.unusual |= head.authorization.is_some();
            head.authorization = Some(range(value));
        }
    }
    Parsed::Complete(head)
}

/// How the response body goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The upstream's `Content-Length` is kept: bytes go out as they come.
    Length,
    /// `Transfer-Encoding: chunked` (SSE, or an upstream answer without a length).
    Chunked,
    /// No body (204, 304).
    Empty,
}

/// Encode the response head: the status line, `resp`'s fields, and the framing this side
/// chooses (`close` adds `Connection: close`).
pub fn response_head(resp: &ResponseHeader, close: bool, out: &mut Vec<u8>) -> Framing {
    let status = resp.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !resp.headers.contains_key(http::header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(get_cached_date().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = if status.as_u16() == 204 || status.as_u16() == 304 {
        Framing::Empty
    } else if resp.headers.contains_key(http::header::CONTENT_LENGTH) {
        Framing::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The head and body of a response the gateway writes itself (`extra`: more header fields).
pub fn simple_response(
    status: u16,
    content_type: &str,
    body: &Bytes,
    extra: &[(&str, &str)],
    close: bool,
) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = Vec::with_capacity(128 + body.len());
    let _ = std::io::Write::write_fmt(
        &mut out,
        format_args!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\ndate: {}\r\n",
            body.len(),
            get_cached_date().to_str().unwrap_or_default(),
        ),
    );
    for (name, value) in extra {
        let _ = std::io::Write::write_fmt(&mut out, format_args!("{name}: {value}\r\n"));
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The size line of one chunk, written into `out` (no allocation).
pub fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS as usize / 4) - (len.leading_zeros() as usize / 4);
    let digits = digits.max(1);
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX[(len >> shift) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    &out[..digits + 2]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        match parse(raw.as_bytes()) {
            Parsed::Complete(h) => h,
            Parsed::Partial => panic!("partial"),
            Parsed::Other => panic!("other"),
        }
    }

    #[test]
    fn a_plain_post_is_parsed_into_ranges() {
        let raw = "POST /mcp/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 12\r\nAuthorization: Bearer t\r\n\r\n{}";
        let h = head(raw);
        assert!(h.post && h.http11 && h.json && !h.unusual && !h.close);
        assert_eq!(h.content_length, Some(12));
        assert_eq!(h.len, raw.len() - 2);
        assert_eq!(h.path(raw.as_bytes()), Some("/mcp/a"));
        assert_eq!(h.query(raw.as_bytes()), Some("x=1"));
        let auth = h.authorization.clone().map(|r| &raw.as_bytes()[r]);
        assert_eq!(auth, Some(&b"Bearer t"[..]));
        let names: Vec<_> = h.headers(raw.as_bytes()).map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["Host", "Content-Type", "Content-Length", "Authorization"]
        );
    }

    #[test]
    fn anything_unusual_is_flagged_for_pingora() {
        for extra in [
            "Transfer-Encoding: chunked\r\n",
            "Content-Length: 3\r\n",
            "Expect: 100-continue\r\n",
            "Upgrade: h2c\r\n",
            "Origin: a\r\nOrigin: b\r\n",
            "Host: a\r\nHost: b\r\n",
            "Content-Type: application/json\r\nContent-Type: text/plain\r\n",
            "Host: user@example.com\r\n",
            "Content-Type: application/json; x=\u{e9}\r\n",
        ] {
            let raw = format!("POST /mcp/a HTTP/1.1\r\nContent-Length: 2\r\n{extra}\r\n");
            assert!(head(&raw).unusual, "{extra}");
        }
        for bad in ["+2", "2 2", "", "-1", "0x2", "99999999999999999999"] {
            let raw = format!("POST /mcp/a HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            let h = head(&raw);
            assert!(h.unusual && h.content_length.is_none(), "{bad}");
        }
        assert!(head("POST /mcp/a#frag HTTP/1.1\r\n\r\n").unusual);
        let h = head("POST /mcp/a HTTP/1.0\r\nContent-Length: 2\r\n\r\n");
        assert!(!h.http11);
        let h = head("POST http://x/mcp/a HTTP/1.1\r\n\r\n");
        assert_eq!(h.path(b"POST http://x/mcp/a HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn partial_heads_wait_and_broken_ones_go_to_pingora() {
        assert!(matches!(
            parse(b"POST /mcp/a HTTP/1.1\r\nHo"),
            Parsed::Partial
        ));
        assert!(matches!(parse(b""), Parsed::Partial));
        assert!(matches!(
            parse(b"POST /mcp/a HTTP/9\r\n\r\n"),
            Parsed::Other
        ));
        assert!(matches!(parse(b"PO ST\0 /\r\n\r\n"), Parsed::Other));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("x-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(parse(many.as_bytes()), Parsed::Other));
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse(&huge), Parsed::Other));
    }

    #[test]
    fn response_heads_choose_their_framing() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/event-stream")
            .unwrap();
        let mut out = Vec::new();
        assert!(response_head(&resp, false, &mut out) == Framing::Chunked);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(
            text.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{text}"
        );

        resp.insert_header("content-length", "5").unwrap();
        let mut out = Vec::new();
        assert!(response_head(&resp, true, &mut out) == Framing::Length);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");

        let resp = ResponseHeader::build(204, None).unwrap();
        assert!(response_head(&resp, false, &mut Vec::new()) == Framing::Empty);
        let mut line = [0u8; 18];
        assert_eq!(chunk_size_line(255, &mut line), b"ff\r\n");
        assert_eq!(chunk_size_line(0, &mut line), b"0\r\n");
        assert_eq!(chunk_size_line(16, &mut line), b"10\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut line),
            b"ffffffffffffffff\r\n"
        );
    }
}
