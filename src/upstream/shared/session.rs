//! The gateway as the Streamable HTTP server of a shared session ([`super::mux`]): it answers
//! `initialize` from the upstream's own handshake, mints session ids, turns a call into its
//! stream of messages ([`Messages`]), serves the GET notification stream ([`Events`]) and
//! DELETE. Policy and the body checks ran before any of this is reached.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::routes::Retirement;
use super::super::{Answer, Request};
use super::calls::{call, Modern, READY_WAIT};
pub use super::calls::{Item, Messages};
use super::mux::{self, Caps, Mux};
pub use super::streams::Events;
use crate::config::Upstream as UpstreamConfig;
use crate::mcp::era::{self, Era};
use crate::mcp::listen;
use crate::mcp::reply::Reply;

/// `Mcp-Session-Id`.
const SESSION: &str = "mcp-session-id";

/// The caller's session: id and declared capabilities. `Err` when a session id was sent that
/// the gateway did not mint, or one this replica ended (answered 404, so the client starts a
/// new session).
fn caller_session(req: &Request<'_>, mux: &Mux) -> Result<(Arc<str>, Caps), ()> {
    match req.session_id() {
        crate::request::Single::Absent => Ok((Arc::from(""), Caps::default())),
        crate::request::Single::Many => Err(()),
        crate::request::Single::One(raw) => {
            let id = std::str::from_utf8(raw).map_err(|_| ())?;
            if mux.is_closed(id) {
                return Err(());
            }
            mux::parse_session_id(id)
                .map(|caps| (Arc::from(id), caps))
                .ok_or(())
        }
    }
}

fn session_not_found() -> Reply {
    Reply::rpc_error(404, &Value::Null, -32001, "Session not found")
}

/// A POST: one JSON-RPC message (batches are refused: they cannot be mapped one to one).
/// `retirement`: when the snapshot the request pinned stops being live (a listen stream ends
/// then).
pub async fn post(
    up: &UpstreamConfig,
    mux: &Arc<Mux>,
    req: &Request<'_>,
    retirement: &Retirement,
) -> Answer<'static> {
    let server = up.name.as_str();
    let mut msg: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            let m = format!("Parse error: {e}");
            return Answer::Local(Reply::rpc_error(400, &Value::Null, -32700, &m));
        }
    };
    if !msg.is_object() {
        let m = "Invalid Request: batches are not supported for stdio and legacy SSE upstreams; send one message per request";
        return Answer::Local(Reply::rpc_error(400, &Value::Null, -32600, m));
    }
    if era::of(req.view) == Era::Modern {
        return modern(up, mux, req, msg, retirement).await;
    }
    let Ok((sid, caps)) = caller_session(req, mux) else {
        return Answer::Local(session_not_found());
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = msg.get("id").cloned().filter(|v| !v.is_null());
    let local = match (method, id) {
        (Some(m), Some(id)) if m == "initialize" => initialize(server, mux, &msg, id).await,
        (Some(m), Some(id)) if m == "ping" => {
            Reply::json(200, &json!({ "jsonrpc": "2.0", "id": id, "result": {} }))
        }
        (Some(method), Some(id)) => {
            return call(
                up,
                mux,
                sid,
                caps,
                &mut msg,
                method,
                id,
                req.view.accepts_sse(),
            )
            .await
        }
        (Some(_), None) => {
            mux.notify(sid, msg);
            Reply::accepted()
        }
        (None, Some(_)) if msg.get("result").is_some() || msg.get("error").is_some() => {
            mux.answer(sid, msg);
            Reply::accepted()
        }
        _ => {
            let m = "Invalid Request: not a JSON-RPC request, notification or response";
            Reply::rpc_error(400, &Value::Null, -32600, m)
        }
    };
    Answer::Local(local)
}

