//! MCP over Streamable HTTP, the parts the gateway must understand before it forwards a byte
//! and while it relays the answer: JSON-RPC classification ([`jsonrpc`]), SSE framing
//! ([`sse`]), per-caller list filtering ([`filter`]), how a call ended ([`outcome`]), and the
//! answers the gateway composes itself ([`reply`]).

pub mod aggregate;
pub mod era;
pub mod filter;
pub mod jsonrpc;
pub mod listen;
pub mod names;
pub mod outcome;
pub(crate) mod raw;
pub mod reply;
pub mod session;
pub mod sse;
pub mod tasks;

/// Header carrying the session id (legacy protocol revisions).
pub const SESSION_ID: &str = "mcp-session-id";
/// Header carrying the negotiated protocol revision.
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Header a client sends to resume an SSE stream.
pub const LAST_EVENT_ID: &str = "last-event-id";
