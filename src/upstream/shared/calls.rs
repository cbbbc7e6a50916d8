//! One caller's request through a shared session: mapped and sent ([`call`]), its related
//! messages and then its answer read as they come ([`Messages`]), cancelled upstream when
//! dropped before the answer; a 2026-07-28 caller's answer completed ([`Modern`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::Answer;
use super::mux::{self, Caps, Done, Mux, Replies};
use crate::config::Upstream as UpstreamConfig;
use crate::mcp::reply::Reply;

/// How long a request waits for an upstream that is still starting.
pub(super) const READY_WAIT: Duration = Duration::from_secs(30);

/// How a call's answer is made a 2026-07-28 result.
#[derive(Debug)]
pub struct Modern {
    pub(super) server_info: Value,
    pub(super) list: bool,
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

/// A request: mapped and sent; its messages follow in the [`Messages`] answer.
#[allow(clippy::too_many_arguments)]
pub(super) async fn call(
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
    pub(super) modern: Option<Arc<Modern>>,
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
