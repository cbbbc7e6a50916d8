//! The upstreams a request on the aggregated `/mcp` goes to ("legs"): those of an open
//! session, or every running one the caller may reach, each with a session permit.

use std::sync::Arc;

use super::plan::Leg;
use crate::auth::Principal;
use crate::mcp::session::Session;
use crate::state::Snapshot;

/// The upstreams of an open session that are still configured, running and reachable by the
/// caller, in config order.
pub(super) fn session_legs<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    s: &Session,
) -> Vec<Leg<'s>> {
    s.upstreams
        .iter()
        .filter_map(|h| session_leg(snap, principal, s, &h.server))
        .collect()
}

/// The leg of `server` in an open session, if it is still part of it and the caller may reach
/// it.
pub(super) fn session_leg<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    s: &Session,
    server: &str,
) -> Option<Leg<'s>> {
    routed_leg(snap, principal, s, server)
        .filter(|leg| snap.policy.may_reach(principal, leg.upstream.name()))
}

/// The leg of `server` in an open session for a request the policy then decides on what it
/// names (a tool, prompt or resource; a task's tool): that decision is the reach check.
pub(super) fn routed_leg<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    s: &Session,
    server: &str,
) -> Option<Leg<'s>> {
    let held = s.upstream(server)?;
    running_leg(snap, principal, server).map(|leg| Leg {
        session: (!held.session.is_empty()).then(|| held.session.clone()),
        version: (!held.version.is_empty()).then(|| held.version.clone()),
        ..leg
    })
}

/// `server` as a leg without a session (2026-07-28, `initialize`), if it runs and the caller
/// may reach it.
pub(super) fn one_leg<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    server: &str,
) -> Option<Leg<'s>> {
    running_leg(snap, principal, server)
        .filter(|leg| snap.policy.may_reach(principal, leg.upstream.name()))
}

/// `server` as a leg, if it runs (the caller's reach unchecked).
pub(super) fn running_leg<'s>(
    snap: &'s Snapshot,
    principal: &Arc<Principal>,
    server: &str,
) -> Option<Leg<'s>> {
    let upstream = snap.upstreams.get(server)?;
    let server = upstream.name();
    let runs = upstream.http.is_some() || upstream.shared.is_some();
    runs.then(|| Leg {
        upstream,
        permit: snap.policy.permit_session(principal, server),
        session: None,
        version: None,
    })
}

/// Every running upstream the caller may reach, in config order: the legs of `initialize`.
pub(super) fn all_legs<'s>(snap: &'s Snapshot, principal: &Arc<Principal>) -> Vec<Leg<'s>> {
    snap.config
        .proxy
        .servers
        .iter()
        .filter_map(|up| one_leg(snap, principal, &up.name))
        .collect()
}
