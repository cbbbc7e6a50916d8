//! The rate-limit step of a decision: charge an allowed message (or a GET / DELETE) to the
//! snapshot's [`crate::policy::limit::Limits`], and the answer when a limit refuses it.
//!
//! Over a limit, the answer is a JSON-RPC error an agent can act on (code
//! [`RATE_LIMITED`], `error.data.retryAfter` in seconds, `retryAfterMs`, the rule) with a
//! `Retry-After` header. Its HTTP status: 429 for a request outside a legacy session (2026-07-28,
//! plain HTTP clients); 200 inside one (`Mcp-Session-Id` sent), where an HTTP error would make
//! SDKs drop the session rather than hand the error to the agent. A batch needing more units
//! than a rule's burst can never pass: `-32600` naming the rule and its burst, no retry time.

use serde_json::{json, Value};

use super::observe::Observation;
use crate::auth::Principal;
use crate::mcp::jsonrpc::{Envelope, Message};
use crate::mcp::reply::Reply;
use crate::policy::limit::{retry_after_secs, Charge, Refused};
use crate::state::Snapshot;

/// The JSON-RPC error code of a rate-limited request (in the implementation-defined server
/// error range; no MCP revision assigns one).
pub const RATE_LIMITED: i64 = -32029;

/// The `server` label of a request that names no single upstream (fan-outs on `/mcp`).
pub const AGGREGATE_LABEL: &str = "/mcp";

/// Charge one unit per request of `envelope` as `target` says (its server, which rules; the
/// tool of a `tools/call` taken from the message unless `target.tool` names it, as `/mcp`
/// does with the upstream's own name). `in_session`: the request names a legacy session.
/// `Err`: the answer to send instead of forwarding.
pub(super) fn admit(
    snap: &Snapshot,
    principal: &Principal,
    in_session: bool,
    envelope: &Envelope,
    target: Charge<'_>,
    obs: &mut Observation,
) -> Result<(), Reply> {
    if snap.limits.is_empty() {
        return Ok(());
    }
    let charges = envelope.messages.iter().filter_map(|m| match m {
        Message::Request { method, uses, .. } => Some(Charge {
            tool: (method == "tools/call")
                .then(|| target.tool.or(uses.as_ref().map(|u| u.name.as_str())))
                .flatten(),
            ..target
        }),
        _ => None,
    });
    let id = if envelope.batch {
        Value::Null
    } else {
        envelope.error_id()
    };
    match snap.limits.admit(principal, charges) {
        Ok(()) => Ok(()),
        Err(refused) => {
            if super::audit::enabled() {
                // The policy allowed these uses; the audit trail says what became of them.
                for (_, used) in envelope.uses() {
                    let name = target.named.unwrap_or(used.name.as_str());
                    let server = target.server.unwrap_or(AGGREGATE_LABEL);
                    super::audit::event(
                        snap,
                        principal,
                        server,
                        used.kind,
                        name,
                        "limited",
                        refused.rule(),
                    );
                }
            }
            Err(refusal(
                principal,
                in_session,
                &id,
                target.server,
                &refused,
                obs,
            ))
        }
    }
}

/// Charge one unit for a GET (event stream) or DELETE to `server` (`None`: `/mcp`).
pub(super) fn admit_stream(
    snap: &Snapshot,
    principal: &Principal,
    in_session: bool,
    server: Option<&str>,
    obs: &mut Observation,
) -> Result<(), Reply> {
    if snap.limits.is_empty() {
        return Ok(());
    }
    let charge = Charge {
        server,
        ..Charge::default()
    };
    match snap.limits.admit(principal, [charge]) {
        Ok(()) => Ok(()),
        Err(refused) => Err(refusal(
            principal,
            in_session,
            &Value::Null,
            server,
            &refused,
            obs,
        )),
    }
}

fn refusal(
    principal: &Principal,
    in_session: bool,
    id: &Value,
    server: Option<&str>,
    refused: &Refused<'_>,
    obs: &mut Observation,
) -> Reply {
    let label = server.unwrap_or(AGGREGATE_LABEL);
    let rule = refused.rule();
    obs.limited(label, rule);
    crate::in_request!(debug, server = label, rule, subject = %principal.subject, "rate limit refused the request");
    match refused {
        Refused::Limited { retry_after, .. } => {
            let secs = retry_after_secs(*retry_after);
            let body = json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": RATE_LIMITED,
                    "message": format!("Rate limit exceeded ({rule}); retry after {secs} s"),
                    "data": {
                        "retryAfter": secs,
                        "retryAfterMs": retry_after.as_millis() as u64,
                        "rule": rule,
                    },
                },
            });
            Reply::json(if in_session { 200 } else { 429 }, &body)
                .with_header("retry-after", secs.to_string())
        }
        Refused::TooLarge { units, burst, .. } => {
            let m = format!(
                "Invalid Request: this message holds {units} requests for one bucket of {rule}, whose burst is {burst}; send at most {burst} at once"
            );
            Reply::rpc_error(if in_session { 200 } else { 400 }, id, -32600, &m)
        }
    }
}
