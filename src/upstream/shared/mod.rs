//! Upstreams reached through one shared MCP session: the gateway is the upstream's only client
//! and multiplexes every caller over it ([`mux`]), over a child's stdio ([`stdio`]) or the
//! legacy HTTP+SSE transport ([`legacy_sse`]), both behind one message [`link`]; [`session`] is
//! the gateway's Streamable HTTP face for such an upstream.

mod calls;
pub mod legacy_sse;
pub mod link;
pub mod mux;
pub mod session;
pub mod stdio;
mod streams;
