//! The Pingora `ProxyHttp` implementation. It stays thin: each phase delegates to one module.
//! (The hot request, an authorized JSON `POST /mcp/{server}` to a plain-text Streamable HTTP
//! upstream, is served before these phases by [`crate::front`] with the same decisions; every
//! other request, and every answer the gateway makes itself, comes through here.)
//!
//! ```text
//!  phase                    what happens                               module
//!  ───────────────────────  ─────────────────────────────────────────  ──────────────────
//!  new_ctx                  pin the live config snapshot (one load)     reload::Snapshot
//!  request_filter           route; admin endpoints answered             route, admin
//!                           Origin check; unknown server -> 404         route, respond
//!                           bearer token -> scopes, else 401            authn (auth::jwt, jwks)
//!                           POST: content type, capped body read,       mcp::body
//!                                 JSON-RPC classification               mcp::jsonrpc
//!                                 policy: denied -> "Unknown tool"      policy
//!                                 upstream exchange, streamed back      exchange
//!                                 stdio / legacy SSE: shared session    bridge (upstream::mux)
//!                           GET/DELETE: fall through to Pingora
//!                                 (stdio / legacy SSE: the bridge)      bridge
//!  upstream_peer            GET/DELETE: the chosen server's peer        upstream
//!  upstream_request_filter  path, Host, credentials, hop-by-hop        upstream
//!  response_filter          SSE: X-Accel-Buffering: no, stream gauge   exchange
//!  fail_to_proxy            upstream down -> 502 JSON-RPC error         respond
//!  logging                  metrics (route/method/status, duration)     telemetry
//! ```

pub mod admin;
pub mod authn;
pub mod bridge;
pub mod ctx;
pub mod exchange;
pub mod respond;
pub mod route;
pub mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use serde_json::{json, Value};

use crate::config::OnDenied;
use crate::mcp::body::{self, BodyError};
use crate::mcp::filter::{ListFilter, ListKind};
use crate::mcp::jsonrpc;
use crate::reload::{Live, Snapshot};
use crate::telemetry::metrics::{method_index, metrics, RouteLabel, ToolOutcome};
use crate::upstream::health::Health;
use ctx::Ctx;
use route::Route;

/// How long the first `initialize` of a Streamable HTTP upstream that refused it waits for
/// its legacy SSE fallback to connect.
const FALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The gateway: the live snapshot, reachability, and the connector for pre-read exchanges.
pub struct Gateway {
    snapshot: Arc<Snapshot>,
    health: Arc<Health>,
    authn: Option<Arc<authn::Authn>>,
    connector: Connector,
}

impl Gateway {
    /// A gateway serving `snapshot`; `authn` is `Some` when `oauth.enabled`.
    pub fn new(
        snapshot: Arc<Snapshot>,
        health: Arc<Health>,
        authn: Option<Arc<authn::Authn>>,
    ) -> Self {
        Gateway {
            snapshot,
            health,
            authn,
            connector: Connector::new(None),
        }
    }

