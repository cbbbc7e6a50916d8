//! What a request pins: the compiled config with everything prepared from it (upstreams with
//! their addresses, pools and shared sessions; the compiled policy). Immutable; a reload builds
//! a new one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::mcp::names::Names;
use crate::mcp::session::SessionKey;
use crate::policy::limit::Limits;
use crate::policy::Policy;
use crate::upstream::registry::Registry;
use crate::upstream::routes::Upstreams;
use crate::upstream::shared::mux::Mux;

/// Everything a request needs from the config, compiled and prepared.
pub struct Snapshot {
    /// The compiled config.
    pub config: Config,
    /// Every upstream, ready to call.
    pub upstreams: Upstreams,
    /// The compiled permission policy and claims-to-scopes map.
    pub policy: Policy,
    /// Names on the aggregated `/mcp` (prefixes, aliases).
    pub names: Names,
    /// The key sealing `/mcp` session ids.
    pub sessions: SessionKey,
    /// `rate_limits` and their buckets (kept from the previous snapshot for unchanged rules).
    pub limits: Limits,
}

impl Snapshot {
    /// Prepare a compiled config for serving, without shared-session upstreams (stdio, legacy
    /// SSE): for tools that only need the policy.
    pub fn new(config: Config) -> Self {
        Self::assemble(config, HashMap::new(), None)
    }

    /// Prepare a compiled config for serving, with its stdio and legacy SSE upstreams started
    /// or reused from `registry`, and the rate-limit buckets of `previous` kept for unchanged
    /// rules. Also returns the upstreams to retire once this is live.
    pub fn with_upstreams(
        config: Config,
        registry: &Registry,
        previous: Option<&Snapshot>,
    ) -> (Self, Vec<Arc<Mux>>) {
        let (muxes, gone) = registry.reconcile(&config);
        (Self::assemble(config, muxes, previous), gone)
    }

    fn assemble(
        config: Config,
        muxes: HashMap<String, Arc<Mux>>,
        previous: Option<&Snapshot>,
    ) -> Self {
        let upstreams = Upstreams::build(&config, muxes, previous.map(|p| &p.upstreams));
        let policy = Policy::from_config(&config);
        let names = Names::new(&config);
        let sessions = SessionKey::new(config.proxy.session_key.as_ref());
        let limits = Limits::new(&config.rate_limits, previous.map(|p| &p.limits));
        Snapshot {
            config,
            upstreams,
            policy,
            names,
            sessions,
            limits,
        }
    }
}
