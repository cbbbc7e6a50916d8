//! Incremental SSE framing: bytes in as they arrive, whole events out, without buffering the
//! stream. An event may be split across reads, several may share one read, lines may end in
//! `\n`, `\r\n` or `\r`, and `data:` may span several lines (joined with `\n`, per the HTML
//! standard). Events are returned as their exact original bytes, so events that need no rewrite
//! pass through byte for byte.

use bytes::{Bytes, BytesMut};

/// Largest single event held while waiting for its end.
pub const MAX_EVENT: usize = 16 * 1024 * 1024;

/// Splits a byte stream into SSE events.
#[derive(Default)]
pub struct Framer {
    buf: BytesMut,
    /// Where scanning for the end of the current event resumes.
    scanned: usize,
}

/// Why framing stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past [`MAX_EVENT`].
    #[error("an SSE event exceeds {MAX_EVENT} bytes")]
    TooLarge,
}

impl Framer {
    /// Feed bytes; returns every event completed by them (with its terminating blank line).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.event_end() {
            out.push(self.buf.split_to(end).freeze());
            self.scanned = 0;
        }
        if self.buf.len() > MAX_EVENT {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }

    /// Bytes of an unfinished event (sent as they are when the stream ends).
    pub fn rest(&mut self) -> Bytes {
        self.scanned = 0;
        self.buf.split().freeze()
    }

    /// The end offset (exclusive) of the first complete event: after two consecutive line ends.
    fn event_end(&mut self) -> Option<usize> {
        let b = &self.buf;
        let mut i = self.scanned;
        // `at_line_start`: the previous byte ended a line (or the event is empty so far).
        let mut at_line_start = i == 0 || matches!(b.get(i.wrapping_sub(1)), Some(b'\n' | b'\r'));
        while i < b.len() {
            let c = b[i];
            if c == b'\r' || c == b'\n' {
                // A CR may be followed by LF: wait for the next byte to decide.
                let len = if c == b'\r' {
                    match b.get(i + 1) {
                        Some(b'\n') => 2,
                        Some(_) => 1,
                        None => {
                            self.scanned = i;
                            return None;
                        }
                    }
                } else {
                    1
                };
                if at_line_start && i > 0 {
                    return Some(i + len);
                }
                if at_line_start && i == 0 {
                    // A stray blank line before any field: emit it as its own (empty) event.
                    return Some(len);
                }
                at_line_start = true;
                i += len;
            } else {
                at_line_start = false;
                i += 1;
            }
        }
        self.scanned = i;
        None
    }
}

/// The `data` of an event (lines joined with `\n`), if it has any; `None` for comments,
/// `retry:`-only or otherwise data-less events.
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in lines(event) {
        let value = if line == b"data" {
            &b""[..]
        } else if let Some(v) = line.strip_prefix(b"data:") {
            v.strip_prefix(b" ").unwrap_or(v)
        } else {
            continue;
        };
        match &mut data {
            Some(d) => {
                d.push(b'\n');
                d.extend_from_slice(value);
            }
            None => data = Some(value.to_vec()),
        }
    }
    data
}

/// The `event` field (the event's type) of an event, if it has one; the last one wins, per the
/// HTML standard. `None` (or an empty name) means the default type, `message`.
pub fn event_type(event: &[u8]) -> Option<&[u8]> {
    let mut name = None;
    for line in lines(event) {
        if line == b"event" {
            name = Some(&b""[..]);
        } else if let Some(v) = line.strip_prefix(b"event:") {
            name = Some(v.strip_prefix(b" ").unwrap_or(v));
        }
    }
    name
}

/// Rebuild `event` with `data` replaced: every other field line kept in order, one `data:`
/// line per line of the new data, LF line ends.
pub fn with_data(event: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut wrote = false;
    for line in lines(event) {
        if line == b"data" || line.starts_with(b"data:") {
            if !wrote {
                for d in data.split(|b| *b == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(d);
                    out.push(b'\n');
                }
                wrote = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The non-empty lines of one event, without their line ends.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .flat_map(|l| l.split(|b| *b == b'\r'))
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame_all(stream: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for chunk in stream.chunks(step) {
            out.extend(f.push(chunk).unwrap().into_iter().map(|b| b.to_vec()));
        }
        // A final CR may still be the first half of a CRLF: that event completes at EOF.
        let rest = f.rest();
        if !rest.is_empty() {
            out.push(rest.to_vec());
        }
        out
    }

    const STREAM: &[u8] = b"id: 1\nevent: message\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: line1\r\ndata: line2\r\n\r\nretry: 10\rdata: x\r\r";

    #[test]
    fn events_survive_any_split() {
        let whole = frame_all(STREAM, STREAM.len());
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0], b"id: 1\nevent: message\ndata: {\"a\":1}\n\n");
        for step in 1..STREAM.len() {
            assert_eq!(frame_all(STREAM, step), whole, "step {step}");
        }
        // Concatenated, the events are the stream: nothing lost, nothing changed.
        assert_eq!(whole.concat(), STREAM);
    }

    #[test]
    fn data_lines_are_joined() {
        let events = frame_all(STREAM, 7);
        assert_eq!(event_data(&events[0]).unwrap(), b"{\"a\":1}");
        assert_eq!(event_data(&events[1]), None);
        assert_eq!(event_data(&events[2]).unwrap(), b"line1\nline2");
        assert_eq!(event_data(&events[3]).unwrap(), b"x");
    }

    #[test]
    fn data_is_replaced_keeping_other_fields() {
        let ev = b"id: 7\r\nevent: message\r\ndata: old\r\ndata: more\r\n\r\n";
        assert_eq!(
            with_data(ev, b"{\"new\":true}"),
            b"id: 7\nevent: message\ndata: {\"new\":true}\n\n"
        );
    }

    #[test]
    fn an_unterminated_event_is_kept_for_the_end() {
        let mut f = Framer::default();
        assert!(f.push(b"data: par").unwrap().is_empty());
        assert!(f.push(b"tial\n").unwrap().is_empty());
        assert_eq!(&f.rest()[..], b"data: partial\n");
    }
}
