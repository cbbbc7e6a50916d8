//! The decision on the aggregated `/mcp` (legacy era: `initialize`, sealed `Mcp-Session-Id`).
//! Host, Origin, query and token were checked as for `/mcp/{server}` ([`super::decide`]); here
//! the session is opened and the message is either routed to the one upstream that owns what it
//! names (its original name restored, authorized like on `/mcp/{server}`) or fanned out.
//!
//! ```text
//!  POST initialize ───────────────────────────────> Fanout Initialize (every server the caller may reach)
//!  any other: session (400 none, 404 not ours) ─┬─ ping ──────────────> answer
//!                                               ├─ */list ────────────> Fanout List (cursor per upstream)
//!                                               ├─ covered (tools/call, prompts/get, resources/*,
//!                                               │  completion/complete): resolve name -> policy -> Forward
//!                                               ├─ notification, logging/setLevel ─> Fanout Broadcast
//!                                               └─ answer to a server request: id -> upstream -> Forward
//!  GET / DELETE: session ─────────────────────────> Fanout Events / Delete
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::decide::read_json;
use super::legs::{all_legs, routed_leg, running_leg, session_leg, session_legs};
use super::limit;
use super::observe::Observation;
use super::plan::{Fanout, Forward, Op, Plan, Via, Work};
use super::route::{route, unknown, unknown_method};
use super::Gateway;
use crate::auth::Principal;
use crate::mcp::aggregate as agg;
use crate::mcp::era::{self, negotiate, Era};
use crate::mcp::filter::ListKind;
use crate::mcp::jsonrpc::{Envelope, Message, Use};
use crate::mcp::listen;
use crate::mcp::names::{cursor, Resolved};
use crate::mcp::reply::Reply;
use crate::mcp::session::{self, principal_tag, Session};
use crate::mcp::tasks;
use crate::policy::limit::{Charge, Part};
use crate::policy::{self, Kind};
use crate::request::{BodySource, RequestView, Single};
use crate::state::Snapshot;

impl Gateway {
    /// Decide a request on `/mcp` for `principal`.
    pub(super) async fn aggregate<'s, B: BodySource>(
        &self,
        snap: &'s Snapshot,
        principal: Arc<Principal>,
        req: &RequestView<'_>,
        body: &mut B,
        obs: &mut Observation,
    ) -> Plan<'s> {
        match req.method {
            http::Method::POST => post(self, snap, principal, req, body, obs).await,
            http::Method::GET | http::Method::DELETE if era::of(req) == Era::Modern => {
                Plan::Answer(
                    Reply::error(405, "method_not_allowed", "2026-07-28 requests are POSTs")
                        .with_header("allow", "POST"),
                )
            }
            http::Method::GET | http::Method::DELETE => {
                let session = match open(snap, &principal, req) {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        let m = "Bad Request: Mcp-Session-Id is required (initialize first)";
                        return Plan::Answer(Reply::rpc_error(400, &Value::Null, -32600, m));
                    }
                    Err(reply) => return Plan::Answer(reply),
                };
                let get = req.method == http::Method::GET;
                let stream = match get.then(|| self.stream_slot(snap, &principal, None)) {
                    Some(Err(reply)) => return Plan::Answer(reply),
                    Some(Ok(slot)) => Some(slot),
                    None => None,
                };
                if let Err(reply) = limit::admit_stream(snap, &principal, true, None, obs) {
                    return Plan::Answer(reply);
                }
                let work = if get { Work::Events } else { Work::Delete };
                Plan::Fanout(Fanout {
                    stream,
                    snap,
                    legs: session_legs(snap, &principal, &session),
                    principal,
                    work,
                })
            }
            _ => Plan::Answer(
                Reply::error(405, "method_not_allowed", "use POST, GET or DELETE")
                    .with_header("allow", "GET, POST, DELETE"),
            ),
        }
    }
}

