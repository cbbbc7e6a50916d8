//! Triggers for reloads: the config file's directory (not the file: editors save by rename and
//! Kubernetes swaps a `..data` symlink, both of which replace the inode) and SIGHUP. Events are
//! debounced; `Access` events are ignored (reading the file must not trigger a reload).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc;

use super::store::Store;

/// Default quiet time after the last file event before reloading.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);

/// The reload trigger, run as a Pingora background service.
pub struct Watcher {
    store: Arc<Store>,
    debounce: Duration,
    /// The file-system watch, set up in `new` so no change is missed before `run` starts.
    events: tokio::sync::Mutex<Option<(Option<RecommendedWatcher>, mpsc::Receiver<()>)>>,
}

impl Watcher {
    /// Watch `store`'s file (from now on), reloading `debounce` after the last change.
    pub fn new(store: Arc<Store>, debounce: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>(64);
        let fs = match watch_dirs(store.path(), tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the config directory; reload only on SIGHUP");
                None
            }
        };
        Watcher {
            store,
            debounce,
            events: tokio::sync::Mutex::new(Some((fs, rx))),
        }
    }

    /// Run until `shutdown` resolves. Usable without a Pingora server (tests). Runs once.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let taken = self.events.lock().await.take();
        let Some((_fs, mut rx)) = taken else {
            tracing::error!("the config watcher was started twice");
            return;
        };
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the SIGHUP handler");
                None
            }
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                Some(()) = rx.recv() => {
                    // Debounce: wait for a quiet period, absorbing the burst a save produces,
                    // but never longer than MAX_DEBOUNCE (a file written without pause must
                    // still be reloaded) and not past a SIGHUP (it asks for a reload now).
                    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE.max(self.debounce);
                    loop {
                        tokio::select! {
                            Some(()) = rx.recv() => continue,
                            _ = tokio::time::sleep(self.debounce) => break,
                            _ = tokio::time::sleep_until(deadline) => break,
                            Some(()) = recv_hup(&mut hup) => {
                                tracing::info!("SIGHUP: reloading the config");
                                break;
                            }
                        }
                    }
                    self.store.reload();
                }
                Some(()) = recv_hup(&mut hup) => {
                    tracing::info!("SIGHUP: reloading the config");
                    self.store.reload();
                }
            }
        }
    }
}

/// The longest a reload waits for file events to pause.
const MAX_DEBOUNCE: std::time::Duration = std::time::Duration::from_secs(2);

async fn recv_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Watch the directory holding `path`, and the directory of its resolved target when `path` is
/// a symlink into another directory. Only events naming the config file (or its resolved
/// target, or Kubernetes' `..data` links) count: a log file written next to the config must not
/// trigger reloads (a rejected reload logs an error, which would trigger another one).
fn watch_dirs(path: &Path, tx: mpsc::Sender<()>) -> notify::Result<RecommendedWatcher> {
    let mut names: Vec<std::ffi::OsString> =
        path.file_name().map(|n| n.to_owned()).into_iter().collect();
    let mut dirs: Vec<PathBuf> = vec![parent_dir(path)];
    if let Ok(real) = std::fs::canonicalize(path) {
        let d = parent_dir(&real);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
        if let Some(n) = real.file_name() {
            names.push(n.to_owned());
        }
    }
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, EventKind::Access(_))
                && ev.paths.iter().any(|p| relevant(p, &names))
            {
                // A full channel already holds a pending trigger; dropping this one is fine.
                let _ = tx.try_send(());
            }
        }
    })?;
    for d in &dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// True when an event path is the config file, its target, or a Kubernetes `..data` link.
fn relevant(p: &Path, names: &[std::ffi::OsString]) -> bool {
    match p.file_name() {
        Some(n) => names.iter().any(|k| k == n) || n.to_string_lossy().starts_with("..data"),
        None => false,
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.run(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    }
}
