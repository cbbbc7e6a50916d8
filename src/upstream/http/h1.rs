//! A lean HTTP/1.1 client for exchanges with Streamable HTTP upstreams, plain or TLS.
//!
//! Why not pingora-core's HTTP client: measured on this machine kind, it flushes the request
//! head and the body in two writes (two wake-ups of the upstream per request) and its pool parks
//! a watcher task per idle connection (a spawn, a timer and a notify per request). With the body
//! already in memory the exchange is simple: one vectored write of head and body, `httparse`
//! for the answer, content-length / chunked / until-close framing. Plain-text connections idle
//! in a lock-free pool ([`pool`]); TLS connections come from, and go back to, pingora-core's
//! transport connector (rustls, its pool).
//!
//! A request is written at most once. A pooled connection is checked before it is used (a
//! closed or readable idle connection is dropped: the upstream closed it, or sent something no
//! request asked for; the check asks the socket itself once the connection idled a while, and
//! the reactor's readiness before that), and a connection is not kept longer than the
//! upstream's own `Keep-Alive: timeout`; a failure after the request was written is final,
//! never retried: the upstream may have acted on it (a `tools/call` would run twice).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::request::parse_content_length as parse_length;
use crate::response::Head;

mod pool;
pub use pool::Pool;
use pool::POOL_IDLE;

/// A connection is given back this much before the upstream's announced keep-alive timeout.
const KEEPALIVE_MARGIN: Duration = Duration::from_secs(1);
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head.
const MAX_HEADERS: usize = 64;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Connecting took longer than the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The TLS handshake (or another step of pingora-core's connector) failed.
    #[error("{0}")]
    Tls(String),
    /// The upstream was silent for longer than the idle timeout.
    #[error("no data within the read timeout")]
    ReadTimeout,
    /// Writing took longer than the timeout.
    #[error("write timed out")]
    WriteTimeout,
    /// The connection failed or closed early.
    #[error("{0}")]
    Io(std::io::Error),
    /// The upstream closed the connection before a complete answer.
    #[error("connection closed before a complete response")]
    Closed,
    /// The upstream's answer is not valid HTTP/1.1.
    #[error("malformed response: {0}")]
    Protocol(String),
}

/// A connection to an upstream: plain TCP, or a TLS stream from pingora-core's connector.
pub enum Conn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(pingora_core::protocols::Stream),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// `Content-Length`: bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkState),
    /// Until the upstream closes (not reusable).
    Close,
    /// The body is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: data bytes left.
    Data(u64),
    /// After chunk data: expecting CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// One exchange on one connection: the request written, the response read incrementally.
pub struct Exchange {
    stream: Conn,
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    /// The upstream's `Keep-Alive: timeout`, less a margin: how long the connection may idle.
    keep_for: Duration,
    /// Longest silence between two reads (`None`: wait as long as it takes, for the GET
    /// notification stream; the client hanging up ends it).
    timeout: Option<Duration>,
    /// Set by the chunked decoder when it needs more bytes.
    needs_more: bool,
}

impl Exchange {
    /// Send `head` + `body` in one vectored write and read the response head (1xx skipped).
    /// Once the write started, any failure is final (see the module docs).
    pub async fn start(
        mut stream: Conn,
        head: &[u8],
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(Exchange, Head), H1Error> {
        let write = write_all_vectored(&mut stream, head, body);
        match timeout {
            Some(t) => pingora_timeout::fast_timeout::fast_timeout(t, write)
                .await
                .map_err(|_| H1Error::WriteTimeout)?,
            None => write.await,
        }
        .map_err(H1Error::Io)?;
        let mut ex = Exchange {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            framing: Framing::Done,
            keep_alive: true,
            keep_for: POOL_IDLE,
            timeout,
            needs_more: false,
        };
        loop {
            if let Some(resp) = ex.parse_head()? {
                return Ok((ex, resp));
            }
            if ex.buf.len() >= MAX_HEAD {
                return Err(H1Error::Protocol("response head too large".into()));
            }
            if ex.fill().await? == 0 {
                return Err(H1Error::Closed);
            }
        }
    }

    /// Read more bytes into the buffer, within the idle timeout. 0 means EOF.
    async fn fill(&mut self) -> Result<usize, H1Error> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let read = self.stream.read_buf(&mut self.buf);
        match self.timeout {
            Some(t) => pingora_timeout::fast_timeout::fast_timeout(t, read)
                .await
                .map_err(|_| H1Error::ReadTimeout)?,
            None => read.await,
        }
        .map_err(H1Error::Io)
    }

