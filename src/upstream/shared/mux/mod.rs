//! One upstream MCP session shared by many downstream sessions: the gateway is the upstream's
//! only client, and each downstream caller is multiplexed over it.
//!
//! A stdio child (or a legacy SSE connection) holds exactly one MCP session, initialized once
//! by the gateway. Many HTTP clients use it at the same time, so the messages are mapped:
//!
//! - **ids**: every request gets a gateway-unique numeric id before it is written; the answer's
//!   id is put back to the caller's own. Progress tokens are rewritten the same way (to the
//!   request's gateway id), so progress reaches the caller that asked for it.
//! - **cancellation**: `notifications/cancelled` from a caller, or a caller that disconnects,
//!   cancels the mapped upstream request.
//! - **server-to-client requests** (`sampling/createMessage`, `elicitation/create`) are sent to
//!   a caller whose client declared the capability: the one with the most recent call in
//!   flight on a streaming answer (the upstream asks while serving it), else one with an open
//!   GET stream. Its answer is mapped back to the upstream's id. `ping` and `roots/list` are
//!   answered by the gateway.
//! - **notifications**: list changes go to every open GET stream; `resources/updated` to the
//!   sessions that subscribed to the URI (subscriptions are reference-counted, so one caller's
//!   unsubscribe does not end another's); log messages to sessions that set a log level.
//!
//! One task per upstream owns all of this state (no locks); callers talk to it over bounded
//! channels and never wait on it: a full command queue refuses the call ("overloaded"), a caller
//! that stops reading its related messages (or a GET stream that stops reading) loses them, with
//! a warning, while its answer always arrives on a channel of its own ([`Reply`]). The task also
//! supervises the transport: start, handshake, restart with exponential backoff when the upstream
//! exits (in-flight callers get a clean JSON-RPC error), and drain on removal.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::link::Link;
use crate::config::{HttpTarget, StdioCommand};
use crate::telemetry::metrics::metrics;

mod supervisor;
use supervisor::Supervisor;

/// First delay before a restart; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);
/// Shortest allowance for the start-up handshake (`npx` may download the server first).
const MIN_HANDSHAKE: Duration = Duration::from_secs(60);
/// Idle downstream sessions (no stream, nothing in flight) are forgotten after this.
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Session ids remembered as ended (404) per upstream.
const MAX_CLOSED: usize = 10_000;
/// An upstream whose input queue stays full this long is considered hung and restarted.
const HUNG: Duration = Duration::from_secs(30);
/// Commands that may wait for the upstream's task (callers past this are refused).
const CMD_BUFFER: usize = 4096;
/// Related messages (progress, server-to-client requests, logs) that may wait for one caller.
pub const CALL_BUFFER: usize = 256;
/// Messages that may wait for one GET stream.
pub const STREAM_BUFFER: usize = 1024;
/// A server-to-client request no caller answered within this is forgotten.
const RELAYED_TTL: Duration = Duration::from_secs(600);
/// The gateway's own request id for the handshake; callers' ids start at 1.
const HANDSHAKE_ID: u64 = 0;

/// Protocol versions a downstream `initialize` may ask for and get echoed back.
const KNOWN_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// How to reach the upstream.
#[derive(Clone, PartialEq)]
pub enum Spec {
    /// A child process.
    Stdio(StdioCommand),
    /// A legacy HTTP+SSE endpoint, with the headers injected on every request.
    Sse {
        /// The GET endpoint.
        target: HttpTarget,
        /// Injected headers (credentials).
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
}

/// Where an upstream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started: a Streamable HTTP upstream's SSE fallback, started at first need.
    Idle,
    /// Starting the transport or waiting for the handshake.
    Starting,
    /// Serving.
    Ready,
    /// Down; the next start is scheduled.
    Backoff,
    /// Removed from the config; in-flight calls are finishing.
    Draining,
    /// Stopped for good.
    Stopped,
}

/// What `/status` shows about a multiplexed upstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Life phase.
    pub phase: Phase,
    /// Why it is not ready (or the last failure), if anything.
    pub detail: Option<String>,
    /// Child process id (stdio).
    pub pid: Option<u32>,
    /// Restarts after an exit or failed start.
    pub restarts: u64,
    /// Why it last went down (kept after it is back).
    pub last_exit: Option<String>,
    /// The upstream's `serverInfo`.
    pub server_info: Option<Value>,
    /// Unix seconds of the last phase change.
    pub since: u64,
}

/// How a call ended.
#[derive(Debug)]
pub enum Done {
    /// The answer. `is_error`: a JSON-RPC error or a result with `isError: true`.
    Answer {
        /// The message, its id the caller's own.
        bytes: Bytes,
        /// Whether it reports an error.
        is_error: bool,
    },
    /// The call failed before an answer (upstream exited, was removed, is overloaded).
    Failed(String),
}