/// A 2026-07-28 request (its headers were checked against it) to a legacy upstream: the
/// gateway's own session with the upstream serves it. `server/discover` is answered from the
/// upstream's handshake; other requests run as calls of a session minted for the one request,
/// declaring no client capabilities (a modern client takes no server-to-client requests), and
/// their result is made a 2026-07-28 result (`resultType`, the server's identity in `_meta`,
/// `ttlMs`/`cacheScope` on lists and reads). `subscriptions/listen` is served from a session of
/// its own ([`super::streams::listen`]). Methods 2026-07-28 removed are 404.
async fn modern(
    up: &UpstreamConfig,
    mux: &Arc<Mux>,
    req: &Request<'_>,
    mut msg: Value,
    retirement: &Retirement,
) -> Answer<'static> {
    let server = up.name.as_str();
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = msg.get("id").cloned().filter(|v| !v.is_null());
    let (Some(method), Some(id)) = (method, id) else {
        // 2026-07-28 defines no notification from client to server over HTTP.
        return Answer::Local(Reply::accepted());
    };
    let init = match mux.ready(READY_WAIT).await {
        Ok(init) => init,
        Err(why) => return Answer::Local(Reply::upstream_failure(502, &id, server, &why)),
    };
    match method.as_str() {
        "server/discover" => {
            // The upstream's own capabilities: its list changes and resource updates reach
            // listen streams.
            Answer::Local(Reply::json(
                200,
                &json!({ "jsonrpc": "2.0", "id": id, "result": era::discovered(&init) }),
            ))
        }
        listen::METHOD => {
            super::streams::listen(up, mux, &msg, id, &init, retirement.clone()).await
        }
        "initialize"
        | "ping"
        | "logging/setLevel"
        | "resources/subscribe"
        | "resources/unsubscribe" => {
            let m = format!(
                "Method not found: `{method}` is not available at 2026-07-28 on this upstream"
            );
            Answer::Local(Reply::rpc_error(404, &id, -32601, &m))
        }
        _ => {
            let Some(sid) = mux::new_session_id(Caps::default()) else {
                let m = "cannot create a session id (no randomness available)";
                return Answer::Local(Reply::rpc_error(500, &id, -32603, m));
            };
            let list = matches!(
                method.as_str(),
                "tools/list"
                    | "prompts/list"
                    | "resources/list"
                    | "resources/templates/list"
                    | "resources/read"
            );
            let server_info = init.get("serverInfo").cloned().unwrap_or(Value::Null);
            let answer = call(
                up,
                mux,
                Arc::from(sid),
                Caps::default(),
                &mut msg,
                method,
                id,
                req.view.accepts_sse(),
            )
            .await;
            match answer {
                Answer::Messages(mut m) => {
                    m.modern = Some(Arc::new(Modern { server_info, list }));
                    Answer::Messages(m)
                }
                other => other,
            }
        }
    }
}

/// `initialize`: answered from the upstream's handshake, with a new session id.
async fn initialize(server: &str, mux: &Arc<Mux>, msg: &Value, id: Value) -> Reply {
    let init = match mux.ready(READY_WAIT).await {
        Ok(init) => init,
        Err(why) => return Reply::upstream_failure(502, &id, server, &why),
    };
    let caps = Caps::from_initialize(msg.get("params"));
    let Some(sid) = mux::new_session_id(caps) else {
        let m = "cannot create a session id (no randomness available)";
        return Reply::rpc_error(500, &id, -32603, m);
    };
    let mut result = (*init).clone();
    let version = Mux::negotiate(
        msg.pointer("/params/protocolVersion")
            .and_then(Value::as_str),
        result.get("protocolVersion").and_then(Value::as_str),
    );
    if let Some(obj) = result.as_object_mut() {
        obj.insert("protocolVersion".into(), Value::from(version));
    }
    Reply::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id, "result": result }),
    )
    .with_header(SESSION, sid)
}

/// `GET`: the session's stream of notifications and server-to-client requests.
pub async fn get(up: &UpstreamConfig, mux: &Arc<Mux>, req: &Request<'_>) -> Answer<'static> {
    let Ok((sid, caps)) = caller_session(req, mux) else {
        return Answer::Local(session_not_found());
    };
    if sid.is_empty() {
        let m = "Bad Request: the GET stream needs an Mcp-Session-Id (initialize first)";
        return Answer::Local(Reply::rpc_error(400, &Value::Null, -32600, m));
    }
    if let Err(why) = mux.ready(READY_WAIT).await {
        return Answer::Local(Reply::upstream_failure(502, &Value::Null, &up.name, &why));
    }
    Answer::Events(Events::of(mux.stream(sid, caps)))
}

/// `DELETE`: end the session (its calls are cancelled upstream, its subscriptions released).
pub fn delete(mux: &Arc<Mux>, req: &Request<'_>) -> Answer<'static> {
    let Ok((sid, _)) = caller_session(req, mux) else {
        return Answer::Local(session_not_found());
    };
    if sid.is_empty() {
        let m = "Bad Request: DELETE needs an Mcp-Session-Id";
        return Answer::Local(Reply::rpc_error(400, &Value::Null, -32600, m));
    }
    mux.close(sid);
    Answer::Local(Reply::bytes(
        200,
        "application/json",
        Bytes::from_static(b"{}"),
    ))
}
