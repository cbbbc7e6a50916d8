//! HTTP/1.1 request heads as the front door reads them (parsed once with `httparse`, fields
//! kept as ranges into the bytes read), and the response heads and chunk framing it writes.
//!
//! The front door serves only the plain shapes it parses here: HTTP/1.1, an origin-form
//! target, a body delimited by one valid `Content-Length` (or none). A head with anything else
//! (`Transfer-Encoding`, `Expect`, `Upgrade`, HTTP/1.0, a malformed or repeated
//! `Content-Length`, too many fields, a head that does not parse) goes to Pingora, which owns
//! those edges of HTTP. Nothing here decides whether a request is acceptable: that is
//! `gateway::decide`'s, on either path.

use std::ops::Range;

use pingora_core::protocols::http::date::get_cached_date;

use crate::request::{parse_content_length, Fields, RequestView};
use crate::response::Head as ResponseHead;

/// Header slots of a parse: one more than a request may carry, so that a head with too many
/// fields is told apart ([`Parsed::TooManyFields`]).
const MAX_HEADERS: usize = crate::request::MAX_HEADER_FIELDS + 1;
/// Largest request head the front door buffers; a larger one goes to Pingora.
pub const MAX_HEAD: usize = 64 * 1024;

/// A parsed request head. Ranges index the bytes the head was parsed from (it starts at 0).
pub struct Head {
    /// Bytes of the head, CRLF CRLF included.
    pub len: usize,
    /// The method.
    pub method: http::Method,
    /// HTTP/1.1 (HTTP/1.0 goes to Pingora).
    pub http11: bool,
    /// The path of an origin-form target (`None` for any other form: Pingora's).
    pub path: Option<Range<usize>>,
    /// The query of the target, without the `?`.
    pub query: Option<Range<usize>>,
    /// Every header field: name, value.
    pub fields: Vec<(Range<usize>, Range<usize>)>,
    /// The body length: one valid `Content-Length`, else 0 (no body).
    pub body_len: usize,
    /// A framing only Pingora handles: `Transfer-Encoding`, `Expect`, `Upgrade`, a repeated or
    /// malformed `Content-Length`.
    pub unusual: bool,
    /// `Connection: close`.
    pub close: bool,
}

impl Head {
    /// True when the front door can serve this request itself.
    pub fn servable(&self) -> bool {
        self.http11 && !self.unusual && self.path.is_some()
    }

    /// The bytes of the whole request (head and body) when its framing is plain. `None` when
    /// only Pingora can tell.
    pub fn request_len(&self) -> Option<usize> {
        (!self.unusual).then(|| self.len + self.body_len)
    }

    /// The view of this head over `buf`, the bytes it was parsed from.
    pub fn view<'b>(&'b self, buf: &'b [u8]) -> RequestView<'b> {
        let path = self
            .path
            .clone()
            .and_then(|r| std::str::from_utf8(&buf[r]).ok());
        let query = self.query.clone().map(|r| &buf[r]);
        RequestView::new(
            self.method.clone(),
            path,
            query,
            false,
            Fields::Wire {
                buf,
                fields: &self.fields,
            },
        )
    }
}

/// What the buffer holds.
pub enum Parsed {
    /// A complete request head.
    Complete(Head),
    /// Not a complete head yet.
    Partial,
    /// Not something the front door parses (Pingora answers it once its end is read).
    Other,
    /// More header fields than a request may carry (431).
    TooManyFields,
}

/// Where the request head at the start of `buf` ends (after its empty line; CRLF or bare LF
/// line ends, as httparse and Pingora accept), if it does.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let at = from + i + 1;
        match buf.get(at..) {
            Some([b'\n', ..]) => return Some(at + 1),
            Some([b'\r', b'\n', ..]) => return Some(at + 2),
            Some([]) | Some([b'\r']) | None => return None,
            Some(_) => from = at,
        }
    }
    None
}

