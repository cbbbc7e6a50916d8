//! [`Gateway::decide`]: the one function that decides a request, whatever front end received it.
//! It reads the head through a [`RequestView`], the body (only once the head was accepted)
//! through a [`BodySource`], and returns a [`Plan`]: an answer, or a forward that carries a
//! [`crate::policy::Permit`]. No sockets, no Pingora types.
//!
//! ```text
//!  endpoint ─ admin, metadata, unknown ──────────────────────────────> answer
//!     │ /mcp/{server}
//!  Host, Origin (403) ─ query (400) ─ bearer token (401) ─ server (404/503)
//!     │ POST                                   │ GET / DELETE
//!  content type (415) ─ body (413/400)         └─ session permit ─> forward
//!  ─ JSON-RPC (400: parse, envelope, undecidable covered method)
//!  ─ policy (denial: "Unknown tool" / forbidden / 403 step-up) ─────────> answer
//!  ─ permit ─> forward (list answers filtered per caller)
//! ```

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::observe::Observation;
use super::plan::{Forward, Op, Plan};
use super::{Gateway, Listener};
use crate::auth::{bearer, Principal};
use crate::config::OnDenied;
use crate::endpoints::{admin, guard, oauth, Admin, Endpoint};
use crate::mcp::era::{self, Era};
use crate::mcp::filter::ListKind;
use crate::mcp::jsonrpc::{self, Envelope};
use crate::mcp::listen;
use crate::mcp::reply::Reply;
use crate::policy::limit::Charge;
use crate::policy::{DecidedBy, Denied, Kind};
use crate::request::{BodyError, BodySource, RequestView, Single};
use crate::state::Snapshot;
use crate::telemetry::metrics::RouteLabel;
use crate::upstream::Upstream;