    /// `POST /mcp/{server}`: read, check, forward. Returns the status written.
    async fn post(&self, session: &mut Session, ctx: &mut Ctx) -> Result<u16> {
        let live = &ctx.live;
        let server = ctx.server.as_deref().unwrap_or_default();
        let route = live.routes.get(server);
        let mux = live.routes.mux(server);
        let up = match (route, mux) {
            (Some(r), _) => Some(&r.upstream),
            (None, Some(_)) => live.config.proxy.server(server),
            (None, None) => None,
        };
        let Some(up) = up else {
            return not_found(session, live, server).await;
        };
        if !is_json(session.req_header()) {
            respond::rpc_error(
                session,
                415,
                &Value::Null,
                -32600,
                "Unsupported Media Type: POST bodies must be `Content-Type: application/json`",
                None,
                true,
            )
            .await?;
            return Ok(415);
        }
        let limit = live.config.server.max_body_bytes;
        let body = match body::read_capped(session, limit).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { limit }) => {
                let msg = format!("Request body exceeds the {limit}-byte limit");
                respond::rpc_error(session, 413, &Value::Null, -32600, &msg, None, true).await?;
                body::linger(session, limit).await;
                return Ok(413);
            }
            Err(e @ BodyError::BadLength) => {
                let msg = e.to_string();
                respond::rpc_error(session, 400, &Value::Null, -32600, &msg, None, true).await?;
                return Ok(400);
            }
            Err(BodyError::Read(e)) => {
                return Err(Error::explain(ErrorType::ReadError, e));
            }
        };
        let envelope = match jsonrpc::classify(&body) {
            Ok(e) => e,
            Err(e) => {
                respond::rpc_error(
                    session,
                    400,
                    &Value::Null,
                    e.code(),
                    &e.to_string(),
                    None,
                    false,
                )
                .await?;
                return Ok(400);
            }
        };
        // Policy decides here, before any upstream is contacted.
        if let Some(scopes) = &ctx.scopes {
            if let Some(status) = authorize(session, live, server, scopes, &envelope).await? {
                return Ok(status);
            }
        }
        let list = match (&ctx.scopes, envelope.batch, envelope.messages.first()) {
            (Some(scopes), false, Some(jsonrpc::Message::Request { method, .. })) => {
                ListKind::for_method(method).map(|kind| ListFilter {
                    policy: &live.policy,
                    scopes,
                    server,
                    kind,
                })
            }
            _ => None,
        };
        // Shared-session upstreams (stdio, legacy SSE, an engaged SSE fallback).
        let shared = match (route, mux) {
            (None, Some(m)) => Some(m),
            (Some(_), Some(m)) if m.engaged() => Some(m),
            _ => None,
        };
        if let Some(m) = shared {
            let tool = envelope.single_tool_call();
            return bridge::post(session, up, m, &body, tool, list, &mut ctx.sse_open).await;
        }
        let Some(route) = route else {
            return not_found(session, live, server).await;
        };
        // A Streamable HTTP upstream with an SSE fallback: its `initialize` may be refused.
        let fallback = mux.filter(|_| envelope.is_initialize());
        let result = exchange::forward(
            &self.connector,
            session,
            &mut ctx.sse_open,
            route,
            body.clone(),
            list,
            fallback.is_some(),
        )
        .await;
        // Streamable HTTP answers are relayed untouched, so `ok` here means "answered".
        if let Some(tool) = envelope.single_tool_call() {
            let outcome = match &result {
                Ok(200) => ToolOutcome::Ok,
                Ok(_) | Err(_) => ToolOutcome::Failed,
            };
            if !matches!(result, Err(exchange::Failure::Refused(_))) {
                metrics().tool_call(server, tool, outcome);
            }
        }
        match result {
            Ok(status) => Ok(status),
            Err(exchange::Failure::Refused(status)) => {
                let Some(m) = fallback else { return Ok(status) };
                // Engaged for every caller only once the legacy SSE handshake worked: an upstream
                // that refuses for another reason keeps being asked over Streamable HTTP.
                if m.ready(FALLBACK_WAIT).await.is_ok() {
                    tracing::info!(
                        server,
                        status,
                        "Streamable HTTP refused `initialize`; falling back to legacy SSE"
                    );
                    m.engage();
                }
                bridge::post(
                    session,
                    up,
                    m,
                    &body,
                    envelope.single_tool_call(),
                    list,
                    &mut ctx.sse_open,
                )
                .await
            }
            Err(exchange::Failure::BeforeResponse {
                status,
                kind,
                detail,
            }) => {
                metrics().upstream_error(server, kind);
                tracing::warn!(server, kind, detail = %detail, "upstream request failed");
                let id = envelope.error_id();
                respond::upstream_failure(session, status, &id, server, &detail).await?;
                Ok(status)
            }
            Err(exchange::Failure::Aborted) => {
                metrics().upstream_error(server, "aborted");
                Ok(502)
            }
            Err(exchange::Failure::ClientGone) => Ok(499),
        }
    }
}

/// What the policy says about a classified body, before anything is written or counted.
pub(crate) enum Verdict<'a> {
    /// Every addressed tool, prompt and resource is allowed.
    Allowed,
    /// A batch holds a list request: list answers are filtered per caller only for single
    /// requests, so such a batch is refused whole rather than half-checked.
    BatchedList,
    /// The first request the caller may not make.
    Denied {
        id: &'a Value,
        noun: &'static str,
        name: &'a str,
        denied: crate::policy::Denied<'a>,
    },
}

/// Check every addressed tool, prompt or resource of `envelope` against the policy.
pub(crate) fn verdict<'a>(
    live: &'a Live,
    server: &str,
    scopes: &std::collections::BTreeSet<String>,
    envelope: &'a jsonrpc::Envelope,
) -> Verdict<'a> {
    use crate::policy::Kind;
    if envelope.batch
        && envelope
            .messages
            .iter()
            .any(|m| m.method().and_then(ListKind::for_method).is_some())
    {
        return Verdict::BatchedList;
    }
    for msg in &envelope.messages {
        let jsonrpc::Message::Request {
            id,
            method,
            target: Some(name),
        } = msg
        else {
            continue;
        };
        let (kind, noun) = match method.as_str() {
            "tools/call" => (Kind::Tool, "tool"),
            "prompts/get" => (Kind::Prompt, "prompt"),
            _ => (Kind::Resource, "resource"),
        };
        if let Err(denied) = live.policy.authorize(scopes, kind, server, name) {
            return Verdict::Denied {
                id,
                noun,
                name,
                denied,
            };
        }
    }
    Verdict::Allowed
}

