//! The upstream interface: one [`Upstream`] per configured server, whatever its transport, with
//! three operations, each of which needs a [`Permit`]:
//!
//! ```text
//!  Upstream = Http (Streamable HTTP)  |  Shared (one session multiplexed: stdio, legacy SSE,
//!                                        or the SSE fallback of a Streamable HTTP server)
//!    call(permit, request)   POST: -> the answer: HTTP bytes as they come, or the call's
//!                                     messages (progress, server requests, the answer)
//!    events(permit, request) GET:  -> the server-initiated stream
//!    delete(permit, request) DELETE
//! ```
//!
//! An [`Answer`] can be relayed as it comes (the per-server endpoint passes bytes through) or
//! read as JSON-RPC messages ([`Answer::next_message`]), which is what an endpoint that merges
//! several upstreams composes.
//!
//! | module       | owns                                                            |
//! |--------------|-----------------------------------------------------------------|
//! | [`http`]     | Streamable HTTP: the lean HTTP/1.1 client, TLS, the head encoder |
//! | [`shared`]   | one shared session: the multiplexer, stdio and legacy SSE links, the gateway's Streamable HTTP face for it |
//! | [`routes`]   | every upstream of a snapshot, by name                           |
//! | [`registry`] | the running shared sessions, reconciled with each config load   |

pub mod hidden;
pub mod http;
pub mod registry;
pub mod routes;
pub mod shared;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::config::Upstream as UpstreamConfig;
use crate::mcp::jsonrpc::Envelope;
use crate::mcp::reply::Reply;
use crate::policy::Permit;
use crate::request::{RequestView, Single};
use http::h1::{Exchange, H1Error};
use http::{Failure, HttpUpstream};
use shared::mux::Mux;
use shared::session::{Events, Messages};

/// How long the first `initialize` of a Streamable HTTP upstream that refused it waits for its
/// legacy SSE fallback to connect.
const FALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What an upstream operation needs from the request.
pub struct Request<'a> {
    /// The request head (its fields are forwarded by HTTP upstreams, minus hop-by-hop ones).
    pub view: &'a RequestView<'a>,
    /// The body of a POST (empty otherwise).
    pub body: Bytes,
    /// The classified body of a POST.
    pub envelope: Option<&'a Envelope>,
    /// The gateway's W3C `traceparent` for this request.
    pub traceparent: &'a str,
    /// Which session id goes upstream.
    pub session: SessionId<'a>,
    /// On `/mcp`: the `Mcp-Name` the upstream gets in place of the client's.
    pub mcp_name: Option<&'a str>,
    /// On `/mcp`: the `MCP-Protocol-Version` the upstream negotiated, in place of the client's.
    pub protocol_version: Option<&'a str>,
    /// A request of the gateway's own at 2026-07-28 (a list read to find a shortened name):
    /// its `Mcp-Method`, in place of the client's (and no client `Mcp-Name`).
    pub mcp_method: Option<&'a str>,
}

/// Which `Mcp-Session-Id` a request carries upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionId<'a> {
    /// The client's own, as sent (the per-server endpoint).
    Client,
    /// One the gateway holds for the client (the aggregated endpoint: the upstream's id from
    /// the sealed session), or none.
    Held(Option<&'a str>),
}

impl<'a> Request<'a> {
    /// The session id sent upstream.
    pub fn session_id(&self) -> Single<'a> {
        match self.session {
            SessionId::Client => self.view.session_id,
            SessionId::Held(Some(id)) => Single::One(id.as_bytes()),
            SessionId::Held(None) => Single::Absent,
        }
    }

    /// The session id to write in place of the client's, if the gateway holds one.
    fn held(&self) -> Option<Option<&'a [u8]>> {
        match self.session {
            SessionId::Client => None,
            SessionId::Held(id) => Some(id.map(str::as_bytes)),
        }
    }
}

/// One configured upstream server.
pub struct Upstream {
    /// Its config entry.
    pub config: Arc<UpstreamConfig>,
    /// Its Streamable HTTP side, if it has one.
    pub http: Option<HttpUpstream>,
    /// Its shared session (stdio, legacy SSE, or a Streamable HTTP server's SSE fallback).
    pub shared: Option<Arc<Mux>>,
    /// Its era, and the hidden legacy sessions of 2026-07-28 callers (HTTP, legacy only).
    pub hidden: Arc<hidden::Hidden>,
    /// When its snapshot stops being the live one.
    pub retirement: routes::Retirement,
}

/// What an upstream answered.
pub enum Answer<'u> {
    /// A Streamable HTTP answer, relayed as it arrives.
    Http(HttpAnswer<'u>),
    /// One call through a shared session: its messages as they come, then its answer.
    Messages(Messages),
    /// A shared session's notification stream (GET).
    Events(Events),
    /// A complete answer made on the upstream's side (a shared session's `initialize`, `202`
    /// for a notification, `404` for a session it does not know, ...).
    Local(Reply),
}

