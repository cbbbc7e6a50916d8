//! The pre-read POST exchange: how a body of any size up to `max_body_bytes` is read and decided
//! on before any upstream is contacted.
//!
//! Pingora reads a request body only after `upstream_peer`, and the buffer it replays for a body
//! read early is capped at 64 KiB: above that the body is truncated and the upstream hangs
//! (pingora #575, #688, #780; measured in FACTS.md). So for a POST the gateway reads the whole
//! body in `request_filter` ([`crate::mcp::body::read_capped`]), classifies it, and then does
//! the upstream exchange itself: with the lean HTTP/1.1 client ([`crate::upstream::h1`]) for
//! `http://` upstreams, with Pingora's connector and pool for `https://` ones:
//!
//! 1. request header rewritten ([`super::upstream::encode_request_head`] /
//!    [`super::upstream::rewrite_request`]) with the exact `Content-Length` and no
//!    `Transfer-Encoding`/`Expect`;
//! 2. header and body written, response header read (a stale pooled connection is retried once
//!    on a fresh one: the body is in memory, and nothing was answered);
//! 3. the response relayed chunk by chunk as it arrives (SSE is never buffered), while the
//!    downstream is watched: a client that goes away drops the upstream connection, which
//!    cancels the upstream request;
//! 4. the upstream connection returned to the pool when the response completed cleanly.
//!
//! This is the only module that knows about the workaround; everything else sees a `Route`
//! and a body. (The front door's hot path, [`crate::front`], never meets the problem: it serves
//! its requests without a Pingora session at all, reading the body itself under the same cap, and
//! uses `open_plain` from here for the exchange.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::upstream::Route;
use crate::mcp::filter::ListFilter;
use crate::mcp::sse;
use crate::telemetry::metrics::metrics;
use crate::upstream::h1;

/// How long a pooled upstream connection may idle before it is closed.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Why an exchange did not complete.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was sent downstream yet: answer with this status and detail.
    BeforeResponse {
        /// 502 or 504.
        status: u16,
        /// Metric label: `connect`, `timeout`, `protocol`, `resolve`.
        kind: &'static str,
        /// Human-readable cause (no secrets: never headers or bodies).
        detail: String,
    },
    /// The response had started; the downstream connection was closed to signal truncation.
    Aborted,
    /// The client went away; the upstream request was cancelled.
    ClientGone,
    /// `initialize` was refused with this status (400, 404 or 405) and the caller asked to
    /// fall back to legacy SSE: nothing was sent downstream.
    Refused(u16),
}

impl Failure {
    fn before(e: &Error) -> Self {
        let (status, kind) = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                (504, "timeout")
            }
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::SocketError => (502, "connect"),
            _ => (502, "protocol"),
        };
        Failure::BeforeResponse {
            status,
            kind,
            detail: describe(e),
        }
    }
}

/// A short cause for logs and error bodies.
fn describe(e: &Error) -> String {
    match e.etype() {
        ErrorType::ConnectRefused => "connection refused".into(),
        ErrorType::ConnectTimedout => "connect timed out".into(),
        ErrorType::ReadTimedout => "no response within the read timeout".into(),
        ErrorType::WriteTimedout => "write timed out".into(),
        ErrorType::ConnectionClosed => "connection closed before a response".into(),
        ErrorType::ConnectNoRoute => "no route to host".into(),
        other => other.as_str().to_lowercase().replace('_', " "),
    }
}

/// The upstream side of an exchange whose response header has been read.
enum Answer {
    /// `http://` upstreams: the lean client ([`crate::upstream::h1`]).
    Plain(h1::Exchange),
    /// `https://` upstreams: Pingora's connector (TLS, ALPN, its pool).
    Pingora(Box<HttpSession>, Box<HttpPeer>),
}

impl Answer {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Answer::Plain(ex) => ex.next_chunk().await.map_err(|e| e.to_string()),
            Answer::Pingora(up, _) => up.read_response_body().await.map_err(|e| describe(&e)),
        }
    }

    /// Return the connection to its pool when the exchange completed cleanly.
    async fn release(self, connector: &Connector, route: &Route) {
        match self {
            Answer::Plain(ex) if ex.reusable() => route.pool.checkin(ex.into_stream()),
            Answer::Plain(_) => {}
            Answer::Pingora(mut up, peer) => {
                if up.response_done() {
                    connector
                        .release_http_session(*up, &*peer, Some(POOL_IDLE))
                        .await;
                }
            }
        }
    }
}

