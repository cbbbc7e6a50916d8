//! The audit trail: one event per decision on a tool, prompt or resource, allowed or denied,
//! on its own `tracing` target ([`TARGET`]) so it can be routed apart from the operational log
//! (`portcullis serve --audit-log FILE` writes it as JSON lines; `RUST_LOG=portcullis::audit=info`
//! adds it to stderr).
//!
//! Each event: `decision` (`allow` / `deny`), `server`, `kind`, `name` (the upstream's own
//! name), `rule` (the permission pattern as written, `default_scope`, `no rule`, or
//! `authentication off`), who (`sub`, `iss`, `client`), `request_id` (the W3C trace id) and
//! `config` (the hash of the config that decided). Never a token, a credential or a key: the
//! principal is its claims' identity only.

use crate::auth::Principal;
use crate::policy::{DecidedBy, Denied, Kind};
use crate::state::Snapshot;

/// The audit events' target.
pub const TARGET: &str = "portcullis::audit";

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
    let (decision, rule) = match &outcome {
        Ok(by) => ("allow", by.source()),
        Err(denied) => ("deny", denied.by.source()),
    };
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
