//! One client connection of the front door: its bytes not yet consumed by a request, the
//! request body read from them ([`Body`], a [`BodySource`]), and the answer written to it
//! ([`Response`], a [`Downstream`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::{chunk_size_line, response_head, Framing};
use crate::http::downstream::Downstream;
use crate::request::{BodyError, BodySource};
use crate::response::Head;

/// Answers up to this size are written with one system call.
const GATHER: usize = 16 * 1024;
/// The read buffer a connection starts with when bytes are awaited: small, since a connection
/// that sends nothing (or idles between requests) should cost little.
const FIRST_READ: usize = 1024;
/// How much the read buffer grows by once a request needs more.
const GROW: usize = 8 * 1024;
/// How long a request body may take to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes read and dropped after an early answer before the connection is closed anyway.
const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Longest time spent doing so.
const LINGER_MAX_TIME: Duration = Duration::from_secs(5);

/// One downstream connection and the bytes read from it that no request has consumed yet.
pub struct Conn {
    /// The client's stream (TCP or TLS).
    pub stream: Stream,
    /// Bytes read and not yet consumed.
    pub buf: BytesMut,
    /// The read buffer the next request starts with: the size of this connection's last
    /// request (rounded up, at most [`GROW`]), so a client whose heads carry a bearer token
    /// reads each in one go and small ones cost little.
    pub first_read: usize,
}

impl Conn {
    /// A connection with nothing read yet.
    pub fn new(stream: Stream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
            first_read: FIRST_READ,
        }
    }

    /// Remember the size of the request just read (head and body), for the next one's
    /// buffer.
    pub fn note_request(&mut self, bytes: usize) {
        self.first_read = bytes
            .saturating_add(256)
            .next_power_of_two()
            .clamp(FIRST_READ, GROW);
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
        // Grown only when full: a body's exact reservation (`Body::read`) is filled as it is.
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(if self.buf.is_empty() {
                self.first_read
            } else {
                GROW
            });
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

    /// Between requests: give the read buffer back when it holds nothing (an idle keep-alive
    /// connection then costs no buffer), or shrink it to what it holds (bytes of a pipelined
    /// next request).
    pub fn shrink(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        } else if self.buf.capacity() > GROW {
            self.buf = BytesMut::from(&self.buf[..]);
        }
    }
}

/// The body of the request at the start of a connection's buffer: `len` bytes (its one
/// `Content-Length`), read on demand.
pub struct Body<'c> {
    conn: &'c mut Conn,
    len: usize,
    /// True once read: its bytes left the buffer.
    pub read: bool,
}

impl<'c> Body<'c> {
    /// The `len`-byte body that follows the (already consumed) head on `conn`.
    pub fn new(conn: &'c mut Conn, len: usize) -> Self {
        Body {
            conn,
            len,
            read: false,
        }
    }
}

impl BodySource for Body<'_> {
    async fn read(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        if self.len > limit {
            return Err(BodyError::TooLarge { limit });
        }
        let conn = &mut *self.conn;
        conn.buf.reserve(self.len.saturating_sub(conn.buf.len()));
        while conn.buf.len() < self.len {
            match conn.fill(READ_TIMEOUT).await {
                Ok(n) if n > 0 => {}
                Ok(_) => return Err(BodyError::Read("the client closed the connection".into())),
                Err(e) => return Err(BodyError::Read(e.to_string())),
            }
        }
        self.read = true;
        Ok(conn.buf.split_to(self.len).freeze())
    }
}

/// The answer to one request, written on the connection.
pub struct Response<'c> {
    conn: &'c mut Conn,
    /// A head waiting to go out with the first body bytes.
    pending: Option<Vec<u8>>,
    framing: Framing,
    /// `Connection: close` goes with the head; the connection closes after.
    pub close: bool,
    /// Unread body bytes of the request, to drop before closing (see [`Downstream::linger`]).
    unread: usize,
}

impl<'c> Response<'c> {
    /// An answer on `conn`; `close` when the connection closes after it; `unread`: bytes of
    /// the request's body still to come.
    pub fn new(conn: &'c mut Conn, close: bool, unread: usize) -> Self {
        Response {
            conn,
            pending: None,
            framing: Framing::Length,
            close,
            unread,
        }
    }
}

impl Downstream for Response<'_> {
    async fn head(&mut self, head: Head, body_follows: bool) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(256);
        self.framing = response_head(&head, self.close, &mut out);
        if body_follows {
            self.pending = Some(out);
            Ok(())
        } else {
            self.conn.send(&[&out]).await
        }
    }

    async fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        let head = self.pending.take().unwrap_or_default();
        if self.framing == Framing::Chunked {
            let mut size = [0u8; 18];
            let line = chunk_size_line(data.len(), &mut size);
            self.conn.send(&[&head, line, &data, b"\r\n"]).await
        } else {
            self.conn.send(&[&head, &data]).await
        }
    }

    async fn end(&mut self) -> std::io::Result<()> {
        let head = self.pending.take().unwrap_or_default();
        let end: &[u8] = if self.framing == Framing::Chunked {
            b"0\r\n\r\n"
        } else {
            b""
        };
        if head.is_empty() && end.is_empty() {
            return Ok(());
        }
        self.conn.send(&[&head, end]).await
    }

    async fn hangup(&mut self) -> bool {
        match self.conn.fill_now().await {
            // Bytes of a next (pipelined) request stay buffered for it.
            Ok(n) if n > 0 => false,
            _ => true,
        }
    }

    async fn abort(&mut self) {
        self.close = true;
        let _ = pingora_timeout::fast_timeout::fast_timeout(
            Duration::from_secs(1),
            self.conn.stream.shutdown(),
        )
        .await;
    }

    fn close_after(&mut self) {
        self.close = true;
    }

    async fn linger(&mut self) {
        let budget = self.unread.min(LINGER_MAX_BYTES);
        if self.unread > LINGER_MAX_BYTES {
            return;
        }
        let conn = &mut *self.conn;
        let drain = async {
            let mut dropped = conn.buf.len();
            conn.buf.clear();
            while dropped < budget {
                match conn.fill_now().await {
                    Ok(n) if n > 0 => {
                        dropped += n;
                        conn.buf.clear();
                    }
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_MAX_TIME, drain).await;
    }

    fn http2(&self) -> bool {
        false
    }
}