impl Gateway {
    /// Decide `req` against the pinned snapshot `snap`, reading its body from `body` if (and
    /// only if) the head is acceptable. Counts what it decides in `obs`.
    pub async fn decide<'s, B: BodySource>(
        &self,
        snap: &'s Snapshot,
        req: &RequestView<'_>,
        body: &mut B,
        obs: &mut Observation,
    ) -> Plan<'s> {
        let endpoint = req.path.map_or(Endpoint::NotFound, Endpoint::parse);
        obs.route(label(&endpoint));
        // A head past the limits, whichever front end read it (the front door refuses one it
        // cannot even finish reading the same way: `http::front`).
        if req.head_bytes > snap.config.server.max_header_bytes
            || req.field_count > crate::request::MAX_HEADER_FIELDS
        {
            return Plan::Answer(head_too_large(snap.config.server.max_header_bytes));
        }
        // First, on every path: a token in a URL is logged by every hop and would be forwarded
        // upstream with the query.
        if req.query.is_some_and(guard::query_has_token) {
            return Plan::Answer(Reply::error(
                400,
                "invalid_request",
                "access tokens are not accepted in the query string; send `Authorization: Bearer`",
            ));
        }
        if self.listener == Listener::Admin && !matches!(endpoint, Endpoint::Admin(_)) {
            let m = "the admin listener serves /live, /ready, /metrics and /status only";
            return Plan::Answer(Reply::error(404, "not_found", m));
        }
        let name = match endpoint {
            Endpoint::Server(name) => Some(name),
            Endpoint::Aggregate => None,
            Endpoint::Admin(which) => return Plan::Answer(self.admin(snap, req, which).await),
            Endpoint::WellKnown(path) if self.authn.is_some() => {
                return Plan::Answer(oauth::metadata(&snap.config, path))
            }
            Endpoint::WellKnown(_) => {
                return Plan::Answer(Reply::error(404, "not_found", "authentication is disabled"))
            }
            Endpoint::NotFound => {
                return Plan::Answer(Reply::error(404, "not_found", "no such endpoint"))
            }
        };
        if let Err(refused) = guard::check(req.host, req.origin, &snap.config) {
            return Plan::Answer(match refused {
                guard::Refused::HostMissing => {
                    Reply::error(400, "bad_request", "exactly one Host header is required")
                }
                guard::Refused::ForeignHost => Reply::error(
                    403,
                    "forbidden",
                    "Host not allowed: it must name this gateway (the host of server.url, or a loopback name)",
                ),
                guard::Refused::Origin => Reply::error(403, "forbidden", "Origin not allowed"),
            });
        }
        if req.query.is_some_and(|q| !guard::query_forwardable(q)) {
            return Plan::Answer(Reply::error(
                400,
                "bad_request",
                "the query holds characters that must be percent-encoded",
            ));
        }
        let principal = match &self.authn {
            None => Principal::anonymous(),
            Some(authn) => {
                let token = bearer(req.authorization.one());
                match authn.authenticate(snap.policy.scope_map(), token).await {
                    Ok(p) => p,
                    Err(refusal) => {
                        return Plan::Answer(oauth::unauthorized(&snap.config, name, refusal))
                    }
                }
            }
        };
        let Some(name) = name else {
            return self.aggregate(snap, principal, req, body, obs).await;
        };
        let Some(upstream) = snap.upstreams.get(name) else {
            return Plan::Answer(Reply::error(
                404,
                "not_found",
                &format!("no upstream server named `{name}` is configured"),
            ));
        };
        if upstream.http.is_none() && upstream.shared.is_none() {
            // Configured, with nothing to reach it by: a stdio / legacy SSE upstream whose
            // runtime could not start (logged at start).
            let kind = upstream.config.transport.kind();
            return Plan::Answer(Reply::error(
                503,
                "unavailable",
                &format!("upstream `{name}` ({kind}) is not running: the gateway could not start its upstream runtime"),
            ));
        }
        let server = upstream.name();
        match req.method {
            http::Method::POST => {
                self.decide_post(snap, upstream, principal, req, body, obs)
                    .await
            }
            http::Method::GET | http::Method::DELETE => {
                let in_session = matches!(req.session_id, Single::One(_));
                let get = req.method == http::Method::GET;
                let stream = match get.then(|| self.stream_slot(snap, &principal, Some(server))) {
                    Some(Err(reply)) => return Plan::Answer(reply),
                    Some(Ok(slot)) => Some(slot),
                    None => None,
                };
                if let Err(reply) =
                    super::limit::admit_stream(snap, &principal, in_session, Some(server), obs)
                {
                    return Plan::Answer(reply);
                }
                Plan::Forward(Forward {
                    stream,
                    op: if get { Op::Events } else { Op::Delete },
                    upstream,
                    permit: snap.policy.permit_session(&principal, server),
                    body: Bytes::new(),
                    envelope: None,
                    list: None,
                    via: None,
                })
            }
            _ => Plan::Answer(
                Reply::error(405, "method_not_allowed", "use POST, GET or DELETE")
                    .with_header("allow", "GET, POST, DELETE"),
            ),
        }
    }

    /// A place among `principal`'s open event streams (`server.max_streams_per_principal`),
    /// or the 429 answer.
    pub(super) fn stream_slot(
        &self,
        snap: &Snapshot,
        principal: &Principal,
        server: Option<&str>,
    ) -> Result<super::streams::StreamSlot, Reply> {
        let max = snap.config.server.max_streams_per_principal;
        self.streams.enter(principal, max, server)
    }

    /// An admin endpoint: moved to the admin listener when there is one; `/metrics` behind
    /// `server.metrics_auth` on any listener; `/status` on the main listener, with
    /// authentication on, only for a token holding `server.admin_scope`.
    async fn admin(&self, snap: &Snapshot, req: &RequestView<'_>, which: Admin) -> Reply {
        let server = &snap.config.server;
        if self.listener == Listener::Main && server.admin_listen.is_some() {
            let m = "this endpoint is served on the admin listener (server.admin_listen)";
            return Reply::error(404, "not_found", m);
        }
        match which {
            Admin::Metrics => {
                if let Some(auth) = &server.metrics_auth {
                    if !admin::basic_auth_ok(req.authorization, auth) {
                        return Reply::error(401, "unauthorized", "/metrics needs basic auth")
                            .with_header(
                                "www-authenticate",
                                "Basic realm=\"portcullis metrics\", charset=\"UTF-8\"",
                            );
                    }
                }
            }
            Admin::Status if self.listener == Listener::Main => {
                if let Some(authn) = &self.authn {
                    let token = bearer(req.authorization.one());
                    let principal = match authn.authenticate(snap.policy.scope_map(), token).await {
                        Ok(p) => p,
                        Err(refusal) => return oauth::unauthorized(&snap.config, None, refusal),
                    };
                    let Some(scope) = &server.admin_scope else {
                        let m = "/status on this listener needs `server.admin_scope` (a token holding it) or `server.admin_listen`";
                        return Reply::error(403, "forbidden", m);
                    };
                    if !principal.scopes.contains(scope) {
                        crate::in_request!(info, subject = %principal.subject, "refused /status: the token lacks the admin scope");
                        return Reply::error(
                            403,
                            "insufficient_scope",
                            "/status needs the admin scope",
                        )
                        .with_header(
                            "www-authenticate",
                            oauth::insufficient_scope(&snap.config, None, scope),
                        );
                    }
                }
            }
            _ => {}
        }
        let keys_ready = self.authn.as_ref().is_none_or(|a| a.ready());
        admin::answer(&req.method, snap, &self.health, keys_ready, which)
    }

    /// `POST /mcp/{server}`: the body is read, classified and authorized.
    async fn decide_post<'s, B: BodySource>(
        &self,
        snap: &'s Snapshot,
        upstream: &'s Upstream,
        principal: Arc<Principal>,
        req: &RequestView<'_>,
        body: &mut B,
        obs: &mut Observation,
    ) -> Plan<'s> {
        let (body, envelope) = match read_json(snap, req, body).await {
            Ok(b) => b,
            Err(reply) => return Plan::Answer(reply),
        };
        // 2026-07-28: the routing headers must say what the body says, before anything is
        // decided on either.
        if era::of(req) == Era::Modern {
            if let Err(reply) = era::check(req, &envelope, &body) {
                return Plan::Answer(reply);
            }
        }
        let server = upstream.name();
        if let Some(tool) = envelope.single_tool_call() {
            obs.tool_call(server, tool);
        }
        let list = list_kind(&envelope);
        if envelope.batch
            && !principal.anonymous
            && envelope
                .messages
                .iter()
                .any(|m| m.method().and_then(ListKind::for_method).is_some())
        {
            // List answers are filtered per caller only for single requests: such a batch is
            // refused whole rather than half-checked.
            let m = "Invalid Request: list methods cannot be batched on an authenticated endpoint";
            return Plan::Answer(Reply::rpc_error(400, &Value::Null, -32600, m));
        }
        // 2026-07-28 `subscriptions/listen` names resources in its filter: each is authorized
        // like `resources/subscribe`, and the stream takes a place among the caller's streams.
        let listening = envelope.single_request() == Some(listen::METHOD);
        if !listening
            && envelope
                .messages
                .iter()
                .any(|m| m.method() == Some(listen::METHOD))
        {
            // Its URIs are checked, and its stream counted, for a single request only.
            let m = "Invalid Request: subscriptions/listen must be a single request (not in a batch, not a notification)";
            return Plan::Answer(Reply::rpc_error(400, &Value::Null, -32600, m));
        }
        let subscribed = if listening {
            match listen_uris(&body) {
                Ok(uris) => uris,
                Err(why) => {
                    let m = format!("Invalid params: {why}");
                    return Plan::Answer(Reply::rpc_error(400, &envelope.error_id(), -32602, &m));
                }
            }
        } else {
            Vec::new()
        };
        let uses = envelope
            .uses()
            .map(|(_, u)| (u.kind, u.name.as_str()))
            .chain(subscribed.iter().map(|u| (Kind::Resource, u.as_str())));
        // Audit: a denial is recorded at once; allows once the request is sure to go upstream
        // (a batch refused whole, or a rate limit, records no allow).
        let audit = super::audit::enabled();
        let mut allowed: Vec<(Kind, String, String)> = Vec::new();
        let record = |kind: Kind, name: &str, outcome: Result<DecidedBy<'_>, &Denied<'_>>| {
            if audit {
                match outcome {
                    Ok(by) => allowed.push((kind, name.to_owned(), by.source().to_owned())),
                    Err(_) => super::audit::decision(snap, &principal, server, kind, name, outcome),
                }
            }
        };
        let permit = match snap.policy.permit_each(&principal, server, uses, record) {
            Ok(p) => p,
            Err((i, denied)) => {
                let listen_id = envelope.error_id();
                let (id, name) = match envelope.uses().nth(i) {
                    Some((id, u)) => (id, u.name.as_str()),
                    None => {
                        let n = envelope.uses().count();
                        let uri = subscribed
                            .get(i.saturating_sub(n))
                            .map_or("", String::as_str);
                        (&listen_id, uri)
                    }
                };
                let noun = denied.kind.as_str();
                obs.denied(server, denied.kind);
                crate::in_request!(info, server, kind = noun, name = %name, rule = denied.by.source(), subject = %principal.subject, "policy denied the request");
                return Plan::Answer(denial(
                    snap,
                    Some(server),
                    &envelope,
                    id,
                    noun,
                    name,
                    &denied,
                ));
            }
        };
        let in_session = matches!(req.session_id, Single::One(_));
        let target = Charge {
            server: Some(server),
            ..Charge::default()
        };
        if let Err(reply) =
            super::limit::admit(snap, &principal, in_session, &envelope, target, obs)
        {
            return Plan::Answer(reply);
        }
        let stream = match listening.then(|| self.stream_slot(snap, &principal, Some(server))) {
            Some(Err(reply)) => return Plan::Answer(reply),
            Some(Ok(slot)) => Some(slot),
            None => None,
        };
        for (kind, name, rule) in &allowed {
            super::audit::event(snap, &principal, server, *kind, name, "allow", rule);
        }
        Plan::Forward(Forward {
            stream,
            op: Op::Call,
            upstream,
            permit,
            body,
            list: list
                .filter(|_| !principal.anonymous)
                .map(|k| (k, &snap.policy)),
            envelope: Some(envelope),
            via: None,
        })
    }
}

