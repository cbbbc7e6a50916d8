//! The one `ArcSwap` holding the live [`Snapshot`], reload and keep-last-good.
//!
//! A request loads the snapshot once ([`Store::load`]) and uses only that `Arc` until it ends,
//! so a reload never changes a request in flight. A reload compiles the file into a complete new
//! snapshot off the request path and swaps it in with one atomic store; a bad file, or one that
//! changes a startup-only field, leaves the old snapshot running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use super::snapshot::Snapshot;
use crate::config::{self, Config, Diagnostics};
use crate::telemetry::metrics::{metrics, ReloadResult};
use crate::upstream::registry::Registry;

/// What a reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot is live; its content hash.
    Applied(String),
    /// The file did not change.
    Unchanged,
    /// The file was refused; the old snapshot keeps running.
    Rejected(ReloadError),
}

/// Why a reload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load: every diagnostic, rendered.
    #[error("{0}")]
    Invalid(String),
    /// The file changes fields that need a restart.
    #[error("{} cannot change without a restart: {}", if .changed_fields.len() == 1 { "this field" } else { "these fields" }, .changed_fields.join(", "))]
    StartupOnlyChanged {
        /// The fields, as written in the file (`server.listen`).
        changed_fields: Vec<&'static str>,
    },
}

impl From<&Diagnostics> for ReloadError {
    fn from(d: &Diagnostics) -> Self {
        ReloadError::Invalid(d.to_string())
    }
}

/// The live snapshot and where it came from.
pub struct Store {
    current: ArcSwap<Snapshot>,
    registry: Arc<Registry>,
    path: PathBuf,
    /// Bumped after every reload attempt (any outcome), for observers and tests.
    generation: watch::Sender<u64>,
    /// The outcome of the latest attempt (read by `/status` and tests, never per request).
    last: ArcSwapOption<Outcome>,
}

impl Store {
    /// Wrap an already loaded config read from `path`.
    pub fn new(path: &Path, config: Config) -> Arc<Self> {
        let hash = config.source.hash.clone();
        let at = unix_seconds(&config);
        let (generation, _) = watch::channel(0);
        let registry = Registry::new();
        let (live, _) = Snapshot::with_upstreams(config, &registry, None);
        let snap = Arc::new(Store {
            current: ArcSwap::from_pointee(live),
            registry,
            path: path.to_path_buf(),
            generation,
            last: ArcSwapOption::empty(),
        });
        metrics().reload(ReloadResult::Success, Some(&hash), at);
        snap
    }

    /// The stdio and legacy SSE upstreams behind this snapshot.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The live snapshot. Call once per request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Read something small off the live snapshot without pinning it (no reference count):
    /// what a connection needs before a request exists, such as the head limits.
    pub fn peek<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&self.current.load())
    }

    /// The config file this snapshot reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The gateway is shutting down: streams that end gracefully on a reload end now.
    pub fn retire_live(&self) {
        self.current.load().upstreams.retire();
    }

    /// Subscribe to reload attempts (the value counts them).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-read the file and swap it in if it is valid, changed, and changes no startup-only
    /// field. Never panics; logs and counts every outcome.
    pub fn reload(&self) -> Outcome {
        let outcome = self.try_reload();
        self.last.store(Some(Arc::new(outcome.clone())));
        self.generation.send_modify(|g| *g += 1);
        outcome
    }

    /// The outcome of the latest reload attempt, if any.
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.last.load_full().map(|o| Outcome::clone(&o))
    }

    fn try_reload(&self) -> Outcome {
        let file = self.path.display().to_string();
        let new = match config::load_file_for_reload(&self.path) {
            Ok(rt) => rt,
            Err(diags) => {
                let error = ReloadError::from(&diags);
                tracing::error!(file = %file, "config reload rejected; the previous config keeps running\n{error}");
                metrics().reload(ReloadResult::Error, None, 0);
                return Outcome::Rejected(error);
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
            let error = ReloadError::StartupOnlyChanged {
                changed_fields: startup,
            };
            tracing::error!(file = %file, "config reload rejected; the previous config keeps running: {error}");
            metrics().reload(ReloadResult::Error, None, 0);
            return Outcome::Rejected(error);
        }
        for w in &new.warnings {
            tracing::warn!(file = %file, "{}", w.render_as_warning());
        }
        let hash = new.source.hash.clone();
        let at = unix_seconds(&new);
        let grace = new.server.grace_period;
        let (live, gone) = Snapshot::with_upstreams(new, &self.registry, Some(&old));
        self.current.store(Arc::new(live));
        // Streams opened under the old snapshot that must follow the config end gracefully.
        old.upstreams.retire();
        self.registry.retire(gone, grace);
        metrics().reload(ReloadResult::Success, Some(&hash), at);
        tracing::info!(file = %file, hash = %hash, "config reloaded");
        Outcome::Applied(hash)
    }
}

fn unix_seconds(rt: &Config) -> i64 {
    rt.source
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
