//! Routing between callers and the shared upstream session: ids, progress tokens,
//! cancellation, server-to-client requests, notifications, subscriptions.

use super::*;

impl Supervisor {
    pub(super) async fn on_caller(&mut self, link: &mut Link, cmd: Cmd) -> Result<(), String> {
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

    pub(super) fn session(&mut self, id: &Arc<str>, caps: Caps) -> &mut Sess {
        let s = self
            .state
            .sessions
            .entry(id.clone())
            .or_insert_with(|| Sess::new(caps));
        s.seen = Instant::now();
        s
    }

    pub(super) async fn call(&mut self, link: &mut Link, call: Call) -> Result<(), String> {
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
                let _ = call.reply.done.send(Done::Answer {
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
                    crate::upstream::shared::link::LINK_BUFFER
                );
                tracing::warn!(server = %self.name, "upstream is not keeping up; call refused");
                let _ = call.reply.done.send(Done::Failed(why));
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

    pub(super) fn subscribed(&self, uri: &str) -> bool {
        self.state
            .sessions
            .values()
            .any(|s| s.subscriptions.contains(uri))
    }

    pub(super) async fn notify(
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

    pub(super) async fn answer(
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

    pub(super) async fn cancel(
        &mut self,
        link: &mut Link,
        id: u64,
        reason: &str,
    ) -> Result<(), String> {
        if self.state.pending.remove(&id).is_some() {
            self.cancelled(link, id, reason).await?;
        }
        Ok(())
    }

    /// Tell the upstream that request `id` is cancelled.
    pub(super) async fn cancelled(
        &mut self,
        link: &mut Link,
        id: u64,
        reason: &str,
    ) -> Result<(), String> {
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": reason },
        });
        send(link, &note).await
    }

    pub(super) async fn close(
        &mut self,
        link: &mut Link,
        session: &Arc<str>,
    ) -> Result<(), String> {
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
    pub(super) async fn internal(
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
    pub(super) async fn resubscribe(&mut self, link: &mut Link) -> Result<(), String> {
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
    pub(super) async fn on_upstream(
        &mut self,
        link: &mut Link,
        mut msg: Value,
    ) -> Result<(), String> {
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
                    let _ = reply.done.send(Done::Answer {
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

    pub(super) async fn relay_request(
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
        push(&tx, Bytes::from(msg.to_string()), &self.name);
        Ok(())
    }

    /// The caller a server-to-client request belongs to, and where to send it.
    pub(super) fn origin(&self, method: &str) -> Result<(Arc<str>, mpsc::Sender<Bytes>), String> {
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
                .and_then(|(_, p)| Some((p.caps, p.reply.as_ref()?.messages.clone())));
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

    pub(super) fn route_notification(&mut self, method: &str, mut msg: Value) {
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
                push(&reply.messages, Bytes::from(msg.to_string()), &self.name);
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
                            push(tx, bytes.clone(), &self.name);
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
                        push(tx, bytes.clone(), &self.name);
                    }
                }
            }
            // Log messages and anything else: only to the caller being served, when that is
            // unambiguous (one session with calls in flight); never fanned out, since it may
            // describe another caller's work.
            _ => match self.sole_origin() {
                Some(tx) => {
                    push(&tx, Bytes::from(msg.to_string()), &self.name);
                }
                None => {
                    tracing::debug!(server = %self.name, method, "notification with no unambiguous recipient; dropped");
                }
            },
        }
    }

    /// Where a message about "the call being served" goes: the newest streaming call of the
    /// only session with calls in flight, else that session's GET stream.
    pub(super) fn sole_origin(&self) -> Option<mpsc::Sender<Bytes>> {
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
            .and_then(|(_, p)| Some(p.reply.as_ref()?.messages.clone()))
            .or_else(|| {
                self.state
                    .sessions
                    .get(&session)
                    .and_then(|s| s.stream.clone())
            })
    }

    pub(super) fn broadcast_changed(&mut self) {
        for method in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ] {
            self.route_notification(method, json!({ "jsonrpc": "2.0", "method": method }));
        }
    }

    /// Forget idle sessions and closed streams; returns the calls whose caller went away
    /// without a cancel (dropped here; the caller of this tells the upstream).
    pub(super) fn sweep(&mut self) -> Vec<u64> {
        let pending: HashSet<Arc<str>> = self
            .state
            .pending
            .values()
            .map(|p| p.session.clone())
            .collect();
        self.state.sessions.retain(|id, s| {
            if s.stream.as_ref().is_some_and(mpsc::Sender::is_closed) {
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
        let abandoned: Vec<u64> = self
            .state
            .pending
            .iter()
            .filter(|(_, p)| p.reply.as_ref().is_some_and(|r| r.done.is_closed()))
            .map(|(id, _)| *id)
            .collect();
        for id in &abandoned {
            self.state.pending.remove(id);
        }
        abandoned
    }
}
