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
//! One task per upstream owns all of this state (no locks); callers talk to it over channels.
//! It also supervises the transport: start, handshake, restart with exponential backoff when
//! the upstream exits (in-flight callers get a clean JSON-RPC error), and drain on removal.

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

impl PartialEq for HttpTarget {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.fallback_sse == other.fallback_sse
    }
}

impl PartialEq for StdioCommand {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command
            && self.args == other.args
            && self.env == other.env
            && self.cwd == other.cwd
    }
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

/// A message for one caller.
#[derive(Debug)]
pub enum Frame {
    /// A message related to the call (progress, a server-to-client request).
    Message(Bytes),
    /// The answer; nothing follows. `is_error`: a JSON-RPC error or a result with `isError`.
    Final {
        /// The message.
        bytes: Bytes,
        /// Whether it reports an error.
        is_error: bool,
    },
    /// The call failed before an answer (upstream exited, was removed): nothing follows.
    Failed(String),
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
        tx: mpsc::UnboundedSender<Frame>,
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
    pub reply: mpsc::UnboundedSender<Frame>,
    /// The caller reads a stream, so related requests can reach it.
    pub streaming: bool,
}

/// The handle callers use. Cheap to share; the task behind it lives until [`Mux::retire`].
pub struct Mux {
    name: String,
    spec: Spec,
    cmds: mpsc::UnboundedSender<Cmd>,
    next_id: AtomicU64,
    status: ArcSwap<Status>,
    phase: watch::Receiver<Phase>,
    init: ArcSwapOption<Value>,
    retire: watch::Sender<Option<Duration>>,
    wake: watch::Sender<bool>,
    engaged: std::sync::atomic::AtomicBool,
    latency: prometheus::Histogram,
    /// Session ids ended by DELETE (read lock-free per request; written on DELETE only).
    closed: ArcSwap<HashSet<Arc<str>>>,
    /// Their order, to forget the oldest past [`MAX_CLOSED`].
    closed_order: std::sync::Mutex<std::collections::VecDeque<Arc<str>>>,
}

