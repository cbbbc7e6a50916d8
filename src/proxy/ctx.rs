//! Per-request state, created in `new_ctx` with the snapshot pinned for the request's life.

use std::sync::Arc;
use std::time::Instant;

use crate::reload::Live;
use crate::telemetry::metrics::RouteLabel;

/// What one request carries between Pingora's phases.
pub struct Ctx {
    /// When the request started.
    pub started: Instant,
    /// The config snapshot this request uses from start to end.
    pub live: Arc<Live>,
    /// The route, for metrics.
    pub route: RouteLabel,
    /// The upstream server chosen (for `/mcp/{server}`).
    pub server: Option<Box<str>>,
    /// Status of a response the gateway wrote itself (0 = see the session).
    pub status: u16,
    /// True while this request counts as an open SSE stream.
    pub sse_open: bool,
    /// The caller's scopes, once authenticated (`None` when authentication is off).
    pub scopes: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl Ctx {
    /// A fresh context pinned to `live`.
    pub fn new(live: Arc<Live>) -> Self {
        Ctx {
            started: Instant::now(),
            live,
            route: RouteLabel::Unknown,
            server: None,
            status: 0,
            sse_open: false,
            scopes: None,
        }
    }
}