/// 431: the request head is larger than `server.max_header_bytes` or has more than
/// [`crate::request::MAX_HEADER_FIELDS`] fields.
pub fn head_too_large(max_header_bytes: usize) -> Reply {
    Reply::error(
        431,
        "request_header_fields_too_large",
        &format!(
            "the request head is limited to {max_header_bytes} bytes and {} header fields (server.max_header_bytes)",
            crate::request::MAX_HEADER_FIELDS
        ),
    )
}

/// Read and classify a POST body: `Content-Type` (415), the size limit (413), JSON-RPC (400).
pub(super) async fn read_json<B: BodySource>(
    snap: &Snapshot,
    req: &RequestView<'_>,
    body: &mut B,
) -> Result<(Bytes, Envelope), Reply> {
    if !req.is_json() {
        return Err(Reply::rpc_error(
            415,
            &Value::Null,
            -32600,
            "Unsupported Media Type: POST bodies must be `Content-Type: application/json`",
        ));
    }
    let limit = snap.config.server.max_body_bytes;
    let body = match body.read(limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            let m = format!("Request body exceeds the {limit}-byte limit");
            return Err(Reply::rpc_error(413, &Value::Null, -32600, &m));
        }
        Err(e @ BodyError::BadLength) => {
            return Err(Reply::rpc_error(400, &Value::Null, -32600, &e.to_string()))
        }
        Err(BodyError::Read(e)) => {
            // The client is gone or stalled: nothing useful can be answered.
            crate::in_request!(debug, error = %e, "reading the request body failed");
            return Err(Reply::rpc_error(
                400,
                &Value::Null,
                -32600,
                "the request body could not be read",
            ));
        }
    };
    match jsonrpc::classify(&body) {
        Ok(e) => Ok((body, e)),
        Err(e) => {
            let removed = (era::of(req) == Era::Modern)
                .then(|| era::removed(req, &body, &e.id()))
                .flatten();
            Err(removed.unwrap_or_else(|| Reply::rpc_error(400, &e.id(), e.code(), &e.to_string())))
        }
    }
}

