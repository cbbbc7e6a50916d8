//! The audit trail: one event per decision on a tool, prompt or resource, allowed or denied,
//! on its own `tracing` target ([`TARGET`]) so it can be routed apart from the operational log
//! (`portcullis serve --audit-log FILE` writes it as JSON lines; `RUST_LOG=portcullis::audit=info`
//! adds it to stderr).
//!
//! Each event: `decision` (`allow`, `deny`, or `limited`: allowed, then refused by a rate
//! limit), `server`, `kind`, `name` (the upstream's own
//! name), `rule` (the permission pattern as written, `default_scope`, `no rule`,
//! `authentication off`, or the rate limit `rate_limits[i]`), who (`sub`, `iss`, `client`), `request_id` (the W3C trace id) and
//! `config` (the hash of the config that decided). Never a token, a credential or a key: the
//! principal is its claims' identity only.

use crate::auth::Principal;
use crate::policy::{DecidedBy, Denied, Kind};
use crate::state::Snapshot;

/// The audit events' target.
pub const TARGET: &str = crate::telemetry::AUDIT_TARGET;

/// Whether anything records audit events (checked once per request; cheap when off).
pub fn enabled() -> bool {
    tracing::enabled!(target: "portcullis::audit", tracing::Level::INFO)
}

/// Record the decision on one use.
pub fn decision(
    snap: &Snapshot,
    principal: &Principal,
    server: &str,
    kind: Kind,
    name: &str,
    outcome: Result<DecidedBy<'_>, &Denied<'_>>,
) {
    match &outcome {
        Ok(by) => event(snap, principal, server, kind, name, "allow", by.source()),
        Err(denied) => event(
            snap,
            principal,
            server,
            kind,
            name,
            "deny",
            denied.by.source(),
        ),
    }
}

/// Record one event: `decision` is `allow`, `deny` or `limited` (a rate limit refused a use the
/// policy allowed; `rule` is then the limit's, `rate_limits[i]`).
pub fn event(
    snap: &Snapshot,
    principal: &Principal,
    server: &str,
    kind: Kind,
    name: &str,
    decision: &str,
    rule: &str,
) {
    let request_id = crate::telemetry::request::current();
    tracing::info!(
        target: "portcullis::audit",
        decision,
        server,
        kind = kind.as_str(),
        name,
        rule,
        sub = &*principal.subject,
        iss = &*principal.issuer,
        client = principal.client.as_deref().unwrap_or(""),
        request_id = request_id.as_ref().map_or("", |r| r.as_str()),
        config = snap.config.source.hash.as_str(),
        "decision"
    );
}

/// A use on `/mcp` of a server the caller may reach nothing on: answered like an unknown name,
/// recorded with the policy's own refusal (what `/mcp/{server}` would record).
pub fn unreachable(snap: &Snapshot, principal: &Principal, server: &str, kind: Kind, name: &str) {
    if !enabled() || principal.anonymous {
        return;
    }
    if let Err(denied) = snap.policy.authorize(&principal.scopes, kind, server, name) {
        decision(snap, principal, server, kind, name, Err(&denied));
    }
}