/// Answer a body the policy refuses (see [`verdict`]). `Some` status when a denial was
/// answered (the upstream never sees the request).
async fn authorize(
    session: &mut Session,
    live: &Live,
    server: &str,
    scopes: &std::collections::BTreeSet<String>,
    envelope: &jsonrpc::Envelope,
) -> Result<Option<u16>> {
    use crate::policy::Kind;
    let (id, noun, name, denied) = match verdict(live, server, scopes, envelope) {
        Verdict::Allowed => return Ok(None),
        Verdict::BatchedList => {
            let msg =
                "Invalid Request: list methods cannot be batched on an authenticated endpoint";
            respond::rpc_error(session, 400, &Value::Null, -32600, msg, None, false).await?;
            return Ok(Some(400));
        }
        Verdict::Denied {
            id,
            noun,
            name,
            denied,
        } => (id, noun, name, denied),
    };
    let kind = denied.kind;
    metrics().denial(server, kind.as_str());
    if kind == Kind::Tool {
        metrics().tool_call(server, name, ToolOutcome::Denied);
    }
    tracing::info!(server, kind = kind.as_str(), name = %name, rule = denied.by.source(), "policy denied the request");
    if envelope.batch {
        let msg = "Invalid Request: the batch contains a request the caller may not make";
        respond::rpc_error(session, 200, &Value::Null, -32600, msg, None, false).await?;
        return Ok(Some(200));
    }
    match live.config.auth.on_denied {
        // Hidden: the answer does not reveal that the name exists.
        OnDenied::Hide => {
            let msg = format!("Unknown {noun}: {name}");
            respond::rpc_error(session, 200, id, -32602, &msg, None, false).await?;
        }
        OnDenied::Forbidden => {
            let msg = format!("Forbidden: the caller may not use {noun} `{name}`");
            respond::rpc_error(session, 200, id, -32003, &msg, None, false).await?;
        }
        OnDenied::StepUp => {
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp/{server}\"",
                denied.scope_hint(),
                authn::public_base(&live.config)
            );
            let body = respond::rpc_error_body(id, -32003, "insufficient scope", None);
            respond::send(
                session,
                403,
                "application/json",
                body,
                &[("www-authenticate", challenge.as_str())],
                false,
            )
            .await?;
            return Ok(Some(403));
        }
    }
    Ok(Some(200))
}

fn is_json(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().is_ok() && is_json_media_type(v.as_bytes()))
}

