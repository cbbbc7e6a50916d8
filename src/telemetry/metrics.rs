//! The Prometheus registry. Metric names are consts; label sets are low-cardinality.
//!
//! Hot-path counters are resolved once at start into plain arrays indexed by
//! route × method × status, so recording a request is an atomic add, never a map lookup or lock.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `portcullis_requests_total{route,method,status}`.
pub const REQUESTS_TOTAL: &str = "portcullis_requests_total";
/// `portcullis_request_duration_seconds{route}`.
pub const REQUEST_DURATION: &str = "portcullis_request_duration_seconds";
/// `portcullis_config_reloads_total{result}`.
pub const CONFIG_RELOADS: &str = "portcullis_config_reloads_total";
/// `portcullis_config_info{hash}`: 1 for the live config.
pub const CONFIG_INFO: &str = "portcullis_config_info";
/// `portcullis_config_loaded_timestamp_seconds`.
pub const CONFIG_LOADED_AT: &str = "portcullis_config_loaded_timestamp_seconds";
/// `portcullis_sse_streams_open`.
pub const SSE_OPEN: &str = "portcullis_sse_streams_open";
/// `portcullis_front_requests_total{path}`: who served each HTTP/1.1 request.
pub const FRONT_REQUESTS: &str = "portcullis_front_requests_total";
/// `portcullis_upstream_errors_total{server,kind}`.
pub const UPSTREAM_ERRORS: &str = "portcullis_upstream_errors_total";
/// `portcullis_fanout_skipped_total{server,reason}`: an upstream left out of an `/mcp` answer.
pub const FANOUT_SKIPPED: &str = "portcullis_fanout_skipped_total";
/// `portcullis_rate_limited_total{server,rule}`: requests refused by a rate limit.
pub const RATE_LIMITED: &str = "portcullis_rate_limited_total";
/// `portcullis_tls_certificate_reloads_total{result}`: the listener's certificate files read again.
pub const TLS_RELOADS: &str = "portcullis_tls_certificate_reloads_total";
/// `portcullis_tls_certificate_expiry_timestamp_seconds`: when the listener's certificate expires.
pub const TLS_EXPIRY: &str = "portcullis_tls_certificate_expiry_timestamp_seconds";
/// `portcullis_connections_open`: client connections open now (every listener).
pub const CONNECTIONS_OPEN: &str = "portcullis_connections_open";
/// `portcullis_connections_refused_total`: connections closed at once (`server.max_connections`).
pub const CONNECTIONS_REFUSED: &str = "portcullis_connections_refused_total";
/// `portcullis_streams_refused_total{server}`: event streams refused (`server.max_streams_per_principal`).
pub const STREAMS_REFUSED: &str = "portcullis_streams_refused_total";
/// `portcullis_jwt_validations_total{result}`: `valid`, `missing`, or the rejection reason.
pub const JWT_VALIDATIONS: &str = "portcullis_jwt_validations_total";
/// `portcullis_policy_denials_total{server,kind}`.
pub const POLICY_DENIALS: &str = "portcullis_policy_denials_total";
/// `portcullis_upstream_restarts_total{server}`: restarts of stdio / legacy SSE upstreams.
pub const UPSTREAM_RESTARTS: &str = "portcullis_upstream_restarts_total";
/// `portcullis_tool_calls_total{server,tool,outcome}`: `tools/call` requests by outcome.
pub const TOOL_CALLS: &str = "portcullis_tool_calls_total";
/// `portcullis_upstream_up{server}`: 1 when the last probe connected.
pub const UPSTREAM_UP: &str = "portcullis_upstream_up";
/// `portcullis_upstream_request_duration_seconds{server}` (time to response header, or to the answer for stdio / legacy SSE).
pub const UPSTREAM_LATENCY: &str = "portcullis_upstream_request_duration_seconds";

/// Where a request went, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// `/mcp/{server}`.
    McpServer = 0,
    /// `/mcp` (aggregated).
    Mcp = 1,
    /// `/live`, `/ready`, `/metrics`, `/status`.
    Admin = 2,
    /// Anything else.
    Unknown = 3,
}
const ROUTES: [&str; 4] = ["mcp_server", "mcp", "admin", "unknown"];
const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "OPTIONS", "OTHER"];
const STATUSES: [u16; 20] = [
    200, 202, 204, 400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 429, 431, 500, 502, 503, 504,
    0,
];

/// Index of an HTTP method in the method label set.
pub fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::DELETE => 2,
        http::Method::OPTIONS => 3,
        _ => 4,
    }
}

fn status_index(s: u16) -> usize {
    STATUSES
        .iter()
        .position(|x| *x == s)
        .unwrap_or(STATUSES.len() - 1)
}

