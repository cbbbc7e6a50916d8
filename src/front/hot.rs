//! The hot path: `POST /mcp/{server}` to a plain-text Streamable HTTP upstream, served on the
//! connection itself. It decides with the same functions as the Pingora path (route, origin,
//! token, classification, policy) and serves a request only when the answer is the upstream's
//! own (or a 401 for a refused token); every other request (an error the gateway answers, a
//! denial, a list answer to filter, a shared-session upstream, TLS upstreams, anything unusual
//! in the head) goes to Pingora whole, with the bytes already read.

use std::time::{Duration, Instant};

use pingora_core::server::ShutdownWatch;

use super::wire::{self, Conn, Framing, Head, Parsed};
use super::Front;
use crate::mcp::filter::ListKind;
use crate::mcp::jsonrpc;
use crate::proxy::exchange::{self, Failure};
use crate::proxy::route::{check_origin_value, Route};
use crate::proxy::{authn, respond, verdict, Verdict};
use crate::telemetry::metrics::{metrics, RouteLabel, ToolOutcome};
use crate::upstream::h1;

/// How long a connection may idle between requests (Pingora's default for HTTP/1.1).
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// How long a request may take to arrive once it started.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `method_index` of POST in the request metric.
const POST: usize = 1;
/// Largest body the hot path reads. A request it reads and then hands over reaches Pingora as a
/// pipelined prefix, which Pingora parses as if it were a request head and refuses past 1 MiB
/// (`MAX_HEADER_SIZE`); so larger bodies go to Pingora unread (they are rare, and their cost is
/// the body's, not the per-request overhead this path saves).
const MAX_HOT_BODY: usize = 256 * 1024;

/// What to do with the connection after one request.
#[derive(Clone, Copy)]
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

/// Serve the next request of `conn` if it is a hot-path request.
pub async fn serve(front: &Front, conn: &mut Conn, stop: &mut ShutdownWatch) -> Outcome {
    let head = match read_head(conn, stop).await {
        Ok(Some(head)) => head,
        Ok(None) => return Outcome::Close,
        Err(()) => return Outcome::HandOver(None),
    };
    let started = Instant::now();
    let hand_over = Outcome::HandOver(head.request_len());
    if !head.post || !head.http11 || head.unusual || !head.json {
        return hand_over;
    }
    let Some(len) = head.content_length else {
        return hand_over;
    };
    let live = front.snapshot.load();
    if len > MAX_HOT_BODY || len > live.config.server.max_body_bytes {
        return hand_over;
    }
    let Some(path) = head.path(&conn.buf) else {
        return hand_over;
    };
    let Route::Server(name) = Route::parse(path) else {
        return hand_over;
    };
    // Shared-session upstreams (stdio, legacy SSE, an SSE fallback) and TLS upstreams take the
    // Pingora path.
    let Some(route) = live.routes.get(&name) else {
        return hand_over;
    };
    let (false, Some(addr), None) = (route.target.tls, route.addr, live.routes.mux(&name)) else {
        return hand_over;
    };
    if let Some(origin) = &head.origin {
        if check_origin_value(&conn.buf[origin.clone()], &live.config).is_some() {
            return hand_over;
        }
    }
    let scopes = match &front.authn {
        None => None,
        Some(a) => {
            let value = head.authorization.clone().map(|r| &conn.buf[r]);
            match authn::check(a, &live, authn::bearer(value)).await {
                Ok(scopes) => Some(scopes),
                // Answered here, so that a refused token is checked once (a forged one costs
                // a signature check); the body is left unread, so the connection closes.
                Err(error) => {
                    let (challenge, body) = authn::unauthorized(&live, &name, error);
                    let extra = [("www-authenticate", challenge.as_str())];
                    let out = wire::simple_response(401, "application/json", &body, &extra, true);
                    let _ = conn.send(&[&out]).await;
                    front.count_hot();
                    metrics().request(
                        RouteLabel::McpServer,
                        POST,
                        401,
                        started.elapsed().as_secs_f64(),
                    );
                    return Outcome::Close;
                }
            }
        }
    };
    let total = head.len + len;
    conn.buf.reserve(total.saturating_sub(conn.buf.len()));
    while conn.buf.len() < total {
        match conn.fill(READ_TIMEOUT).await {
            Ok(n) if n > 0 => {}
            _ => return Outcome::Close,
        }
    }
    let envelope = match jsonrpc::classify(&conn.buf[head.len..total]) {
        Ok(e) => e,
        Err(_) => return hand_over, // Pingora answers the parse error.
    };
    if let Some(scopes) = &scopes {
        if !matches!(verdict(&live, &name, scopes, &envelope), Verdict::Allowed) {
            return hand_over; // Pingora answers (and counts) the denial.
        }
        let list = match (envelope.batch, envelope.messages.first()) {
            (false, Some(m)) => m.method().and_then(ListKind::for_method).is_some(),
            _ => false,
        };
        if list {
            return hand_over; // The answer is filtered per caller there.
        }
    }

    // Committed: this request is served here.
    front.count_hot();
    if scopes.is_some() {
        metrics().jwt("valid");
    }
    let request = conn.buf.split_to(total).freeze();
    conn.shrink();
    let close = head.close || *stop.borrow();
    let mut upstream_head = Vec::with_capacity(512);
    let connection = head.connection.clone().map(|r| &request[r]);
    crate::proxy::upstream::encode_head(
        "POST",
        head.query(&request),
        head.headers(&request),
        connection,
        route,
        len,
        &mut upstream_head,
    );
    let body = request.slice(head.len..);
    let asked = Instant::now();
    let opened = exchange::open_plain(route, addr, &upstream_head, &body).await;
    let (status, next, completed) = match opened {
        Ok((ex, resp)) => {
            route.latency.observe(asked.elapsed().as_secs_f64());
            relay(conn, route, ex, resp, close).await
        }
        Err(Failure::BeforeResponse {
            status,
            kind,
            detail,
        }) => {
            metrics().upstream_error(&name, kind);
            tracing::warn!(server = %name, kind, detail = %detail, "upstream request failed");
            let id = envelope.error_id();
            let body = respond::upstream_failure_body(status, &id, &name, &detail);
            let out = wire::simple_response(status, "application/json", &body, &[], close);
            match conn.send(&[&out]).await {
                Ok(()) if !close => (status, Outcome::Again, false),
                _ => (status, Outcome::Close, false),
            }
        }
        Err(_) => (502, Outcome::Close, false),
    };
    if let Some(tool) = envelope.single_tool_call() {
        // As on the Pingora path: `ok` is a 200 answer relayed to its end.
        let outcome = if status == 200 && completed {
            ToolOutcome::Ok
        } else {
            ToolOutcome::Failed
        };
        metrics().tool_call(&name, tool, outcome);
    }
    metrics().request(
        RouteLabel::McpServer,
        POST,
        status,
        started.elapsed().as_secs_f64(),
    );
    next
}

