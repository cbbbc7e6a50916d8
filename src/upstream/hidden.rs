//! 2026-07-28 requests to a Streamable HTTP upstream that speaks only the legacy era: the
//! gateway keeps a legacy session with it for each caller, behind the scenes, and sends the
//! caller's requests under it.
//!
//! ```text
//!  2026-07-28 request ──> era known? ── modern ──> passed on as it is
//!                            │ unknown: one `server/discover` of the gateway's own decides
//!                            │ (a result: modern; 400/404/405 or -32601/-32600: legacy
//!                            │ only; anything else, or no answer within 10 s: undecided,
//!                            │ passed through, asked again 10 s later)
//!                            └ legacy ──> the caller's hidden session (initialize +
//!                                         notifications/initialized once, then kept):
//!                                         server/discover   answered from its `initialize`
//!                                         subscriptions/listen   -32601 (not mapped)
//!                                         anything else     sent under the session id and the
//!                                                           version it negotiated
//! ```
//!
//! A session belongs to one caller (issuer + subject; every anonymous caller is one) and is
//! never used for another. It is kept per replica, at most [`MAX_SESSIONS`] per upstream (the
//! least recently used go first), carried over a reload that keeps the upstream's URL. A
//! request the upstream answers 404 (it forgot the session) is sent once more under a new
//! session: the 404 says the upstream did not act on it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::http::{head, Failure, HttpUpstream};
use super::{Answer, Completer, HttpAnswer, HttpBody, Request, Upstream};
use crate::mcp::era;
use crate::mcp::reply::Reply;
use crate::policy::Permit;

/// Most hidden sessions kept per upstream.
pub const MAX_SESSIONS: usize = 10_000;

