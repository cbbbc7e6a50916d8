//! Pingora's path: the `ProxyHttp` that serves what the front door hands over (HTTP/2, chunked
//! uploads, `Expect`, HTTP/1.0, every request when `server.fast_path` is off). It is a thin
//! adapter: `request_filter` builds the request view, asks [`crate::gateway`] for a plan, and
//! writes the answer ([`crate::http::write`]) or relays the upstream's ([`crate::http::relay`])
//! on the session, like the front door does on its connection. Pingora's own upstream phases
//! are never reached: the upstream exchange is the gateway's (a request body must be read whole
//! and decided on before any upstream is chosen, which Pingora's body phases cannot do past
//! 64 KiB: `body.rs`).
//!
//! ```text
//!  phase           what happens                                       module
//!  ──────────────  ─────────────────────────────────────────────────  ─────────────────
//!  new_ctx         pin the live snapshot (one ArcSwap load)            state::Store
//!  request_filter  view, trace span, decide, answer or relay; Ok(true)  gateway, http
//!  upstream_peer   never reached (every request is answered above)
//!  logging         nothing: the request was counted when its observation dropped
//! ```

pub mod body;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{ProxyHttp, Session};

use super::downstream::Downstream;
use super::{fanout, relay, write};
use crate::gateway::{Gateway, Observation, Plan, Trace};
use crate::request::RequestView;
use crate::response::Head;
use crate::state::{Snapshot, Store};
use body::SessionBody;

/// The gateway on Pingora's proxy.
pub struct PingoraPath {
    store: Arc<Store>,
    gateway: Arc<Gateway>,
}

impl PingoraPath {
    /// Serve `store`'s snapshots with `gateway`.
    pub fn new(store: Arc<Store>, gateway: Arc<Gateway>) -> Self {
        PingoraPath { store, gateway }
    }
}

/// One request's state between Pingora's phases: the snapshot it pinned.
pub struct Ctx {
    snapshot: Arc<Snapshot>,
}

#[async_trait]
impl ProxyHttp for PingoraPath {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snapshot: self.store.load(),
        }
    }

    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {
        // No downstream modules: Pingora's default adds a (disabled) compression module whose
        // per-request context and filters cost time, and MCP answers are never compressed.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // The view reads the head while the body is read from the session: a copy of the head
        // (this path serves what the front door does not; the front door borrows instead).
        let head = session.req_header().clone();
        let view =
            RequestView::from_parts(&head.method, &head.uri, &head.headers, session.is_http2());
        let trace = Trace::continue_or_start(view.traceparent.one());
        let snap = ctx.snapshot.clone();
        let request = async {
            let mut obs = Observation::start(&view.method);
            let mut body = SessionBody::new(session);
            let plan = self.gateway.decide(&snap, &view, &mut body, &mut obs).await;
            let unread = !body.read && has_body(session);
            let mut d = SessionDownstream {
                session,
                close: false,
            };
            match plan {
                Plan::Answer(reply) => write::reply(&mut d, reply, unread, &mut obs).await,
                Plan::Forward(fwd) => {
                    if unread {
                        d.close_after();
                    }
                    let _ = relay::forward(&mut d, fwd, &view, trace.traceparent(), &mut obs).await;
                }
                Plan::Fanout(f) => {
                    if unread {
                        d.close_after();
                    }
                    let _ = fanout::run(&mut d, f, &view, trace.traceparent(), &mut obs).await;
                }
            }
        };
        if crate::telemetry::otel::enabled() {
            use tracing::Instrument;
            let span = trace.span(view.method.as_str(), view.path.unwrap_or("*"));
            crate::telemetry::request::scope(trace.id(), request.instrument(span)).await;
        } else {
            crate::telemetry::request::scope(trace.id(), request).await;
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // request_filter answers every request.
        Err(Error::explain(
            ErrorType::InternalError,
            "the gateway forwards requests itself",
        ))
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // Upstream failures are logged once, with the server name, by the relay.
        true
    }
}

/// True when the request announces a body (a length over zero, or a transfer coding).
fn has_body(session: &Session) -> bool {
    let h = &session.req_header().headers;
    h.contains_key(http::header::TRANSFER_ENCODING)
        || matches!(body::declared_length(session), Ok(Some(n)) if n > 0)
        || body::declared_length(session).is_err()
}

/// A Pingora session as a [`Downstream`].
struct SessionDownstream<'s> {
    session: &'s mut Session,
    close: bool,
}

impl Downstream for SessionDownstream<'_> {
    async fn head(&mut self, head: Head, _body_follows: bool) -> std::io::Result<()> {
        let status = head.status();
        let mut resp = ResponseHeader::build(status, Some(6)).map_err(io_error)?;
        for (name, value) in head.fields() {
            let name = http::HeaderName::from_bytes(name).map_err(std::io::Error::other)?;
            let value = http::HeaderValue::from_bytes(value).map_err(std::io::Error::other)?;
            resp.append_header(name, value).map_err(io_error)?;
        }
        let bodyless = (100..200).contains(&status) || status == 204 || status == 304;
        match head.length() {
            Some(n) if !bodyless => {
                resp.insert_header(http::header::CONTENT_LENGTH, n)
                    .map_err(io_error)?;
            }
            // Without a length an HTTP/1.1 answer goes out chunked, so the connection stays
            // reusable; Pingora would otherwise delimit it by closing. (HTTP/2 frames bodies.)
            None if !bodyless && !self.session.is_http2() => {
                resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")
                    .map_err(io_error)?;
            }
            _ => {}
        }
        if self.close {
            self.session.set_keepalive(None);
            if !self.session.is_http2() {
                resp.insert_header(http::header::CONNECTION, "close")
                    .map_err(io_error)?;
            }
        }
        self.session
            .write_response_header(Box::new(resp), false)
            .await
            .map_err(io_error)
    }

    async fn chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.session
            .write_response_body(Some(data), false)
            .await
            .map_err(io_error)
    }

    async fn end(&mut self) -> std::io::Result<()> {
        self.session
            .write_response_body(None, true)
            .await
            .map_err(io_error)
    }

    async fn hangup(&mut self) -> bool {
        self.session
            .as_downstream_mut()
            .read_body_or_idle(true)
            .await
            .is_err()
    }

    async fn abort(&mut self) {
        self.session.set_keepalive(None);
        self.session.as_downstream_mut().shutdown().await;
    }

    fn close_after(&mut self) {
        self.close = true;
    }

    async fn linger(&mut self) {
        body::linger(self.session).await;
    }

    fn http2(&self) -> bool {
        self.session.is_http2()
    }
}

fn io_error(e: Box<Error>) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
