//! The gateway's core: one decision per request ([`Gateway::decide`] -> [`Plan`]), the same for
//! every front end; what a request is counted as ([`observe`]); its trace identity ([`trace`]).
//! The front ends (`crate::http`) only move bytes: they build a view of the request, ask for a
//! plan, and write the answer or relay the upstream's.

pub mod aggregate;
pub mod audit;
mod decide;
mod legs;
pub mod limit;
mod listen;
pub mod observe;
pub mod plan;
pub mod route;
pub mod streams;
mod tasks;
pub mod trace;

use std::sync::Arc;

use crate::auth::Authn;
use crate::state::probe::Health;

pub use decide::head_too_large;
pub use observe::Observation;
pub use plan::{Fanout, Forward, Leg, Op, Plan, Via, Work};
pub use trace::Trace;

/// The services a decision needs beyond the snapshot: token verification and upstream health;
/// and which listener it decides for.
pub struct Gateway {
    /// `Some` when `oauth.enabled`.
    pub authn: Option<Arc<Authn>>,
    /// Upstream reachability, for `/ready` and `/status`.
    pub health: Arc<Health>,
    /// The listener whose requests this decides.
    pub listener: Listener,
    /// Open event streams per caller (shared by every listener, kept across reloads).
    pub streams: Arc<streams::Streams>,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listener {
    /// `server.listen`: MCP endpoints, metadata, and the admin endpoints unless
    /// `server.admin_listen` is set.
    #[default]
    Main,
    /// `server.admin_listen`: `/live /ready /metrics /status` only, `/status` without a token.
    Admin,
}
