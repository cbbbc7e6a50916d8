//! Housekeeping of rate-limit buckets: once a minute the live snapshot's buckets that are full
//! again are forgotten (a full bucket is indistinguishable from a new one), so memory follows
//! the callers seen in the last minutes, not every caller ever seen.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::Store;

/// How often buckets are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The background service sweeping the live snapshot's rate-limit buckets.
pub struct Sweeper {
    /// Where the live snapshot is.
    pub store: Arc<Store>,
    /// Time between sweeps.
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let snap = self.store.load();
                    if !snap.limits.is_empty() {
                        snap.limits.sweep();
                        tracing::debug!(buckets = snap.limits.buckets(), "rate-limit buckets swept");
                    }
                }
            }
        }
    }
}
