//! A raw HTTP/1.1 client: bytes exactly as sent, responses read one at a time (keep-alive,
//! pipelining, framing and refusals seen as they are).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Gateway;

/// One response read off a raw connection.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// A raw HTTP/1.1 client connection that reads responses one at a time.
pub struct Raw {
    pub conn: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(gw: &Gateway) -> Raw {
        Raw {
            conn: TcpStream::connect(gw.addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).await.unwrap();
    }

    /// Read more bytes; false at end of stream.
    pub async fn more(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.conn.read(&mut chunk))
            .await
            .expect("the gateway answers within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response (interim 1xx answers skipped), its body de-chunked.
    pub async fn answer(&mut self) -> Answer {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            let parsed = resp.parse(&self.buf).unwrap();
            let httparse::Status::Complete(head_len) = parsed else {
                assert!(self.more().await, "closed before a response head");
                continue;
            };
            let status = resp.code.unwrap();
            let head = String::from_utf8_lossy(&self.buf[..head_len]).to_lowercase();
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            let chunked = head.contains("transfer-encoding: chunked");
            self.buf.drain(..head_len);
            if (100..200).contains(&status) {
                continue;
            }
            let body = if let Some(len) = length {
                while self.buf.len() < len {
                    assert!(self.more().await, "closed inside a body");
                }
                self.buf.drain(..len).collect()
            } else if chunked {
                self.dechunk().await
            } else {
                while self.more().await {}
                std::mem::take(&mut self.buf)
            };
            return Answer { status, head, body };
        }
    }

    async fn dechunk(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                assert!(self.more().await, "closed inside a chunk size");
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
            while self.buf.len() < line_end + 2 + size + 2 {
                assert!(self.more().await, "closed inside a chunk");
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return body;
            }
        }
    }

    /// True when the gateway closes the connection within 10 s (without sending anything).
    pub async fn closes(&mut self) -> bool {
        !self.more().await && self.buf.is_empty()
    }
}

pub fn post(path: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
