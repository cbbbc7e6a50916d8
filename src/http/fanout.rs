//! The aggregated `/mcp` on the wire: a [`Fanout`] sends one request to several upstreams at
//! once and composes the answer (`initialize` with a sealed session id, merged lists, broadcast
//! notifications, DELETE, the merged GET stream); a routed [`Forward`] (one upstream, under the
//! session the gateway holds for the client) is relayed message by message with ids and URIs
//! namespaced. Each upstream of a fan-out is bounded by its own timeout (its
//! `connection.timeout`, at most [`FANOUT_TIMEOUT`]); one that fails or is slow is left out with
//! a warning and `portcullis_fanout_skipped_total`, and the answer still goes out.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Map, Value};

use super::downstream::Downstream;
pub use super::legs::FANOUT_TIMEOUT;
use super::legs::{ask_leg, drain, request, response, skipped, within, SESSION_GONE};
use super::stream::{event, start_sse, Ended, KEEPALIVE};
use super::write;
use crate::gateway::{Fanout, Observation, Plan, Work};
use crate::mcp::aggregate::{self as agg, Initialized, Reader};
use crate::mcp::filter::ListKind;
use crate::mcp::jsonrpc::classify;
use crate::mcp::reply::Reply;
use crate::mcp::session::{self, principal_tag, Held, Session};
use crate::policy::Kind;
use crate::request::RequestView;
use crate::upstream::Answer;

/// Run a fan-out and answer the client.
pub async fn run<D: Downstream>(
    d: &mut D,
    f: Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    if matches!(f.work, Work::Resolve { .. }) {
        return resolve(d, f, view, traceparent, obs).await;
    }
    let reply = match &f.work {
        Work::Initialize { id, body, version } => {
            initialize(&f, view, traceparent, id, body, version).await
        }
        Work::List {
            id,
            kind,
            cursors,
            modern,
        } => {
            list(
                &f,
                view,
                traceparent,
                id,
                *kind,
                cursors.as_ref(),
                modern.as_ref(),
            )
            .await
        }
        Work::Discover { id, body } => discover(&f, view, traceparent, id, body).await,
        Work::Broadcast { body, answer } => {
            broadcast(&f, view, traceparent, body).await;
            match answer {
                Some(id) => Reply::json(200, &json!({ "jsonrpc": "2.0", "id": id, "result": {} })),
                None => Reply::accepted(),
            }
        }
        Work::Delete => {
            let calls = f.legs.iter().map(|leg| async move {
                let req = request(view, leg, Bytes::new(), None, traceparent);
                match within(leg, leg.upstream.delete(&leg.permit, req)).await {
                    Ok(a) => drain(a).await,
                    Err(why) => skipped(leg, &why),
                }
            });
            futures_util::future::join_all(calls).await;
            Reply::bytes(200, "application/json", Bytes::from_static(b"{}"))
        }
        Work::Events => return events(d, &f, view, traceparent, obs).await,
        Work::Listen { .. } => {
            return super::subscriptions::listen(d, &f, view, traceparent, obs).await
        }
        Work::Resolve { .. } => return Ended::Complete,
    };
    write::reply(d, reply, false, obs).await;
    Ended::Complete
}

