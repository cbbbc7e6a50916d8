//! The one place that counts a request: its route, method, status and duration; the tool it
//! called and how that ended; a policy denial; an open SSE stream. An [`Observation`] lives as
//! long as the request and counts when dropped, so every path (answered, forwarded, cut short)
//! is counted once, the same way, whichever front end served it.
//!
//! `portcullis_tool_calls_total{outcome}` means the same for every upstream kind:
//! - `ok`: the upstream answered with a result that is not `isError: true`, relayed to the end;
//! - `error`: it answered with a JSON-RPC error, or a result with `isError: true`;
//! - `denied`: the policy refused it; the upstream never saw it;
//! - `limited`: a rate limit refused it; the upstream never saw it;
//! - `failed`: no answer reached the client (upstream unavailable, timed out, cut off
//!   mid-answer, answered without a JSON-RPC response, or the client went away first).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::mcp::outcome::Seen;
use crate::policy::Kind;
use crate::telemetry::metrics::{method_index, metrics, RouteLabel, ToolOutcome};

/// Requests being served in this process (both front ends, streams included), for the drain
/// on shutdown ([`until_idle`]). One gateway per process in production; in-process tests run
/// several and never drain.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static IDLE: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Set once something waits in [`until_idle`]: until then the last request out wakes no one
/// (no lock taken on the request path).
static WATCHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Requests being served now.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// Returns once no request is being served.
pub async fn until_idle() {
    WATCHED.store(true, Ordering::SeqCst);
    loop {
        let idle = IDLE.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if in_flight() == 0 {
            return;
        }
        idle.await;
    }
}

/// What one request did, counted when it is dropped.
pub struct Observation {
    started: Instant,
    route: RouteLabel,
    method: usize,
    status: u16,
    /// The counters of the tool a `tools/call` used (resolved once, no label strings kept).
    tool: Option<std::sync::Arc<[prometheus::IntCounter; 5]>>,
    outcome: ToolOutcome,
}

impl Observation {
    /// A request with `method` starts now.
    pub fn start(method: &http::Method) -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        Observation {
            started: Instant::now(),
            route: RouteLabel::Unknown,
            method: method_index(method),
            status: 0,
            tool: None,
            outcome: ToolOutcome::Failed,
        }
    }

    /// Where the request went.
    pub fn route(&mut self, route: RouteLabel) {
        self.route = route;
    }

    /// The status sent to the client (499: it went away before an answer).
    pub fn status(&mut self, status: u16) {
        self.status = status;
        crate::telemetry::otel::status(status);
    }

    /// The request is a `tools/call` of `tool` on `server` (counted with its outcome).
    pub fn tool_call(&mut self, server: &str, tool: &str) {
        self.tool = Some(metrics().tool_counters(server, tool));
    }

    /// How the tool call ended (see the module docs); `failed` unless set.
    pub fn tool_outcome(&mut self, outcome: ToolOutcome) {
        self.outcome = outcome;
    }

    /// The answer to the tool call was relayed to its end; what it said (`Unread`: a 2xx
    /// answer too large to read is counted `ok`; no JSON-RPC answer in it, `failed`).
    pub fn answered(&mut self, seen: Seen, status: u16) {
        self.outcome = match seen {
            Seen::Answer { is_error: true } => ToolOutcome::Error,
            Seen::Answer { is_error: false } => ToolOutcome::Ok,
            Seen::Unread if (200..300).contains(&status) => ToolOutcome::Ok,
            Seen::Unread | Seen::NoAnswer => ToolOutcome::Failed,
        };
    }

    /// The policy refused a use of `kind` on `server`.
    pub fn denied(&mut self, server: &str, kind: Kind) {
        metrics().denial(server, kind.as_str());
        self.outcome = ToolOutcome::Denied;
    }

    /// A rate limit (`rule`) refused the request (`server`: where it was going, `/mcp` when it
    /// names no single upstream).
    pub fn limited(&mut self, server: &str, rule: &str) {
        metrics().rate_limited(server, rule);
        self.outcome = ToolOutcome::Limited;
    }

    /// An SSE answer is open until the returned guard is dropped.
    pub fn sse_stream(&self) -> SseOpen {
        metrics().sse_open.inc();
        SseOpen(())
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        let m = metrics();
        m.request(
            self.route,
            self.method,
            self.status,
            self.started.elapsed().as_secs_f64(),
        );
        if let Some(counters) = &self.tool {
            counters[self.outcome as usize].inc();
        }
        if IN_FLIGHT.fetch_sub(1, Ordering::AcqRel) == 1 && WATCHED.load(Ordering::SeqCst) {
            IDLE.notify_waiters();
        }
    }
}

/// Counts one open SSE stream for as long as it lives.
pub struct SseOpen(());

impl Drop for SseOpen {
    fn drop(&mut self) {
        metrics().sse_open.dec();
    }
}