/// Parse the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooManyFields,
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
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    // A fragment is never sent by a client; leave such targets to Pingora.
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(range(q.as_bytes()))),
        None => (target, None),
    };
    let mut head = Head {
        len,
        method,
        http11: version == 1,
        path: (path.starts_with('/') && !target.contains('#')).then(|| range(path.as_bytes())),
        query,
        fields: Vec::with_capacity(req.headers.len()),
        body_len: 0,
        unusual: false,
        close: false,
    };
    let mut lengths = 0;
    for h in req.headers.iter() {
        let (name, value) = (h.name, h.value);
        head.fields.push((range(name.as_bytes()), range(value)));
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            match parse_content_length(value).and_then(|n| usize::try_from(n).ok()) {
                Some(n) if lengths == 1 => head.body_len = n,
                _ => head.unusual = true,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            head.unusual = true;
        } else if name.eq_ignore_ascii_case("connection") {
            head.close |= value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
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

/// Encode the response head: the status line, `head`'s fields, `Date` (unless it has one), and
/// the framing this side chooses (its length, else chunked; `close` adds `Connection: close`).
pub fn response_head(head: &ResponseHead, close: bool, out: &mut Vec<u8>) -> Framing {
    let status = head.status();
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(code.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in head.fields() {
        dated |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(get_cached_date().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(n) = head.length() {
        let mut digits = [0u8; 20];
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(decimal(n, &mut digits));
        out.extend_from_slice(b"\r\n");
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

/// `n` in decimal, written into `out` (no allocation).
fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
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
    use crate::request::Single;

    fn head(raw: &str) -> Head {
        match parse(raw.as_bytes()) {
            Parsed::Complete(h) => h,
            Parsed::Partial => panic!("partial"),
            Parsed::Other => panic!("other"),
            Parsed::TooManyFields => panic!("too many fields"),
        }
    }

    #[test]
    fn a_plain_post_is_parsed_into_a_view() {
        let raw = "POST /mcp/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 12\r\nAuthorization: Bearer t\r\n\r\n{}";
        let h = head(raw);
        assert!(h.servable() && !h.close);
        assert_eq!(h.method, http::Method::POST);
        assert_eq!(h.body_len, 12);
        assert_eq!(h.len, raw.len() - 2);
        let v = h.view(raw.as_bytes());
        assert_eq!(v.path, Some("/mcp/a"));
        assert_eq!(v.query, Some(&b"x=1"[..]));
        assert_eq!(v.authorization, Single::One(b"Bearer t"));
        assert!(v.is_json());
        let names: Vec<_> = v.fields.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                &b"Host"[..],
                b"Content-Type",
                b"Content-Length",
                b"Authorization"
            ]
        );
    }

    #[test]
    fn framing_only_pingora_handles_is_flagged() {
        for extra in [
            "Transfer-Encoding: chunked\r\n",
            "Content-Length: 3\r\n",
            "Expect: 100-continue\r\n",
            "Upgrade: h2c\r\n",
        ] {
            let raw = format!("POST /mcp/a HTTP/1.1\r\nContent-Length: 2\r\n{extra}\r\n");
            assert!(head(&raw).unusual, "{extra}");
        }
        for bad in ["+2", "2 2", "", "-1", "0x2", "99999999999999999999"] {
            let raw = format!("POST /mcp/a HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(head(&raw).unusual, "{bad}");
        }
        // Duplicates of other fields are the gateway's to judge, on either path.
        let h = head("POST /mcp/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert!(h.servable());
        assert!(!head("POST /mcp/a#frag HTTP/1.1\r\n\r\n").servable());
        assert!(!head("POST /mcp/a HTTP/1.0\r\nContent-Length: 2\r\n\r\n").servable());
        let h = head("POST http://x/mcp/a HTTP/1.1\r\n\r\n");
        assert!(h.path.is_none() && !h.servable());
        assert!(head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").close);
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
        assert!(matches!(parse(many.as_bytes()), Parsed::TooManyFields));
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse(&huge), Parsed::Other));
    }

    #[test]
    fn the_end_of_a_head_is_found_with_either_line_end() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: h\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: h\r\n\r"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: h\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn response_heads_choose_their_framing() {
        let mut resp = ResponseHead::new(200);
        resp.push("content-type", "text/event-stream");
        let mut out = Vec::new();
        assert!(response_head(&resp, false, &mut out) == Framing::Chunked);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(
            text.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{text}"
        );

        resp.set_length(Some(5));
        let mut out = Vec::new();
        assert!(response_head(&resp, true, &mut out) == Framing::Length);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");

        let resp = ResponseHead::new(204);
        assert!(response_head(&resp, false, &mut Vec::new()) == Framing::Empty);
        let mut line = [0u8; 18];
        assert_eq!(chunk_size_line(255, &mut line), b"ff\r\n");
        assert_eq!(chunk_size_line(0, &mut line), b"0\r\n");
        assert_eq!(chunk_size_line(16, &mut line), b"10\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut line),
            b"ffffffffffffffff\r\n"
        );
        let mut d = [0u8; 20];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(1234567, &mut d), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut d), b"18446744073709551615");
    }
}
