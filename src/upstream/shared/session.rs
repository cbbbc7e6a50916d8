//! The gateway as the Streamable HTTP server of a shared session ([`super::mux`]): it answers
//! `initialize` from the upstream's own handshake, mints session ids, turns a call into its
//! stream of messages ([`Messages`]), serves the GET notification stream ([`Events`]) and
//! DELETE. Policy and the body checks ran before any of this is reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::routes::Retirement;
use super::super::{Answer, Request};
use super::mux::{self, Caps, Done, Mux, Replies};
use crate::config::Upstream as UpstreamConfig;
use crate::mcp::era::{self, Era};
use crate::mcp::listen::{self, Filter};
use crate::mcp::reply::Reply;

/// How long a request waits for an upstream that is still starting.
const READY_WAIT: Duration = Duration::from_secs(30);

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
/// its own ([`listen`]). Methods 2026-07-28 removed are 404.
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
        listen::METHOD => listen(up, mux, &msg, id, &init, retirement.clone()).await,
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

/// 2026-07-28 `subscriptions/listen` on a legacy upstream: a session of the gateway's own with
/// the shared upstream (never shared with another request), subscribed to the URIs asked for.
/// The stream starts with the acknowledgment of what the upstream can deliver (list changes it
/// announces in its capabilities; resource updates when it offers `subscribe`, for the URIs it
/// accepted), carries only the events asked for, each stamped with the subscription id, and
/// ends with the closing result when the snapshot is retired (reload, shutdown) or the upstream
/// is removed. Dropped, it releases the session and its subscriptions.
async fn listen(
    up: &UpstreamConfig,
    mux: &Arc<Mux>,
    msg: &Value,
    id: Value,
    init: &Value,
    retirement: Retirement,
) -> Answer<'static> {
    let requested = match Filter::from_params(msg.get("params")) {
        Ok(f) => f,
        Err(why) => {
            let m = format!("Invalid params: {why}");
            return Answer::Local(Reply::rpc_error(400, &id, -32602, &m));
        }
    };
    let can = |path: &str| {
        init.pointer(&format!("/capabilities{path}"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut honored = Filter {
        tools: requested.tools && can("/tools/listChanged"),
        prompts: requested.prompts && can("/prompts/listChanged"),
        resources: requested.resources && can("/resources/listChanged"),
        uris: Vec::new(),
    };
    let Some(sid) = mux::new_session_id(Caps::default()) else {
        let m = "cannot create a session id (no randomness available)";
        return Answer::Local(Reply::rpc_error(500, &id, -32603, m));
    };
    let sid: Arc<str> = Arc::from(sid);
    // The stream first: an update sent while the subscriptions are made is not lost.
    let rx = mux.stream(sid.clone(), Caps::default());
    let release = Release {
        mux: mux.clone(),
        session: sid.clone(),
    };
    if can("/resources/subscribe") {
        // Sixteen at a time (the shared session's queue is every caller's), each bounded by
        // the upstream's timeout.
        let mut made = Vec::with_capacity(requested.uris.len());
        for some in requested.uris.chunks(16) {
            let calls = some.iter().map(|uri| subscribe(up, mux, &sid, uri));
            made.extend(futures_util::future::join_all(calls).await);
        }
        honored.uris = requested
            .uris
            .into_iter()
            .zip(made)
            .filter_map(|(uri, ok)| ok.then_some(uri))
            .collect();
    }
    Answer::Events(Events {
        rx,
        listen: Some(Box::new(Listening {
            id,
            honored,
            acked: false,
            closed: false,
            retirement,
            _release: release,
        })),
    })
}

/// Subscribe session `sid` to `uri` upstream: whether the upstream accepted it.
async fn subscribe(up: &UpstreamConfig, mux: &Arc<Mux>, sid: &Arc<str>, uri: &str) -> bool {
    let method = "resources/subscribe";
    let mut m = json!({ "jsonrpc": "2.0", "id": 0, "method": method, "params": { "uri": uri } });
    let answer = call(
        up,
        mux,
        sid.clone(),
        Caps::default(),
        &mut m,
        method.into(),
        json!(0),
        false,
    )
    .await;
    let Answer::Messages(mut messages) = answer else {
        return false;
    };
    loop {
        match messages.next(Duration::from_secs(3600)).await {
            Item::Answer { is_error, .. } => return !is_error,
            Item::Failed { detail, .. } => {
                tracing::warn!(server = %up.name, uri, reason = %detail, "a listen stream's subscription failed");
                return false;
            }
            Item::Message(_) | Item::Quiet => {}
        }
    }
}

/// Ends a listen stream's session of the shared upstream when the stream is dropped.
struct Release {
    mux: Arc<Mux>,
    session: Arc<str>,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.mux.release(self.session.clone());
    }
}

/// A listen stream over a shared session (see [`listen`]).
struct Listening {
    id: Value,
    honored: Filter,
    acked: bool,
    closed: bool,
    retirement: Retirement,
    _release: Release,
}

/// How a call's answer is made a 2026-07-28 result.
#[derive(Debug)]
pub struct Modern {
    server_info: Value,
    list: bool,
}

impl Modern {
    /// `answer` with its result completed; errors and anything else as they are.
    fn result(&self, answer: Bytes) -> Bytes {
        let Ok(mut v) = serde_json::from_slice::<Value>(&answer) else {
            return answer;
        };
        let Some(result) = v.get_mut("result").and_then(Value::as_object_mut) else {
            return answer;
        };
        result
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        if self.list {
            result.entry("ttlMs").or_insert_with(|| Value::from(0));
            result
                .entry("cacheScope")
                .or_insert_with(|| Value::from("private"));
        }
        let meta = result.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(
                "io.modelcontextprotocol/serverInfo".into(),
                self.server_info.clone(),
            );
        }
        Bytes::from(v.to_string())
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

/// A request: mapped and sent; its messages follow in the [`Messages`] answer.
#[allow(clippy::too_many_arguments)]
async fn call(
    up: &UpstreamConfig,
    mux: &Arc<Mux>,
    sid: Arc<str>,
    caps: Caps,
    msg: &mut Value,
    method: String,
    orig_id: Value,
    streaming: bool,
) -> Answer<'static> {
    let server = up.name.as_str();
    if let Err(why) = mux.ready(READY_WAIT).await {
        return Answer::Local(Reply::upstream_failure(502, &orig_id, server, &why));
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
    let (reply, replies) = mux::reply();
    let sent = mux.call(mux::Call {
        session: sid,
        caps,
        id: gid,
        orig_id: orig_id.clone(),
        orig_token,
        method,
        uri,
        bytes: Bytes::from(msg.to_string()),
        reply,
        streaming,
    });
    if let Err(why) = sent {
        return Answer::Local(Reply::upstream_failure(502, &orig_id, server, &why));
    }
    let now = Instant::now();
    Answer::Messages(Messages {
        replies,
        cancel: CancelOnDrop {
            mux: mux.clone(),
            id: gid,
            armed: true,
        },
        orig_id,
        server: Arc::from(server),
        idle: up.timeout,
        last: now,
        started: now,
        streaming,
        done: false,
        messages_open: true,
        modern: None,
    })
}

/// What comes next in a call's [`Messages`].
#[derive(Debug)]
pub enum Item {
    /// A related message (progress, a server-to-client request, a log message).
    Message(Bytes),
    /// The answer; nothing follows.
    Answer {
        /// The message, its id the caller's own.
        bytes: Bytes,
        /// Whether it reports an error.
        is_error: bool,
    },
    /// No answer will come: 502 (the upstream failed) or 504 (it was silent too long).
    Failed {
        /// 502 or 504.
        status: u16,
        /// Why.
        detail: String,
    },
    /// Nothing arrived for the keep-alive interval (a stream sends a comment).
    Quiet,
}

/// One call through a shared session: its related messages as they come, then its answer.
/// Dropped before the answer, it cancels the call upstream.
pub struct Messages {
    replies: Replies,
    cancel: CancelOnDrop,
    orig_id: Value,
    server: Arc<str>,
    idle: Duration,
    last: Instant,
    started: Instant,
    /// The caller reads a stream (`Accept: text/event-stream`): related messages reach it.
    pub streaming: bool,
    done: bool,
    messages_open: bool,
    /// Set for a 2026-07-28 caller: its answer is made a 2026-07-28 result.
    modern: Option<Arc<Modern>>,
}

impl Messages {
    /// The caller's id of the request.
    pub fn id(&self) -> &Value {
        &self.orig_id
    }

    /// The upstream server's name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The next item, waiting at most `keepalive` (then [`Item::Quiet`]). A caller that does
    /// not read a stream gets no related messages (they are skipped). After the upstream was
    /// silent for its `connection.timeout`, the call fails (504).
    pub async fn next(&mut self, keepalive: Duration) -> Item {
        enum Got {
            Message(Option<Bytes>),
            Done(Result<Done, tokio::sync::oneshot::error::RecvError>),
            Tick,
        }
        loop {
            if self.done {
                return Item::Failed {
                    status: 502,
                    detail: "the call already ended".into(),
                };
            }
            let left = self.idle.saturating_sub(self.last.elapsed());
            if left.is_zero() {
                // Dropping the answer (or the call) cancels the call upstream.
                self.done = true;
                return Item::Failed {
                    status: 504,
                    detail: format!("no answer within {:?}", self.idle),
                };
            }
            let wait = keepalive.min(left);
            let got = tokio::select! {
                biased;
                m = self.replies.messages.recv(), if self.messages_open => Got::Message(m),
                d = &mut self.replies.done => Got::Done(d),
                _ = tokio::time::sleep(wait) => Got::Tick,
            };
            match got {
                Got::Message(Some(m)) => {
                    self.last = Instant::now();
                    if self.streaming {
                        return Item::Message(m);
                    }
                }
                Got::Message(None) => self.messages_open = false,
                Got::Done(Ok(Done::Answer { bytes, is_error })) => {
                    // Messages sent before the answer are delivered first.
                    if self.streaming {
                        if let Ok(m) = self.replies.messages.try_recv() {
                            self.replies.done = finished(bytes, is_error);
                            return Item::Message(m);
                        }
                    }
                    self.finish(true);
                    let bytes = match &self.modern {
                        Some(m) => m.result(bytes),
                        None => bytes,
                    };
                    return Item::Answer { bytes, is_error };
                }
                Got::Done(Ok(Done::Failed(why))) => {
                    self.finish(false);
                    return Item::Failed {
                        status: 502,
                        detail: why,
                    };
                }
                Got::Done(Err(_)) => {
                    self.finish(false);
                    return Item::Failed {
                        status: 502,
                        detail: "the call was dropped".into(),
                    };
                }
                Got::Tick if self.streaming && wait == keepalive => return Item::Quiet,
                Got::Tick => {}
            }
        }
    }

    /// The call ended; `answered`: with an answer (its time is the upstream's latency).
    fn finish(&mut self, answered: bool) {
        self.done = true;
        self.cancel.armed = false;
        if answered {
            self.cancel
                .mux
                .latency()
                .observe(self.started.elapsed().as_secs_f64());
        }
    }

    /// The next message (related ones and the answer), for endpoints that merge answers.
    pub async fn next_message(&mut self) -> Result<Option<Bytes>, String> {
        if self.done {
            return Ok(None);
        }
        loop {
            // Endpoints that merge answers read every message.
            self.streaming = true;
            match self.next(Duration::from_secs(3600)).await {
                Item::Message(m) => return Ok(Some(m)),
                Item::Answer { bytes, .. } => return Ok(Some(bytes)),
                Item::Failed { detail, .. } => return Err(detail),
                Item::Quiet => {}
            }
        }
    }
}

/// A `done` receiver that already holds `Done::Answer` (an answer read early while related
/// messages were still queued).
fn finished(bytes: Bytes, is_error: bool) -> tokio::sync::oneshot::Receiver<Done> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(Done::Answer { bytes, is_error });
    rx
}

/// Cancels a call upstream when the caller stops waiting before the answer.
struct CancelOnDrop {
    mux: Arc<Mux>,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.mux.cancel(self.id);
        }
    }
}

/// A shared session's notification stream (GET), or a 2026-07-28 listen stream.
pub struct Events {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    listen: Option<Box<Listening>>,
}

impl Events {
    /// The next message; `None` when the stream ended (replaced by a newer one, the session
    /// closed, the upstream removed). A listen stream starts with its acknowledgment, carries
    /// the events it asked for and ends with its closing result.
    pub async fn next(&mut self) -> Option<Bytes> {
        let Events { rx, listen } = self;
        let Some(l) = listen else {
            return rx.recv().await;
        };
        if !l.acked {
            l.acked = true;
            return Some(listen::acknowledged(&l.id, &l.honored));
        }
        if l.closed {
            return None;
        }
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let Ok(v) = serde_json::from_slice::<Value>(&m) else { continue };
                    if listen::Event::of(&v).is_some_and(|e| l.honored.admits(e)) {
                        return Some(listen::stamp(v, &l.id));
                    }
                }
                () = l.retirement.wait() => break,
            }
        }
        l.closed = true;
        Some(listen::closed(&l.id))
    }
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
    Answer::Events(Events {
        rx: mux.stream(sid, caps),
        listen: None,
    })
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
