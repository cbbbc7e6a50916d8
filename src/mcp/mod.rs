//! MCP over Streamable HTTP, the parts the gateway must understand before it forwards a byte:
//! capped body reading ([`body`]) and JSON-RPC classification ([`jsonrpc`]).

pub mod body;
pub mod filter;
pub mod jsonrpc;
pub mod sse;

/// Header carrying the session id (legacy protocol revisions).
pub const SESSION_ID: &str = "mcp-session-id";
/// Header carrying the negotiated protocol revision.
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Header a client sends to resume an SSE stream.
pub const LAST_EVENT_ID: &str = "last-event-id";