/// A Streamable HTTP answer: its head, then its body as it arrives.
pub struct HttpAnswer<'u> {
    /// The response head, as the upstream sent it (hop-by-hop fields left out).
    pub head: crate::response::Head,
    /// The body.
    pub body: HttpBody<'u>,
}

/// The body of a Streamable HTTP answer, read as it arrives.
pub struct HttpBody<'u> {
    exchange: Exchange,
    upstream: &'u HttpUpstream,
    /// Set for a legacy upstream's answer to a 2026-07-28 caller ([`hidden`]): its results are
    /// completed as the caller's era needs them.
    completer: Option<Box<Completer>>,
}

/// Completes the results of a legacy answer for a 2026-07-28 caller (`resultType`), as the
/// body passes: SSE event by event, JSON at its end.
#[derive(Default)]
pub(crate) struct Completer {
    sse: bool,
    /// A list or read: its result also says how long it may be cached, and by whom.
    list: bool,
    framer: crate::mcp::sse::Framer,
    json: bytes::BytesMut,
    ended: bool,
}

/// Most bytes of a JSON answer held to be completed.
const MAX_COMPLETED: usize = 16 * 1024 * 1024;

impl Completer {
    /// A completer for an answer with head `head` (its length is dropped: it changes).
    /// `method`: the request's (lists and reads get `ttlMs: 0` and `cacheScope: private`).
    pub(crate) fn for_head(head: &mut crate::response::Head, method: &str) -> Box<Completer> {
        head.set_length(None);
        Box::new(Completer {
            sse: head.is_event_stream(),
            list: crate::mcp::filter::ListKind::for_method(method).is_some()
                || method == "resources/read",
            ..Completer::default()
        })
    }

    /// `message` with its result completed (`resultType: complete`; on lists and reads
    /// `ttlMs: 0`, `cacheScope: private`), if it is a response lacking them.
    fn complete(&self, message: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(message).ok()?;
        let result = v.get_mut("result")?.as_object_mut()?;
        if result.contains_key("resultType") {
            return None;
        }
        result.insert("resultType".into(), Value::from("complete"));
        if self.list {
            result.entry("ttlMs").or_insert_with(|| Value::from(0));
            result
                .entry("cacheScope")
                .or_insert_with(|| Value::from("private"));
        }
        serde_json::to_vec(&v).ok()
    }

    /// What the client gets of `chunk` (`None`: the body's end).
    fn pass(&mut self, chunk: Option<Bytes>) -> Result<Option<Bytes>, H1Error> {
        let too_large = || H1Error::Protocol("a legacy answer too large to complete".into());
        match (self.sse, chunk) {
            (true, Some(c)) => {
                let events = self.framer.push(&c).map_err(|_| too_large())?;
                let mut out = Vec::with_capacity(c.len() + 32);
                for ev in events {
                    match crate::mcp::sse::event_data(&ev).and_then(|d| self.complete(&d)) {
                        Some(data) => {
                            out.extend_from_slice(&crate::mcp::sse::with_data(&ev, &data))
                        }
                        None => out.extend_from_slice(&ev),
                    }
                }
                Ok(Some(Bytes::from(out)))
            }
            (true, None) => {
                self.ended = true;
                let rest = self.framer.rest();
                Ok((!rest.is_empty()).then_some(rest))
            }
            (false, Some(c)) => {
                if self.json.len() + c.len() > MAX_COMPLETED {
                    return Err(too_large());
                }
                self.json.extend_from_slice(&c);
                Ok(Some(Bytes::new()))
            }
            (false, None) => {
                self.ended = true;
                let all = std::mem::take(&mut self.json).freeze();
                Ok(Some(self.complete(&all).map_or(all, Bytes::from)))
            }
        }
    }
}

impl HttpBody<'_> {
    /// The next piece of the body as it arrives; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, H1Error> {
        let Some(c) = &mut self.completer else {
            return self.exchange.next_chunk().await;
        };
        loop {
            if c.ended {
                return Ok(None);
            }
            let chunk = self.exchange.next_chunk().await?;
            match c.pass(chunk)? {
                Some(out) if !out.is_empty() => return Ok(Some(out)),
                // Nothing complete yet, or the end (`ended` is set).
                _ => {}
            }
        }
    }

    /// True when body bytes are already here (the head can go out with them in one write).
    pub fn has_buffered(&self) -> bool {
        self.completer.is_none() && self.exchange.has_buffered()
    }

    /// The answer was relayed to its end: its connection goes back to the pool.
    pub fn finish(self) {
        self.upstream.release(self.exchange);
    }

    /// The upstream server's name.
    pub fn server(&self) -> &str {
        &self.upstream.config.name
    }
}

