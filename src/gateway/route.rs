//! A request of the aggregated `/mcp` that names a tool, prompt or resource, routed to the one
//! upstream that owns it: the policy on the upstream's own name, the rate limits, then a
//! forward with that name restored under the session the gateway holds there. Also the answers
//! for names and methods `/mcp` does not know.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::decide::denial;
use super::limit;
use super::observe::Observation;
use super::plan::{Forward, Leg, Op, Plan, Via};
use crate::auth::Principal;
use crate::mcp::aggregate as agg;
use crate::mcp::jsonrpc::{Envelope, Message};
use crate::mcp::reply::Reply;
use crate::policy::limit::{Charge, Part};
use crate::policy::{self, DecidedBy, Denied, Kind};
use crate::state::Snapshot;

/// A name `/mcp` does not know (or hides): answered like a denied one (`hide`).
pub(super) fn unknown<'s>(id: &Value, kind: Kind, exposed: &str) -> Plan<'s> {
    let noun = kind.as_str();
    Plan::Answer(Reply::rpc_error(
        200,
        id,
        -32602,
        &format!("Unknown {noun}: {exposed}"),
    ))
}

/// Decide a covered request of `envelope` (one message) whose target was resolved to
/// `original` on `leg`'s upstream: the policy on the upstream's own name, then a forward with
/// that name restored, charged to the rate limits with its server and tool (`in_session`: a
/// legacy session's request). Also called once a shortened name was found in the upstream's
/// list.
#[allow(clippy::too_many_arguments)]
pub fn route<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    leg: Leg<'s>,
    envelope: Envelope,
    bytes: &[u8],
    original: &str,
    in_session: bool,
    part: Part,
    obs: &mut Observation,
) -> Plan<'s> {
    let Some(Message::Request {
        id,
        method,
        uses: Some(used),
    }) = envelope.single()
    else {
        let m = "Invalid Request: not a request naming a tool, prompt or resource";
        return Plan::Answer(Reply::rpc_error(400, &Value::Null, -32600, m));
    };
    let Some(target) = policy::covered(method) else {
        return unknown_method(id, method);
    };
    let upstream = leg.upstream;
    let server = upstream.name();
    let noun = used.kind.as_str();
    if method == "tools/call" {
        obs.tool_call(server, original);
    }
    // Audit as on `/mcp/{server}`: the denial at once, the allow once the call goes upstream.
    let audit = super::audit::enabled();
    let mut allowed: Option<String> = None;
    let record = |kind: Kind, name: &str, outcome: Result<DecidedBy<'_>, &Denied<'_>>| {
        if audit {
            match outcome {
                Ok(by) => allowed = Some(by.source().to_owned()),
                Err(_) => super::audit::decision(snap, principal, server, kind, name, outcome),
            }
        }
    };
    let permit = match snap
        .policy
        .permit_each(principal, server, [(used.kind, original)], record)
    {
        Ok(p) => p,
        Err((_, denied)) => {
            obs.denied(server, denied.kind);
            crate::in_request!(info, server, kind = noun, name = %original, rule = denied.by.source(), subject = %principal.subject, "policy denied the request");
            return Plan::Answer(denial(snap, None, &envelope, id, noun, &used.name, &denied));
        }
    };
    let charge = Charge {
        server: Some(server),
        tool: (method == "tools/call").then_some(original),
        part,
        named: Some(original),
    };
    if let Err(reply) = limit::admit(snap, principal, in_session, &envelope, charge, obs) {
        return Plan::Answer(reply);
    }
    if let Some(rule) = &allowed {
        super::audit::event(snap, principal, server, used.kind, original, "allow", rule);
    }
    let Some(body) = agg::rename_target(bytes, used, target, original) else {
        return unknown(id, used.kind, &used.name);
    };
    let task = (method == "tools/call" && asks_for_task(bytes)).then(|| {
        let binding = crate::mcp::tasks::Binding {
            principal: principal.tag(),
            tool: original.to_owned(),
        };
        Box::new((binding, &snap.sessions))
    });
    Plan::Forward(Forward {
        stream: None,
        op: Op::Call,
        upstream,
        permit,
        body: Bytes::from(body),
        envelope: Some(envelope),
        list: None,
        via: Some(Via {
            session: leg.session,
            version: leg.version,
            names: &snap.names,
            // Always the upstream's own name: the client's header never reaches it.
            mcp_name: Some(original.to_owned()),
            task,
        }),
    })
}

/// Whether a `tools/call` body asks for a task (`params.task`): a cheap look first, parsed
/// only when the word is there.
fn asks_for_task(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"\"task\"").is_some()
        && serde_json::from_slice::<Value>(bytes)
            .ok()
            .is_some_and(|v| v.pointer("/params/task").is_some_and(Value::is_object))
}

pub(super) fn unknown_method<'s>(id: &Value, method: &str) -> Plan<'s> {
    Plan::Answer(Reply::rpc_error(
        200,
        id,
        -32601,
        &format!("Method not found: `{method}` is not available on /mcp"),
    ))
}