/// Outcome of a config reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new snapshot went live.
    Success = 0,
    /// The file was bad (or changed a startup-only field); the old snapshot stays.
    Error = 1,
    /// The file's content did not change.
    Unchanged = 2,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Vec<IntCounter>,
    durations: Vec<Histogram>,
    reloads: [IntCounter; 3],
    config_info: IntGaugeVec,
    config_loaded_at: IntGauge,
    /// Open SSE response streams.
    pub sse_open: IntGauge,
    upstream_errors: IntCounterVec,
    fanout_skipped: IntCounterVec,
    rate_limited: IntCounterVec,
    upstream_latency: HistogramVec,
    /// Upstream reachability by server (set by the health prober).
    pub upstream_up: IntGaugeVec,
    /// Restarts of multiplexed (stdio, legacy SSE) upstreams by server.
    pub upstream_restarts: IntCounterVec,
    tool_calls: IntCounterVec,
    /// Resolved counters by server and tool label, indexed by [`ToolOutcome`].
    tool_labels: ArcSwap<ToolCounters>,
    jwt: Vec<(&'static str, IntCounter)>,
    denials: IntCounterVec,
    /// The listener's certificate reloads by result (`ok`, `error`).
    pub tls_reloads: IntCounterVec,
    tls_expiry: IntGauge,
    /// Client connections open now.
    pub connections_open: IntGauge,
    /// Connections closed at once because `server.max_connections` were open.
    pub connections_refused: IntCounter,
    streams_refused: IntCounterVec,
    /// HTTP/1.1 requests served by the front door's hot path.
    pub front_hot: IntCounter,
    /// HTTP/1.1 requests the front door handed to Pingora's proxy.
    pub front_pingora: IntCounter,
}

/// Every `result` label of `portcullis_jwt_validations_total` (resolved once at start).
const JWT_RESULTS: [&str; 12] = [
    "valid",
    "missing",
    "malformed",
    "alg_not_allowed",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "missing_exp",
    "other",
];

/// How a `tools/call` ended, as the gateway saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// Answered with a result (`isError` false).
    Ok,
    /// Answered with a JSON-RPC error or a result with `isError: true`.
    Error,
    /// Denied by policy; the upstream never saw it.
    Denied,
    /// The upstream failed (down, timeout, exited mid-call) or the client went away.
    Failed,
    /// Refused by a rate limit; the upstream never saw it.
    Limited,
}

impl ToolOutcome {
    /// Every outcome, in index order (`outcome as usize`).
    pub const ALL: [ToolOutcome; 5] = [
        ToolOutcome::Ok,
        ToolOutcome::Error,
        ToolOutcome::Denied,
        ToolOutcome::Failed,
        ToolOutcome::Limited,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Error => "error",
            ToolOutcome::Denied => "denied",
            ToolOutcome::Failed => "failed",
            ToolOutcome::Limited => "limited",
        }
    }
}

/// `portcullis_tool_calls_total` counters resolved per server and tool label, one per
/// [`ToolOutcome`] (indexed by `outcome as usize`).
type ToolCounters = HashMap<String, HashMap<String, Arc<[IntCounter; 5]>>>;