/// Where one call's messages go: related messages on a bounded channel (dropped, with a warning,
/// when the caller falls behind), and its one ending on a channel of its own, so it is never
/// lost.
pub struct Reply {
    /// Progress, server-to-client requests and logs about the call.
    pub messages: mpsc::Sender<Bytes>,
    /// The answer or the failure.
    pub done: tokio::sync::oneshot::Sender<Done>,
}

/// The receiving ends of a [`Reply`].
pub struct Replies {
    /// Related messages, in order.
    pub messages: mpsc::Receiver<Bytes>,
    /// The ending.
    pub done: tokio::sync::oneshot::Receiver<Done>,
}

/// A new reply channel pair.
pub fn reply() -> (Reply, Replies) {
    let (messages, messages_rx) = mpsc::channel(CALL_BUFFER);
    let (done, done_rx) = tokio::sync::oneshot::channel();
    (
        Reply { messages, done },
        Replies {
            messages: messages_rx,
            done: done_rx,
        },
    )
}

/// Queue `bytes` for a caller or stream without waiting; a full queue drops it (the reader fell
/// behind) and a closed one means it is gone. Returns false when gone.
pub(crate) fn push(to: &mpsc::Sender<Bytes>, bytes: Bytes, server: &str) -> bool {
    match to.try_send(bytes) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(
                server,
                "a caller is not reading its messages; one was dropped"
            );
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Capability flags a downstream client declared, carried in its session id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps(u8);

impl Caps {
    const SAMPLING: u8 = 1;
    const ELICITATION: u8 = 2;

    /// From an `initialize` request's `params.capabilities`.
    pub fn from_initialize(params: Option<&Value>) -> Self {
        let caps = params.and_then(|p| p.get("capabilities"));
        let has = |k: &str| caps.and_then(|c| c.get(k)).is_some_and(|v| !v.is_null());
        let mut bits = 0;
        if has("sampling") {
            bits |= Self::SAMPLING;
        }
        if has("elicitation") {
            bits |= Self::ELICITATION;
        }
        Caps(bits)
    }

    fn allows(self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.0 & Self::SAMPLING != 0,
            "elicitation/create" => self.0 & Self::ELICITATION != 0,
            _ => false,
        }
    }
}

/// A downstream session id minted by the gateway: `ps1-<32 hex>-<caps hex>`. It carries no
/// authority (every request is authorized on its own token); it only routes, so any replica
/// can accept one it has not seen.
pub fn new_session_id(caps: Caps) -> Option<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).ok()?;
    Some(format!("ps1-{}-{:02x}", hex::encode(raw), caps.0))
}

/// The capabilities of a well-formed session id; `None` when it is not one of ours.
pub fn parse_session_id(id: &str) -> Option<Caps> {
    let rest = id.strip_prefix("ps1-")?;
    let (rand, caps) = rest.split_once('-')?;
    if rand.len() != 32 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) || caps.len() != 2 {
        return None;
    }
    u8::from_str_radix(caps, 16).ok().map(Caps)
}

/// Commands from callers to the upstream's task.
enum Cmd {
    Call(Call),
    Notify {
        session: Arc<str>,
        msg: Value,
    },
    Answer {
        session: Arc<str>,
        msg: Value,
    },
    Cancel {
        id: u64,
    },
    Stream {
        session: Arc<str>,
        caps: Caps,
        tx: mpsc::Sender<Bytes>,
    },
    Close {
        session: Arc<str>,
    },
}

/// A request from a caller, already given its gateway id.
pub struct Call {
    /// The caller's session (empty for a sessionless caller).
    pub session: Arc<str>,
    /// Its capabilities.
    pub caps: Caps,
    /// Gateway id (from [`Mux::next_id`]).
    pub id: u64,
    /// The caller's id.
    pub orig_id: Value,
    /// The caller's progress token, if it sent one (rewritten to `id`).
    pub orig_token: Option<Value>,
    /// The method.
    pub method: String,
    /// `params.uri` for subscribe/unsubscribe.
    pub uri: Option<String>,
    /// The message as written upstream.
    pub bytes: Bytes,
    /// Where the answer (and related messages) go.
    pub reply: Reply,
    /// The caller reads a stream, so related requests can reach it.
    pub streaming: bool,
}

