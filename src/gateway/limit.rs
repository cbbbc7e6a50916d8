//! The rate-limit step of a decision: charge an allowed message to the snapshot's
//! [`crate::policy::limit::Limits`], and the answer when a limit refuses it.
//!
//! Over a limit, the answer is a JSON-RPC error an agent can act on (code
//! [`RATE_LIMITED`], `error.data.retryAfter` in seconds, `retryAfterMs`, the rule) with a
//! `Retry-After` header. Its HTTP status: 429 for a request outside a legacy session (2026-07-28,
//! plain HTTP clients); 200 inside one (`Mcp-Session-Id` sent), where an HTTP error would make
//! SDKs drop the session rather than hand the error to the agent.

use serde_json::{json, Value};

use super::observe::Observation;
use crate::auth::Principal;
use crate::mcp::jsonrpc::{Envelope, Message};
use crate::mcp::reply::Reply;
use crate::policy::limit::{retry_after_secs, Charge};
use crate::state::Snapshot;

/// The JSON-RPC error code of a rate-limited request (in the implementation-defined server
/// error range; no MCP revision assigns one).
pub const RATE_LIMITED: i64 = -32029;

/// The `server` label of a request that names no single upstream (fan-outs on `/mcp`).
pub const AGGREGATE_LABEL: &str = "/mcp";

/// Charge one unit per request of `envelope`, each going to `server` (the tool of a
/// `tools/call` taken from the message; `tool` overrides it, for `/mcp`, whose message names
/// the exposed tool). `in_session`: the request names a legacy session (see the module docs).
/// `Err`: the answer to send instead of forwarding.
#[allow(clippy::too_many_arguments)]
pub(super) fn admit(
    snap: &Snapshot,
    principal: &Principal,
    in_session: bool,
    envelope: &Envelope,
    server: Option<&str>,
    tool: Option<&str>,
    obs: &mut Observation,
) -> Result<(), Reply> {
    if snap.limits.is_empty() {
        return Ok(());
    }
    let charges = envelope.messages.iter().filter_map(|m| match m {
        Message::Request { method, uses, .. } => Some(Charge {
            server,
            tool: (method == "tools/call")
                .then(|| tool.or(uses.as_ref().map(|u| u.name.as_str())))
                .flatten(),
        }),
        _ => None,
    });
    let Err(limited) = snap.limits.admit(principal, charges) else {
        return Ok(());
    };
    let label = server.unwrap_or(AGGREGATE_LABEL);
    obs.limited(label, limited.rule);
    crate::in_request!(info, server = label, rule = limited.rule, subject = %principal.subject, retry_after_ms = limited.retry_after.as_millis() as u64, "rate limit refused the request");
    let secs = retry_after_secs(limited.retry_after);
    let id = if envelope.batch {
        Value::Null
    } else {
        envelope.error_id()
    };
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": RATE_LIMITED,
            "message": format!("Rate limit exceeded ({}); retry after {secs} s", limited.rule),
            "data": {
                "retryAfter": secs,
                "retryAfterMs": limited.retry_after.as_millis() as u64,
                "rule": limited.rule,
            },
        },
    });
    Err(Reply::json(if in_session { 200 } else { 429 }, &body)
        .with_header("retry-after", secs.to_string()))
}