/// Forward a fully read POST body to `route` and relay the answer. On `Ok`, the status sent.
/// `sse_open` is set when the answer is an SSE stream (counted until the request is logged).
pub async fn forward(
    connector: &Connector,
    session: &mut Session,
    sse_open: &mut bool,
    route: &Route,
    body: Bytes,
    list: Option<ListFilter<'_>>,
    fallback: bool,
) -> Result<u16, Failure> {
    let started = Instant::now();
    let (mut answer, mut resp) = match (route.target.tls, route.addr) {
        (false, Some(addr)) => {
            let mut head = Vec::with_capacity(512);
            super::upstream::encode_request_head(
                session.req_header(),
                route,
                body.len(),
                &mut head,
            );
            let (ex, resp) = open_plain(route, addr, &head, &body).await?;
            (Answer::Plain(ex), Box::new(resp))
        }
        _ => {
            let peer = route.peer(false).map_err(|e| Failure::BeforeResponse {
                status: 502,
                kind: "resolve",
                detail: e.to_string(),
            })?;
            let make_request = || {
                let mut req = Box::new(session.req_header().clone());
                super::upstream::rewrite_request(&mut req, route, Some(body.len()));
                req
            };
            let up = open(connector, &peer, make_request, &body).await?;
            let resp = match up.response_header() {
                Some(h) => Box::new(h.clone()),
                None => {
                    return Err(Failure::BeforeResponse {
                        status: 502,
                        kind: "protocol",
                        detail: "no response header".into(),
                    })
                }
            };
            (Answer::Pingora(Box::new(up), Box::new(peer)), resp)
        }
    };
    route.latency.observe(started.elapsed().as_secs_f64());

    let status = resp.status.as_u16();
    if fallback && matches!(status, 400 | 404 | 405) {
        return Err(Failure::Refused(status));
    }
    let sse = prepare_response(&mut resp);
    if sse {
        metrics().sse_open.inc();
        *sse_open = true;
    }
    // A list answer is rewritten per caller: its length changes.
    let mut rewrite = list.filter(|_| status == 200).map(|filter| {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if sse {
            Rewrite::Sse(filter, sse::Framer::default())
        } else {
            Rewrite::Json(filter, bytes::BytesMut::new())
        }
    });
    frame_for_downstream(session, &mut resp);
    if session.write_response_header(resp, false).await.is_err() {
        return Err(Failure::ClientGone);
    }
    relay_body(session, &mut answer, &mut rewrite).await?;
    if let Some(tail) = rewrite.as_mut().and_then(Rewrite::finish) {
        if session
            .write_response_body(Some(tail), false)
            .await
            .is_err()
        {
            return Err(Failure::ClientGone);
        }
    }
    if session.write_response_body(None, true).await.is_err() {
        return Err(Failure::ClientGone);
    }
    answer.release(connector, route).await;
    Ok(status)
}

/// The lean-client exchange: a pooled connection (a stale one is retried once on a new
/// connection: nothing was answered and the body is in memory), one write, the response head.
pub(crate) async fn open_plain(
    route: &Route,
    addr: std::net::SocketAddr,
    head: &[u8],
    body: &[u8],
) -> Result<(h1::Exchange, pingora_http::ResponseHeader), Failure> {
    let up = &route.upstream;
    let (stream, reused) = route
        .pool
        .checkout(addr, up.connect_timeout)
        .await
        .map_err(|e| plain_failure(&e))?;
    match h1::Exchange::start(stream, head, body, up.timeout).await {
        Ok(ok) => Ok(ok),
        Err(e) if reused && e.is_stale_connection() => {
            tracing::debug!(error = %e, "stale pooled upstream connection; retrying");
            let stream = h1::Pool::connect(addr, up.connect_timeout)
                .await
                .map_err(|e| plain_failure(&e))?;
            h1::Exchange::start(stream, head, body, up.timeout)
                .await
                .map_err(|e| plain_failure(&e))
        }
        Err(e) => Err(plain_failure(&e)),
    }
}

fn plain_failure(e: &h1::H1Error) -> Failure {
    use h1::H1Error as E;
    let (status, kind) = match e {
        E::ConnectTimeout | E::ReadTimeout | E::WriteTimeout => (504, "timeout"),
        E::Connect(_) => (502, "connect"),
        E::Io(_) | E::Closed | E::Protocol(_) => (502, "protocol"),
    };
    let detail = match e {
        E::Connect(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_string()
        }
        other => other.to_string(),
    };
    Failure::BeforeResponse {
        status,
        kind,
        detail,
    }
}

/// Connect (or reuse a pooled connection), send the request, read the response header.
/// `make_request` builds the upstream request header; it runs again only for a retry.
async fn open(
    connector: &Connector,
    peer: &HttpPeer,
    make_request: impl Fn() -> Box<RequestHeader>,
    body: &Bytes,
) -> Result<HttpSession, Failure> {
    for attempt in 0..2 {
        let (mut up, reused) = connector
            .get_http_session(peer)
            .await
            .map_err(|e| Failure::before(&e))?;
        up.set_read_timeout(peer.options.read_timeout);
        up.set_write_timeout(peer.options.write_timeout);
        match send(&mut up, make_request(), body).await {
            Ok(()) => return Ok(up),
            // A pooled connection the upstream closed while idle: retry once on a new one.
            Err(e) if reused && attempt == 0 => {
                tracing::debug!(error = %e, "stale pooled upstream connection; retrying");
            }
            Err(e) => return Err(Failure::before(&e)),
        }
    }
    Err(Failure::BeforeResponse {
        status: 502,
        kind: "connect",
        detail: "no usable connection".into(),
    })
}