/// The resource URIs of a `subscriptions/listen` request's filter (`Err`: the filter is not
/// one; the request is refused rather than passed on unchecked).
fn listen_uris(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    listen::Filter::from_params(v.get("params")).map(|f| f.uris)
}

/// The list a single request asks for, if it is a list request.
fn list_kind(envelope: &Envelope) -> Option<ListKind> {
    envelope.single_request().and_then(ListKind::for_method)
}

/// The answer to a denied request, per `auth.options.on_denied`. `server`: the endpoint's
/// (`None` on `/mcp`), for the step-up challenge.
pub(super) fn denial(
    snap: &Snapshot,
    server: Option<&str>,
    envelope: &Envelope,
    id: &Value,
    noun: &str,
    name: &str,
    denied: &crate::policy::Denied<'_>,
) -> Reply {
    if envelope.batch {
        let m = "Invalid Request: the batch contains a request the caller may not make";
        return Reply::rpc_error(200, &Value::Null, -32600, m);
    }
    match snap.config.auth.on_denied {
        // Hidden: the answer does not reveal that the name exists.
        OnDenied::Hide => Reply::rpc_error(200, id, -32602, &format!("Unknown {noun}: {name}")),
        OnDenied::Forbidden => Reply::rpc_error(
            200,
            id,
            -32003,
            &format!("Forbidden: the caller may not use {noun} `{name}`"),
        ),
        OnDenied::StepUp => {
            let challenge = oauth::insufficient_scope(&snap.config, server, &denied.scope_hint());
            Reply::rpc_error(403, id, -32003, "insufficient scope")
                .with_header("www-authenticate", challenge)
        }
    }
}

fn label(endpoint: &Endpoint<'_>) -> RouteLabel {
    match endpoint {
        Endpoint::Server(_) => RouteLabel::McpServer,
        Endpoint::Aggregate => RouteLabel::Mcp,
        Endpoint::Admin(_) | Endpoint::WellKnown(_) => RouteLabel::Admin,
        Endpoint::NotFound => RouteLabel::Unknown,
    }
}
