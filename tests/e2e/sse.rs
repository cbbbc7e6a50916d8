//! Incremental Server-Sent Events framing and the JSON-RPC messages an MCP response carries.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;

/// One SSE event; `data` lines are joined with `\n`.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events as the bytes arrive (chunks may cut anywhere). Each byte is
/// scanned for event boundaries once, so a multi-megabyte event costs linear time.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no complete boundary.
    scanned: usize,
}

impl Parser {
    /// Feeds one chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            // A boundary (at most 4 bytes) may straddle the previous end of the buffer.
            let from = self.scanned.saturating_sub(3);
            let Some((pos, sep)) = boundary(&self.buf[from..]) else {
                self.scanned = self.buf.len();
                return out;
            };
            let end = from + pos;
            let raw: Vec<u8> = self.buf.drain(..end + sep).collect();
            self.scanned = 0;
            if let Some(event) = parse_event(&raw[..end]) {
                out.push(event);
            }
        }
    }

    /// Bytes received after the last complete event.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Position and length of the first blank line ending an event.
fn boundary(buf: &[u8]) -> Option<(usize, usize)> {
    [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"]
        .iter()
        .filter_map(|sep| {
            buf.windows(sep.len())
                .position(|w| w == *sep)
                .map(|p| (p, sep.len()))
        })
        .min()
}

fn parse_event(raw: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(raw).expect("SSE event is not UTF-8");
    let mut event = Event::default();
    let mut data: Vec<&str> = Vec::new();
    let mut seen = false;
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        seen = true;
        match field {
            "data" => data.push(value),
            "event" => event.event = Some(value.to_owned()),
            "id" => event.id = Some(value.to_owned()),
            _ => {}
        }
    }
    event.data = data.join("\n");
    seen.then_some(event)
}

/// A JSON-RPC message, its SSE event id, and when its bytes arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub id: Option<String>,
    pub message: Value,
}

/// The JSON-RPC messages of an MCP response body, read incrementally: SSE
/// (`text/event-stream`; events without data, such as priming events, are skipped) or one JSON
/// body.
pub struct Messages {
    body: Option<futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    json: Option<reqwest::Response>,
    parser: Parser,
    ready: std::collections::VecDeque<Arrival>,
}

impl Messages {
    /// Takes a response whose content type is JSON or SSE.
    pub fn new(response: reqwest::Response) -> Self {
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut messages = Self {
            body: None,
            json: None,
            parser: Parser::default(),
            ready: Default::default(),
        };
        if content_type.starts_with("application/json") {
            messages.json = Some(response);
        } else {
            assert!(
                content_type.starts_with("text/event-stream"),
                "unexpected content-type {content_type:?}"
            );
            messages.body = Some(response.bytes_stream().boxed());
        }
        messages
    }

    /// The next message, or `None` at the end of the body.
    pub async fn next(&mut self) -> Option<Arrival> {
        if let Some(response) = self.json.take() {
            let body = response.bytes().await.expect("read JSON body");
            let message = serde_json::from_slice(&body).expect("JSON-RPC body");
            return Some(Arrival {
                at: Instant::now(),
                id: None,
                message,
            });
        }
        loop {
            if let Some(arrival) = self.ready.pop_front() {
                return Some(arrival);
            }
            let chunk = match self.body.as_mut()?.next().await {
                Some(chunk) => chunk.expect("read SSE chunk"),
                None => {
                    self.body = None;
                    assert!(
                        self.parser.pending().iter().all(u8::is_ascii_whitespace),
                        "SSE stream ended inside an event: {:?}",
                        String::from_utf8_lossy(self.parser.pending())
                    );
                    return None;
                }
            };
            let at = Instant::now();
            for event in self.parser.push(&chunk) {
                if event.data.trim().is_empty() {
                    continue;
                }
                let message = serde_json::from_str(&event.data)
                    .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", event.data));
                self.ready.push_back(Arrival {
                    at,
                    id: event.id,
                    message,
                });
            }
        }
    }
}

/// Reads a whole MCP POST response and returns its messages with their arrival times.
pub async fn read_messages(response: reqwest::Response) -> Vec<Arrival> {
    let mut messages = Messages::new(response);
    let mut out = Vec::new();
    while let Some(arrival) = messages.next().await {
        out.push(arrival);
    }
    out
}

#[test]
fn parser_handles_split_chunks_crlf_comments_and_multiline_data() {
    let mut p = Parser::default();
    assert!(p.push(b": keep-alive\n\nid: 1\nda").is_empty());
    assert_eq!(p.pending(), b"id: 1\nda");
    let events = p.push(b"ta: {\"a\":\r\ndata: 1}\r\n\r\nevent: message\ndata:x\n\n");
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["{\"a\":\n1}", "x"]);
    assert_eq!(events[0].id.as_deref(), Some("1"));
    assert_eq!(events[1].event.as_deref(), Some("message"));
    assert!(p.pending().is_empty());
}

#[test]
fn parser_gives_the_same_events_byte_by_byte() {
    let stream: &[u8] =
        b"id: 1\r\ndata: a\r\n\r\n: c\n\nevent: message\ndata: b\ndata: c\n\ndata: d\r\r";
    let whole: Vec<String> = Parser::default()
        .push(stream)
        .into_iter()
        .map(|e| e.data)
        .collect();
    let mut p = Parser::default();
    let bytewise: Vec<String> = stream
        .iter()
        .flat_map(|b| p.push(std::slice::from_ref(b)))
        .map(|e| e.data)
        .collect();
    assert_eq!(whole, ["a", "b\nc", "d"]);
    assert_eq!(bytewise, whole);
}
