//! Portcullis: a declarative MCP gateway on Pingora.
//!
//! One YAML file (`gateway.yaml`) describes the upstream MCP servers and the policy. The gateway
//! compiles it into an immutable [`state::Snapshot`] held in one `ArcSwap` ([`state::Store`]),
//! reloads it when the file changes, and proxies `/mcp/{server}` traffic, reading each JSON-RPC
//! body before the upstream is chosen.
//!
//! Module map (one module, one idea; each imports only modules below it):
//!
//! | module        | owns                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | [`cli`]       | `serve`, `check`, `explain` command line                               |
//! | [`app`]       | builds the gateway: listener app, background services (one builder)    |
//! | [`http`]      | the front ends (front door, Pingora's path), the relay, the writer     |
//! | [`gateway`]   | `decide`: one decision per request -> a plan; observation; trace       |
//! | [`endpoints`] | what a path addresses; admin, OAuth metadata, Host/Origin guards        |
//! | [`state`]     | the one `ArcSwap` store, the snapshot a request pins, reload, probes   |
//! | [`upstream`]  | the upstream interface: Streamable HTTP client, shared sessions        |
//! | [`mcp`]       | JSON-RPC classification, SSE framing, list filtering, outcomes, replies |
//! | [`policy`]    | compiled permission patterns; permits                                  |
//! | [`auth`]      | bearer token -> principal (claims -> scopes)                           |
//! | [`request`]   | the transport-neutral view of a request head, and its body source       |
//! | [`response`]  | a response head as it is passed on (no header map per request)        |
//! | [`config`]    | raw (file mirror) -> compile (all errors at once) -> compiled config   |
//! | [`tls`]       | certificates and keys from PEM files; the listener's, reloaded          |
//! | [`telemetry`] | tracing setup and the Prometheus registry                              |
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod endpoints;
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
pub mod http;
pub mod mcp;
pub mod policy;
pub mod request;
pub mod response;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