async fn initialize(
    f: &Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    id: &Value,
    body: &Bytes,
    version: &'static str,
) -> Reply {
    let envelope = classify(body).ok();
    let calls = f.legs.iter().map(|leg| {
        let envelope = envelope.as_ref();
        async move {
            let req = request(view, leg, body.clone(), envelope, traceparent);
            let opened = within(leg, async {
                let answer = leg
                    .upstream
                    .call(&leg.permit, req)
                    .await
                    .map_err(|f| f.detail)?;
                let session = match &answer {
                    Answer::Http(h) => h
                        .head
                        .get("mcp-session-id")
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned),
                    Answer::Local(r) => r
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("mcp-session-id"))
                        .map(|(_, v)| v.clone()),
                    _ => None,
                };
                response(answer, id).await.map(|r| (session, r))
            })
            .await;
            opened.map_err(|why| skipped(leg, &why)).ok()
        }
    });
    let opened = futures_util::future::join_all(calls).await;
    if !f.legs.is_empty() && opened.iter().all(Option::is_none) {
        return Reply::upstream_failure(502, id, "mcp", "no upstream answered `initialize`");
    }
    let mut answered = Vec::new();
    let mut upstreams = Vec::new();
    for (leg, o) in f.legs.iter().zip(&opened) {
        if let Some((sid, result)) = o {
            answered.push(Initialized {
                server: leg.upstream.name(),
                result,
            });
            upstreams.push(Held {
                server: leg.upstream.name().to_owned(),
                session: sid.clone().unwrap_or_default(),
                // What it negotiated: its later requests say so (it may be older than the
                // client's).
                version: result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(version)
                    .to_owned(),
            });
        }
    }
    let sealed = f.snap.sessions.seal(&Session {
        created: session::now(),
        principal: principal_tag(&f.principal),
        protocol: version.to_owned(),
        upstreams,
    });
    let Some(sealed) = sealed else {
        let m = "cannot create a session id (no randomness available)";
        return Reply::rpc_error(500, id, -32603, m);
    };
    let result = agg::merge_initialize(version, &answered);
    Reply::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id, "result": result }),
    )
    .with_header("mcp-session-id", sealed)
}

/// Most list pages read to find a shortened name.
const RESOLVE_PAGES: usize = 10;