impl<'u> Answer<'u> {
    /// Read the answer as JSON-RPC messages (progress, a server-to-client request, the answer
    /// itself), whatever the transport. For endpoints that merge several answers.
    pub fn into_messages(self) -> MessageReader<'u> {
        MessageReader {
            answer: self,
            framer: crate::mcp::sse::Framer::default(),
            pending: std::collections::VecDeque::new(),
        }
    }
}

/// Most bytes of one JSON answer read as a message.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// An [`Answer`] read message by message (see [`Answer::into_messages`]).
pub struct MessageReader<'u> {
    answer: Answer<'u>,
    framer: crate::mcp::sse::Framer,
    pending: std::collections::VecDeque<Bytes>,
}

impl MessageReader<'_> {
    /// The next message; `Ok(None)` at the end of the answer.
    pub async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            match &mut self.answer {
                Answer::Local(reply) => {
                    let body = std::mem::take(&mut reply.body);
                    return Ok((!body.is_empty()).then_some(body));
                }
                Answer::Messages(m) => return m.next_message().await,
                Answer::Events(e) => return Ok(e.next().await),
                Answer::Http(h) if h.head.is_event_stream() => {
                    let Some(chunk) = h.body.next_chunk().await.map_err(|e| e.to_string())? else {
                        return Ok(None);
                    };
                    for ev in self.framer.push(&chunk).map_err(|e| e.to_string())? {
                        // An event without data (a priming event that only carries an
                        // id for resumption) is no message.
                        if let Some(data) =
                            crate::mcp::sse::event_data(&ev).filter(|d| !d.is_empty())
                        {
                            self.pending.push_back(Bytes::from(data));
                        }
                    }
                }
                Answer::Http(h) => {
                    // A JSON body is one message.
                    let mut all = bytes::BytesMut::new();
                    while let Some(c) = h.body.next_chunk().await.map_err(|e| e.to_string())? {
                        if all.len() + c.len() > MAX_MESSAGE {
                            return Err("answer too large".into());
                        }
                        all.extend_from_slice(&c);
                    }
                    return Ok((!all.is_empty()).then(|| all.freeze()));
                }
            }
        }
    }
}

