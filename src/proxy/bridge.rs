//! `/mcp/{server}` for upstreams reached through one shared session ([`crate::upstream::mux`]):
//! stdio children and legacy HTTP+SSE servers. The gateway is the Streamable HTTP server
//! here: it answers `initialize` from the upstream's own handshake result, mints session ids,
//! streams each call's progress, server-to-client requests and answer as SSE (or answers
//! JSON to clients that do not accept SSE), serves the GET notification stream and DELETE.
//!
//! Policy and the body checks already ran in the POST path before this is reached.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::respond;
use crate::config::Upstream;
use crate::mcp::filter::ListFilter;
use crate::telemetry::metrics::{metrics, ToolOutcome};
use crate::upstream::mux::{self, Call, Caps, Frame, Mux};

/// How long a request waits for an upstream that is still starting.
const READY_WAIT: Duration = Duration::from_secs(30);
/// A comment is sent on an idle SSE answer this often, so intermediaries keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// `Mcp-Session-Id`.
const SESSION: &str = "mcp-session-id";

/// The caller's session: id and declared capabilities. `Err` when a session id was sent that
/// the gateway did not mint (answered 404, so the client starts a new session).
fn caller_session(session: &Session, mux: &Mux) -> std::result::Result<(Arc<str>, Caps), ()> {
    match session
        .req_header()
        .headers
        .get(SESSION)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => Ok((Arc::from(""), Caps::default())),
        // Ended by a DELETE on this replica: 404, as MCP requires.
        Some(id) if mux.is_closed(id) => Err(()),
        Some(id) => mux::parse_session_id(id)
            .map(|caps| (Arc::from(id), caps))
            .ok_or(()),
    }
}

async fn session_not_found(session: &mut Session) -> Result<u16> {
    respond::rpc_error(
        session,
        404,
        &Value::Null,
        -32001,
        "Session not found",
        None,
        false,
    )
    .await?;
    Ok(404)
}

fn accepts_sse(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// A POST: one JSON-RPC message (batches are refused: they cannot be mapped one to one).
/// `tool`: the tool of a `tools/call` (from the classified envelope), for the tool-call metric.
pub async fn post(
    session: &mut Session,
    up: &Upstream,
    mux: &Arc<Mux>,
    body: &[u8],
    tool: Option<&str>,
    list: Option<ListFilter<'_>>,
    sse_open: &mut bool,
) -> Result<u16> {
    let server = up.name.as_str();
    let mut msg: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let m = format!("Parse error: {e}");
            respond::rpc_error(session, 400, &Value::Null, -32700, &m, None, false).await?;
            return Ok(400);
        }
    };
    if !msg.is_object() {
        let m = "Invalid Request: batches are not supported for stdio and legacy SSE upstreams; send one message per request";
        respond::rpc_error(session, 400, &Value::Null, -32600, m, None, false).await?;
        return Ok(400);
    }
    let Ok((sid, caps)) = caller_session(session, mux) else {
        return session_not_found(session).await;
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = msg.get("id").cloned().filter(|v| !v.is_null());
    match (method, id) {
        (Some(m), Some(id)) if m == "initialize" => {
            initialize(session, server, mux, &msg, id).await
        }
        (Some(m), Some(_)) if m == "ping" => {
            let body = json!({ "jsonrpc": "2.0", "id": msg["id"], "result": {} });
            respond::json(session, 200, &body, false).await?;
            Ok(200)
        }
        (Some(method), Some(id)) => {
            let (status, outcome) = call(
                session, up, mux, sid, caps, &mut msg, method, id, list, sse_open,
            )
            .await?;
            if let Some(tool) = tool {
                metrics().tool_call(server, tool, outcome);
            }
            Ok(status)
        }
        (Some(_), None) => {
            mux.notify(sid, msg);
            accepted(session).await
        }
        (None, Some(_)) if msg.get("result").is_some() || msg.get("error").is_some() => {
            mux.answer(sid, msg);
            accepted(session).await
        }
        _ => {
            let m = "Invalid Request: not a JSON-RPC request, notification or response";
            respond::rpc_error(session, 400, &Value::Null, -32600, m, None, false).await?;
            Ok(400)
        }
    }
}

async fn accepted(session: &mut Session) -> Result<u16> {
    let resp = ResponseHeader::build(202, Some(1))?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(None, true).await?;
    Ok(202)
}

