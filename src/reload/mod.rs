//! Hot reload: the one `ArcSwap` holding the live snapshot, keep-last-good, and the watcher.
//!
//! A request loads the snapshot once (`Snapshot::load`, in `new_ctx`) and uses only that `Arc`
//! until it ends, so a reload never changes a request in flight. A reload compiles the file
//! into a complete new [`Live`] off the request path and swaps it in with one atomic store; a
//! bad file, or one that changes a startup-only field, leaves the old snapshot running.

pub mod watcher;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{self, Runtime};
use crate::proxy::upstream::Routes;
use crate::telemetry::metrics::{metrics, ReloadResult};
use crate::upstream::mux::Mux;
use crate::upstream::registry::Registry;
use std::collections::HashMap;

/// Everything a request needs from the config, compiled and prepared.
pub struct Live {
    /// The compiled config.
    pub config: Runtime,
    /// Prepared upstream peers.
    pub routes: Routes,
    /// The compiled permission policy and claims-to-scopes map.
    pub policy: crate::policy::Policy,
}

impl Live {
    /// Prepare a compiled config for serving, without multiplexed upstreams (stdio, legacy
    /// SSE): for tools that only need the policy.
    pub fn new(config: Runtime) -> Self {
        Self::assemble(config, HashMap::new())
    }

    /// Prepare a compiled config for serving, with its stdio and legacy SSE upstreams started
    /// or reused from `registry`. Also returns the upstreams to retire once this is live.
    pub fn with_upstreams(config: Runtime, registry: &Registry) -> (Self, Vec<Arc<Mux>>) {
        let (muxes, gone) = registry.reconcile(&config);
        (Self::assemble(config, muxes), gone)
    }

    fn assemble(config: Runtime, muxes: HashMap<String, Arc<Mux>>) -> Self {
        let mut routes = Routes::build(&config);
        routes.set_muxes(muxes);
        let policy = crate::policy::Policy::from_runtime(&config);
        Live {
            config,
            routes,
            policy,
        }
    }
}

/// What a reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot is live; its content hash.
    Applied(String),
    /// The file did not change.
    Unchanged,
    /// The file was refused; the old snapshot keeps running. The rendered reason.
    Rejected(String),
}

/// The live snapshot and where it came from.
pub struct Snapshot {
    current: ArcSwap<Live>,
    registry: Arc<Registry>,
    path: PathBuf,
    /// Bumped after every reload attempt (any outcome), for observers and tests.
    generation: watch::Sender<u64>,
    /// The outcome of the latest attempt (read by `/status` and tests, never per request).
    last: std::sync::Mutex<Option<Outcome>>,
}

impl Snapshot {
    /// Wrap an already loaded config read from `path`.
    pub fn new(path: &Path, config: Runtime) -> Arc<Self> {
        let hash = config.source.hash.clone();
        let at = unix_seconds(&config);
        let (generation, _) = watch::channel(0);
        let registry = Registry::new();
        let (live, _) = Live::with_upstreams(config, &registry);
        let snap = Arc::new(Snapshot {
            current: ArcSwap::from_pointee(live),
            registry,
            path: path.to_path_buf(),
            generation,
            last: std::sync::Mutex::new(None),
        });
        metrics().reload(ReloadResult::Success, Some(&hash), at);
        snap
    }

    /// The stdio and legacy SSE upstreams behind this snapshot.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The live snapshot. Call once per request.
    pub fn load(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// The config file this snapshot reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Subscribe to reload attempts (the value counts them).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-read the file and swap it in if it is valid, changed, and changes no startup-only
    /// field. Never panics; logs and counts every outcome.
    pub fn reload(&self) -> Outcome {
        let outcome = self.try_reload();
        if let Ok(mut last) = self.last.lock() {
            *last = Some(outcome.clone());
        }
        self.generation.send_modify(|g| *g += 1);
        outcome
    }

    /// The outcome of the latest reload attempt, if any.
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    fn try_reload(&self) -> Outcome {
        let file = self.path.display().to_string();
        let new = match config::load_file(&self.path) {
            Ok(rt) => rt,
            Err(diags) => {
                let text = diags.to_string();
                tracing::error!(file = %file, "config reload rejected; the previous config keeps running\n{text}");
                metrics().reload(ReloadResult::Error, None, 0);
                return Outcome::Rejected(text);
            }
        };
        let old = self.current.load();
        if old.config.source.hash == new.source.hash {
            tracing::debug!(file = %file, "config unchanged");
            metrics().reload(ReloadResult::Unchanged, None, 0);
            return Outcome::Unchanged;
        }
        let startup = old.config.startup_only_changes(&new);
        if !startup.is_empty() {
            let text = format!(
                "{} cannot change without a restart: {}",
                if startup.len() == 1 {
                    "this field"
                } else {
                    "these fields"
                },
                startup.join(", ")
            );
            tracing::error!(file = %file, fields = ?startup, "config reload rejected; the previous config keeps running: {text}");
            metrics().reload(ReloadResult::Error, None, 0);
            return Outcome::Rejected(text);
        }
        for w in &new.warnings {
            tracing::warn!(file = %file, "{}", w.render_as_warning());
        }
        let hash = new.source.hash.clone();
        let at = unix_seconds(&new);
        let grace = new.server.grace_period;
        let (live, gone) = Live::with_upstreams(new, &self.registry);
        self.current.store(Arc::new(live));
        Registry::retire(gone, grace);
        metrics().reload(ReloadResult::Success, Some(&hash), at);
        tracing::info!(file = %file, hash = %hash, "config reloaded");
        Outcome::Applied(hash)
    }
}

fn unix_seconds(rt: &Runtime) -> i64 {
    rt.source
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