impl Upstream {
    /// The server's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn check(&self, permit: &Permit<'_>) -> Result<(), Failure> {
        if permit.server() == self.config.name {
            Ok(())
        } else {
            Err(Failure::unavailable(
                "unavailable",
                format!(
                    "a permit for `{}` was used for another upstream",
                    permit.server()
                ),
            ))
        }
    }

    /// The shared session serving this upstream now: a stdio or legacy SSE server's, or an
    /// engaged SSE fallback's.
    fn shared_now(&self) -> Option<&Arc<Mux>> {
        self.shared
            .as_ref()
            .filter(|m| self.http.is_none() || m.engaged())
    }

    /// POST: one JSON-RPC body, checked and permitted.
    pub async fn call(&self, permit: &Permit<'_>, req: Request<'_>) -> Result<Answer<'_>, Failure> {
        if crate::telemetry::otel::enabled() {
            use tracing::Instrument;
            let span = crate::telemetry::otel::upstream_span(&self.config.name);
            return self.call_inner(permit, req).instrument(span).await;
        }
        self.call_inner(permit, req).await
    }

    async fn call_inner(
        &self,
        permit: &Permit<'_>,
        req: Request<'_>,
    ) -> Result<Answer<'_>, Failure> {
        self.check(permit)?;
        if let Some(mux) = self.shared_now() {
            return Ok(shared::session::post(&self.config, mux, &req, &self.retirement).await);
        }
        let Some(http) = &self.http else {
            return Err(not_running(&self.config));
        };
        if crate::mcp::era::of(req.view) == crate::mcp::era::Era::Modern
            && self.legacy_only(http, &req).await
        {
            return Box::pin(self.hidden_call(http, permit, req)).await;
        }
        let mut head = Vec::with_capacity(512);
        http::head::encode(
            req.view,
            http,
            Some(req.body.len()),
            req.traceparent,
            http::head::Own {
                session: req.held(),
                mcp_name: req.mcp_name,
                protocol_version: req.protocol_version,
                mcp_method: req.mcp_method,
            },
            &mut head,
        );
        if let Some(session) = req.session_id().one() {
            // The session's GET stream, if the gateway took one before this POST, is open
            // upstream first: the server may send this call's requests on it.
            let limit = http.config.connect_timeout.min(http::GET_FIRST_WAIT);
            http.opening.after(session, limit).await;
        }
        // A listen stream is long-lived and may be quiet for long: no idle limit, as for GET.
        let listen =
            req.envelope.and_then(Envelope::single_request) == Some(crate::mcp::listen::METHOD);
        let (exchange, resp) = if listen {
            // Its head within the timeout all the same (an upstream that hangs).
            tokio::time::timeout(http.config.timeout, http.exchange(&head, &req.body, true))
                .await
                .map_err(|_| Failure::from_h1(&H1Error::ReadTimeout))??
        } else {
            http.exchange(&head, &req.body, false).await?
        };
        // The client opens its GET stream once it hears of this: expect it (see `order`).
        if resp.status() == 202
            && req
                .envelope
                .and_then(Envelope::single)
                .and_then(|m| m.method())
                == Some("notifications/initialized")
        {
            if let Some(session) = req.session_id().one() {
                http.opening.expect(session, http::EXPECT_GET);
            }
        }
        // A Streamable HTTP server that refuses `initialize` may speak legacy SSE at the same
        // URL (`connection.fallback_sse`): engage it, and answer from it from now on.
        let initialize = req
            .envelope
            .and_then(Envelope::single_request)
            .is_some_and(|m| m == "initialize");
        if let (Some(mux), true, 400 | 404 | 405) = (&self.shared, initialize, resp.status()) {
            drop(exchange);
            if mux.ready(FALLBACK_WAIT).await.is_ok() {
                crate::in_request!(info,
                    server = %self.config.name,
                    status = resp.status(),
                    "Streamable HTTP refused `initialize`; falling back to legacy SSE"
                );
                mux.engage();
            }
            return Ok(shared::session::post(&self.config, mux, &req, &self.retirement).await);
        }
        Ok(Answer::Http(HttpAnswer {
            head: resp,
            body: HttpBody {
                exchange,
                upstream: http,
                completer: None,
            },
        }))
    }

    /// GET: the session's server-initiated stream (its span, with tracing on, covers opening it).
    pub async fn events(
        &self,
        permit: &Permit<'_>,
        req: Request<'_>,
    ) -> Result<Answer<'_>, Failure> {
        if crate::telemetry::otel::enabled() {
            use tracing::Instrument;
            let span = crate::telemetry::otel::upstream_span(&self.config.name);
            return self.events_inner(permit, req).instrument(span).await;
        }
        self.events_inner(permit, req).await
    }

    async fn events_inner(
        &self,
        permit: &Permit<'_>,
        req: Request<'_>,
    ) -> Result<Answer<'_>, Failure> {
        self.check(permit)?;
        if let Some(mux) = self.shared_now() {
            return Ok(shared::session::get(&self.config, mux, &req).await);
        }
        self.passthrough(req, true).await
    }

    /// DELETE: end the session.
    pub async fn delete(
        &self,
        permit: &Permit<'_>,
        req: Request<'_>,
    ) -> Result<Answer<'_>, Failure> {
        if crate::telemetry::otel::enabled() {
            use tracing::Instrument;
            let span = crate::telemetry::otel::upstream_span(&self.config.name);
            return self.delete_inner(permit, req).instrument(span).await;
        }
        self.delete_inner(permit, req).await
    }

    async fn delete_inner(
        &self,
        permit: &Permit<'_>,
        req: Request<'_>,
    ) -> Result<Answer<'_>, Failure> {
        self.check(permit)?;
        if let Some(mux) = self.shared_now() {
            return Ok(shared::session::delete(mux, &req));
        }
        self.passthrough(req, false).await
    }

    /// A body-less request to the Streamable HTTP side, answered as it comes.
    async fn passthrough(&self, req: Request<'_>, stream: bool) -> Result<Answer<'_>, Failure> {
        let Some(http) = &self.http else {
            return Err(not_running(&self.config));
        };
        // A session's GET stream holds its next POSTs until it is open upstream.
        let _opening = stream
            .then(|| req.session_id().one().map(|s| http.opening.enter(s)))
            .flatten();
        let mut head = Vec::with_capacity(512);
        let own = http::head::Own {
            session: req.held(),
            mcp_name: None,
            protocol_version: req.protocol_version,
            mcp_method: None,
        };
        http::head::encode(req.view, http, None, req.traceparent, own, &mut head);
        let (exchange, resp) = http.exchange(&head, b"", stream).await?;
        Ok(Answer::Http(HttpAnswer {
            head: resp,
            body: HttpBody {
                exchange,
                upstream: http,
                completer: None,
            },
        }))
    }
}

fn not_running(up: &UpstreamConfig) -> Failure {
    Failure::unavailable(
        "unavailable",
        format!(
            "the gateway could not start its {} runtime",
            up.transport.kind()
        ),
    )
}

/// The id to answer an error with.
pub fn error_id(envelope: Option<&Envelope>) -> Value {
    envelope.map(Envelope::error_id).unwrap_or(Value::Null)
}