impl Mux {
    /// Start supervising `spec` as the upstream `name` on the current runtime. A `lazy` one
    /// connects only when first asked to be [`Mux::ready`].
    pub fn start(name: &str, spec: Spec, connect_timeout: Duration, lazy: bool) -> Arc<Mux> {
        let (cmds, rx) = mpsc::unbounded_channel();
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
            closed_order: std::sync::Mutex::new(std::collections::VecDeque::new()),
        });
        let sup = Supervisor {
            mux: Arc::downgrade(&mux),
            name: name.to_string(),
            spec: mux.spec.clone(),
            handshake: connect_timeout.max(MIN_HANDSHAKE),
            phase: phase_tx,
            cmds: rx,
            retire: retire_rx,
            wake: wake_rx,
            lazy,
            full_since: None,
            state: State::default(),
        };
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

    /// Send a call. `false` when the task is gone (the caller answers the error itself).
    pub fn call(&self, call: Call) -> bool {
        self.cmds.send(Cmd::Call(call)).is_ok()
    }

    /// A caller's notification.
    pub fn notify(&self, session: Arc<str>, msg: Value) {
        let _ = self.cmds.send(Cmd::Notify { session, msg });
    }

    /// A caller's answer to a server-to-client request.
    pub fn answer(&self, session: Arc<str>, msg: Value) {
        let _ = self.cmds.send(Cmd::Answer { session, msg });
    }

    /// The caller of `id` went away: cancel it upstream.
    pub fn cancel(&self, id: u64) {
        let _ = self.cmds.send(Cmd::Cancel { id });
    }

    /// Open the session's notification stream (replacing an earlier one).
    pub fn stream(&self, session: Arc<str>, caps: Caps) -> mpsc::UnboundedReceiver<Frame> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.cmds.send(Cmd::Stream { session, caps, tx });
        rx
    }

    /// End a downstream session (DELETE): its calls are cancelled, its subscriptions released,
    /// and this replica answers 404 to the id from now on (the newest [`MAX_CLOSED`] ids).
    pub fn close(&self, session: Arc<str>) {
        if let Ok(mut order) = self.closed_order.lock() {
            let mut set = HashSet::clone(&self.closed.load());
            if set.insert(session.clone()) {
                order.push_back(session.clone());
                while order.len() > MAX_CLOSED {
                    if let Some(old) = order.pop_front() {
                        set.remove(&old);
                    }
                }
                self.closed.store(Arc::new(set));
            }
        }
        let _ = self.cmds.send(Cmd::Close { session });
    }

    /// Whether `session` was ended by a DELETE on this replica.
    pub fn is_closed(&self, session: &str) -> bool {
        self.closed.load().contains(session)
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

/// A call waiting for its answer.
struct Pending {
    session: Arc<str>,
    orig_id: Value,
    orig_token: Option<Value>,
    /// `None` for the gateway's own requests (answers are dropped).
    reply: Option<mpsc::UnboundedSender<Frame>>,
    streaming: bool,
    caps: Caps,
}

/// A server-to-client request sent to a caller.
struct Relayed {
    upstream_id: Value,
    session: Arc<str>,
    at: Instant,
}

/// What the gateway knows about one downstream session.
struct Sess {
    caps: Caps,
    stream: Option<mpsc::UnboundedSender<Frame>>,
    subscriptions: HashSet<String>,
    seen: Instant,
}

impl Sess {
    fn new(caps: Caps) -> Self {
        Sess {
            caps,
            stream: None,
            subscriptions: HashSet::new(),
            seen: Instant::now(),
        }
    }
}

/// State that survives restarts of the transport (sessions), and per-run state (pending).
#[derive(Default)]
struct State {
    sessions: HashMap<Arc<str>, Sess>,
    pending: HashMap<u64, Pending>,
    relayed: HashMap<u64, Relayed>,
}

/// Why a run of the transport ended.
enum RunEnd {
    /// The upstream went away.
    Exited(String),
    /// Removed from the config; `grace` for in-flight calls.
    Retired(Duration),
    /// Every handle is gone.
    Orphaned,
}

struct Supervisor {
    mux: std::sync::Weak<Mux>,
    name: String,
    spec: Spec,
    handshake: Duration,
    phase: watch::Sender<Phase>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    retire: watch::Receiver<Option<Duration>>,
    wake: watch::Receiver<bool>,
    lazy: bool,
    full_since: Option<Instant>,
    state: State,
}

impl Supervisor {
    fn set(&self, phase: Phase, detail: Option<String>, pid: Option<u32>, restarted: bool) {
        if let Some(mux) = self.mux.upgrade() {
            let old = mux.status.load();
            let last_exit = if restarted {
                detail.clone()
            } else {
                old.last_exit.clone()
            };
            mux.status.store(Arc::new(Status {
                phase,
                detail,
                pid,
                restarts: old.restarts + u64::from(restarted),
                last_exit,
                server_info: if phase == Phase::Ready {
                    mux.init
                        .load()
                        .as_ref()
                        .and_then(|i| i.get("serverInfo").cloned())
                } else {
                    old.server_info.clone()
                },
                since: unix_now(),
            }));
        }
        metrics()
            .upstream_up
            .with_label_values(&[&self.name])
            .set(i64::from(phase == Phase::Ready));
        let _ = self.phase.send(phase);
    }

    async fn connect(&self) -> Result<Link, String> {
        match &self.spec {
            Spec::Stdio(cmd) => super::stdio::spawn(&self.name, cmd),
            Spec::Sse { target, headers } => {
                super::legacy_sse::connect(&self.name, &target.url, headers, self.handshake).await
            }
        }
    }

    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut first = true;
        loop {
            // A lazy upstream (an SSE fallback) sleeps until needed, and again after a failed
            // first start: it is only retried when a caller needs it.
            if !*self.wake.borrow() {
                self.set(Phase::Idle, None, None, false);
                let mut retire = self.retire.clone();
                tokio::select! {
                    _ = self.wake.wait_for(|w| *w) => {}
                    _ = retire.wait_for(Option::is_some) => {}
                }
            }
            if let Some(grace) = *self.retire.borrow() {
                let _ = grace;
                break;
            }
            self.set(Phase::Starting, None, None, false);
            let started = Instant::now();
            let failure = match self.connect().await {
                Err(e) => e,
                Ok(mut link) => match self.handshake(&mut link).await {
                    Err(e) => {
                        link.stopper.stop().await;
                        e
                    }
                    Ok(init) => {
                        if let Some(mux) = self.mux.upgrade() {
                            mux.init.store(Some(Arc::new(init)));
                        }
                        self.full_since = None;
                        self.set(Phase::Ready, None, link.pid, false);
                        if !first {
                            // Tools may differ after a restart: tell every open stream, and
                            // give the new upstream the subscriptions sessions still hold.
                            self.broadcast_changed();
                            if let Err(e) = self.resubscribe(&mut link).await {
                                tracing::warn!(server = %self.name, error = %e, "resubscribing failed");
                            }
                        }
                        first = false;
                        match self.serve(&mut link).await {
                            RunEnd::Exited(reason) => {
                                link.stopper.stop().await;
                                if started.elapsed() > STABLE {
                                    backoff = MIN_BACKOFF;
                                }
                                reason
                            }
                            RunEnd::Retired(grace) => {
                                self.drain(&mut link, grace).await;
                                link.stopper.stop().await;
                                break;
                            }
                            RunEnd::Orphaned => {
                                link.stopper.stop().await;
                                break;
                            }
                        }
                    }
                },
            };
            if let Some(mux) = self.mux.upgrade() {
                mux.init.store(None);
            }
            self.set(Phase::Backoff, Some(failure.clone()), None, true);
            self.fail_pending(&format!("ended during the call ({failure})"));
            if self.lazy && first {
                tracing::warn!(server = %self.name, reason = %failure, "legacy SSE fallback did not connect");
                if let Some(mux) = self.mux.upgrade() {
                    mux.wake.send_replace(false);
                }
                continue;
            }
            metrics()
                .upstream_restarts
                .with_label_values(&[&self.name])
                .inc();
            tracing::warn!(server = %self.name, reason = %failure, retry_in = ?backoff, "upstream is down; restarting");
            // Wait out the backoff; calls arriving meanwhile fail at once.
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            let retired = loop {
                tokio::select! {
                    _ = &mut sleep => break false,
                    changed = self.retire.changed() => {
                        if changed.is_err() || self.retire.borrow().is_some() { break true; }
                    }
                    cmd = self.cmds.recv() => match cmd {
                        Some(cmd) => self.refuse(cmd, "not running; restarting"),
                        None => break true,
                    },
                }
            };
            if retired {
                break;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.fail_pending("removed from the config");
        self.set(Phase::Stopped, None, None, false);
        // Calls racing the stop are refused rather than left waiting.
        self.cmds.close();
        while let Some(cmd) = self.cmds.recv().await {
            self.refuse(cmd, "removed from the config");
        }
    }

    /// Initialize the upstream session; the result is what downstream `initialize` answers.
    async fn handshake(&mut self, link: &mut Link) -> Result<Value, String> {
        use rmcp::model::{
            ClientCapabilities, Implementation, InitializeRequestParams, InitializeResult,
            ProtocolVersion,
        };
        // The gateway relays sampling and elicitation to callers that declared them.
        let mut caps = ClientCapabilities::default();
        caps.sampling = Some(Default::default());
        caps.elicitation = Some(Default::default());
        let params = InitializeRequestParams::new(
            caps,
            Implementation::new("portcullis", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        let req = json!({ "jsonrpc": "2.0", "id": HANDSHAKE_ID, "method": "initialize", "params": params });
        send(link, &req).await?;
        let deadline = tokio::time::Instant::now() + self.handshake;
        loop {
            let line = tokio::time::timeout_at(deadline, link.rx.recv())
                .await
                .map_err(|_| format!("no answer to `initialize` within {:?}", self.handshake))?;
            let Some(line) = line else {
                let why = tokio::time::timeout(Duration::from_secs(1), &mut link.ended)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_else(|| "closed its output".into());
                return Err(format!("ended before initializing: {why}"));
            };
            let Some(msg) = self.parse(&line) else {
                continue;
            };
            if msg.get("id") == Some(&json!(HANDSHAKE_ID)) && msg.get("method").is_none() {
                if let Some(err) = msg.get("error") {
                    return Err(format!("`initialize` failed: {err}"));
                }
                let result = msg.get("result").cloned().unwrap_or(Value::Null);
                let parsed: InitializeResult = serde_json::from_value(result.clone())
                    .map_err(|e| format!("`initialize` answered with an invalid result: {e}"))?;
                tracing::info!(
                    server = %self.name,
                    upstream = %parsed.server_info.name,
                    version = %parsed.server_info.version,
                    protocol = %parsed.protocol_version,
                    pid = ?link.pid,
                    "upstream initialized"
                );
                send(
                    link,
                    &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
                )
                .await?;
                return Ok(result);
            }
            // Before the answer, only the upstream's own requests need a reply.
            if let (Some(method), Some(id)) = (
                msg.get("method").and_then(Value::as_str),
                msg.get("id").cloned(),
            ) {
                let reply = local_answer(method, &id);
                send(link, &reply).await?;
            }
        }
    }

    /// Parse one upstream message; garbage is logged and dropped.
    fn parse(&self, line: &[u8]) -> Option<Value> {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if v.is_object() => Some(v),
            Ok(_) | Err(_) => {
                let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
                tracing::warn!(server = %self.name, line = %shown, "upstream wrote something that is not a JSON-RPC message; dropped");
                None
            }
        }
    }

    /// Serve until the upstream ends or the mux is retired.
    async fn serve(&mut self, link: &mut Link) -> RunEnd {
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        sweep.tick().await;
        loop {
            tokio::select! {
                biased;
                changed = self.retire.changed() => {
                    match (changed, *self.retire.borrow()) {
                        (Ok(()), Some(grace)) => return RunEnd::Retired(grace),
                        (Err(_), _) => return RunEnd::Orphaned,
                        _ => {}
                    }
                }
                line = link.rx.recv() => match line {
                    Some(line) => {
                        if let Some(msg) = self.parse(&line) {
                            if let Err(e) = self.on_upstream(link, msg).await {
                                return RunEnd::Exited(e);
                            }
                        }
                    }
                    None => {
                        let why = tokio::time::timeout(Duration::from_secs(1), &mut link.ended)
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_else(|| "closed its output".into());
                        return RunEnd::Exited(why);
                    }
                },
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => {
                        if let Err(e) = self.on_caller(link, cmd).await {
                            return RunEnd::Exited(e);
                        }
                    }
                    None => return RunEnd::Orphaned,
                },
                _ = sweep.tick() => self.sweep(),
            }
        }
    }

    /// Keep serving until nothing is in flight or `grace` is over; new calls are refused.
    async fn drain(&mut self, link: &mut Link, grace: Duration) {
        self.set(Phase::Draining, None, link.pid, false);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.state.pending.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                line = link.rx.recv() => match line {
                    Some(line) => {
                        if let Some(msg) = self.parse(&line) {
                            if self.on_upstream(link, msg).await.is_err() { break; }
                        }
                    }
                    None => break,
                },
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Call(c)) => self.refuse(Cmd::Call(c), "removed from the config"),
                    Some(Cmd::Cancel { id }) => { let _ = self.cancel(link, id, "client disconnected").await; }
                    Some(Cmd::Answer { session, msg }) => { let _ = self.answer(link, &session, msg).await; }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    }

    async fn on_caller(&mut self, link: &mut Link, cmd: Cmd) -> Result<(), String> {
        match cmd {
            Cmd::Call(call) => self.call(link, call).await,
            Cmd::Notify { session, msg } => self.notify(link, &session, msg).await,
            Cmd::Answer { session, msg } => self.answer(link, &session, msg).await,
            Cmd::Cancel { id } => self.cancel(link, id, "client disconnected").await,
            Cmd::Stream { session, caps, tx } => {
                let s = self.session(&session, caps);
                s.stream = Some(tx);
                Ok(())
            }
            Cmd::Close { session } => self.close(link, &session).await,
        }
    }

    fn session(&mut self, id: &Arc<str>, caps: Caps) -> &mut Sess {
        let s = self
            .state
            .sessions
            .entry(id.clone())
            .or_insert_with(|| Sess::new(caps));
        s.seen = Instant::now();
        s
    }

    async fn call(&mut self, link: &mut Link, call: Call) -> Result<(), String> {
        // Session state (subscriptions, log level) exists only for callers with a session:
        // sessionless callers share nothing, so none can affect another.
        let has_session = !call.session.is_empty();
        if let ("resources/unsubscribe", true, Some(uri)) =
            (call.method.as_str(), has_session, &call.uri)
        {
            if let Some(s) = self.state.sessions.get_mut(&call.session) {
                s.subscriptions.remove(uri);
            }
            if self.subscribed(uri) {
                // Another session still wants it: the upstream subscription stays.
                let body = json!({ "jsonrpc": "2.0", "id": call.orig_id, "result": {} });
                let _ = call.reply.send(Frame::Final {
                    bytes: Bytes::from(body.to_string()),
                    is_error: false,
                });
                return Ok(());
            }
        }
        // Never wait on the transport here: this task also reads the upstream, and a child
        // that stops reading its stdin while its stdout fills would deadlock with it.
        match link.tx.try_send(call.bytes) {
            Ok(()) => self.full_since = None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let why = format!(
                    "overloaded: {} messages are waiting for it",
                    super::link::LINK_BUFFER
                );
                tracing::warn!(server = %self.name, "upstream is not keeping up; call refused");
                let _ = call.reply.send(Frame::Failed(why));
                // Full for this long: the upstream is hung (alive, not reading). Restart it.
                let since = *self.full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > HUNG {
                    return Err(format!("stopped reading its input for {HUNG:?}"));
                }
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err("the transport closed".to_string());
            }
        }
        if has_session {
            match (call.method.as_str(), &call.uri) {
                ("resources/subscribe", Some(uri)) => {
                    let uri = uri.clone();
                    self.session(&call.session, call.caps)
                        .subscriptions
                        .insert(uri);
                }
                _ => {
                    if let Some(s) = self.state.sessions.get_mut(&call.session) {
                        s.seen = Instant::now();
                    }
                }
            }
        }
        self.state.pending.insert(
            call.id,
            Pending {
                session: call.session,
                orig_id: call.orig_id,
                orig_token: call.orig_token,
                reply: Some(call.reply),
                streaming: call.streaming,
                caps: call.caps,
            },
        );
        Ok(())
    }

    fn subscribed(&self, uri: &str) -> bool {
        self.state
            .sessions
            .values()
            .any(|s| s.subscriptions.contains(uri))
    }

    async fn notify(
        &mut self,
        link: &mut Link,
        session: &Arc<str>,
        mut msg: Value,
    ) -> Result<(), String> {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match method {
            // The gateway initialized the upstream itself; roots are not relayed.
            "notifications/initialized" | "notifications/roots/list_changed" => Ok(()),
            "notifications/cancelled" => {
                // A caller without a session cannot name its call (ids are only unique per
                // session); it cancels by disconnecting.
                let Some(orig) = msg.pointer("/params/requestId").cloned() else {
                    return Ok(());
                };
                if session.is_empty() {
                    return Ok(());
                }
                let found = self
                    .state
                    .pending
                    .iter()
                    .find(|(_, p)| p.session == *session && p.orig_id == orig)
                    .map(|(id, _)| *id);
                if let Some(id) = found {
                    let reason = msg
                        .pointer("/params/reason")
                        .and_then(Value::as_str)
                        .unwrap_or("cancelled by the client")
                        .to_string();
                    self.cancel(link, id, &reason).await?;
                }
                Ok(())
            }
            // Progress about a server-to-client request: map the token back.
            "notifications/progress" => {
                if let Some(tok) = msg.pointer("/params/progressToken").and_then(Value::as_u64) {
                    if let Some(r) = self.state.relayed.get(&tok) {
                        if r.session == *session {
                            let up = r.upstream_id.clone();
                            if let Some(t) = msg.pointer_mut("/params/progressToken") {
                                *t = up;
                            }
                            return send(link, &msg).await;
                        }
                    }
                }
                Ok(())
            }
            _ => send(link, &msg).await,
        }
    }

    async fn answer(
        &mut self,
        link: &mut Link,
        session: &Arc<str>,
        mut msg: Value,
    ) -> Result<(), String> {
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            return Ok(());
        };
        match self.state.relayed.get(&id) {
            Some(r) if r.session == *session => {}
            _ => {
                tracing::debug!(server = %self.name, id, "answer to an unknown server-to-client request; dropped");
                return Ok(());
            }
        }
        let Some(r) = self.state.relayed.remove(&id) else {
            return Ok(());
        };
        if let Some(slot) = msg.get_mut("id") {
            *slot = r.upstream_id;
        }
        send(link, &msg).await
    }

    async fn cancel(&mut self, link: &mut Link, id: u64, reason: &str) -> Result<(), String> {
        if self.state.pending.remove(&id).is_some() {
            let note = json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": { "requestId": id, "reason": reason },
            });
            send(link, &note).await?;
        }
        Ok(())
    }

    async fn close(&mut self, link: &mut Link, session: &Arc<str>) -> Result<(), String> {
        let ids: Vec<u64> = self
            .state
            .pending
            .iter()
            .filter(|(_, p)| p.session == *session)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.cancel(link, id, "session closed").await?;
        }
        self.state.relayed.retain(|_, r| r.session != *session);
        if let Some(s) = self.state.sessions.remove(session) {
            for uri in s.subscriptions {
                if !self.subscribed(&uri) {
                    self.internal(link, "resources/unsubscribe", json!({ "uri": uri }))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// A request of the gateway's own (not a caller's): a string id that no caller's request
    /// uses (theirs are numbers), so its answer is simply dropped and nothing waits for it.
    async fn internal(
        &mut self,
        link: &mut Link,
        method: &str,
        params: Value,
    ) -> Result<(), String> {
        let n = self.mux.upgrade().map(|m| m.next_id()).unwrap_or(u64::MAX);
        let req = json!({ "jsonrpc": "2.0", "id": format!("portcullis-{n}"), "method": method, "params": params });
        send(link, &req).await
    }

    /// After a restart: the new upstream gets the subscriptions sessions still hold.
    async fn resubscribe(&mut self, link: &mut Link) -> Result<(), String> {
        let uris: HashSet<String> = self
            .state
            .sessions
            .values()
            .flat_map(|s| s.subscriptions.iter().cloned())
            .collect();
        for uri in uris {
            self.internal(link, "resources/subscribe", json!({ "uri": uri }))
                .await?;
        }
        Ok(())
    }

    /// Route one upstream message.
    async fn on_upstream(&mut self, link: &mut Link, mut msg: Value) -> Result<(), String> {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = msg.get("id").cloned();
        match (method, id) {
            // An answer to a caller's (or the gateway's) request.
            (None, Some(id)) => {
                let Some(p) = id.as_u64().and_then(|i| self.state.pending.remove(&i)) else {
                    tracing::debug!(server = %self.name, id = %id, "answer to an unknown or cancelled request; dropped");
                    return Ok(());
                };
                if let Some(reply) = p.reply {
                    if let Some(slot) = msg.get_mut("id") {
                        *slot = p.orig_id;
                    }
                    let is_error = msg.get("error").is_some()
                        || msg.pointer("/result/isError") == Some(&Value::Bool(true));
                    let _ = reply.send(Frame::Final {
                        bytes: Bytes::from(msg.to_string()),
                        is_error,
                    });
                }
                Ok(())
            }
            // A request from the upstream.
            (Some(method), Some(up_id)) => self.relay_request(link, &method, up_id, msg).await,
            // A notification.
            (Some(method), None) => {
                self.route_notification(&method, msg);
                Ok(())
            }
            (None, None) => {
                tracing::warn!(server = %self.name, "upstream message without method or id; dropped");
                Ok(())
            }
        }
    }

    async fn relay_request(
        &mut self,
        link: &mut Link,
        method: &str,
        up_id: Value,
        mut msg: Value,
    ) -> Result<(), String> {
        if matches!(method, "ping" | "roots/list") {
            return send(link, &local_answer(method, &up_id)).await;
        }
        // stdio carries no "related request" on the wire, so the origin is known only when
        // every call in flight belongs to one session. When several sessions have calls in
        // flight the request is refused rather than risk showing one caller's prompt to
        // another.
        let target = match self.origin(method) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(server = %self.name, method, reason = %why, "refused a server-to-client request");
                let err = json!({
                    "jsonrpc": "2.0",
                    "id": up_id,
                    "error": { "code": -32603, "message": format!("the gateway cannot relay `{method}`: {why}") },
                });
                return send(link, &err).await;
            }
        };
        let (session, tx) = target;
        let gid = self.mux.upgrade().map(|m| m.next_id()).unwrap_or(u64::MAX);
        if let Some(slot) = msg.get_mut("id") {
            *slot = json!(gid);
        }
        self.state.relayed.insert(
            gid,
            Relayed {
                upstream_id: up_id,
                session,
                at: Instant::now(),
            },
        );
        let _ = tx.send(Frame::Message(Bytes::from(msg.to_string())));
        Ok(())
    }

    /// The caller a server-to-client request belongs to, and where to send it.
    fn origin(&self, method: &str) -> Result<(Arc<str>, mpsc::UnboundedSender<Frame>), String> {
        let mut calls = self.state.pending.iter().filter(|(_, p)| p.reply.is_some());
        if let Some((_, first)) = calls.next() {
            let session = first.session.clone();
            if calls.any(|(_, p)| p.session != session) {
                return Err(
                    "calls from several sessions are in flight, so its origin is ambiguous".into(),
                );
            }
            // The newest streaming call of that session carries it.
            let via = self
                .state
                .pending
                .iter()
                .filter(|(_, p)| p.session == session && p.streaming)
                .max_by_key(|(id, _)| **id)
                .and_then(|(_, p)| Some((p.caps, p.reply.clone()?)));
            return match via {
                Some((caps, _)) if !caps.allows(method) => {
                    Err("the calling client did not declare that capability".into())
                }
                Some((_, tx)) => Ok((session, tx)),
                None => Err(
                    "the calling client does not read a stream (Accept: text/event-stream)".into(),
                ),
            };
        }
        // Nothing in flight: a session that keeps a GET stream open, if exactly one can answer.
        let mut able = self
            .state
            .sessions
            .iter()
            .filter(|(_, s)| s.caps.allows(method))
            .filter_map(|(id, s)| Some((id.clone(), s.stream.clone()?)));
        match (able.next(), able.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err("no connected client declared that capability".into()),
            (Some(_), Some(_)) => {
                Err("several sessions could answer, so its origin is ambiguous".into())
            }
        }
    }

    fn route_notification(&mut self, method: &str, mut msg: Value) {
        match method {
            "notifications/progress" => {
                let Some(id) = msg.pointer("/params/progressToken").and_then(Value::as_u64) else {
                    return;
                };
                let Some(p) = self.state.pending.get(&id) else {
                    return;
                };
                let (Some(reply), Some(tok)) = (&p.reply, &p.orig_token) else {
                    return;
                };
                if let Some(slot) = msg.pointer_mut("/params/progressToken") {
                    *slot = tok.clone();
                }
                let _ = reply.send(Frame::Message(Bytes::from(msg.to_string())));
            }
            "notifications/cancelled" => {
                // The upstream withdrew one of its requests.
                if let Some(up) = msg.pointer("/params/requestId").cloned() {
                    self.state.relayed.retain(|_, r| r.upstream_id != up);
                }
            }
            "notifications/resources/updated" => {
                let uri = msg
                    .pointer("/params/uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let bytes = Bytes::from(msg.to_string());
                for s in self.state.sessions.values() {
                    if s.subscriptions.contains(&uri) {
                        if let Some(tx) = &s.stream {
                            let _ = tx.send(Frame::Message(bytes.clone()));
                        }
                    }
                }
            }
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed" => {
                let bytes = Bytes::from(msg.to_string());
                for s in self.state.sessions.values() {
                    if let Some(tx) = &s.stream {
                        let _ = tx.send(Frame::Message(bytes.clone()));
                    }
                }
            }
            // Log messages and anything else: only to the caller being served, when that is
            // unambiguous (one session with calls in flight); never fanned out, since it may
            // describe another caller's work.
            _ => match self.sole_origin() {
                Some(tx) => {
                    let _ = tx.send(Frame::Message(Bytes::from(msg.to_string())));
                }
                None => {
                    tracing::debug!(server = %self.name, method, "notification with no unambiguous recipient; dropped");
                }
            },
        }
    }

    /// Where a message about "the call being served" goes: the newest streaming call of the
    /// only session with calls in flight, else that session's GET stream.
    fn sole_origin(&self) -> Option<mpsc::UnboundedSender<Frame>> {
        let mut calls = self.state.pending.iter().filter(|(_, p)| p.reply.is_some());
        let (_, first) = calls.next()?;
        let session = first.session.clone();
        if calls.any(|(_, p)| p.session != session) {
            return None;
        }
        self.state
            .pending
            .iter()
            .filter(|(_, p)| p.session == session && p.streaming)
            .max_by_key(|(id, _)| **id)
            .and_then(|(_, p)| p.reply.clone())
            .or_else(|| {
                self.state
                    .sessions
                    .get(&session)
                    .and_then(|s| s.stream.clone())
            })
    }

    fn broadcast_changed(&mut self) {
        for method in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ] {
            self.route_notification(method, json!({ "jsonrpc": "2.0", "method": method }));
        }
    }

    /// Forget idle sessions and closed streams.
    fn sweep(&mut self) {
        let pending: HashSet<Arc<str>> = self
            .state
            .pending
            .values()
            .map(|p| p.session.clone())
            .collect();
        self.state.sessions.retain(|id, s| {
            if s.stream
                .as_ref()
                .is_some_and(mpsc::UnboundedSender::is_closed)
            {
                s.stream = None;
            }
            s.stream.is_some() || pending.contains(id) || s.seen.elapsed() < SESSION_IDLE
        });
        // Server-to-client requests nobody answered within RELAYED_TTL (DELETE drops a
        // session's at once).
        self.state
            .relayed
            .retain(|_, r| r.at.elapsed() < RELAYED_TTL);
        // Calls whose caller went away without a cancel (a dropped receiver).
        self.state
            .pending
            .retain(|_, p| p.reply.as_ref().is_none_or(|r| !r.is_closed()));
    }

    /// Every waiting caller gets `reason` (the upstream is gone).
    fn fail_pending(&mut self, reason: &str) {
        for (_, p) in self.state.pending.drain() {
            if let Some(reply) = p.reply {
                let _ = reply.send(Frame::Failed(reason.to_string()));
            }
        }
        self.state.relayed.clear();
    }

    fn refuse(&self, cmd: Cmd, why: &str) {
        if let Cmd::Call(c) = cmd {
            let st = self.mux.upgrade().map(|m| m.status());
            let detail = st.and_then(|s| s.detail.clone());
            let msg = match detail {
                Some(d) => format!("{why} ({d})"),
                None => why.to_string(),
            };
            let _ = c.reply.send(Frame::Failed(msg));
        }
    }
}

/// The gateway's own answer to an upstream request it does not relay.
fn local_answer(method: &str, id: &Value) -> Value {
    match method {
        "ping" => json!({ "jsonrpc": "2.0", "id": id, "result": {} }),
        "roots/list" => json!({ "jsonrpc": "2.0", "id": id, "result": { "roots": [] } }),
        _ => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": -32601, "message": format!("the gateway does not relay `{method}` yet") },
        }),
    }
}

/// Queue a message for the upstream without waiting (see [`Supervisor::call`]): when the
/// transport is that far behind, the message is dropped with a warning.
async fn send(link: &mut Link, msg: &Value) -> Result<(), String> {
    match link.tx.try_send(Bytes::from(msg.to_string())) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!("upstream transport is full; a message to it was dropped");
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err("the transport closed".to_string()),
    }
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
