//! The request's identity in traces and logs: a W3C trace context (`traceparent`) taken from the
//! client when it sends a valid one, else created; the gateway's own span id is what the
//! upstream sees as its parent. Every log line of the request carries the trace id as
//! `request_id` (the request runs in [`crate::telemetry::request::scope`] with [`Trace::id`]);
//! no token or secret is ever a field of it.

use std::cell::Cell;

use crate::telemetry::request::RequestId;

/// The trace context of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    /// The caller's span (the `parent-id` of a valid incoming `traceparent`).
    parent: Option<[u8; 8]>,
    flags: u8,
    /// `00-<trace>-<span>-<flags>`: what goes upstream (ASCII).
    header: [u8; 55],
}

impl Trace {
    /// The client's trace continued (a valid `traceparent`), or a new one.
    pub fn continue_or_start(traceparent: Option<&[u8]>) -> Trace {
        let (trace_id, parent, flags) = match traceparent.and_then(parse) {
            Some((t, p, f)) => (t, Some(p), f),
            None => (random_trace_id(), None, 0x01),
        };
        let span_id = random_span_id();
        let mut header = [b'-'; 55];
        header[..2].copy_from_slice(b"00");
        hex(&mut header[3..35], &trace_id);
        hex(&mut header[36..52], &span_id);
        hex(&mut header[53..55], &[flags]);
        Trace {
            trace_id,
            span_id,
            parent,
            flags,
            header,
        }
    }

    /// The `traceparent` to send upstream (the gateway's span as the parent).
    pub fn traceparent(&self) -> &str {
        // Hex digits and dashes only: always ASCII.
        std::str::from_utf8(&self.header).unwrap_or_default()
    }

    /// The trace id, hex: the request id of log lines.
    pub fn request_id(&self) -> &str {
        std::str::from_utf8(&self.header[3..35]).unwrap_or_default()
    }

    /// The request's id for its log lines (the trace id).
    pub fn id(&self) -> RequestId {
        RequestId::new(&self.header[3..35]).unwrap_or(RequestId::ZERO)
    }

    /// The request's span for trace export, with this identity (only made when
    /// [`crate::telemetry::otel::enabled`]).
    pub fn span(&self, method: &str, path: &str) -> tracing::Span {
        let parent = self.parent.map(|p| (p, self.flags));
        crate::telemetry::otel::request_span(self.trace_id, self.span_id, parent, method, path)
    }
}

/// Trace id and flags of a valid version-00 `traceparent` (W3C Trace Context §3.2): lowercase
/// hex, ids not all zero.
fn parse(value: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let mut parts = v.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() && version == "00" {
        return None;
    }
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || parent.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if ![version, trace, parent, flags].iter().all(|s| lower_hex(s)) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, slot) in id.iter_mut().enumerate() {
        *slot = u8::from_str_radix(trace.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    if id == [0; 16] || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let mut parent_id = [0u8; 8];
    for (i, slot) in parent_id.iter_mut().enumerate() {
        *slot = u8::from_str_radix(parent.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((id, parent_id, u8::from_str_radix(flags, 16).ok()?))
}

/// `bytes` in lowercase hex into `out` (twice as long).
fn hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

thread_local! {
    /// A per-thread xorshift state, seeded once from the OS: trace ids need to be unique and
    /// unpredictable enough, not secret, and a system call per request would cost more.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b) | 1
}

fn next_u64() -> u64 {
    RNG.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn random_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_le_bytes());
    id[8..].copy_from_slice(&next_u64().to_le_bytes());
    id
}

fn random_span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_le_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_client_trace_is_continued_with_a_new_span() {
        let t = Trace::continue_or_start(Some(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(t.request_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let tp = t.traceparent();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "{tp}");
        assert!(tp.ends_with("-01"));
        assert_eq!(tp.len(), 55);
    }

    #[test]
    fn invalid_traces_start_a_new_one() {
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"garbage",
            b"\xff",
        ] {
            let t = Trace::continue_or_start(Some(bad));
            assert_ne!(t.request_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(t.traceparent().len(), 55);
        }
        let a = Trace::continue_or_start(None);
        let b = Trace::continue_or_start(None);
        assert_ne!(a.request_id(), b.request_id());
        assert!(a.traceparent().ends_with("-01"));
    }
}