/// A `Content-Type` value naming `application/json` (parameters allowed). Shared with the front
/// door, which reads raw header bytes.
pub(crate) fn is_json_media_type(value: &[u8]) -> bool {
    let mime = value.split(|b| *b == b';').next().unwrap_or_default();
    mime.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

async fn not_found(session: &mut Session, live: &Live, server: &str) -> Result<u16> {
    if let Some(up) = live.config.proxy.server(server) {
        // Configured but with nothing to reach it by: a stdio / legacy SSE upstream whose
        // runtime could not start (logged at start).
        let body = json!({
            "error": "unavailable",
            "message": format!("upstream `{server}` ({}) is not running: the gateway could not start its upstream runtime", up.transport.kind()),
        });
        respond::json(session, 503, &body, false).await?;
        return Ok(503);
    }
    let body = json!({
        "error": "not_found",
        "message": format!("no upstream server named `{server}` is configured"),
    });
    respond::json(session, 404, &body, false).await?;
    Ok(404)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.snapshot.load())
    }

    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {
        // No downstream modules: Pingora's default adds a (disabled) compression module whose
        // per-request context and filters cost time, and MCP answers are never compressed.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let route = Route::parse(session.req_header().uri.path());
        ctx.route = route.label();
        let status = match route {
            Route::Admin(which) => {
                let ready_auth = self.authn.as_ref().is_none_or(|a| a.ready());
                admin::serve(session, &ctx.live, &self.health, ready_auth, which).await?
            }
            Route::WellKnown(path) if self.authn.is_some() => {
                authn::metadata(session, &ctx.live, &path).await?
            }
            Route::WellKnown(_) => {
                let body = json!({ "error": "not_found", "message": "authentication is disabled" });
                respond::json(session, 404, &body, false).await?;
                404
            }
            Route::NotFound => {
                let body = json!({ "error": "not_found", "message": "no such endpoint" });
                respond::json(session, 404, &body, false).await?;
                404
            }
            Route::Aggregate => {
                let v = json!({ "error": "not_implemented", "message": "the aggregated /mcp endpoint is not available yet; use /mcp/{server}" });
                respond::json(session, 501, &v, false).await?;
                501
            }
            Route::Server(name) => {
                if let Some(status) = route::check_origin(session, &ctx.live.config) {
                    let v = json!({ "error": "forbidden", "message": "Origin not allowed" });
                    respond::json(session, status, &v, false).await?;
                    ctx.status = status;
                    return Ok(true);
                }
                if let Some(authn) = &self.authn {
                    match authn::authenticate(authn, session, &ctx.live, &name).await? {
                        Some(scopes) => ctx.scopes = Some(scopes),
                        None => {
                            ctx.status = 401;
                            return Ok(true);
                        }
                    }
                }
                ctx.server = Some(name);
                let method = session.req_header().method.clone();
                match method {
                    http::Method::POST => self.post(session, ctx).await?,
                    http::Method::GET | http::Method::DELETE => {
                        let live = ctx.live.clone();
                        let name = ctx.server.as_deref().unwrap_or_default();
                        let http = live.routes.get(name);
                        let up = live.config.proxy.server(name);
                        match (live.routes.mux(name), up) {
                            (Some(m), Some(up)) if http.is_none() || m.engaged() => {
                                if method == http::Method::GET {
                                    bridge::get(session, up, m, &mut ctx.sse_open).await?
                                } else {
                                    bridge::delete(session, m).await?
                                }
                            }
                            _ if http.is_some() => return Ok(false), // Pingora proxies it.
                            _ => not_found(session, &live, name).await?,
                        }
                    }
                    _ => {
                        let v = json!({ "error": "method_not_allowed", "message": "use POST, GET or DELETE" });
                        let body = bytes::Bytes::from(v.to_string());
                        respond::send(
                            session,
                            405,
                            "application/json",
                            body,
                            &[("allow", "GET, POST, DELETE")],
                            false,
                        )
                        .await?;
                        405
                    }
                }
            }
        };
        ctx.status = status;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let name = ctx.server.as_deref().unwrap_or_default();
        let route = ctx
            .live
            .routes
            .get(name)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        // The GET notification stream may idle for hours; only DELETE keeps the idle timeout.
        let streaming_get = session.req_header().method == http::Method::GET;
        let peer = route
            .peer(streaming_get)
            .map_err(|e| Error::explain(ErrorType::ConnectError, e.to_string()))?;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let name = ctx.server.as_deref().unwrap_or_default();
        if let Some(route) = ctx.live.routes.get(name) {
            upstream::rewrite_request(req, route, None);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if exchange::prepare_response(resp) && !ctx.sse_open {
            metrics().sse_open.inc();
            ctx.sse_open = true;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let server = ctx.server.as_deref().unwrap_or("unknown");
        let status = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout => 504,
            _ if e.esource() == &pingora_error::ErrorSource::Downstream => 0,
            _ => 502,
        };
        if status >= 500 {
            metrics().upstream_error(server, "connect");
            tracing::warn!(server, error = %e.etype().as_str(), "upstream request failed");
        }
        if status > 0 && session.response_written().is_none() {
            let detail = e.etype().as_str().to_lowercase().replace('_', " ");
            let _ = respond::upstream_failure(session, status, &Value::Null, server, &detail).await;
        }
        ctx.status = status;
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // Upstream failures are logged once, with the server name, in `fail_to_proxy`.
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.sse_open {
            metrics().sse_open.dec();
            ctx.sse_open = false;
        }
        let status = match session.response_written() {
            Some(r) => r.status.as_u16(),
            None => ctx.status,
        };
        let method = method_index(&session.req_header().method);
        metrics().request(
            ctx.route,
            method,
            status,
            ctx.started.elapsed().as_secs_f64(),
        );
    }
}

impl Route {
    fn label(&self) -> RouteLabel {
        match self {
            Route::Server(_) => RouteLabel::McpServer,
            Route::Aggregate => RouteLabel::Mcp,
            Route::Admin(_) | Route::WellKnown(_) => RouteLabel::Admin,
            Route::NotFound => RouteLabel::Unknown,
        }
    }
}