async fn send(
    up: &mut HttpSession,
    req: Box<RequestHeader>,
    body: &Bytes,
) -> pingora_error::Result<()> {
    up.write_request_header(req).await?;
    if !body.is_empty() {
        up.write_request_body(body.clone(), true).await?;
    }
    up.finish_request_body().await?;
    loop {
        up.read_response_header().await?;
        // Skip interim 1xx answers (101 is not expected on this path).
        match up.response_header().map(|h| h.status.as_u16()) {
            Some(s) if (100..200).contains(&s) => continue,
            _ => return Ok(()),
        }
    }
}

/// Hop-by-hop response headers: framing is Pingora's to choose downstream.
const DROP_DOWNSTREAM: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "proxy-connection",
    "trailer",
    "upgrade",
];

/// Clean the upstream's response header for the client. Returns true for an SSE stream, which
/// is marked never to be buffered by intermediaries.
pub fn prepare_response(resp: &mut ResponseHeader) -> bool {
    for h in DROP_DOWNSTREAM {
        resp.remove_header(h);
    }
    let sse = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    if sse {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        let _ = resp.insert_header("x-accel-buffering", "no");
    }
    sse
}

/// An answer relayed without a `Content-Length` (SSE, a rewritten list) goes out chunked to an
/// HTTP/1.1 client, so the connection stays reusable; without this Pingora would delimit the
/// body by closing the connection. (HTTP/2 frames bodies itself.)
pub fn frame_for_downstream(session: &Session, resp: &mut ResponseHeader) {
    let status = resp.status.as_u16();
    if session.is_http2()
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || resp.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        return;
    }
    let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
}

/// A per-caller rewrite of a list answer.
enum Rewrite<'a> {
    /// SSE: each complete event's data is filtered; other events pass byte for byte.
    Sse(ListFilter<'a>, sse::Framer),
    /// JSON: the (capped) whole answer is filtered at its end.
    Json(ListFilter<'a>, bytes::BytesMut),
}

/// Most bytes of a JSON list answer held for filtering.
const MAX_JSON_LIST: usize = 16 * 1024 * 1024;

impl Rewrite<'_> {
    /// Transform one upstream chunk into what the client gets now (possibly nothing yet).
    fn chunk(&mut self, chunk: Bytes) -> Result<Option<Bytes>, String> {
        match self {
            Rewrite::Sse(filter, framer) => {
                let events = framer.push(&chunk).map_err(|e| e.to_string())?;
                if events.is_empty() {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(chunk.len());
                for ev in events {
                    match sse::event_data(&ev).and_then(|d| filter.apply(&d)) {
                        Some(data) => out.extend_from_slice(&sse::with_data(&ev, &data)),
                        None => out.extend_from_slice(&ev),
                    }
                }
                Ok(Some(Bytes::from(out)))
            }
            Rewrite::Json(_, buf) => {
                if buf.len() + chunk.len() > MAX_JSON_LIST {
                    return Err("list answer too large to filter".into());
                }
                buf.extend_from_slice(&chunk);
                Ok(None)
            }
        }
    }

    /// What remains at the end of the answer.
    fn finish(&mut self) -> Option<Bytes> {
        match self {
            Rewrite::Sse(_, framer) => Some(framer.rest()).filter(|b| !b.is_empty()),
            Rewrite::Json(filter, buf) => {
                let body = buf.split().freeze();
                Some(filter.apply(&body).map(Bytes::from).unwrap_or(body))
            }
        }
    }
}

/// Relay the response body chunk by chunk, watching for the client going away.
async fn relay_body(
    session: &mut Session,
    up: &mut Answer,
    rewrite: &mut Option<Rewrite<'_>>,
) -> Result<(), Failure> {
    let mut watch_client = true;
    loop {
        let next = tokio::select! {
            biased;
            r = up.next_chunk() => r,
            gone = session.as_downstream_mut().read_body_or_idle(true), if watch_client => {
                match gone {
                    Err(_) => {
                        // Dropping `up` without returning it to the pool closes the upstream
                        // connection: that is the cancellation the upstream sees.
                        tracing::debug!("client went away; cancelling the upstream request");
                        return Err(Failure::ClientGone);
                    }
                    Ok(_) => {
                        watch_client = false;
                        continue;
                    }
                }
            }
        };
        let next = match (next, rewrite.as_mut()) {
            (Ok(Some(chunk)), Some(rw)) => match rw.chunk(chunk) {
                Ok(Some(out)) => Ok(Some(out)),
                Ok(None) => continue,
                Err(e) => Err(e),
            },
            (other, _) => other,
        };
        match next {
            Ok(Some(chunk)) => {
                if session
                    .write_response_body(Some(chunk), false)
                    .await
                    .is_err()
                {
                    return Err(Failure::ClientGone);
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "upstream failed mid-response; closing the client connection");
                session.as_downstream_mut().shutdown().await;
                return Err(Failure::Aborted);
            }
        }
    }
}