/// The session a request names: `Ok(None)` when it names none; `Err` (404, or 400 for two ids)
/// when it names one that does not open for this caller.
fn open(
    snap: &Snapshot,
    principal: &Principal,
    req: &RequestView<'_>,
) -> Result<Option<Arc<Session>>, Reply> {
    match req.session_id {
        Single::Absent => Ok(None),
        Single::Many => {
            let m = "Bad Request: send one Mcp-Session-Id";
            Err(Reply::rpc_error(400, &Value::Null, -32600, m))
        }
        Single::One(raw) => snap
            .sessions
            .open(raw, &principal_tag(principal), session::now())
            .map(Some)
            .map_err(|why| {
                crate::in_request!(debug, reason = %why, "refused an /mcp session id");
                Reply::rpc_error(404, &Value::Null, -32001, "Session not found")
            }),
    }
}

async fn post<'s, B: BodySource>(
    gw: &Gateway,
    snap: &'s Snapshot,
    principal: Arc<Principal>,
    req: &RequestView<'_>,
    body: &mut B,
    obs: &mut Observation,
) -> Plan<'s> {
    let (bytes, envelope) = match read_json(snap, req, body).await {
        Ok(b) => b,
        Err(reply) => return Plan::Answer(reply),
    };
    if era::of(req) == Era::Modern {
        if let Err(reply) = era::check(req, &envelope, &bytes) {
            return Plan::Answer(reply);
        }
        return modern(gw, snap, principal, envelope, bytes, obs);
    }
    let Some(msg) = envelope.single().filter(|_| !envelope.batch) else {
        let m = "Invalid Request: batches are not supported on /mcp; send one message per request";
        return Plan::Answer(Reply::rpc_error(400, &Value::Null, -32600, m));
    };
    if let Message::Request { id, method, .. } = msg {
        if method == "initialize" {
            if let Err(reply) =
                limit::admit(snap, &principal, false, &envelope, Charge::default(), obs)
            {
                return Plan::Answer(reply);
            }
            let requested = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                v.pointer("/params/protocolVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            return Plan::Fanout(Fanout {
                stream: None,
                snap,
                legs: all_legs(snap, &principal),
                principal,
                work: Work::Initialize {
                    id: id.clone(),
                    body: bytes,
                    version: negotiate(requested.as_deref()),
                },
            });
        }
    }
    let session = match open(snap, &principal, req) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let m = "Bad Request: Mcp-Session-Id is required (initialize first)";
            return Plan::Answer(Reply::rpc_error(400, &envelope.error_id(), -32600, m));
        }
        Err(reply) => return Plan::Answer(reply),
    };
    let covered =
        matches!(msg, Message::Request { method, .. } if policy::covered(method).is_some());
    if !covered {
        // Covered requests are charged once routed, with their server and tool (`route`).
        if let Err(reply) = limit::admit(snap, &principal, true, &envelope, Charge::default(), obs)
        {
            return Plan::Answer(reply);
        }
    }
    let fanout = |legs, work| {
        Plan::Fanout(Fanout {
            stream: None,
            snap,
            legs,
            principal: principal.clone(),
            work,
        })
    };
    match msg {
        Message::Request { id, method, .. } if method == "ping" => Plan::Answer(Reply::json(
            200,
            &json!({ "jsonrpc": "2.0", "id": id, "result": {} }),
        )),
        Message::Request { id, method, .. } if ListKind::for_method(method).is_some() => {
            let kind = ListKind::for_method(method).unwrap_or(ListKind::Tools);
            let params: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let cursors = match cursors_of(&params) {
                Ok(c) => c,
                Err(()) => {
                    let m = "Invalid params: unknown cursor";
                    return Plan::Answer(Reply::rpc_error(200, id, -32602, m));
                }
            };
            let legs = session_legs(snap, &principal, &session)
                .into_iter()
                .filter(|l| {
                    cursors
                        .as_ref()
                        .is_none_or(|c| c.contains_key(l.upstream.name()))
                })
                .collect();
            fanout(
                legs,
                Work::List {
                    id: id.clone(),
                    kind,
                    cursors,
                    modern: None,
                },
            )
        }
        Message::Request { id, method, .. } if method == "logging/setLevel" => fanout(
            session_legs(snap, &principal, &session),
            Work::Broadcast {
                body: bytes,
                answer: Some(id.clone()),
            },
        ),
        Message::Request {
            id,
            method,
            uses: Some(used),
        } => {
            if policy::covered(method).is_none() {
                return unknown_method(id, method);
            }
            let exposed = used.name.as_str();
            let resolved = resolve(snap, used);
            let leg = resolved
                .as_ref()
                .and_then(|(server, _)| routed_leg(snap, &principal, &session, server));
            match (resolved, leg) {
                (Some((_, Resolved::Name(original))), Some(leg)) => {
                    let original = original.into_owned();
                    route(
                        snap,
                        &principal,
                        leg,
                        envelope,
                        &bytes,
                        &original,
                        true,
                        Part::All,
                        obs,
                    )
                }
                (Some((server, Resolved::Shortened)), Some(leg))
                    if snap.policy.may_reach(&principal, server) =>
                {
                    // Found in the upstream's list by the fan-out, then decided by `route`.
                    // The lookup reaches the upstream: the rules that need no tool name are
                    // charged now, the others once it is known.
                    let target = Charge {
                        server: Some(server),
                        tool: None,
                        part: Part::WithoutTool,
                        named: None,
                    };
                    if let Err(reply) = limit::admit(snap, &principal, true, &envelope, target, obs)
                    {
                        return Plan::Answer(reply);
                    }
                    let kind = used.kind;
                    let exposed = exposed.to_owned();
                    fanout(
                        vec![leg],
                        Work::Resolve {
                            envelope,
                            body: bytes,
                            exposed,
                            kind,
                        },
                    )
                }
                (Some((server, Resolved::Name(original))), None) => {
                    super::audit::unreachable(snap, &principal, server, used.kind, &original);
                    unknown(id, used.kind, exposed)
                }
                _ => unknown(id, used.kind, exposed),
            }
        }
        Message::Request { id, method, .. } if tasks::ROUTED.contains(&method.as_str()) => {
            super::tasks::task(snap, &principal, &session, &envelope, &bytes, id, obs)
        }
        Message::Request { id, method, .. } if method == "tasks/list" => {
            let m = "Method not found: `tasks/list` is not available on /mcp (a task's id is handed out with the call that made it; keep it)";
            Plan::Answer(Reply::rpc_error(200, id, -32601, m))
        }
        Message::Request { id, method, .. } => unknown_method(id, method),
        Message::Notification { .. } => fanout(
            session_legs(snap, &principal, &session),
            Work::Broadcast {
                body: bytes,
                answer: None,
            },
        ),
        Message::Response { id } => {
            let routed = agg::inward_id(&snap.names, id).and_then(|(server, original)| {
                session_leg(snap, &principal, &session, server).map(|leg| (leg, original))
            });
            let Some((leg, original)) = routed else {
                let m = "Invalid Request: the answer names no request of this session";
                return Plan::Answer(Reply::rpc_error(400, &Value::Null, -32600, m));
            };
            let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            v["id"] = original;
            Plan::Forward(Forward {
                stream: None,
                op: Op::Call,
                upstream: leg.upstream,
                permit: leg.permit,
                body: Bytes::from(v.to_string()),
                envelope: Some(envelope),
                list: None,
                via: Some(Via {
                    session: leg.session,
                    version: leg.version,
                    names: &snap.names,
                    mcp_name: None,
                    task: None,
                }),
            })
        }
    }
}