/// How long an era question that decided nothing (the upstream failed, refused the caller's
/// credentials, ...) waits before it is asked again.
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest the era question may take (at most the upstream's `connection.timeout`).
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The legacy version the gateway asks a legacy upstream for.
const LEGACY: &str = "2025-11-25";

const UNKNOWN: u8 = 0;
const MODERN: u8 = 1;
const LEGACY_ONLY: u8 = 2;

/// What the gateway knows of an HTTP upstream's era, and its hidden sessions.
#[derive(Default)]
pub struct Hidden {
    era: AtomicU8,
    /// Held while the era is asked (only while it is unknown: never on a decided upstream).
    asking: tokio::sync::Mutex<()>,
    /// Unix seconds before which an undecided era is not asked again.
    ask_after: AtomicU64,
    sessions: DashMap<[u8; 16], Arc<OnceCell<Held>>>,
    /// A clock for "least recently used" (incremented per use).
    ticks: AtomicU64,
}

/// One caller's hidden session.
struct Held {
    /// The upstream's session id (`None`: it has no sessions).
    id: Option<String>,
    /// The version it negotiated.
    version: String,
    /// Its `initialize` result.
    init: Value,
    /// When it was last used ([`Hidden::ticks`]).
    used: AtomicU64,
}

impl Upstream {
    /// Whether a 2026-07-28 request to this HTTP upstream goes through a hidden session (it
    /// speaks only the legacy era). Asked once; while undecided, requests are tried as they
    /// are and the question is asked again after [`ASK_AGAIN`].
    pub(super) async fn legacy_only(&self, http: &HttpUpstream, req: &Request<'_>) -> bool {
        match self.hidden.era.load(Ordering::Relaxed) {
            MODERN => false,
            LEGACY_ONLY => true,
            // Asked lately, decided nothing: passed through until it is asked again.
            _ if crate::mcp::session::now() < self.hidden.ask_after.load(Ordering::Relaxed) => {
                false
            }
            // Boxed: a request's future holds room for the question only while it is asked.
            _ => Box::pin(self.ask_era(http, req)).await,
        }
    }

    /// Ask the upstream which era it speaks (see [`Upstream::legacy_only`]): one question at a
    /// time (others wait for its answer), and after an answer that decides nothing, not again
    /// for [`ASK_AGAIN`] (requests pass through meanwhile).
    async fn ask_era(&self, http: &HttpUpstream, req: &Request<'_>) -> bool {
        let _one = self.hidden.asking.lock().await;
        match self.hidden.era.load(Ordering::Relaxed) {
            MODERN => return false,
            LEGACY_ONLY => return true,
            _ => {}
        }
        let now = crate::mcp::session::now();
        if now < self.hidden.ask_after.load(Ordering::Relaxed) {
            return false;
        }
        let probe = json!({
            "jsonrpc": "2.0", "id": "portcullis-discover", "method": "server/discover",
            "params": { "_meta": {
                "io.modelcontextprotocol/protocolVersion": era::MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            } },
        });
        let own = head::Own {
            session: Some(None),
            mcp_name: None,
            protocol_version: Some(era::MODERN),
            mcp_method: Some("server/discover"),
        };
        // Bounded as a whole (a head that never comes, an SSE answer of keep-alives only).
        let limit = PROBE_LIMIT.min(self.config.timeout);
        let asked = tokio::time::timeout(limit, async {
            let answer = self.exchange(http, req, &probe, own).await.ok()?;
            let status = answer.head.status();
            Some(match status {
                // A result: it serves 2026-07-28 requests (pass them through); "no such
                // method" in its place (a stateless legacy server): legacy only.
                200 => match first_message(Answer::Http(answer)).await {
                    Some(m) if m.get("result").is_some() => MODERN,
                    Some(m)
                        if matches!(
                            m.pointer("/error/code").and_then(Value::as_i64),
                            Some(-32601 | -32600)
                        ) =>
                    {
                        LEGACY_ONLY
                    }
                    _ => UNKNOWN,
                },
                // Refused without a session: a legacy server wants `initialize` first.
                400 | 404 | 405 => LEGACY_ONLY,
                // Not an answer about the protocol (401, 403, 429, 5xx, ...): ask later.
                _ => UNKNOWN,
            })
        })
        .await;
        let known = asked.ok().flatten().unwrap_or(UNKNOWN);
        if known == UNKNOWN {
            // From the end of this question: requests that waited for it pass through.
            self.hidden.ask_after.store(
                crate::mcp::session::now() + ASK_AGAIN.as_secs(),
                Ordering::Relaxed,
            );
        }
        if known == LEGACY_ONLY {
            crate::in_request!(info, server = %self.config.name, "the upstream speaks only the legacy era: 2026-07-28 callers get sessions of their own with it");
        }
        self.hidden.era.store(known, Ordering::Relaxed);
        known == LEGACY_ONLY
    }

    /// A 2026-07-28 request through the caller's hidden session (see the module docs).
    pub(super) async fn hidden_call<'u>(
        &'u self,
        http: &'u HttpUpstream,
        permit: &Permit<'_>,
        req: Request<'_>,
    ) -> Result<Answer<'u>, Failure> {
        let single = req.envelope.and_then(|e| e.single());
        let method = single.and_then(|m| m.method()).unwrap_or_default();
        let id = single.and_then(|m| m.id()).cloned().unwrap_or(Value::Null);
        if method == crate::mcp::listen::METHOD {
            let m = "Method not found: `subscriptions/listen` is not available at 2026-07-28 on this upstream (it speaks only the legacy era)";
            return Ok(Answer::Local(Reply::rpc_error(404, &id, -32601, m)));
        }
        let tag = permit.principal().tag();
        let mut retried = false;
        loop {
            let known = self.hidden.sessions.get(&tag).map(|c| c.clone());
            let cell = match known {
                Some(c) => c,
                None => self
                    .hidden
                    .sessions
                    .entry(tag)
                    .or_insert_with(|| Arc::new(OnceCell::new()))
                    .clone(),
            };
            let held = match cell.get_or_try_init(|| self.open(http, &req)).await {
                Ok(h) => h,
                Err(f) => {
                    self.forget(&tag, &cell);
                    return Err(f);
                }
            };
            held.used.store(
                self.hidden.ticks.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            if method == "server/discover" {
                let result = era::discovered(&held.init);
                let reply = Reply::json(
                    200,
                    &json!({ "jsonrpc": "2.0", "id": id, "result": result }),
                );
                return Ok(Answer::Local(reply));
            }
            let own = head::Own {
                session: Some(held.id.as_deref().map(str::as_bytes)),
                mcp_name: req.mcp_name,
                protocol_version: Some(&held.version),
                mcp_method: req.mcp_method,
            };
            let mut answer = self.exchange_bytes(http, &req, &req.body, own).await?;
            if answer.head.status() == 404 && !retried {
                // "Session not found" (no response to this request: the upstream did not act
                // on it): a new session, and the request once more. A response to it is the
                // caller's.
                let said = first_message(Answer::Http(answer)).await;
                // Either way the session is gone as far as this gateway is concerned.
                self.forget(&tag, &cell);
                if let Some(m) =
                    said.filter(|m| m.get("id").is_some_and(|i| !i.is_null() && *i == id))
                {
                    return Ok(Answer::Local(Reply::json(404, &m)));
                }
                retried = true;
                continue;
            }
            answer.body.completer = Some(Completer::for_head(&mut answer.head, method));
            return Ok(Answer::Http(answer));
        }
    }

    /// Drop `cell` as `tag`'s session, unless another replaced it meanwhile.
    fn forget(&self, tag: &[u8; 16], cell: &Arc<OnceCell<Held>>) {
        self.hidden
            .sessions
            .remove_if(tag, |_, held| Arc::ptr_eq(held, cell));
    }

    /// Open a hidden session: `initialize`, then `notifications/initialized`.
    async fn open(&self, http: &HttpUpstream, req: &Request<'_>) -> Result<Held, Failure> {
        self.make_room();
        let init = json!({
            "jsonrpc": "2.0", "id": "portcullis-initialize", "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") },
            },
        });
        let own = head::Own {
            session: Some(None),
            mcp_name: None,
            protocol_version: Some(LEGACY),
            mcp_method: Some("initialize"),
        };
        let answer = self.exchange(http, req, &init, own).await?;
        let status = answer.head.status();
        let id = answer
            .head
            .get("mcp-session-id")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned);
        let refused = |detail: String| Failure::unavailable("unavailable", detail);
        if status != 200 {
            return Err(refused(format!(
                "the upstream refused the gateway's `initialize` (HTTP {status})"
            )));
        }
        let Some(result) = first_message(Answer::Http(answer))
            .await
            .and_then(|mut m| m.get_mut("result").map(Value::take))
        else {
            return Err(refused(
                "the upstream's `initialize` answer holds no result".into(),
            ));
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LEGACY)
            .to_owned();
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let own = head::Own {
            session: Some(id.as_deref().map(str::as_bytes)),
            mcp_name: None,
            protocol_version: Some(&version),
            mcp_method: Some("notifications/initialized"),
        };
        let answer = self.exchange(http, req, &initialized, own).await?;
        drain(answer).await;
        crate::in_request!(debug, server = %self.config.name, "opened a hidden legacy session for a 2026-07-28 caller");
        Ok(Held {
            id,
            version,
            init: result,
            used: AtomicU64::new(self.hidden.ticks.fetch_add(1, Ordering::Relaxed)),
        })
    }

    /// At most [`MAX_SESSIONS`]: past it, the least recently used tenth goes.
    fn make_room(&self) {
        let sessions = &self.hidden.sessions;
        if sessions.len() < MAX_SESSIONS {
            return;
        }
        let mut used: Vec<([u8; 16], u64)> = sessions
            .iter()
            .map(|e| {
                let at = e
                    .value()
                    .get()
                    .map_or(u64::MAX, |h| h.used.load(Ordering::Relaxed));
                (*e.key(), at)
            })
            .collect();
        used.sort_unstable_by_key(|(_, at)| *at);
        for (tag, _) in used.iter().take(MAX_SESSIONS / 10) {
            sessions.remove(tag);
        }
    }

    /// Send a message of the gateway's own (`body`) with `own`'s fields.
    async fn exchange<'u>(
        &'u self,
        http: &'u HttpUpstream,
        req: &Request<'_>,
        body: &Value,
        own: head::Own<'_>,
    ) -> Result<HttpAnswer<'u>, Failure> {
        let body = Bytes::from(body.to_string());
        self.exchange_bytes(http, req, &body, own).await
    }

    async fn exchange_bytes<'u>(
        &'u self,
        http: &'u HttpUpstream,
        req: &Request<'_>,
        body: &Bytes,
        own: head::Own<'_>,
    ) -> Result<HttpAnswer<'u>, Failure> {
        let mut out = Vec::with_capacity(512);
        head::encode(
            req.view,
            http,
            Some(body.len()),
            req.traceparent,
            own,
            &mut out,
        );
        let (exchange, resp) = http.exchange(&out, body, false).await?;
        Ok(HttpAnswer {
            head: resp,
            body: HttpBody {
                exchange,
                upstream: http,
                completer: None,
            },
        })
    }
}

/// The first message of an answer, parsed.
async fn first_message(answer: Answer<'_>) -> Option<Value> {
    let mut r = answer.into_messages();
    while let Ok(Some(m)) = r.next().await {
        if let Ok(v) = serde_json::from_slice::<Value>(&m) {
            if v.get("id").is_some() {
                return Some(v);
            }
        }
    }
    None
}

/// Read an answer to its end.
async fn drain(answer: HttpAnswer<'_>) {
    let mut r = Answer::Http(answer).into_messages();
    while let Ok(Some(_)) = r.next().await {}
}