/// `initialize`: answered from the upstream's handshake, with a new session id.
async fn initialize(
    session: &mut Session,
    server: &str,
    mux: &Arc<Mux>,
    msg: &Value,
    id: Value,
) -> Result<u16> {
    let init = match mux.ready(READY_WAIT).await {
        Ok(init) => init,
        Err(why) => {
            respond::upstream_failure(session, 502, &id, server, &why).await?;
            return Ok(502);
        }
    };
    let caps = Caps::from_initialize(msg.get("params"));
    let Some(sid) = mux::new_session_id(caps) else {
        let m = "cannot create a session id (no randomness available)";
        respond::rpc_error(session, 500, &id, -32603, m, None, false).await?;
        return Ok(500);
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
    let body = json!({ "jsonrpc": "2.0", "id": id, "result": result });
    respond::send(
        session,
        200,
        "application/json",
        Bytes::from(body.to_string()),
        &[(SESSION, sid.as_str())],
        false,
    )
    .await?;
    Ok(200)
}

/// A request: mapped, sent, and its messages relayed until the answer.
#[allow(clippy::too_many_arguments)]
async fn call(
    session: &mut Session,
    up: &Upstream,
    mux: &Arc<Mux>,
    sid: Arc<str>,
    caps: Caps,
    msg: &mut Value,
    method: String,
    orig_id: Value,
    list: Option<ListFilter<'_>>,
    sse_open: &mut bool,
) -> Result<(u16, ToolOutcome)> {
    let server = up.name.as_str();
    if let Err(why) = mux.ready(READY_WAIT).await {
        respond::upstream_failure(session, 502, &orig_id, server, &why).await?;
        return Ok((502, ToolOutcome::Failed));
    }
    let gid = mux.next_id();
    if let Some(slot) = msg.get_mut("id") {
        *slot = json!(gid);
    }
    let orig_token = msg
        .pointer_mut("/params/_meta/progressToken")
        .map(|t| std::mem::replace(t, json!(gid)));
    let uri = matches!(
        method.as_str(),
        "resources/subscribe" | "resources/unsubscribe"
    )
    .then(|| {
        msg.pointer("/params/uri")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
    .flatten();
    let streaming = accepts_sse(session);
    let started = std::time::Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sent = mux.call(Call {
        session: sid,
        caps,
        id: gid,
        orig_id: orig_id.clone(),
        orig_token,
        method,
        uri,
        bytes: Bytes::from(msg.to_string()),
        reply: tx,
        streaming,
    });
    if !sent {
        respond::upstream_failure(session, 502, &orig_id, server, "removed from the config")
            .await?;
        return Ok((502, ToolOutcome::Failed));
    }
    // Cancels the upstream request unless the answer arrived.
    let mut guard = CancelOnDrop {
        mux,
        id: gid,
        armed: true,
    };
    let finish = |bytes: Bytes| match &list {
        Some(f) => f.apply(&bytes).map(Bytes::from).unwrap_or(bytes),
        None => bytes,
    };
    if !streaming {
        let frame = tokio::select! {
            f = wait_final(&mut rx, up.timeout) => f,
            _ = client_gone(session) => return Ok((499, ToolOutcome::Failed)),
        };
        return match frame {
            Ok((bytes, is_error)) => {
                guard.armed = false;
                mux.latency().observe(started.elapsed().as_secs_f64());
                respond::send(session, 200, "application/json", finish(bytes), &[], false).await?;
                Ok((200, outcome(is_error)))
            }
            Err(Stop::Failed(why)) => {
                guard.armed = false;
                respond::upstream_failure(session, 502, &orig_id, server, &why).await?;
                Ok((502, ToolOutcome::Failed))
            }
            Err(Stop::Idle) => {
                let why = format!("no answer within {:?}", up.timeout);
                respond::upstream_failure(session, 504, &orig_id, server, &why).await?;
                Ok((504, ToolOutcome::Failed))
            }
        };
    }
    // Streaming: nothing is buffered; each message is one event as it arrives.
    start_sse(session, sse_open).await?;
    let mut idle = tokio::time::Instant::now();
    let mut watch_client = true;
    loop {
        let next = tokio::select! {
            biased;
            f = rx.recv() => Some(f),
            _ = tokio::time::sleep(KEEPALIVE.min(up.timeout)) => None,
            gone = session.as_downstream_mut().read_body_or_idle(true), if watch_client => {
                if gone.is_err() {
                    return Ok((499, ToolOutcome::Failed));
                }
                watch_client = false;
                continue;
            }
        };
        let (event, done) = match next {
            Some(Some(Frame::Message(bytes))) => {
                idle = tokio::time::Instant::now();
                (event(&bytes), None)
            }
            Some(Some(Frame::Final { bytes, is_error })) => {
                guard.armed = false;
                mux.latency().observe(started.elapsed().as_secs_f64());
                (event(&finish(bytes)), Some(outcome(is_error)))
            }
            Some(Some(Frame::Failed(why))) => {
                guard.armed = false;
                let m = format!("upstream server `{server}` is unavailable: {why}");
                let body = respond::rpc_error_body(&orig_id, -32603, &m, None);
                (event(&body), Some(ToolOutcome::Failed))
            }
            Some(None) => {
                guard.armed = false;
                let m = format!("upstream server `{server}` dropped the call");
                let body = respond::rpc_error_body(&orig_id, -32603, &m, None);
                (event(&body), Some(ToolOutcome::Failed))
            }
            None => {
                if idle.elapsed() >= up.timeout {
                    let why = format!(
                        "upstream server `{server}` sent nothing for {:?}",
                        up.timeout
                    );
                    let body = respond::rpc_error_body(&orig_id, -32001, &why, None);
                    (event(&body), Some(ToolOutcome::Failed))
                } else {
                    (Bytes::from_static(b": keepalive\n\n"), None)
                }
            }
        };
        if session
            .write_response_body(Some(event), false)
            .await
            .is_err()
        {
            return Ok((499, ToolOutcome::Failed));
        }
        if let Some(outcome) = done {
            let _ = session.write_response_body(None, true).await;
            return Ok((200, outcome));
        }
    }
}

/// Why waiting for an answer stopped.
enum Stop {
    Failed(String),
    Idle,
}

/// The answer, skipping related messages (a JSON caller cannot receive them).
async fn wait_final(
    rx: &mut mpsc::UnboundedReceiver<Frame>,
    idle: Duration,
) -> std::result::Result<(Bytes, bool), Stop> {
    loop {
        match tokio::time::timeout(idle, rx.recv()).await {
            Err(_) => return Err(Stop::Idle),
            Ok(None) => return Err(Stop::Failed("the call was dropped".into())),
            Ok(Some(Frame::Message(_))) => continue,
            Ok(Some(Frame::Final { bytes, is_error })) => return Ok((bytes, is_error)),
            Ok(Some(Frame::Failed(why))) => return Err(Stop::Failed(why)),
        }
    }
}

/// Resolves when the client closes its connection (a request body, if any, was read).
async fn client_gone(session: &mut Session) {
    loop {
        match session.as_downstream_mut().read_body_or_idle(true).await {
            Err(_) => return,
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

fn outcome(is_error: bool) -> ToolOutcome {
    if is_error {
        ToolOutcome::Error
    } else {
        ToolOutcome::Ok
    }
}

/// One SSE `message` event.
fn event(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

async fn start_sse(session: &mut Session, sse_open: &mut bool) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(5))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    resp.insert_header("x-accel-buffering", "no")?;
    super::exchange::frame_for_downstream(session, &mut resp);
    session.write_response_header(Box::new(resp), false).await?;
    if !*sse_open {
        metrics().sse_open.inc();
        *sse_open = true;
    }
    Ok(())
}

/// Cancels a call upstream when the caller stops waiting before the answer.
struct CancelOnDrop<'a> {
    mux: &'a Mux,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.mux.cancel(self.id);
        }
    }
}

/// `GET`: the session's stream of notifications and server-to-client requests.
pub async fn get(
    session: &mut Session,
    up: &Upstream,
    mux: &Arc<Mux>,
    sse_open: &mut bool,
) -> Result<u16> {
    let Ok((sid, caps)) = caller_session(session, mux) else {
        return session_not_found(session).await;
    };
    if sid.is_empty() {
        let m = "Bad Request: the GET stream needs an Mcp-Session-Id (initialize first)";
        respond::rpc_error(session, 400, &Value::Null, -32600, m, None, false).await?;
        return Ok(400);
    }
    if let Err(why) = mux.ready(READY_WAIT).await {
        respond::upstream_failure(session, 502, &Value::Null, &up.name, &why).await?;
        return Ok(502);
    }
    let mut rx = mux.stream(sid, caps);
    start_sse(session, sse_open).await?;
    let mut watch_client = true;
    loop {
        let chunk = tokio::select! {
            biased;
            f = rx.recv() => match f {
                Some(Frame::Message(bytes) | Frame::Final { bytes, .. }) => event(&bytes),
                // Replaced by a newer stream, the session closed, or the upstream was removed.
                Some(Frame::Failed(_)) | None => break,
            },
            _ = tokio::time::sleep(KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
            gone = session.as_downstream_mut().read_body_or_idle(true), if watch_client => {
                if gone.is_err() {
                    return Ok(200);
                }
                watch_client = false;
                continue;
            }
        };
        if session
            .write_response_body(Some(chunk), false)
            .await
            .is_err()
        {
            return Ok(200);
        }
    }
    let _ = session.write_response_body(None, true).await;
    Ok(200)
}

/// `DELETE`: end the session (its calls are cancelled upstream, its subscriptions released).
pub async fn delete(session: &mut Session, mux: &Arc<Mux>) -> Result<u16> {
    let Ok((sid, _)) = caller_session(session, mux) else {
        return session_not_found(session).await;
    };
    if sid.is_empty() {
        let m = "Bad Request: DELETE needs an Mcp-Session-Id";
        respond::rpc_error(session, 400, &Value::Null, -32600, m, None, false).await?;
        return Ok(400);
    }
    mux.close(sid);
    respond::send(
        session,
        200,
        "application/json",
        Bytes::from_static(b"{}"),
        &[],
        false,
    )
    .await?;
    Ok(200)
}