/// The handle callers use. Cheap to share; the task behind it lives until [`Mux::retire`].
pub struct Mux {
    name: String,
    spec: Spec,
    cmds: mpsc::Sender<Cmd>,
    next_id: AtomicU64,
    status: ArcSwap<Status>,
    phase: watch::Receiver<Phase>,
    init: ArcSwapOption<Value>,
    retire: watch::Sender<Option<Duration>>,
    wake: watch::Sender<bool>,
    engaged: std::sync::atomic::AtomicBool,
    latency: prometheus::Histogram,
    /// Session ids ended by DELETE, oldest first (read lock-free per request; written on DELETE
    /// only, by read-copy-update).
    closed: ArcSwap<Closed>,
}

/// Session ids ended by DELETE: a set for lookups, their order to forget the oldest.
#[derive(Default, Clone)]
struct Closed {
    ids: HashSet<Arc<str>>,
    order: std::collections::VecDeque<Arc<str>>,
}

impl Mux {
    /// Start supervising `spec` as the upstream `name` on the current runtime. A `lazy` one
    /// connects only when first asked to be [`Mux::ready`].
    pub fn start(name: &str, spec: Spec, connect_timeout: Duration, lazy: bool) -> Arc<Mux> {
        let (cmds, rx) = mpsc::channel(CMD_BUFFER);
        let first = if lazy { Phase::Idle } else { Phase::Starting };
        let (phase_tx, phase_rx) = watch::channel(first);
        let (retire, retire_rx) = watch::channel(None);
        let (wake, wake_rx) = watch::channel(!lazy);
        let mux = Arc::new(Mux {
            name: name.to_string(),
            spec,
            cmds,
            next_id: AtomicU64::new(HANDSHAKE_ID + 1),
            status: ArcSwap::from_pointee(Status {
                phase: first,
                detail: None,
                pid: None,
                restarts: 0,
                last_exit: None,
                server_info: None,
                since: unix_now(),
            }),
            phase: phase_rx,
            init: ArcSwapOption::empty(),
            retire,
            wake,
            engaged: std::sync::atomic::AtomicBool::new(false),
            latency: metrics().upstream_latency(name),
            closed: ArcSwap::default(),
        });
        let sup = Supervisor::new(
            &mux,
            connect_timeout.max(MIN_HANDSHAKE),
            lazy,
            phase_tx,
            rx,
            retire_rx,
            wake_rx,
        );
        tokio::spawn(sup.run());
        mux
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mark a Streamable HTTP upstream as answered through its legacy SSE fallback from now on.
    pub fn engage(&self) {
        self.engaged.store(true, Ordering::Relaxed);
    }

    /// Whether the SSE fallback is in use.
    pub fn engaged(&self) -> bool {
        self.engaged.load(Ordering::Relaxed)
    }

    /// Time-to-answer histogram of this upstream (`portcullis_upstream_request_duration_seconds`).
    pub fn latency(&self) -> &prometheus::Histogram {
        &self.latency
    }

    /// What it was started from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// A fresh gateway id for a request.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The current status.
    pub fn status(&self) -> Arc<Status> {
        self.status.load_full()
    }

    /// Returns once the upstream is stopped for good (after [`Mux::retire`]; a stdio child is
    /// then reaped).
    pub async fn until_stopped(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
    }

    /// Wait up to `limit` for the upstream to be ready. `Err` says why it is not.
    pub async fn ready(&self, limit: Duration) -> Result<Arc<Value>, String> {
        let _ = self.wake.send_if_modified(|w| !std::mem::replace(w, true));
        let mut phase = self.phase.clone();
        let wait = phase.wait_for(|p| !matches!(p, Phase::Starting | Phase::Idle));
        let _ = tokio::time::timeout(limit, wait).await;
        match (*self.phase.borrow(), self.init.load_full()) {
            (Phase::Ready, Some(init)) => Ok(init),
            (p, _) => {
                let st = self.status.load();
                Err(match (p, &st.detail) {
                    (Phase::Starting | Phase::Idle, _) => "still starting".to_string(),
                    (Phase::Backoff, Some(d)) => format!("not running ({d}); restarting"),
                    (Phase::Backoff, None) => "not running; restarting".to_string(),
                    (Phase::Draining | Phase::Stopped, _) => "removed from the config".to_string(),
                    (Phase::Ready, _) => "not initialized".to_string(),
                })
            }
        }
    }

    /// Wait up to `limit` until the upstream is ready (through restarts); `false` on timeout.
    pub async fn until_ready(&self, limit: Duration) -> bool {
        let _ = self.wake.send_if_modified(|w| !std::mem::replace(w, true));
        let mut phase = self.phase.clone();
        let ready = phase.wait_for(|p| *p == Phase::Ready);
        let ok = matches!(tokio::time::timeout(limit, ready).await, Ok(Ok(_)));
        ok
    }

    /// The upstream's `initialize` result, once it is ready.
    pub fn init_result(&self) -> Option<Arc<Value>> {
        self.init.load_full()
    }

    /// Send a call. `Err` says why it was not taken (the caller answers the error itself).
    pub fn call(&self, call: Call) -> Result<(), String> {
        self.cmds.try_send(Cmd::Call(call)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                format!("overloaded: {CMD_BUFFER} requests are waiting for it")
            }
            mpsc::error::TrySendError::Closed(_) => "removed from the config".to_string(),
        })
    }

    /// Queue a command that may be lost only when the task is gone or swamped.
    fn send(&self, cmd: Cmd) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.cmds.try_send(cmd) {
            crate::in_request!(warn, server = %self.name, "upstream task is overloaded; a message was dropped");
        }
    }

    /// A caller's notification.
    pub fn notify(&self, session: Arc<str>, msg: Value) {
        self.send(Cmd::Notify { session, msg });
    }

    /// A caller's answer to a server-to-client request.
    pub fn answer(&self, session: Arc<str>, msg: Value) {
        self.send(Cmd::Answer { session, msg });
    }

    /// The caller of `id` went away: cancel it upstream. (Should the queue be full, the
    /// periodic sweep notices the abandoned call and cancels it.)
    pub fn cancel(&self, id: u64) {
        self.send(Cmd::Cancel { id });
    }

    /// Open the session's notification stream (replacing an earlier one).
    pub fn stream(&self, session: Arc<str>, caps: Caps) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.send(Cmd::Stream { session, caps, tx });
        rx
    }

    /// End a downstream session (DELETE): its calls are cancelled, its subscriptions released,
    /// and this replica answers 404 to the id from now on (the newest `MAX_CLOSED` ids).
    pub fn close(&self, session: Arc<str>) {
        self.closed.rcu(|old| {
            let mut next = Closed::clone(old);
            if next.ids.insert(session.clone()) {
                next.order.push_back(session.clone());
                while next.order.len() > MAX_CLOSED {
                    if let Some(gone) = next.order.pop_front() {
                        next.ids.remove(&gone);
                    }
                }
            }
            next
        });
        self.send(Cmd::Close { session });
    }

    /// End a session only the gateway knows (a `subscriptions/listen` stream's): its calls are
    /// cancelled and its subscriptions released, with no id to remember.
    pub fn release(&self, session: Arc<str>) {
        self.send(Cmd::Close { session });
    }

    /// Whether `session` was ended by a DELETE on this replica.
    pub fn is_closed(&self, session: &str) -> bool {
        self.closed.load().ids.contains(session)
    }

    /// Stop for good: in-flight calls get up to `grace` to finish, then the transport stops.
    pub fn retire(&self, grace: Duration) {
        let _ = self.retire.send(Some(grace));
    }

    /// The protocol version to answer a downstream `initialize` with.
    /// The client's version when the gateway knows it and the upstream speaks at least that
    /// (versions are dates, so they compare as strings); otherwise the upstream's.
    pub fn negotiate(requested: Option<&str>, upstream: Option<&str>) -> String {
        let upstream = upstream.unwrap_or("2025-11-25");
        match requested {
            Some(v) if KNOWN_VERSIONS.contains(&v) && v <= upstream => v.to_string(),
            _ => upstream.to_string(),
        }
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        // The last handle is gone (its config snapshot too): stop without a grace period.
        let _ = self.retire.send(Some(Duration::ZERO));
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_caps() {
        let caps = Caps::from_initialize(Some(&json!({"capabilities": {"sampling": {}}})));
        let id = new_session_id(caps).unwrap();
        assert_eq!(parse_session_id(&id), Some(caps));
        assert!(caps.allows("sampling/createMessage"));
        assert!(!caps.allows("elicitation/create"));
        assert_eq!(parse_session_id("ps1-xyz-00"), None);
        assert_eq!(parse_session_id("abc"), None);
        assert_ne!(new_session_id(caps), new_session_id(caps));
    }

    #[test]
    fn negotiation_echoes_known_versions() {
        assert_eq!(
            Mux::negotiate(Some("2025-06-18"), Some("2025-11-25")),
            "2025-06-18"
        );
        assert_eq!(
            Mux::negotiate(Some("1999-01-01"), Some("2025-11-25")),
            "2025-11-25"
        );
        assert_eq!(Mux::negotiate(None, None), "2025-11-25");
        // Never newer than what the upstream speaks.
        assert_eq!(
            Mux::negotiate(Some("2025-11-25"), Some("2025-06-18")),
            "2025-06-18"
        );
    }
}
