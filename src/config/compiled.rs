//! The compiled, immutable config snapshot the gateway runs on. Built only by `compile`; no
//! serde. Every value is validated and typed (URLs parsed, durations, header names and values,
//! a name index for upstreams). Secrets never appear in `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::diagnostic::Diagnostic;

/// A loaded config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from.
    pub source: SourceInfo,
    /// Listener and request limits.
    pub server: Server,
    /// Token validation.
    pub oauth: OAuth,
    /// Claims to scopes and per-tool requirements.
    pub auth: Auth,
    /// Upstream servers.
    pub proxy: Proxy,
    /// Per-replica rate limits.
    pub rate_limits: Vec<RateLimit>,
    /// Trace export.
    pub telemetry: Telemetry,
    /// Findings that did not stop the load (e.g. a permission naming a server that is not
    /// configured); `check` and reload print them with [`Diagnostic::render_as_warning`].
    pub warnings: Vec<Diagnostic>,
}

/// `telemetry`: OTLP trace export. Startup-only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Telemetry {
    /// The collector's `/v1/traces` URL (from `otlp_endpoint`); `None`: no export.
    pub otlp_traces: Option<url::Url>,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// The origin of a loaded config.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// The file name as given to the loader.
    pub file: String,
    /// SHA-256 (hex) of the file text before variable substitution.
    pub hash: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// `server`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Public base URL (`server.url`); resource URLs derive from it.
    pub public_url: Option<url::Url>,
    /// Listener address. Startup-only.
    pub listen: SocketAddr,
    /// Request body cap in bytes.
    pub max_body_bytes: usize,
    /// Allowed `Origin` values, normalized as `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
    /// Request head cap in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Longest time a request head may take to arrive (408 past it).
    pub header_timeout: Duration,
    /// Most client connections open at once on the main listener.
    pub max_connections: usize,
    /// Most event streams one caller holds open at once (429 past it).
    pub max_streams_per_principal: usize,
    /// Worker threads. Startup-only.
    pub threads: usize,
    /// Shutdown grace period. Startup-only.
    pub grace_period: Duration,
    /// Plain HTTP/1.1 requests are served by the front door; `false`: all by Pingora's proxy.
    pub fast_path: bool,
    /// The admin listener (`/live /ready /metrics /status` leave the main one). Startup-only.
    pub admin_listen: Option<SocketAddr>,
    /// The scope a token needs for `/status` on the main listener (authentication on).
    pub admin_scope: Option<String>,
    /// Basic auth required for `/metrics`, on whichever listener serves it.
    pub metrics_auth: Option<BasicAuth>,
    /// HTTPS on the main listener. Startup-only (the files reload).
    pub tls: Option<ServerTls>,
}

/// `server.tls`: the listener's certificate files (checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert_file: std::path::PathBuf,
    /// PEM private key.
    pub key_file: std::path::PathBuf,
    /// How often the files are checked for a change.
    pub reload_interval: Duration,
}

/// A user name and password (`server.metrics_auth`); `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Identity provider flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Okta custom authorization servers.
    Okta,
    /// Any OIDC issuer.
    Oidc,
}

/// `oauth`.
#[derive(Debug, Clone)]
pub struct OAuth {
    /// Whether requests need a valid bearer token.
    pub enabled: bool,
    /// Provider flavour.
    pub provider: Provider,
    /// Issuers, found by OIDC discovery.
    pub authorization_servers: Vec<url::Url>,
    /// Accepted `aud` values (empty: not checked).
    pub audiences: Vec<String>,
    /// JWKS URL or `file://` URL overriding discovery.
    pub jwks_uri: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`.
    pub leeway: Duration,
    /// How often the signing keys are fetched again.
    pub jwks_refresh: Duration,
}

/// How the scopes of a permission combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeMode {
    /// One of the listed scopes suffices.
    Any,
    /// Every listed scope is needed.
    All,
}

/// `auth`.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Claims read from tokens (dotted paths allowed).
    pub claims: Vec<String>,
    /// `claim:value` keys to scopes, in file order.
    pub mappings: Vec<(String, Vec<String>)>,
    /// Permission patterns, in file order.
    pub permissions: Vec<Permission>,
    /// How scopes combine.
    pub scope_mode: ScopeMode,
    /// Scope required when no pattern matches; `None` denies.
    pub default_scope: Option<String>,
    /// How a denied call is answered.
    pub on_denied: OnDenied,
}

/// `auth.options.on_denied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDenied {
    /// JSON-RPC -32602 "Unknown tool: NAME": hidden names stay hidden (default).
    #[default]
    Hide,
    /// JSON-RPC error "Forbidden: ...": the caller learns the name exists.
    Forbidden,
    /// HTTP 403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`.
    StepUp,
}

/// One `auth.permissions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Server part; may contain `*`.
    pub server: String,
    /// Tool, prompt or resource part; may contain `*`.
    pub name: String,
    /// Scopes required.
    pub scopes: Vec<String>,
    /// The pattern as written.
    pub source: String,
}

