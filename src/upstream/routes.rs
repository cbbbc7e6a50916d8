//! Every upstream of one config snapshot, by name, prepared at load (addresses resolved, pools
//! made, shared sessions attached): the request path only looks one up.

use std::collections::HashMap;
use std::sync::Arc;

use super::http::HttpUpstream;
use super::shared::mux::Mux;
use super::Upstream;
use crate::config::{Config, Transport};

/// The upstreams of a snapshot.
#[derive(Default)]
pub struct Upstreams {
    by_name: HashMap<String, Upstream>,
}

impl Upstreams {
    /// Prepare every upstream of `config`; `shared` holds the running shared sessions (stdio,
    /// legacy SSE, SSE fallbacks) by server name, from the registry.
    pub fn build(config: &Config, mut shared: HashMap<String, Arc<Mux>>) -> Self {
        let by_name = config
            .proxy
            .servers
            .iter()
            .map(|up| {
                let http = match &up.transport {
                    Transport::StreamableHttp(t) => Some(HttpUpstream::new(up.clone(), t.clone())),
                    Transport::Sse(_) | Transport::Stdio(_) => None,
                };
                let upstream = Upstream {
                    config: up.clone(),
                    http,
                    shared: shared.remove(&up.name),
                };
                (up.name.clone(), upstream)
            })
            .collect();
        Upstreams { by_name }
    }

    /// The upstream called `name`.
    pub fn get(&self, name: &str) -> Option<&Upstream> {
        self.by_name.get(name)
    }

    /// Every upstream.
    pub fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.by_name.values()
    }
}
