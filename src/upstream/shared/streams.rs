//! A shared session's streams: the GET stream of a downstream session, and a 2026-07-28
//! `subscriptions/listen` stream served from a session of the gateway's own with the upstream,
//! subscribed to the URIs asked for.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::super::routes::Retirement;
use super::super::Answer;
use super::calls::{call, Item};
use super::mux::{self, Caps, Mux};
use crate::config::Upstream as UpstreamConfig;
use crate::mcp::listen::{self, Filter};
use crate::mcp::reply::Reply;

/// A shared session's notification stream (GET), or a 2026-07-28 listen stream.
pub struct Events {
    rx: mpsc::Receiver<Bytes>,
    listen: Option<Box<Listening>>,
}

impl Events {
    /// A downstream session's GET stream.
    pub(super) fn of(rx: mpsc::Receiver<Bytes>) -> Events {
        Events { rx, listen: None }
    }

    /// The next message; `None` when the stream ended (replaced by a newer one, the session
    /// closed, the upstream removed). A listen stream starts with its acknowledgment, carries
    /// the events it asked for and ends with its closing result.
    pub async fn next(&mut self) -> Option<Bytes> {
        match &mut self.listen {
            None => self.rx.recv().await,
            Some(l) => l.next(&mut self.rx).await,
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
pub(super) async fn listen(
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

impl Listening {
    /// The next frame: the acknowledgment first, then the events asked for (stamped), then the
    /// closing result when the snapshot is retired or the stream `rx` ends; `None` after it.
    pub(super) async fn next(&mut self, rx: &mut mpsc::Receiver<Bytes>) -> Option<Bytes> {
        if !self.acked {
            self.acked = true;
            return Some(listen::acknowledged(&self.id, &self.honored));
        }
        if self.closed {
            return None;
        }
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let Ok(v) = serde_json::from_slice::<Value>(&m) else { continue };
                    if listen::Event::of(&v).is_some_and(|e| self.honored.admits(e)) {
                        return Some(listen::stamp(v, &self.id));
                    }
                }
                () = self.retirement.wait() => break,
            }
        }
        self.closed = true;
        Some(listen::closed(&self.id))
    }
}
