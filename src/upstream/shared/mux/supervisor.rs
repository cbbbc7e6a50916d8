//! The task behind a [`super::Mux`]: the transport's life (start, handshake, serve, restart
//! with backoff, drain) and the state it owns. How each message is routed is in [`routing`].

mod routing;

use super::*;

/// A call waiting for its answer.
struct Pending {
    session: Arc<str>,
    orig_id: Value,
    orig_token: Option<Value>,
    /// `None` for the gateway's own requests (answers are dropped).
    reply: Option<Reply>,
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
    stream: Option<mpsc::Sender<Bytes>>,
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

pub(super) struct Supervisor {
    mux: std::sync::Weak<Mux>,
    name: String,
    spec: Spec,
    handshake: Duration,
    phase: watch::Sender<Phase>,
    cmds: mpsc::Receiver<Cmd>,
    retire: watch::Receiver<Option<Duration>>,
    wake: watch::Receiver<bool>,
    lazy: bool,
    full_since: Option<Instant>,
    state: State,
}

impl Supervisor {
    /// The task for `mux`, given the receiving ends of its channels.
    pub(super) fn new(
        mux: &Arc<Mux>,
        handshake: Duration,
        lazy: bool,
        phase: watch::Sender<Phase>,
        cmds: mpsc::Receiver<Cmd>,
        retire: watch::Receiver<Option<Duration>>,
        wake: watch::Receiver<bool>,
    ) -> Self {
        Supervisor {
            mux: Arc::downgrade(mux),
            name: mux.name.clone(),
            spec: mux.spec.clone(),
            handshake,
            phase,
            cmds,
            retire,
            wake,
            lazy,
            full_since: None,
            state: State::default(),
        }
    }

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
            Spec::Stdio(cmd) => crate::upstream::shared::stdio::spawn(&self.name, cmd),
            Spec::Sse { target, headers } => {
                crate::upstream::shared::legacy_sse::connect(
                    &self.name,
                    &target.url,
                    headers,
                    target.tls_options.as_deref(),
                    self.handshake,
                )
                .await
            }
        }
    }

    pub(super) async fn run(mut self) {
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
                _ = sweep.tick() => {
                    // Calls whose caller went away without a cancel (the queue was full).
                    for id in self.sweep() {
                        if let Err(e) = self.cancelled(link, id, "client went away").await {
                            return RunEnd::Exited(e);
                        }
                    }
                }
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

    /// Every waiting caller gets `reason` (the upstream is gone).
    fn fail_pending(&mut self, reason: &str) {
        for (_, p) in self.state.pending.drain() {
            if let Some(reply) = p.reply {
                let _ = reply.done.send(Done::Failed(reason.to_string()));
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
            let _ = c.reply.done.send(Done::Failed(msg));
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