/// Most distinct (server, tool) label pairs of `portcullis_tool_calls_total`.
pub const MAX_TOOL_LABELS: usize = 2000;

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    // Registration fails only on a programming error (duplicate name, bad label count), which the
    // test suite catches at the first call; it runs at start, never on a request.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let registry = Registry::new();
        let requests_vec = IntCounterVec::new(
            Opts::new(REQUESTS_TOTAL, "HTTP requests by route, method and status."),
            &["route", "method", "status"],
        )
        .expect("metric definition");
        let mut requests = Vec::with_capacity(ROUTES.len() * METHODS.len() * STATUSES.len());
        for r in ROUTES {
            for m in METHODS {
                for s in STATUSES {
                    let status = if s == 0 {
                        "other".to_string()
                    } else {
                        s.to_string()
                    };
                    requests.push(requests_vec.with_label_values(&[r, m, &status]));
                }
            }
        }
        let durations_vec = HistogramVec::new(
            HistogramOpts::new(
                REQUEST_DURATION,
                "Request duration until the response ended.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ]),
            &["route"],
        )
        .expect("metric definition");
        let durations = ROUTES
            .iter()
            .map(|r| durations_vec.with_label_values(&[r]))
            .collect();
        let reloads_vec = IntCounterVec::new(
            Opts::new(CONFIG_RELOADS, "Config reloads by result."),
            &["result"],
        )
        .expect("metric definition");
        let reloads = [
            reloads_vec.with_label_values(&["success"]),
            reloads_vec.with_label_values(&["error"]),
            reloads_vec.with_label_values(&["unchanged"]),
        ];
        let config_info = IntGaugeVec::new(
            Opts::new(CONFIG_INFO, "The live config, by content hash (value 1)."),
            &["hash"],
        )
        .expect("metric definition");
        let config_loaded_at = IntGauge::new(
            CONFIG_LOADED_AT,
            "Unix time at which the live config was loaded.",
        )
        .expect("metric definition");
        let sse_open =
            IntGauge::new(SSE_OPEN, "SSE response streams currently open.").expect("metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(UPSTREAM_ERRORS, "Upstream failures by server and kind."),
            &["server", "kind"],
        )
        .expect("metric definition");
        let fanout_skipped = IntCounterVec::new(
            Opts::new(
                FANOUT_SKIPPED,
                "Upstreams left out of an /mcp answer (initialize, list, stream) by server and reason (timeout, error).",
            ),
            &["server", "reason"],
        )
        .expect("metric definition");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                RATE_LIMITED,
                "Requests refused by a rate limit, by server (`/mcp` when it names none) and rule (`rate_limits[i]`).",
            ),
            &["server", "rule"],
        )
        .expect("metric definition");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                UPSTREAM_LATENCY,
                "Time from request to the upstream response header (HTTP upstreams) or answer (stdio, legacy SSE).",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.5, 14).expect("buckets")),
            &["server"],
        )
        .expect("metric definition");
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                UPSTREAM_UP,
                "1 when the upstream accepted the last probe connection.",
            ),
            &["server"],
        )
        .expect("metric definition");
        let upstream_restarts = IntCounterVec::new(
            Opts::new(
                UPSTREAM_RESTARTS,
                "Restarts of stdio and legacy SSE upstreams after an exit or a failed start.",
            ),
            &["server"],
        )
        .expect("metric definition");
        let tool_calls = IntCounterVec::new(
            Opts::new(
                TOOL_CALLS,
                "tools/call requests by server, tool and outcome (ok, error, denied, failed). Tool names come from the config's upstreams; one label set per tool.",
            ),
            &["server", "tool", "outcome"],
        )
        .expect("metric definition");
        let jwt = IntCounterVec::new(
            Opts::new(
                JWT_VALIDATIONS,
                "Bearer token checks by result or rejection reason.",
            ),
            &["result"],
        )
        .expect("metric definition");
        let denials = IntCounterVec::new(
            Opts::new(
                POLICY_DENIALS,
                "Requests denied by policy, by server and kind.",
            ),
            &["server", "kind"],
        )
        .expect("metric definition");
        let front = IntCounterVec::new(
            Opts::new(
                FRONT_REQUESTS,
                "HTTP/1.1 requests by who served them: `hot` (the front door's POST path) or `pingora` (Pingora's proxy phases).",
            ),
            &["path"],
        )
        .expect("metric definition");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                TLS_RELOADS,
                "The listener's certificate files read again after a change, by result (ok, error: the old certificate stays).",
            ),
            &["result"],
        )
        .expect("metric definition");
        let tls_expiry = IntGauge::new(
            TLS_EXPIRY,
            "When the certificate the TLS listener presents expires (Unix time).",
        )
        .expect("metric definition");
        let connections_open = IntGauge::new(
            CONNECTIONS_OPEN,
            "Client connections open now (every listener).",
        )
        .expect("metric definition");
        let connections_refused = IntCounter::new(
            CONNECTIONS_REFUSED,
            "Client connections closed at once because server.max_connections were open.",
        )
        .expect("metric definition");
        let streams_refused = IntCounterVec::new(
            Opts::new(
                STREAMS_REFUSED,
                "Event streams refused because their caller held server.max_streams_per_principal.",
            ),
            &["server"],
        )
        .expect("metric definition");
        for c in [
            Box::new(front.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(streams_refused.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(tls_expiry.clone()),
            Box::new(upstream_up.clone()),
            Box::new(upstream_restarts.clone()),
            Box::new(tool_calls.clone()),
            Box::new(jwt.clone()),
            Box::new(denials.clone()),
            Box::new(requests_vec),
            Box::new(durations_vec),
            Box::new(reloads_vec),
            Box::new(config_info.clone()),
            Box::new(config_loaded_at.clone()),
            Box::new(sse_open.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(fanout_skipped.clone()),
            Box::new(rate_limited.clone()),
            Box::new(upstream_latency.clone()),
        ] {
            registry.register(c).expect("metric registration");
        }
        Metrics {
            registry,
            requests,
            durations,
            reloads,
            config_info,
            config_loaded_at,
            sse_open,
            upstream_errors,
            fanout_skipped,
            rate_limited,
            upstream_latency,
            upstream_up,
            upstream_restarts,
            tool_calls,
            tool_labels: ArcSwap::default(),
            jwt: JWT_RESULTS
                .iter()
                .map(|r| (*r, jwt.with_label_values(&[r])))
                .collect(),
            denials,
            tls_reloads,
            tls_expiry,
            connections_open,
            connections_refused,
            streams_refused,
            front_hot: front.with_label_values(&["hot"]),
            front_pingora: front.with_label_values(&["pingora"]),
        }
    }

    /// The listener's certificate in use now expires at `not_after` (Unix time), if known.
    pub fn tls_cert_loaded(&self, not_after: Option<i64>) {
        if let Some(t) = not_after {
            self.tls_expiry.set(t);
        }
    }

    /// Count one finished request. `method` is from [`method_index`].
    pub fn request(&self, route: RouteLabel, method: usize, status: u16, seconds: f64) {
        let idx = ((route as usize) * METHODS.len() + method.min(METHODS.len() - 1))
            * STATUSES.len()
            + status_index(status);
        if let Some(c) = self.requests.get(idx) {
            c.inc();
        }
        if let Some(h) = self.durations.get(route as usize) {
            h.observe(seconds);
        }
    }

    /// Count a reload and, on success, publish the live config's identity.
    pub fn reload(&self, result: ReloadResult, live_hash: Option<&str>, loaded_at_unix: i64) {
        self.reloads[result as usize].inc();
        if let Some(hash) = live_hash {
            self.config_info.reset();
            self.config_info.with_label_values(&[hash]).set(1);
            self.config_loaded_at.set(loaded_at_unix);
        }
    }

    /// Count a bearer token check (`result`: a fixed, low-cardinality label).
    pub fn jwt(&self, result: &str) {
        let found = self
            .jwt
            .iter()
            .find(|(r, _)| *r == result)
            .or_else(|| self.jwt.last());
        if let Some((_, c)) = found {
            c.inc();
        }
    }

    /// Count a policy denial.
    pub fn denial(&self, server: &str, kind: &str) {
        self.denials.with_label_values(&[server, kind]).inc();
    }

    /// Count one `tools/call` (see [`Metrics::tool_counters`]).
    pub fn tool_call(&self, server: &str, tool: &str, outcome: ToolOutcome) {
        self.tool_counters(server, tool)[outcome as usize].inc();
    }

    /// The `portcullis_tool_calls_total` counters of `tool` on `server`, one per
    /// [`ToolOutcome`] (indexed by `outcome as usize`). Tool names come from callers, so the
    /// label set is bounded: the first [`MAX_TOOL_LABELS`] distinct names get their own label,
    /// later ones `(other)`. A known name costs one lock-free map lookup (its counters are
    /// resolved once); a new name publishes a changed copy of the map (read-copy-update), once.
    pub fn tool_counters(&self, server: &str, tool: &str) -> Arc<[IntCounter; 5]> {
        const OTHER: &str = "(other)";
        let tool = if tool.len() > 64 { OTHER } else { tool };
        if let Some(c) = self
            .tool_labels
            .load()
            .get(server)
            .and_then(|tools| tools.get(tool))
        {
            return Arc::clone(c);
        }
        // `(other)` always gets its counters (one set per server), even past the cap.
        let mut label = tool;
        self.tool_labels.rcu(|current| {
            let mut map = HashMap::clone(current);
            let labels: usize = map.values().map(HashMap::len).sum();
            label = if labels >= MAX_TOOL_LABELS {
                OTHER
            } else {
                tool
            };
            map.entry(server.to_string())
                .or_default()
                .entry(label.to_string())
                .or_insert_with(|| {
                    Arc::new(ToolOutcome::ALL.map(|o| {
                        self.tool_calls
                            .with_label_values(&[server, label, o.as_str()])
                    }))
                });
            map
        });
        let resolved = self
            .tool_labels
            .load()
            .get(server)
            .and_then(|tools| tools.get(label))
            .cloned();
        resolved.unwrap_or_else(|| {
            Arc::new(ToolOutcome::ALL.map(|o| {
                self.tool_calls
                    .with_label_values(&[server, label, o.as_str()])
            }))
        })
    }

    /// Count an upstream failure of `server`.
    pub fn upstream_error(&self, server: &str, kind: &str) {
        self.upstream_errors
            .with_label_values(&[server, kind])
            .inc();
    }

    /// Count an upstream left out of an `/mcp` answer.
    pub fn fanout_skipped(&self, server: &str, reason: &str) {
        self.fanout_skipped
            .with_label_values(&[server, reason])
            .inc();
    }

    /// Count an event stream refused by `server.max_streams_per_principal`.
    pub fn streams_refused(&self, server: &str) {
        self.streams_refused.with_label_values(&[server]).inc();
    }

    /// Count a request refused by rate limit `rule`.
    pub fn rate_limited(&self, server: &str, rule: &str) {
        self.rate_limited.with_label_values(&[server, rule]).inc();
    }

    /// The latency histogram of one upstream, resolved once per config load (not per request).
    pub fn upstream_latency(&self, server: &str) -> Histogram {
        self.upstream_latency.with_label_values(&[server])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
