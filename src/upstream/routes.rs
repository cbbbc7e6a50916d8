//! Every upstream of one config snapshot, by name, prepared at load (addresses resolved, pools
//! made, shared sessions attached): the request path only looks one up.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::http::HttpUpstream;
use super::shared::mux::Mux;
use super::Upstream;
use crate::config::{Config, Transport};

/// The upstreams of a snapshot.
pub struct Upstreams {
    by_name: HashMap<String, Upstream>,
    retire: watch::Sender<bool>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams {
            by_name: HashMap::new(),
            retire: watch::channel(false).0,
        }
    }
}

/// Resolves once the snapshot these upstreams belong to is no longer the live one (a reload
/// replaced it, or the gateway is shutting down): what a long-lived stream opened under it
/// (`subscriptions/listen`) waits for to end gracefully.
#[derive(Clone)]
pub struct Retirement(watch::Receiver<bool>);

impl Retirement {
    /// Wait for the retirement (at once if it already happened).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|r| *r).await.is_err() {
            // The snapshot is gone: retired too.
        }
    }
}

impl Upstreams {
    /// Prepare every upstream of `config`; `shared` holds the running shared sessions (stdio,
    /// legacy SSE, SSE fallbacks) by server name, from the registry.
    /// `previous`: the upstreams of the snapshot this one replaces (what is known of an HTTP
    /// upstream whose URL did not change carries over: its era, its hidden sessions).
    pub fn build(
        config: &Config,
        mut shared: HashMap<String, Arc<Mux>>,
        previous: Option<&Upstreams>,
    ) -> Self {
        let (retire, _) = watch::channel(false);
        let by_name = config
            .proxy
            .servers
            .iter()
            .map(|up| {
                let http = match &up.transport {
                    Transport::StreamableHttp(t) => Some(HttpUpstream::new(up.clone(), t.clone())),
                    Transport::Sse(_) | Transport::Stdio(_) => None,
                };
                // The same HTTP upstream (same URL): its era and hidden sessions carry over.
                let hidden = previous
                    .and_then(|p| p.get(&up.name))
                    .filter(|old| {
                        http_url(&up.transport)
                            .is_some_and(|now| http_url(&old.config.transport) == Some(now))
                    })
                    .map_or_else(Default::default, |old| old.hidden.clone());
                let upstream = Upstream {
                    config: up.clone(),
                    http,
                    hidden,
                    shared: shared.remove(&up.name),
                    retirement: Retirement(retire.subscribe()),
                };
                (up.name.clone(), upstream)
            })
            .collect();
        Upstreams { by_name, retire }
    }

    /// These upstreams' snapshot is no longer the live one: streams waiting on a
    /// [`Retirement`] end.
    pub fn retire(&self) {
        self.retire.send_replace(true);
    }

    /// Wait for [`Upstreams::retire`].
    pub fn retirement(&self) -> Retirement {
        Retirement(self.retire.subscribe())
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

/// The URL of a Streamable HTTP upstream.
fn http_url(t: &Transport) -> Option<&url::Url> {
    match t {
        Transport::StreamableHttp(h) => Some(&h.url),
        Transport::Sse(_) | Transport::Stdio(_) => None,
    }
}
