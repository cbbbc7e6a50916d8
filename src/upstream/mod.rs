//! Upstream connections: reachability ([`health`]), the lean HTTP/1.1 client ([`h1`]), and the
//! upstreams reached through one shared MCP session ([`mux`]) over a child's stdio ([`stdio`])
//! or the legacy HTTP+SSE transport ([`legacy_sse`]), supervised and reconciled on reload
//! ([`registry`]).

pub mod h1;
pub mod health;
pub mod legacy_sse;
pub mod link;
pub mod mux;
pub mod registry;
pub mod stdio;
