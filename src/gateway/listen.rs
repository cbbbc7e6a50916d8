//! 2026-07-28 `subscriptions/listen` on the aggregated `/mcp`: the decision (the filter read,
//! each resource URI resolved and authorized, a place among the caller's streams taken);
//! `http::subscriptions` serves the merged stream.

use std::sync::Arc;

use serde_json::{json, Value};

use super::legs::all_legs;
use super::plan::{Fanout, Plan, Work};
use super::Gateway;
use crate::auth::Principal;
use crate::mcp::listen::Filter;
use crate::mcp::reply::Reply;
use crate::policy::{self, Kind};
use crate::state::Snapshot;

/// 2026-07-28 `subscriptions/listen` on `/mcp`: one stream (a place among the caller's open
/// streams) merging a listen stream of every upstream the caller may reach. Each resource URI
/// is resolved to its server and upstream URI and authorized like `resources/subscribe`; one
/// the caller may not use, or that names nothing, is simply not honored (the acknowledgment
/// leaves it out, as it does a URI no upstream accepted).
pub(super) fn subscribe<'s>(
    gw: &Gateway,
    snap: &'s Snapshot,
    principal: Arc<Principal>,
    id: &Value,
    bytes: &[u8],
) -> Plan<'s> {
    let v: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let mut filter = match Filter::from_params(v.get("params")) {
        Ok(f) => f,
        Err(why) => {
            let m = format!("Invalid params: {why}");
            return Plan::Answer(Reply::rpc_error(400, id, -32602, &m));
        }
    };
    let stream = match gw.stream_slot(snap, &principal, None) {
        Ok(slot) => slot,
        Err(reply) => return Plan::Answer(reply),
    };
    let legs = all_legs(snap, &principal);
    let mut uris = Vec::new();
    for exposed in std::mem::take(&mut filter.uris) {
        let Some((server, original)) = snap.names.resolve_uri(&exposed) else {
            continue;
        };
        if !legs.iter().any(|l| l.upstream.name() == server) {
            super::audit::unreachable(snap, &principal, server, Kind::Resource, original);
            continue;
        }
        let audit = super::audit::enabled();
        let mut allowed = None;
        let record =
            |kind: Kind,
             name: &str,
             outcome: Result<policy::DecidedBy<'_>, &policy::Denied<'_>>| {
                if audit {
                    match outcome {
                        Ok(by) => allowed = Some(by.source().to_owned()),
                        Err(_) => {
                            super::audit::decision(snap, &principal, server, kind, name, outcome)
                        }
                    }
                }
            };
        let permitted = snap
            .policy
            .permit_each(&principal, server, [(Kind::Resource, original)], record)
            .is_ok();
        if let Some(rule) = &allowed {
            super::audit::event(
                snap,
                &principal,
                server,
                Kind::Resource,
                original,
                "allow",
                rule,
            );
        }
        if permitted {
            uris.push((server.to_owned(), original.to_owned(), exposed));
        } else {
            crate::in_request!(info, server, uri = %original, subject = %principal.subject, "policy left a resource out of a listen stream");
        }
    }
    let meta = v
        .pointer("/params/_meta")
        .cloned()
        .unwrap_or_else(|| json!({}));
    Plan::Fanout(Fanout {
        stream: Some(stream),
        snap,
        legs,
        principal,
        work: Work::Listen {
            id: id.clone(),
            meta,
            filter,
            uris,
        },
    })
}