    /// Parse a complete response head from the buffer; `None` if more bytes are needed. The
    /// head keeps the upstream's bytes and the ranges of its fields; hop-by-hop fields are read
    /// for framing and left out.
    fn parse_head(&mut self) -> Result<Option<Head>, H1Error> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            let len = match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(H1Error::Protocol(e.to_string())),
            };
            let code = parsed.code.unwrap_or(0);
            if code == 101 {
                // Nothing the gateway sends asks to switch protocols (`Upgrade` is hop-by-hop).
                return Err(H1Error::Protocol(
                    "unexpected 101 Switching Protocols".into(),
                ));
            }
            if (100..200).contains(&code) {
                self.buf.advance(len);
                continue; // interim answer: the final one follows
            }
            let base = self.buf.as_ptr() as usize;
            let range = |s: &[u8]| {
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            };
            let mut fields = Vec::with_capacity(parsed.headers.len());
            let mut length = None;
            let mut chunked = false;
            // The upstream's `Connection` names more hop-by-hop fields than the usual ones.
            let mut named = false;
            for h in parsed.headers.iter() {
                let name = h.name.as_bytes();
                if name.eq_ignore_ascii_case(b"content-length") {
                    match (parse_length(h.value), length) {
                        (Some(v), None) => length = Some(v),
                        (Some(v), Some(prev)) if v == prev => {}
                        _ => return Err(H1Error::Protocol("bad Content-Length".into())),
                    }
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    chunked = h
                        .value
                        .rsplit(|b| *b == b',')
                        .next()
                        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                    if !chunked {
                        return Err(H1Error::Protocol("unsupported transfer coding".into()));
                    }
                } else if name.eq_ignore_ascii_case(b"connection") {
                    for t in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                        if t.eq_ignore_ascii_case(b"close") {
                            self.keep_alive = false;
                        } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") {
                            named = true;
                        }
                    }
                } else if name.eq_ignore_ascii_case(b"keep-alive") {
                    if let Some(secs) = keep_alive_timeout(h.value) {
                        self.keep_for = Duration::from_secs(secs).saturating_sub(KEEPALIVE_MARGIN);
                        self.keep_alive &= !self.keep_for.is_zero();
                    }
                }
                if !crate::response::hop_by_hop(name) {
                    fields.push((range(name), range(h.value)));
                }
            }
            if named {
                let buf = &self.buf;
                fields.retain(|(n, _)| {
                    !parsed
                        .headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                        .any(|h| crate::response::named_in(h.value, &buf[n.clone()]))
                });
            }
            if parsed.version == Some(0) {
                self.keep_alive = false;
            }
            let raw = self.buf.split_to(len).freeze();
            self.framing = if code == 204 || code == 304 {
                Framing::Empty
            } else if chunked {
                // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
                Framing::Chunked(ChunkState::Size)
            } else if let Some(n) = length {
                Framing::Length(n)
            } else {
                self.keep_alive = false;
                Framing::Close
            };
            let length = match self.framing {
                Framing::Length(n) => Some(n),
                _ => None,
            };
            if matches!(self.framing, Framing::Empty | Framing::Length(0)) {
                self.framing = Framing::Done;
            }
            return Ok(Some(Head::from_upstream(code, raw, fields, length)));
        }
    }

    /// The next piece of the response body as it arrives; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, H1Error> {
        loop {
            match self.framing {
                Framing::Done | Framing::Empty => return Ok(None),
                Framing::Length(left) => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        return Err(H1Error::Closed);
                    }
                    let take = (self.buf.len() as u64).min(left) as usize;
                    let rest = left - take as u64;
                    self.framing = if rest == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(rest)
                    };
                    return Ok(Some(self.buf.split_to(take).freeze()));
                }
                Framing::Close => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Chunked(state) => {
                    if let Some(out) = self.step_chunked(state)? {
                        return Ok(Some(out));
                    }
                    if matches!(self.framing, Framing::Done) {
                        return Ok(None);
                    }
                    if self.needs_more && self.fill().await? == 0 {
                        return Err(H1Error::Closed);
                    }
                }
            }
        }
    }

    /// True when body bytes are already buffered: the next [`Self::next_chunk`] returns them
    /// without waiting for the upstream (length- or close-delimited bodies; a chunked body's
    /// buffered bytes may be an incomplete chunk).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty() && matches!(self.framing, Framing::Length(_) | Framing::Close)
    }

    /// True when the exchange finished cleanly and the connection can serve another request.
    pub fn reusable(&self) -> bool {
        self.keep_alive && matches!(self.framing, Framing::Done) && self.buf.is_empty()
    }

    /// Give the connection back, and how long it may idle (only call when
    /// [`Self::reusable`]).
    pub fn into_conn(self) -> (Conn, Duration) {
        (self.stream, self.keep_for)
    }
}