/// A covered request naming a shortened name: find the upstream name in the leg's list, then
/// let the gateway decide it as if it had been named plainly.
async fn resolve<D: Downstream>(
    d: &mut D,
    f: Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    let Fanout {
        snap,
        principal,
        mut legs,
        work:
            Work::Resolve {
                envelope,
                body,
                exposed,
                kind,
            },
        ..
    } = f
    else {
        return Ended::Complete;
    };
    let Some(leg) = legs.pop() else {
        return Ended::Complete;
    };
    let list_kind = if kind == Kind::Prompt {
        ListKind::Prompts
    } else {
        ListKind::Tools
    };
    let server = leg.upstream.name();
    let ask = Value::from(1);
    // 2026-07-28: the lists are the gateway's own requests with the client's envelope.
    let modern = crate::mcp::era::of(view) == crate::mcp::era::Era::Modern;
    // Only the protocol's own keys (not the call's progress token, say).
    let meta = modern
        .then(|| {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.pointer("/params/_meta").cloned())
        })
        .flatten()
        .and_then(|m| match m {
            Value::Object(o) => Some(Value::Object(
                o.into_iter()
                    .filter(|(k, _)| k.starts_with("io.modelcontextprotocol/"))
                    .collect(),
            )),
            _ => None,
        });
    let mut cursor: Option<Value> = None;
    let mut found = None;
    for _ in 0..RESOLVE_PAGES {
        let mut params = cursor
            .take()
            .map_or_else(|| json!({}), |c| json!({ "cursor": c }));
        if let Some(m) = &meta {
            params["_meta"] = m.clone();
        }
        let list = Bytes::from(
            json!({ "jsonrpc": "2.0", "id": 1, "method": list_kind.method(), "params": params })
                .to_string(),
        );
        let own = modern.then_some(list_kind.method());
        let page = match ask_leg(&leg, view, list, traceparent, &ask, own).await {
            Ok(p) => p,
            Err(why) => {
                skipped(&leg, &why);
                break;
            }
        };
        let items = page
            .get(agg::list_field(list_kind))
            .and_then(Value::as_array);
        found = items
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("name").and_then(Value::as_str))
            .find(|n| snap.names.expose(server, n) == exposed)
            .map(str::to_owned);
        cursor = page.get("nextCursor").filter(|c| c.is_string()).cloned();
        if found.is_some() || cursor.is_none() {
            break;
        }
    }
    let Some(original) = found else {
        let m = format!("Unknown {}: {exposed}", kind.as_str());
        let reply = Reply::rpc_error(200, &envelope.error_id(), -32602, &m);
        write::reply(d, reply, false, obs).await;
        return Ended::Complete;
    };
    match crate::gateway::route::route(
        snap,
        &principal,
        leg,
        envelope,
        &body,
        &original,
        !modern,
        crate::policy::limit::Part::ToolOnly,
        obs,
    ) {
        Plan::Forward(fwd) => super::routed::forward(d, fwd, view, traceparent, obs).await,
        Plan::Answer(reply) => {
            write::reply(d, reply, false, obs).await;
            Ended::Complete
        }
        Plan::Fanout(_) => {
            let reply = Reply::rpc_error(500, &Value::Null, -32603, "internal error");
            write::reply(d, reply, false, obs).await;
            Ended::Complete
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn list(
    f: &Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    id: &Value,
    kind: ListKind,
    cursors: Option<&Map<String, Value>>,
    modern: Option<&Value>,
) -> Reply {
    let ask = Value::from(1);
    let calls = f.legs.iter().map(|leg| {
        let cursor = cursors.and_then(|c| c.get(leg.upstream.name()));
        let mut params = cursor.map_or_else(|| json!({}), |c| json!({ "cursor": c }));
        if let Some(meta) = modern {
            params["_meta"] = meta.clone();
        }
        let body = Bytes::from(
            json!({ "jsonrpc": "2.0", "id": 1, "method": kind.method(), "params": params })
                .to_string(),
        );
        let ask = &ask;
        async move {
            match ask_leg(leg, view, body, traceparent, ask, None).await {
                Err(why) if why == SESSION_GONE && leg.session.is_some() => Err(()),
                Err(why) => {
                    skipped(leg, &why);
                    Ok(None)
                }
                Ok(p) => Ok(Some(p)),
            }
        }
    });
    let pages = futures_util::future::join_all(calls).await;
    // An upstream that no longer knows its part of the session (ended, restarted, expired):
    // the session is over for the client too, which initializes a new one.
    let Ok(pages) = pages.into_iter().collect::<Result<Vec<_>, ()>>() else {
        return Reply::rpc_error(404, &Value::Null, -32001, "Session not found");
    };
    let reader = Reader {
        policy: &f.snap.policy,
        scopes: (!f.principal.anonymous).then_some(&f.principal.scopes),
    };
    let mut items = Vec::new();
    let mut next = Map::new();
    let mut ttl: Option<u64> = None;
    for (leg, page) in f.legs.iter().zip(pages) {
        let Some(page) = page else { continue };
        let server = leg.upstream.name();
        let page_ttl = page.get("ttlMs").and_then(Value::as_u64).unwrap_or(0);
        ttl = Some(ttl.map_or(page_ttl, |t| t.min(page_ttl)));
        if let Some(c) = agg::merge_page(kind, &f.snap.names, reader, server, page, &mut items) {
            next.insert(server.to_owned(), c);
        }
    }
    let mut result = Map::new();
    result.insert(agg::list_field(kind).into(), Value::Array(items));
    if let Some(c) = crate::mcp::names::cursor::encode(&next) {
        result.insert("nextCursor".into(), Value::from(c));
    }
    if modern.is_some() {
        // The shortest time any upstream allows; filtered per caller, so never public.
        result.insert("resultType".into(), Value::from("complete"));
        result.insert("ttlMs".into(), Value::from(ttl.unwrap_or(0)));
        result.insert("cacheScope".into(), Value::from("private"));
        result.insert("_meta".into(), agg::gateway_meta());
    }
    Reply::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id, "result": result }),
    )
}

/// 2026-07-28 `server/discover` on every leg, merged (legs that do not speak 2026-07-28 are
/// left out with a warning).
async fn discover(
    f: &Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    id: &Value,
    body: &Bytes,
) -> Reply {
    let calls = f.legs.iter().map(|leg| async move {
        ask_leg(leg, view, body.clone(), traceparent, id, None)
            .await
            .map_err(|why| skipped(leg, &why))
            .ok()
    });
    let found = futures_util::future::join_all(calls).await;
    let answered: Vec<Initialized<'_>> = f
        .legs
        .iter()
        .zip(&found)
        .filter_map(|(leg, r)| {
            r.as_ref().map(|result| Initialized {
                server: leg.upstream.name(),
                result,
            })
        })
        .collect();
    let result = agg::merge_discover(&answered);
    Reply::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id, "result": result }),
    )
}