/// `proxy`.
#[derive(Clone)]
pub struct Proxy {
    /// Joins server and tool names on `/mcp`.
    pub separator: String,
    /// Key sealing legacy session ids.
    pub session_key: Option<[u8; 32]>,
    /// Upstreams in file order.
    pub servers: Vec<Arc<Upstream>>,
    pub(crate) index: HashMap<String, usize>,
}

impl Proxy {
    /// The upstream called `name`.
    pub fn server(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.index.get(name).and_then(|&i| self.servers.get(i))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("separator", &self.separator)
            .field("session_key", &self.session_key.map(|_| "***"))
            .field("servers", &self.servers)
            .finish()
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Unique name.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Maximum idle time between bytes from the upstream (seed `connection.timeout`).
    pub timeout: Duration,
    /// Headers added to every upstream request; values are marked sensitive (their `Debug`
    /// prints `Sensitive`).
    pub inject_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Forward the client's `Authorization` header.
    pub forward_authorization: bool,
    /// What its names start with on `/mcp` (before the separator): `prefix`, else `name`.
    pub prefix: String,
    /// Upstream name -> exposed name (after the prefix) on `/mcp`, from `aliases`.
    pub aliases: Vec<(String, String)>,
}

/// Transport of an upstream.
#[derive(Debug, Clone)]
pub enum Transport {
    /// MCP Streamable HTTP.
    StreamableHttp(HttpTarget),
    /// Legacy HTTP+SSE (2024-11-05).
    Sse(HttpTarget),
    /// A child process.
    Stdio(StdioCommand),
}

impl Transport {
    /// The `type` as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::StreamableHttp(_) => "streamable-http",
            Transport::Sse(_) => "sse",
            Transport::Stdio(_) => "stdio",
        }
    }
}

/// An HTTP upstream address, precomputed for the proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The URL.
    pub url: url::Url,
    /// `https`.
    pub tls: bool,
    /// Host (IPv6 in brackets).
    pub host: String,
    /// Port, defaulted by scheme.
    pub port: u16,
    /// `host:port`.
    pub address: String,
    /// Path and query, e.g. `/mcp`.
    pub path_and_query: String,
    /// `Host` header value: `host`, or `host:port` for a non-default port.
    pub host_header: String,
    /// Fall back to legacy SSE when Streamable HTTP is refused (`connection.fallback_sse`).
    pub fallback_sse: bool,
    /// `connection.tls`: the CA bundle and client certificate (`https` only).
    pub tls_options: Option<std::sync::Arc<crate::tls::UpstreamTls>>,
}

/// A URL for display: the query (which may hold a token) is replaced by `***`.
pub fn redacted_url(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("***"));
    }
    if u.password().is_some() {
        // Cannot fail for URLs with a host, which is all we hold.
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

impl fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTarget")
            .field("url", &redacted_url(&self.url))
            .field("tls", &self.tls)
            .field("address", &self.address)
            .field("host_header", &self.host_header)
            .field("fallback_sse", &self.fallback_sse)
            .field("tls_options", &self.tls_options)
            .finish_non_exhaustive()
    }
}

/// A child process speaking MCP over stdio. `Debug` shows neither argument nor environment
/// values (they may carry secrets).
#[derive(Clone, PartialEq, Eq)]
pub struct StdioCommand {
    /// Program.
    pub command: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment, in file order.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
}

impl fmt::Debug for StdioCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self.env.iter().map(|(k, _)| format!("{k}=***")).collect();
        f.debug_struct("StdioCommand")
            .field("command", &self.command)
            .field("args", &format_args!("<{} args>", self.args.len()))
            .field("env", &env)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// What a rate-limit bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// The authenticated principal (issuer and subject).
    Principal,
    /// The upstream server a request is forwarded to.
    Server,
    /// The principal and the tool (`tools/call` only).
    Tool,
    /// Each value of this claim of the caller's token (e.g. every group it lists).
    Claim(String),
}

impl std::fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateLimitKey::Principal => f.write_str("principal"),
            RateLimitKey::Server => f.write_str("server"),
            RateLimitKey::Tool => f.write_str("principal and tool"),
            RateLimitKey::Claim(c) => write!(f, "value of claim `{c}`"),
        }
    }
}

/// A token bucket per key (`rate_limits[]`), enforced per replica by [`crate::policy::limit`].
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Bucket key.
    pub key: RateLimitKey,
    /// Refill rate.
    pub requests_per_second: f64,
    /// Bucket size.
    pub burst: u32,
    /// `(server, tool)` glob patterns; empty: the rule counts every request.
    pub tools: Vec<(String, String)>,
    /// Where it is written: `rate_limits[0]` (the metric's `rule` label).
    pub source: String,
}
