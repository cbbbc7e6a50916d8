//! Portcullis: a declarative MCP gateway on Pingora.
//!
//! One YAML file (`gateway.yaml`) describes the upstream MCP servers and the policy. The gateway
//! compiles it into an immutable [`config::Runtime`] snapshot held in one `ArcSwap`
//! ([`reload::Snapshot`]), reloads it when the file changes, and proxies `/mcp/{server}` traffic,
//! reading each JSON-RPC body before the upstream is chosen.
//!
//! Module map (one module, one idea):
//!
//! | module        | owns                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | [`cli`]       | `serve`, `check`, `explain` command line                              |
//! | [`app`]       | builds the Pingora server: proxy service, background services         |
//! | [`front`]     | the listener's connections: the POST hot path, the rest to Pingora    |
//! | [`config`]    | raw (file mirror) -> compile (all errors at once) -> runtime snapshot |
//! | [`auth`]      | token claims -> `claim:value` keys -> scopes                          |
//! | [`policy`]    | compiled permission patterns; most specific match decides             |
//! | [`reload`]    | the one `ArcSwap`, the directory watcher, SIGHUP, keep-last-good       |
//! | [`proxy`]     | the thin `ProxyHttp` impl, routing, the pre-read POST exchange        |
//! | [`mcp`]       | JSON-RPC classification, capped body reading                          |
//! | [`telemetry`] | tracing setup and the Prometheus registry                             |
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod front;
pub mod mcp;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod telemetry;
pub mod upstream;
