//! One request on a front-door connection: read the head; hand what the front door does not
//! parse to Pingora; otherwise ask the gateway for a plan and carry it out here (write its
//! answer, or relay the upstream's), inside the request's trace span.

use std::time::Duration;

use pingora_core::server::ShutdownWatch;

use super::conn::{Body, Conn, Response};
use super::head::{self, Parsed};
use super::Front;
use crate::gateway::{Observation, Op, Plan, Trace, Work};
use crate::http::{fanout, relay, write};

/// How long a connection may idle between requests (Pingora's default for HTTP/1.1).
pub const KEEPALIVE: Duration = Duration::from_secs(60);

/// What to do with the connection after one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Served; read the next request.
    Again,
    /// Close the connection.
    Close,
    /// Pingora serves the request at the start of the buffer: its first `n` bytes when its
    /// length is known (any bytes after it are a next request, kept for after Pingora), else
    /// all of it.
    HandOver(Option<usize>),
}

/// Serve the next request of `conn`, or say who should. `accepted`: when the connection was
/// accepted, for its first request (the head timeout runs from then).
pub async fn serve(
    front: &Front,
    conn: &mut Conn,
    stop: &mut ShutdownWatch,
    accepted: Option<tokio::time::Instant>,
) -> Outcome {
    let limits = front.store.peek(|s| HeadLimits {
        bytes: s.config.server.max_header_bytes,
        time: s.config.server.header_timeout,
    });
    let head = match read_head(conn, stop, limits, accepted).await {
        Ok(head) => head,
        Err(Unread::Closed) => return Outcome::Close,
        Err(Unread::Other) => return Outcome::HandOver(None),
        Err(Unread::Refuse(status)) => {
            refuse(conn, status, limits).await;
            return Outcome::Close;
        }
    };
    // The request's own future (decide, relay, fan-out: most of the size) is on the heap only
    // while a request is served, so a connection waiting for its next head holds little.
    Box::pin(serve_head(front, conn, stop, head)).await
}

/// Serve the request whose head was just read.
async fn serve_head(
    front: &Front,
    conn: &mut Conn,
    stop: &mut ShutdownWatch,
    head: head::Head,
) -> Outcome {
    let snap = front.store.load();
    if !snap.config.server.fast_path || !head.servable() {
        return Outcome::HandOver(head.request_len());
    }
    front.count_hot();
    conn.note_request(head.len + head.body_len);
    // The head leaves the buffer (the view reads it from there); the body follows it.
    let head_bytes = conn.buf.split_to(head.len).freeze();
    let mut view = head.view(&head_bytes);
    // The bytes as they came (the view's own count rebuilds them from the fields).
    view.head_bytes = head.len;
    let trace = Trace::continue_or_start(view.traceparent.one());
    let close = head.close || *stop.borrow();
    let request = async {
        let mut obs = Observation::start(&view.method);
        let mut body = Body::new(conn, head.body_len);
        let plan = front
            .gateway
            .decide(&snap, &view, &mut body, &mut obs)
            .await;
        let unread = if body.read { 0 } else { head.body_len };
        let mut resp = Response::new(conn, close || unread > 0, unread);
        let ended = match plan {
            Plan::Answer(reply) => {
                write::reply(&mut resp, reply, unread > 0, &mut obs).await;
                relay::Ended::Complete
            }
            // Each in a future of its own: this one stays small, and a stream (which may idle
            // for hours) holds a future sized for its relay loop, not for an upstream call.
            Plan::Forward(fwd) if fwd.op == Op::Events => {
                Box::pin(relay::stream(
                    &mut resp,
                    fwd,
                    &view,
                    trace.traceparent(),
                    &mut obs,
                ))
                .await
            }
            Plan::Forward(fwd) => {
                Box::pin(relay::forward(
                    &mut resp,
                    fwd,
                    &view,
                    trace.traceparent(),
                    &mut obs,
                ))
                .await
            }
            Plan::Fanout(f) if matches!(f.work, Work::Events) => {
                Box::pin(fanout::events(
                    &mut resp,
                    &f,
                    &view,
                    trace.traceparent(),
                    &mut obs,
                ))
                .await
            }
            Plan::Fanout(f) => {
                Box::pin(fanout::run(
                    &mut resp,
                    f,
                    &view,
                    trace.traceparent(),
                    &mut obs,
                ))
                .await
            }
        };
        let next = match (ended, resp.close) {
            (relay::Ended::Complete, false) => Outcome::Again,
            _ => Outcome::Close,
        };
        drop(obs);
        conn.shrink();
        next
    };
    if crate::telemetry::otel::enabled() {
        use tracing::Instrument;
        let span = trace.span(view.method.as_str(), view.path.unwrap_or("*"));
        return crate::telemetry::request::scope(trace.id(), request.instrument(span)).await;
    }
    crate::telemetry::request::scope(trace.id(), request).await
}

