//! Upstream reachability: a background prober that TCP-connects to each HTTP upstream on an
//! interval (and right after every reload), feeding `/ready`, `/status` and
//! `portcullis_upstream_up`. Off the request path: requests never wait on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::IntGaugeVec;

use super::snapshot::Snapshot;
use super::store::Store;

/// The last probe result of one upstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// True when the last TCP connect succeeded.
    pub reachable: bool,
    /// Why it is not reachable, or `ok`.
    pub detail: String,
    /// When it was probed (Unix seconds).
    pub checked_at: u64,
}

/// Reachability of every upstream of the live config.
#[derive(Default)]
pub struct Health {
    state: ArcSwap<BTreeMap<String, Status>>,
    probed: std::sync::atomic::AtomicBool,
}

impl Health {
    /// True once a probe round ran and at least one upstream answered.
    pub fn ready(&self) -> bool {
        self.probed.load(std::sync::atomic::Ordering::Acquire)
            && self.state.load().values().any(|s| s.reachable)
    }

    /// The latest results, by server name.
    pub fn statuses(&self) -> Arc<BTreeMap<String, Status>> {
        self.state.load_full()
    }

    /// The last probe's HTTP statuses with the shared-session upstreams' current state on
    /// top (they report changes at once, not at the next probe), and whether any upstream
    /// is reachable. For `/ready` and `/status`, never per request.
    pub fn current(&self, live: &Snapshot) -> (BTreeMap<String, Status>, bool) {
        let mut state = BTreeMap::clone(&self.state.load());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        mux_statuses(live, now, &mut state);
        let any = state.values().any(|s| s.reachable);
        let http_probed = self.probed.load(std::sync::atomic::Ordering::Acquire);
        (
            state,
            any && (http_probed || live.upstreams.iter().all(|u| u.http.is_none())),
        )
    }

    /// Probe every HTTP upstream of the live snapshot once, concurrently.
    pub async fn probe(&self, store: &Store, up_gauge: Option<&IntGaugeVec>) {
        let live = store.load();
        let mut probes = Vec::new();
        for http in live.upstreams.iter().filter_map(|u| u.http.as_ref()) {
            let name = http.config.name.clone();
            let addr = http.addr();
            let timeout = http.config.connect_timeout;
            let address = http.target.address.clone();
            probes.push(tokio::spawn(async move {
                let status = match addr {
                    Some(a) => probe_one(a, timeout).await,
                    None => Err(format!("{address} does not resolve")),
                };
                (name, status)
            }));
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut state = BTreeMap::new();
        for p in probes {
            if let Ok((name, result)) = p.await {
                let status = match result {
                    Ok(()) => Status {
                        reachable: true,
                        detail: "ok".into(),
                        checked_at: now,
                    },
                    Err(detail) => Status {
                        reachable: false,
                        detail,
                        checked_at: now,
                    },
                };
                if let Some(g) = up_gauge {
                    g.with_label_values(&[&name])
                        .set(i64::from(status.reachable));
                }
                state.insert(name, status);
            }
        }
        mux_statuses(&live, now, &mut state);
        self.state.store(Arc::new(state));
        self.probed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

async fn probe_one(addr: std::net::SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("connect timed out after {timeout:?}")),
    }
}

/// Runs [`Health::probe`] every `interval` and after every reload.
pub struct Prober {
    /// Where results go.
    pub health: Arc<Health>,
    /// What to probe: the live snapshot's upstreams.
    pub store: Arc<Store>,
    /// Time between rounds.
    pub interval: Duration,
}

impl Prober {
    /// Run until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let gauge = crate::telemetry::metrics::metrics().upstream_up.clone();
        let mut reloads = self.store.subscribe();
        tokio::pin!(shutdown);
        loop {
            self.health.probe(&self.store, Some(&gauge)).await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.interval) => {}
                _ = reloads.changed() => {}
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.run(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    }
}

/// The state of every shared-session upstream (stdio, legacy SSE) into `state`.
fn mux_statuses(live: &Snapshot, now: u64, state: &mut BTreeMap<String, Status>) {
    for up in live.upstreams.iter() {
        let Some(m) = &up.shared else { continue };
        if up.http.is_some() {
            continue; // An SSE fallback: the Streamable HTTP probe speaks for it.
        }
        let st = m.status();
        let reachable = st.phase == crate::upstream::shared::mux::Phase::Ready;
        let phase = format!("{:?}", st.phase).to_lowercase();
        let detail = match (&st.detail, reachable) {
            (_, true) => "ok".to_string(),
            (Some(d), false) => format!("{phase}: {d}"),
            (None, false) => phase,
        };
        state.insert(
            m.name().to_string(),
            Status {
                reachable,
                detail,
                checked_at: now,
            },
        );
    }
}