async fn broadcast(f: &Fanout<'_>, view: &RequestView<'_>, traceparent: &str, body: &Bytes) {
    let envelope = classify(body).ok();
    let calls = f.legs.iter().map(|leg| {
        let envelope = envelope.as_ref();
        async move {
            let req = request(view, leg, body.clone(), envelope, traceparent);
            let sent = within(leg, async {
                let answer = leg
                    .upstream
                    .call(&leg.permit, req)
                    .await
                    .map_err(|f| f.detail)?;
                drain(answer).await;
                Ok::<(), String>(())
            })
            .await;
            if let Err(why) = sent {
                skipped(leg, &why);
            }
        }
    });
    futures_util::future::join_all(calls).await;
}

/// GET on `/mcp`: every leg's stream, merged into one SSE answer; each message namespaced (the
/// front door runs it directly, in a future of its own; [`run`] reaches it too).
pub async fn events<D: Downstream>(
    d: &mut D,
    f: &Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    let opens = f.legs.iter().map(|leg| async move {
        let req = request(view, leg, Bytes::new(), None, traceparent);
        let answer = match within(leg, leg.upstream.events(&leg.permit, req)).await {
            Ok(a) => a,
            Err(why) => {
                skipped(leg, &why);
                return None;
            }
        };
        let stream = match &answer {
            Answer::Http(h) => h.head.status() == 200 && h.head.is_event_stream(),
            Answer::Events(_) => true,
            _ => false,
        };
        stream.then(|| (leg.upstream.name(), answer))
    });
    let streams: Vec<_> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .flatten()
        .collect();
    if streams.is_empty() {
        let m = "no upstream of this session offers a server-initiated stream";
        let reply =
            Reply::rpc_error(405, &Value::Null, -32000, m).with_header("allow", "POST, DELETE");
        write::reply(d, reply, false, obs).await;
        return Ended::Complete;
    }
    let names = &f.snap.names;
    let mut merged = stream::select_all(streams.into_iter().map(|(server, answer)| {
        stream::unfold(answer.into_messages(), move |mut r| async move {
            match r.next().await {
                Ok(Some(m)) => Some(((server, m), r)),
                _ => None,
            }
        })
        .boxed()
    }));
    if start_sse(d).await.is_err() {
        obs.status(499);
        return Ended::Broken;
    }
    obs.status(200);
    let _open = obs.sse_stream();
    let mut watching = true;
    loop {
        let chunk = tokio::select! {
            biased;
            next = merged.next() => match next {
                // A task's status names the upstream's task id, which only the call that made
                // the task can make an `/mcp` one: left out (clients poll `tasks/get`).
                Some((_, m)) if is_task_status(&m) => continue,
                Some((server, m)) => event(&agg::outward(names, server, &m).unwrap_or(m)),
                None => break,
            },
            _ = tokio::time::sleep(KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
            hung_up = d.hangup(), if watching => {
                if hung_up {
                    return Ended::Broken;
                }
                watching = false;
                continue;
            }
        };
        if d.chunk(chunk).await.is_err() {
            return Ended::Broken;
        }
    }
    match d.end().await {
        Ok(()) => Ended::Complete,
        Err(_) => Ended::Broken,
    }
}

/// Whether an upstream message is `notifications/tasks/status` (a cheap look first).
fn is_task_status(m: &[u8]) -> bool {
    memchr::memmem::find(m, b"notifications/tasks/status").is_some()
        && serde_json::from_slice::<Value>(m).ok().is_some_and(|v| {
            v.get("method").and_then(Value::as_str) == Some("notifications/tasks/status")
        })
}