/// What bounds the reading of a request head (`server.max_header_bytes`, `header_timeout`).
#[derive(Clone, Copy)]
struct HeadLimits {
    bytes: usize,
    time: Duration,
}

/// Most bytes read and dropped after refusing a head.
const REFUSED_LINGER_BYTES: usize = 1 << 20;

/// Why no head was read.
enum Unread {
    /// The connection ended, idled out between requests, sent nothing in time, or the server
    /// is stopping: close without a word.
    Closed,
    /// Pingora handles what was read.
    Other,
    /// Answer this status (431: the head outgrew the limit; 408: it did not arrive in time)
    /// and close.
    Refuse(u16),
}

/// Wait for a complete request head at the start of the buffer, within `limits`: at most
/// `limits.bytes` (a head still incomplete past it is refused 431 before it is all read; a
/// complete one is judged by `decide`, like a head Pingora read) and within `limits.time` from
/// its first byte, or from the accept for a connection's first request (slow clients cannot hold a
/// connection with a trickle of bytes). Between requests a connection may idle for
/// [`KEEPALIVE`].
async fn read_head(
    conn: &mut Conn,
    stop: &mut ShutdownWatch,
    limits: HeadLimits,
    accepted: Option<tokio::time::Instant>,
) -> Result<head::Head, Unread> {
    let mut deadline = match accepted {
        Some(at) => Some(at + limits.time),
        None => (!conn.buf.is_empty()).then(|| tokio::time::Instant::now() + limits.time),
    };
    loop {
        if !conn.buf.is_empty() {
            match head::parse(&conn.buf) {
                Parsed::Complete(head) if head.len > limits.bytes => {
                    return Err(Unread::Refuse(431))
                }
                Parsed::Complete(head) => return Ok(head),
                Parsed::TooManyFields => return Err(Unread::Refuse(431)),
                // A head the front door does not parse goes to Pingora only once its end was
                // read, within the same size and time limits (Pingora's own are laxer).
                Parsed::Other => match head::head_end(&conn.buf) {
                    Some(end) if end > limits.bytes => return Err(Unread::Refuse(431)),
                    Some(_) => return Err(Unread::Other),
                    None if conn.buf.len() > limits.bytes => return Err(Unread::Refuse(431)),
                    None => {}
                },
                Parsed::Partial if conn.buf.len() > limits.bytes => {
                    return Err(Unread::Refuse(431))
                }
                Parsed::Partial => {}
            }
        }
        let idle = conn.buf.is_empty();
        if idle && *stop.borrow() {
            return Err(Unread::Closed);
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
            None => KEEPALIVE,
        };
        let read = tokio::select! {
            r = conn.fill(wait) => r,
            _ = stop.changed(), if idle => return Err(Unread::Closed),
        };
        match read {
            Ok(n) if n > 0 => {
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + limits.time);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !conn.buf.is_empty() => {
                return Err(Unread::Refuse(408))
            }
            _ => return Err(Unread::Closed),
        }
    }
}

/// Answer a head refused before it could be read whole (431, 408), then close.
async fn refuse(conn: &mut Conn, status: u16, limits: HeadLimits) {
    let reply = match status {
        431 => crate::gateway::head_too_large(limits.bytes),
        _ => crate::mcp::reply::Reply::error(
            408,
            "request_timeout",
            &format!(
                "the request head did not arrive within {:?} (server.header_timeout)",
                limits.time
            ),
        ),
    };
    // What the client still sends is read and dropped for a while after the answer (bounded),
    // so that closing with unread bytes does not reset the connection before it reads it.
    conn.buf.clear();
    let mut obs = Observation::start(&http::Method::GET);
    let mut resp = Response::new(conn, true, REFUSED_LINGER_BYTES);
    write::reply(&mut resp, reply, true, &mut obs).await;
}

/// The size of a request's own future (`serve_head`'s), for the test that keeps it small.
#[cfg(test)]
pub(super) fn request_future_size(
    front: &Front,
    conn: &mut Conn,
    stop: &mut ShutdownWatch,
) -> usize {
    let Parsed::Complete(head) = head::parse(b"GET /mcp/a HTTP/1.1\r\nhost: x\r\n\r\n") else {
        return usize::MAX;
    };
    std::mem::size_of_val(&serve_head(front, conn, stop, head))
}