/// A 2026-07-28 request on `/mcp` (its headers already checked): stateless, no session. Every
/// running upstream the caller may reach is a leg; `server/discover` and lists fan out, a
/// request naming a tool, prompt or resource goes to its owner with its own name in the body
/// and in `Mcp-Name`; `subscriptions/listen` merges every leg's listen stream.
fn modern<'s>(
    gw: &Gateway,
    snap: &'s Snapshot,
    principal: Arc<Principal>,
    envelope: Envelope,
    bytes: Bytes,
    obs: &mut Observation,
) -> Plan<'s> {
    let Some(Message::Request { id, method, uses }) = envelope.single() else {
        // 2026-07-28 defines no notification from client to server over HTTP.
        return Plan::Answer(Reply::accepted());
    };
    if uses.is_none() {
        // A request naming a tool, prompt or resource is charged once routed (`route`).
        if let Err(reply) = limit::admit(snap, &principal, false, &envelope, Charge::default(), obs)
        {
            return Plan::Answer(reply);
        }
    }
    let fanout = |work| {
        Plan::Fanout(Fanout {
            stream: None,
            snap,
            legs: all_legs(snap, &principal),
            principal: principal.clone(),
            work,
        })
    };
    if method == "server/discover" {
        return fanout(Work::Discover {
            id: id.clone(),
            body: bytes,
        });
    }
    if method == listen::METHOD {
        return super::listen::subscribe(gw, snap, principal, id, &bytes);
    }
    if let Some(kind) = ListKind::for_method(method) {
        let params: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let cursors = match cursors_of(&params) {
            Ok(c) => c,
            Err(()) => {
                let m = "Invalid params: unknown cursor";
                return Plan::Answer(Reply::rpc_error(400, id, -32602, m));
            }
        };
        let legs = all_legs(snap, &principal)
            .into_iter()
            .filter(|l| {
                cursors
                    .as_ref()
                    .is_none_or(|c| c.contains_key(l.upstream.name()))
            })
            .collect();
        let meta = params.pointer("/params/_meta").cloned();
        return Plan::Fanout(Fanout {
            stream: None,
            snap,
            legs,
            principal,
            work: Work::List {
                id: id.clone(),
                kind,
                cursors,
                modern: meta.or(Some(json!({}))),
            },
        });
    }
    let Some(used) = uses else {
        let m = format!("Method not found: `{method}` is not available on /mcp at 2026-07-28");
        return Plan::Answer(Reply::rpc_error(404, id, -32601, &m));
    };
    let exposed = used.name.as_str();
    let resolved = resolve(snap, used);
    let leg = resolved
        .as_ref()
        .and_then(|(server, _)| running_leg(snap, &principal, server));
    match (resolved, leg) {
        (Some((_, Resolved::Name(original))), Some(leg)) => {
            let original = original.into_owned();
            route(
                snap,
                &principal,
                leg,
                envelope,
                &bytes,
                &original,
                false,
                Part::All,
                obs,
            )
        }
        (Some((server, Resolved::Shortened)), Some(leg))
            if snap.policy.may_reach(&principal, server) =>
        {
            // As in the legacy era: found in the upstream's list, then decided by `route`.
            let target = Charge {
                server: Some(server),
                tool: None,
                part: Part::WithoutTool,
                named: None,
            };
            if let Err(reply) = limit::admit(snap, &principal, false, &envelope, target, obs) {
                return Plan::Answer(reply);
            }
            let kind = used.kind;
            let exposed = exposed.to_owned();
            Plan::Fanout(Fanout {
                stream: None,
                snap,
                legs: vec![leg],
                principal,
                work: Work::Resolve {
                    envelope,
                    body: bytes,
                    exposed,
                    kind,
                },
            })
        }
        (resolved, _) => {
            if let Some((server, Resolved::Name(original))) = resolved {
                super::audit::unreachable(snap, &principal, server, used.kind, &original);
            }
            // Unknown, answered exactly like a hidden one (the status tells nothing apart).
            let m = format!("Unknown {}: {exposed}", used.kind.as_str());
            Plan::Answer(Reply::rpc_error(200, id, -32602, &m))
        }
    }
}

/// The server a used name belongs to, and how its upstream name is found.
fn resolve<'s, 'u>(snap: &'s Snapshot, used: &'u Use) -> Option<(&'s str, Resolved<'u>)> {
    match used.kind {
        Kind::Resource => snap
            .names
            .resolve_uri(&used.name)
            .map(|(s, u)| (s, Resolved::Name(Cow::Borrowed(u)))),
        _ => snap.names.resolve(&used.name),
    }
}

/// The upstreams' cursors in a list request's `params.cursor` (`Ok(None)`: the first page;
/// `Err`: not a cursor this gateway made).
fn cursors_of(params: &Value) -> Result<Option<serde_json::Map<String, Value>>, ()> {
    match params.pointer("/params/cursor") {
        None | Some(Value::Null) => Ok(None),
        Some(c) => c.as_str().and_then(cursor::decode).map(Some).ok_or(()),
    }
}
