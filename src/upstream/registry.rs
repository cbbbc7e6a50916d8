//! The running multiplexed upstreams (stdio children, legacy SSE sessions) of one gateway,
//! reconciled with each config load: an unchanged server keeps its process, an added one
//! starts, a changed one is replaced (the new one starts, the old one drains), a removed one
//! drains: in-flight calls get up to `server.grace_period`, then it is stopped and reaped.
//!
//! They run on a small runtime of their own, so they outlive any request and any of
//! Pingora's per-thread runtimes. This runs at load time only, never per request.
#![expect(
    clippy::disallowed_types,
    reason = "the registry's lock is taken at config load and shutdown only, never per request"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shared::mux::{Mux, Spec};
use crate::config::{Config, Transport};

/// Every multiplexed upstream of a gateway.
pub struct Registry {
    rt: Option<tokio::runtime::Runtime>,
    running: Mutex<HashMap<String, Arc<Mux>>>,
    /// Retired and still draining (kept until stopped, so shutdown can wait for them too).
    retiring: Mutex<Vec<Arc<Mux>>>,
}

impl Registry {
    /// An empty registry with its runtime. Should the runtime not start (no threads left),
    /// it is logged and stdio / legacy SSE upstreams answer that they are not running.
    pub fn new() -> Arc<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-upstreams")
            .enable_all()
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot start the upstream runtime"))
            .ok();
        Arc::new(Registry {
            rt,
            running: Mutex::new(HashMap::new()),
            retiring: Mutex::new(Vec::new()),
        })
    }

    /// The muxes `rt` needs, started or reused, and the ones it no longer needs. The caller
    /// retires the latter with [`Registry::retire`] once the new config is live.
    pub fn reconcile(&self, rt: &Config) -> (HashMap<String, Arc<Mux>>, Vec<Arc<Mux>>) {
        let mut wanted = HashMap::new();
        let Ok(mut running) = self.running.lock() else {
            return (wanted, Vec::new());
        };
        let Some(runtime) = &self.rt else {
            return (wanted, Vec::new());
        };
        let _enter = runtime.enter();
        for up in &rt.proxy.servers {
            let spec = match &up.transport {
                Transport::Stdio(cmd) => Spec::Stdio(cmd.clone()),
                Transport::Sse(target) => Spec::Sse {
                    target: target.clone(),
                    headers: up.inject_headers.clone(),
                },
                Transport::StreamableHttp(target) if target.fallback_sse => Spec::Sse {
                    target: target.clone(),
                    headers: up.inject_headers.clone(),
                },
                Transport::StreamableHttp(_) => continue,
            };
            let mux = match running.get(&up.name) {
                Some(m) if *m.spec() == spec => m.clone(),
                _ => {
                    tracing::info!(server = %up.name, transport = up.transport.kind(), "starting upstream");
                    Mux::start(
                        &up.name,
                        spec,
                        up.connect_timeout,
                        matches!(up.transport, Transport::StreamableHttp(_)),
                    )
                }
            };
            wanted.insert(up.name.clone(), mux);
        }
        let mut gone = Vec::new();
        for (name, old) in running.drain() {
            if !wanted.get(&name).is_some_and(|m| Arc::ptr_eq(m, &old)) {
                gone.push(old);
            }
        }
        running.extend(wanted.iter().map(|(k, v)| (k.clone(), v.clone())));
        (wanted, gone)
    }

    /// Drain and stop upstreams the live config no longer has.
    pub fn retire(&self, gone: Vec<Arc<Mux>>, grace: Duration) {
        if let Ok(mut retiring) = self.retiring.lock() {
            retiring.retain(|m| m.status().phase != super::shared::mux::Phase::Stopped);
            retiring.extend(gone.iter().cloned());
        }
        for m in gone {
            tracing::info!(server = %m.name(), grace = ?grace, "draining removed or changed upstream");
            m.retire(grace);
        }
    }

    /// Drain and stop every upstream (process shutdown): in-flight calls get `grace`.
    pub fn retire_all(&self, grace: Duration) {
        let running: Vec<Arc<Mux>> = match self.running.lock() {
            Ok(r) => r.values().cloned().collect(),
            Err(_) => return,
        };
        self.retire(running, grace);
    }

    /// Returns once every upstream the registry runs or retired is stopped (after
    /// [`Registry::retire_all`]).
    pub async fn until_stopped(&self) {
        let mut all: Vec<Arc<Mux>> = match self.running.lock() {
            Ok(r) => r.values().cloned().collect(),
            Err(_) => return,
        };
        if let Ok(r) = self.retiring.lock() {
            all.extend(r.iter().cloned());
        }
        for m in all {
            m.until_stopped().await;
        }
    }
}

/// Stops the shared-session upstreams when the server shuts down, so children do not wait
/// for the end of Pingora's grace period to see their stdin close.
pub struct Shutdown {
    /// The gateway's registry.
    pub registry: Arc<Registry>,
    /// Grace period for calls in flight.
    pub grace: Duration,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for Shutdown {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let _ = shutdown.changed().await;
        self.registry.retire_all(self.grace);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            for m in running.values() {
                m.retire(Duration::ZERO);
            }
            running.clear();
        }
        if let Some(rt) = self.rt.take() {
            // Children are killed by their kill-on-drop guards as the tasks are dropped.
            rt.shutdown_background();
        }
    }
}
