//! One request on a front-door connection: read the head; hand what the front door does not
//! parse to Pingora; otherwise ask the gateway for a plan and carry it out here (write its
//! answer, or relay the upstream's), inside the request's trace span.

use std::time::Duration;

use pingora_core::server::ShutdownWatch;

use super::conn::{Body, Conn, Response, READ_TIMEOUT};
use super::head::{self, Parsed};
use super::Front;
use crate::gateway::{Observation, Plan, Trace};
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

/// Serve the next request of `conn`, or say who should.
pub async fn serve(front: &Front, conn: &mut Conn, stop: &mut ShutdownWatch) -> Outcome {
    let head = match read_head(conn, stop).await {
        Ok(Some(head)) => head,
        Ok(None) => return Outcome::Close,
        Err(()) => return Outcome::HandOver(None),
    };
    let snap = front.store.load();
    if !snap.config.server.fast_path || !head.servable() {
        return Outcome::HandOver(head.request_len());
    }
    front.count_hot();
    // The head leaves the buffer (the view reads it from there); the body follows it.
    let head_bytes = conn.buf.split_to(head.len).freeze();
    let view = head.view(&head_bytes);
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
            Plan::Forward(fwd) => {
                relay::forward(&mut resp, fwd, &view, trace.traceparent(), &mut obs).await
            }
            Plan::Fanout(f) => {
                fanout::run(&mut resp, f, &view, trace.traceparent(), &mut obs).await
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

/// Wait for a complete request head at the start of the buffer. `Ok(None)`: the connection
/// ended, idled out, or the server is stopping; `Err`: Pingora handles what was read.
async fn read_head(conn: &mut Conn, stop: &mut ShutdownWatch) -> Result<Option<head::Head>, ()> {
    loop {
        if !conn.buf.is_empty() {
            match head::parse(&conn.buf) {
                Parsed::Complete(head) => return Ok(Some(head)),
                Parsed::Other => return Err(()),
                Parsed::Partial => {}
            }
        }
        let idle = conn.buf.is_empty();
        if idle && *stop.borrow() {
            return Ok(None);
        }
        let read = tokio::select! {
            r = conn.fill(if idle { KEEPALIVE } else { READ_TIMEOUT }) => r,
            _ = stop.changed(), if idle => return Ok(None),
        };
        match read {
            Ok(n) if n > 0 => {}
            _ => return Ok(None),
        }
    }
}
