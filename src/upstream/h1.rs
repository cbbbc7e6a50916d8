//! A lean HTTP/1.1 client for the pre-read POST exchange to plain-text (`http://`) upstreams.
//!
//! Why not pingora-core's connector here: measured on this machine kind, its client flushes the
//! request header and the body in two writes (two wake-ups of the upstream per request) and its
//! pool parks a watcher task per idle connection (a spawn, a timer and a notify per request).
//! With the body already in memory the exchange is simple: one vectored write of head and body,
//! `httparse` for the answer, content-length / chunked / until-close framing, and a lock-free
//! pool of idle connections. A stale pooled connection shows up as a failed first read and is
//! retried once by the caller (safe: nothing was answered). `https://` upstreams keep using
//! Pingora's connector (TLS, ALPN).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_queue::ArrayQueue;
use pingora_http::ResponseHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections kept per upstream.
const POOL_SIZE: usize = 256;
/// An idle connection older than this is not reused.
const POOL_IDLE: Duration = Duration::from_secs(55);
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

impl H1Error {
    /// True when a pooled connection was probably closed by the upstream while idle: the
    /// request can be retried on a new connection.
    pub fn is_stale_connection(&self) -> bool {
        matches!(self, H1Error::Closed | H1Error::Io(_))
    }
}

/// Idle connections to one upstream address.
pub struct Pool {
    idle: ArrayQueue<(TcpStream, Instant)>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle: ArrayQueue::new(POOL_SIZE),
        }
    }
}

