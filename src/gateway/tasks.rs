//! Tasks (2025-11-25) on the aggregated `/mcp`: `tasks/get`, `tasks/result` and
//! `tasks/cancel` decided on the task id a caller was handed (`mcp::tasks`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::legs::routed_leg;
use super::limit;
use super::observe::Observation;
use super::plan::{Forward, Op, Plan, Via};
use crate::auth::Principal;
use crate::mcp::jsonrpc::Envelope;
use crate::mcp::reply::Reply;
use crate::mcp::session::Session;
use crate::mcp::tasks;
use crate::policy::limit::Charge;
use crate::policy::{self, Kind};
use crate::state::Snapshot;

/// `tasks/get`, `tasks/result` or `tasks/cancel` on `/mcp`: the task id must be one this
/// caller was handed ([`tasks::resolve`]); the request is authorized like a call of the tool
/// that made the task, and goes to that server with the upstream's task id, its answer's task
/// ids made `/mcp` ones again. Any other id is answered like an unknown one.
#[allow(clippy::too_many_arguments)]
pub(super) fn task<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    session: &Session,
    envelope: &Envelope,
    bytes: &[u8],
    id: &Value,
    obs: &mut Observation,
) -> Plan<'s> {
    let unknown = || {
        let m = "Invalid params: unknown task";
        Plan::Answer(Reply::rpc_error(200, id, -32602, m))
    };
    let mut v: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let Some(exposed) = v.pointer("/params/taskId").and_then(Value::as_str) else {
        let m = "Invalid params: `params.taskId` must be a string";
        return Plan::Answer(Reply::rpc_error(200, id, -32602, m));
    };
    let tag = principal.tag();
    let Some((server, tool, original)) = tasks::resolve(&snap.names, &snap.sessions, &tag, exposed)
    else {
        return unknown();
    };
    let Some(leg) = routed_leg(snap, principal, session, server) else {
        return unknown();
    };
    let audit = super::audit::enabled();
    let mut allowed = None;
    let record =
        |kind: Kind, name: &str, outcome: Result<policy::DecidedBy<'_>, &policy::Denied<'_>>| {
            if audit {
                match outcome {
                    Ok(by) => allowed = Some(by.source().to_owned()),
                    Err(_) => super::audit::decision(snap, principal, server, kind, name, outcome),
                }
            }
        };
    let permit = match snap.policy.permit_each(
        principal,
        server,
        [(Kind::Tool, tool.as_str())],
        record,
    ) {
        Ok(p) => p,
        Err((_, denied)) => {
            obs.denied(server, denied.kind);
            crate::in_request!(info, server, tool = %tool, rule = denied.by.source(), subject = %principal.subject, "policy denied a task request");
            return Plan::Answer(super::decide::denial(
                snap, None, envelope, id, "tool", &tool, &denied,
            ));
        }
    };
    let charge = Charge {
        server: Some(server),
        ..Charge::default()
    };
    if let Err(reply) = limit::admit(snap, principal, true, envelope, charge, obs) {
        return Plan::Answer(reply);
    }
    if let Some(rule) = &allowed {
        super::audit::event(snap, principal, server, Kind::Tool, &tool, "allow", rule);
    }
    v["params"]["taskId"] = Value::from(original);
    Plan::Forward(Forward {
        stream: None,
        op: Op::Call,
        upstream: leg.upstream,
        permit,
        body: Bytes::from(v.to_string()),
        envelope: Some(envelope.clone()),
        list: None,
        via: Some(Via {
            session: leg.session,
            version: leg.version,
            names: &snap.names,
            mcp_name: None,
            task: Some(Box::new((
                tasks::Binding {
                    principal: tag,
                    tool,
                },
                &snap.sessions,
            ))),
        }),
    })
}
