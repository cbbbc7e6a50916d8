//! What the gateway writes itself on an SSE answer (its own `message` events, the head of a
//! stream it frames, keep-alive comments) and how a relay ended: shared by the relay of one
//! upstream's answer and the aggregated endpoint's.

use std::time::Duration;

use bytes::Bytes;

use super::downstream::Downstream;
use crate::response::Head;

/// A comment is sent on an idle SSE answer this often, so intermediaries keep it open.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// How a relay ended, for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The answer was written whole: the connection may serve another request.
    Complete,
    /// The answer was cut short or the client went away: the connection is done.
    Broken,
}

/// One SSE `message` event.
pub fn event(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Send the head of an SSE answer the gateway frames itself.
pub async fn start_sse<D: Downstream>(d: &mut D) -> std::io::Result<()> {
    let mut head = Head::new(200);
    head.push("content-type", "text/event-stream");
    head.push("cache-control", "no-cache");
    head.push("x-accel-buffering", "no");
    d.head(head, false).await
}

/// Resolves when the client hangs up (bytes of a next request do not count).
pub async fn gone<D: Downstream>(d: &mut D) {
    if !d.hangup().await {
        std::future::pending::<()>().await;
    }
}