impl Pool {
    /// A pooled connection if one is fresh enough, else a new one. `true` when reused.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(TcpStream, bool), H1Error> {
        while let Some((stream, since)) = self.idle.pop() {
            if since.elapsed() < POOL_IDLE {
                return Ok((stream, true));
            }
        }
        Ok((Self::connect(addr, connect_timeout).await?, false))
    }

    /// A new connection.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<TcpStream, H1Error> {
        let stream =
            pingora_timeout::fast_timeout::fast_timeout(connect_timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| H1Error::ConnectTimeout)?
                .map_err(H1Error::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Return a connection whose exchange completed cleanly.
    pub fn checkin(&self, stream: TcpStream) {
        let _ = self.idle.push((stream, Instant::now()));
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
    stream: TcpStream,
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    timeout: Duration,
    /// Set by the chunked decoder when it needs more bytes.
    needs_more: bool,
}

impl Exchange {
    /// Send `head` + `body` in one vectored write and read the response head (1xx skipped).
    pub async fn start(
        mut stream: TcpStream,
        head: &[u8],
        body: &[u8],
        timeout: Duration,
    ) -> Result<(Exchange, ResponseHeader), H1Error> {
        pingora_timeout::fast_timeout::fast_timeout(
            timeout,
            write_all_vectored(&mut stream, head, body),
        )
        .await
        .map_err(|_| H1Error::WriteTimeout)?
        .map_err(H1Error::Io)?;
        let mut ex = Exchange {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            framing: Framing::Done,
            keep_alive: true,
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
        pingora_timeout::fast_timeout::fast_timeout(
            self.timeout,
            self.stream.read_buf(&mut self.buf),
        )
        .await
        .map_err(|_| H1Error::ReadTimeout)?
        .map_err(H1Error::Io)
    }

    /// Parse a complete response head from the buffer; `None` if more bytes are needed.
    fn parse_head(&mut self) -> Result<Option<ResponseHeader>, H1Error> {
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
            let mut resp = ResponseHeader::build(code, Some(parsed.headers.len()))
                .map_err(|e| H1Error::Protocol(e.to_string()))?;
            let mut length = None;
            let mut chunked = false;
            for h in parsed.headers.iter() {
                let name = h.name;
                if name.eq_ignore_ascii_case("content-length") {
                    match (parse_length(h.value), length) {
                        (Some(v), None) => length = Some(v),
                        (Some(v), Some(prev)) if v == prev => {}
                        _ => return Err(H1Error::Protocol("bad Content-Length".into())),
                    }
                    continue; // written back once, canonical, below
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = h
                        .value
                        .rsplit(|b| *b == b',')
                        .next()
                        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                    if !chunked {
                        return Err(H1Error::Protocol("unsupported transfer coding".into()));
                    }
                } else if name.eq_ignore_ascii_case("connection")
                    && h.value
                        .split(|b| *b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
                {
                    self.keep_alive = false;
                }
                resp.append_header(name.to_owned(), h.value)
                    .map_err(|e| H1Error::Protocol(e.to_string()))?;
            }
            if parsed.version == Some(0) {
                self.keep_alive = false;
            }
            self.buf.advance(len);
            self.framing = if code == 204 || code == 304 {
                Framing::Empty
            } else if chunked {
                // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
                resp.remove_header("content-length");
                Framing::Chunked(ChunkState::Size)
            } else if let Some(n) = length {
                resp.insert_header(http::header::CONTENT_LENGTH, n)
                    .map_err(|e| H1Error::Protocol(e.to_string()))?;
                Framing::Length(n)
            } else {
                self.keep_alive = false;
                Framing::Close
            };
            if matches!(self.framing, Framing::Empty | Framing::Length(0)) {
                self.framing = Framing::Done;
            }
            return Ok(Some(resp));
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

    /// Give the connection back (only call when [`Self::reusable`]).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// A `Content-Length` value: digits only (no sign, no inner spaces). Shared with the front
/// door's request parsing.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
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

async fn write_all_vectored(
    stream: &mut TcpStream,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
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
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serve `answer` in pieces of `step` bytes to the first request, return what was received.
    async fn exchange(answer: &'static [u8], step: usize) -> (ResponseHeader, Vec<u8>, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            for piece in answer.chunks(step) {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            // Keep the connection open (a reusable answer must not need EOF).
            let _ = s.read(&mut req).await;
        });
        let stream = Pool::connect(addr, Duration::from_secs(5)).await.unwrap();
        let head = b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n";
        let (mut ex, resp) = Exchange::start(stream, head, b"{}", Duration::from_secs(5))
            .await
            .unwrap();
        let mut body = Vec::new();
        while let Some(chunk) = ex.next_chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        (resp, body, ex.reusable())
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\n";

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers_in_one_piece_and_byte_by_byte() {
        for step in [CHUNKED.len(), 1, 3] {
            let (resp, body, reusable) = exchange(CHUNKED, step).await;
            assert_eq!(resp.status.as_u16(), 200);
            assert_eq!(body, b"hello 0123456789", "step {step}");
            assert!(reusable, "step {step}");
        }
    }

    #[tokio::test]
    async fn interim_100_is_skipped_and_content_length_is_honoured() {
        let answer: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n\r\nabcd";
        let (resp, body, reusable) = exchange(answer, 5).await;
        assert_eq!(resp.status.as_u16(), 202);
        assert_eq!(body, b"abcd");
        assert!(reusable);
    }

    #[tokio::test]
    async fn connection_close_is_not_reused_and_204_has_no_body() {
        let answer: &[u8] = b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n";
        let (resp, body, reusable) = exchange(answer, 64).await;
        assert_eq!(resp.status.as_u16(), 204);
        assert!(body.is_empty());
        assert!(!reusable);
    }

    /// The error of an exchange whose answer is `answer`.
    async fn refused(answer: &'static [u8]) -> H1Error {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            s.write_all(answer).await.unwrap();
            let _ = s.read(&mut req).await;
        });
        let stream = Pool::connect(addr, Duration::from_secs(5)).await.unwrap();
        Exchange::start(
            stream,
            b"POST / HTTP/1.1\r\n\r\n",
            b"",
            Duration::from_secs(5),
        )
        .await
        .err()
        .unwrap()
    }

    #[tokio::test]
    async fn conflicting_odd_lengths_and_protocol_switches_are_refused() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2 2\r\n\r\nab",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        ] {
            let err = refused(answer).await;
            assert!(matches!(err, H1Error::Protocol(_)), "{err}");
        }
    }

    #[tokio::test]
    async fn equal_duplicate_lengths_are_written_back_once() {
        let answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 02\r\ncontent-length: 2\r\n\r\nab";
        let (resp, body, _) = exchange(answer, 64).await;
        let lengths: Vec<_> = resp.headers.get_all("content-length").iter().collect();
        assert_eq!(lengths, ["2"]);
        assert_eq!(body, b"ab");
    }
}