/// Wait for a complete request head at the start of the buffer. `Ok(None)`: the connection
/// ended, idled out, or the server is stopping; `Err`: Pingora handles what was read.
async fn read_head(conn: &mut Conn, stop: &mut ShutdownWatch) -> Result<Option<Head>, ()> {
    loop {
        if !conn.buf.is_empty() {
            match wire::parse(&conn.buf) {
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

/// Relay the upstream's answer: its head (framed for this connection), then its body chunk by
/// chunk as it arrives (SSE is never buffered), while the client is watched: a client that goes
/// away drops the upstream connection, which cancels the upstream request. Returns the status
/// sent (499: the client went away before it), what to do with the connection, and whether the
/// answer was relayed to its end.
async fn relay(
    conn: &mut Conn,
    route: &crate::proxy::upstream::Route,
    mut ex: h1::Exchange,
    mut resp: pingora_http::ResponseHeader,
    close: bool,
) -> (u16, Outcome, bool) {
    let status = resp.status.as_u16();
    let sse = exchange::prepare_response(&mut resp);
    let _open = sse.then(SseOpen::new);
    let mut head = Vec::with_capacity(256);
    let framing = wire::response_head(&resp, close, &mut head);
    // A body already buffered (a JSON answer in the same read as its head) goes out with the
    // head in one write; otherwise the head goes now (an SSE stream may be silent for long).
    let mut unsent_head = None;
    if ex.has_buffered() {
        unsent_head = Some(head);
    } else if conn.send(&[&head]).await.is_err() {
        return (499, Outcome::Close, false);
    }
    let mut watch_client = true;
    let mut size = [0u8; 18];
    loop {
        let next = tokio::select! {
            biased;
            r = ex.next_chunk() => r,
            read = conn.fill_now(), if watch_client => {
                match read {
                    // Bytes of a next (pipelined) request stay buffered for it.
                    Ok(n) if n > 0 => {
                        watch_client = false;
                        continue;
                    }
                    _ => {
                        tracing::debug!("client went away; cancelling the upstream request");
                        let sent = if unsent_head.is_some() { 499 } else { status };
                        return (sent, Outcome::Close, false);
                    }
                }
            }
        };
        let head = unsent_head.take().unwrap_or_default();
        let written = match next {
            Ok(Some(chunk)) if chunk.is_empty() => {
                unsent_head = Some(head).filter(|h| !h.is_empty());
                continue;
            }
            Ok(Some(chunk)) if framing == Framing::Chunked => {
                let line = wire::chunk_size_line(chunk.len(), &mut size);
                conn.send(&[&head, line, &chunk, b"\r\n"]).await
            }
            Ok(Some(chunk)) => conn.send(&[&head, &chunk]).await,
            Ok(None) => {
                let end: &[u8] = if framing == Framing::Chunked {
                    b"0\r\n\r\n"
                } else {
                    b""
                };
                if conn.send(&[&head, end]).await.is_err() {
                    return (status, Outcome::Close, false);
                }
                if ex.reusable() {
                    route.pool.checkin(ex.into_stream());
                }
                let next = if close {
                    Outcome::Close
                } else {
                    Outcome::Again
                };
                return (status, next, true);
            }
            Err(e) => {
                tracing::warn!(server = %route.upstream.name, error = %e, "upstream failed mid-response; closing the client connection");
                metrics().upstream_error(&route.upstream.name, "aborted");
                // The head went out before this (a deferred head goes with the first chunk,
                // which was already buffered): closing tells the client the answer is cut.
                debug_assert!(
                    head.is_empty(),
                    "a deferred head is sent with the first chunk"
                );
                return (status, Outcome::Close, false);
            }
        };
        if written.is_err() {
            return (status, Outcome::Close, false);
        }
    }
}

/// Counts one open SSE stream for as long as it lives.
struct SseOpen;

impl SseOpen {
    fn new() -> Self {
        metrics().sse_open.inc();
        SseOpen
    }
}

impl Drop for SseOpen {
    fn drop(&mut self) {
        metrics().sse_open.dec();
    }
}