/// The `timeout=N` parameter of a `Keep-Alive` response header, in seconds.
fn keep_alive_timeout(value: &[u8]) -> Option<u64> {
    value.split(|b| *b == b',').find_map(|param| {
        let (k, v) = std::str::from_utf8(param).ok()?.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| v.trim().parse().ok())?
    })
}

/// Chunked decoding, one state step at a time over the buffered bytes.
impl Exchange {
    fn step_chunked(&mut self, state: ChunkState) -> Result<Option<Bytes>, H1Error> {
        self.needs_more = false;
        match state {
            ChunkState::Size => {
                let Some(line_end) = find_crlf(&self.buf) else {
                    if self.buf.len() > 1024 {
                        return Err(H1Error::Protocol("chunk size line too long".into()));
                    }
                    self.needs_more = true;
                    return Ok(None);
                };
                let line = &self.buf[..line_end];
                let hex = line
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                let size = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| H1Error::Protocol("bad chunk size".into()))?;
                self.buf.advance(line_end + 2);
                self.framing = Framing::Chunked(if size == 0 {
                    ChunkState::Trailers
                } else {
                    ChunkState::Data(size)
                });
                Ok(None)
            }
            ChunkState::Data(left) => {
                if self.buf.is_empty() {
                    self.needs_more = true;
                    return Ok(None);
                }
                let take = (self.buf.len() as u64).min(left) as usize;
                let rest = left - take as u64;
                self.framing = Framing::Chunked(if rest == 0 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(rest)
                });
                Ok(Some(self.buf.split_to(take).freeze()))
            }
            ChunkState::DataEnd => {
                if self.buf.len() < 2 {
                    self.needs_more = true;
                    return Ok(None);
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(H1Error::Protocol("missing CRLF after chunk".into()));
                }
                self.buf.advance(2);
                self.framing = Framing::Chunked(ChunkState::Size);
                Ok(None)
            }
            ChunkState::Trailers => {
                let Some(line_end) = find_crlf(&self.buf) else {
                    self.needs_more = true;
                    return Ok(None);
                };
                self.buf.advance(line_end + 2);
                if line_end == 0 {
                    self.framing = Framing::Done;
                }
                Ok(None)
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

async fn write_all_vectored(stream: &mut Conn, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut bufs: &mut [IoSlice<'_>] = &mut slices;
    while !bufs.is_empty() {
        let n = stream.write_vectored(bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
