//! Hot reload: keep-last-good, startup-only fields, the directory watcher (rename-on-save and
//! the Kubernetes `..data` symlink swap), pinned snapshots, and 200 reloads under load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis::state::{Outcome, Store};
use serde_json::Value;

use crate::common::{body_of_size, config_for, post, sha256, Gateway, Upstream};

const BROKEN: &str =
    "server:\n  listen: \"127.0.0.1:8080\"\n  max_body_bytes: lots\nproxy:\n  servers: []\n";

/// Which upstream answered: each test upstream is told apart by its recorded POST count.
async fn post_ok(gw: &Gateway) -> bool {
    match post(gw, body_of_size(200)).send().await {
        Ok(r) if r.status() == 200 => r.json::<Value>().await.is_ok(),
        _ => false,
    }
}

#[tokio::test]
async fn a_bad_file_keeps_the_old_config_running() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let before = gw.store.load().config.source.hash.clone();
    std::fs::write(&gw.config_path, BROKEN).unwrap();
    match gw.store.reload() {
        Outcome::Rejected(e) => assert!(e.to_string().contains("max_body_bytes"), "{e}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(gw.store.load().config.source.hash, before);
    assert!(post_ok(&gw).await);
    assert_eq!(up.posts(), 1);
}

#[tokio::test]
async fn a_startup_only_change_is_rejected_naming_the_field() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let changed = config_for(up.addr, "", "").replace("127.0.0.1:8080", "127.0.0.1:9999");
    std::fs::write(&gw.config_path, changed).unwrap();
    match gw.store.reload() {
        Outcome::Rejected(e) => {
            assert!(e.to_string().contains("server.listen"), "{e}");
            assert_eq!(
                e,
                portcullis::state::ReloadError::StartupOnlyChanged {
                    changed_fields: vec!["server.listen"]
                }
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unchanged_file_is_a_no_op() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    assert_eq!(gw.store.reload(), Outcome::Unchanged);
}

#[tokio::test]
async fn requests_in_flight_finish_on_their_snapshot() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start(&config_for(a.addr, "", "")).await;
    let in_flight = post(&gw, body_of_size(200))
        .header("x-test-reply", "sse:5:80")
        .send()
        .await
        .unwrap();
    gw.apply(&config_for(b.addr, "", "")).await;
    assert!(post_ok(&gw).await, "a new request after the reload failed");
    assert_eq!(b.posts(), 1, "new requests go to the new upstream");
    let text = in_flight.text().await.unwrap();
    assert_eq!(text.matches("notifications/progress").count(), 5);
    assert_eq!(
        a.posts(),
        1,
        "the in-flight request stayed on the old upstream"
    );
}

/// Wait until a reload attempt after generation `after` has happened and `done` holds.
async fn wait_reload(
    snap: &Store,
    rx: &mut tokio::sync::watch::Receiver<u64>,
    done: impl Fn(&Store) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if done(snap) {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the watcher did not reload in time");
}

/// Kubernetes ConfigMap layout: `gateway.yaml -> ..data/gateway.yaml`, `..data -> ..vN`.
fn k8s_swap(dir: &Path, version: usize, content: &str) {
    let vdir = dir.join(format!("..v{version}"));
    std::fs::create_dir(&vdir).unwrap();
    std::fs::write(vdir.join("gateway.yaml"), content).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

async fn k8s_gateway(content: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    k8s_swap(dir.path(), 0, content);
    let link = dir.path().join("gateway.yaml");
    std::os::unix::fs::symlink("..data/gateway.yaml", &link).unwrap();
    Gateway::start_at(dir, link).await
}

#[tokio::test]
async fn the_watcher_sees_rename_on_save() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start(&config_for(a.addr, "", "")).await;
    let mut rx = gw.store.subscribe();
    let new = config_for(b.addr, "", "");
    let want = sha256(new.as_bytes());
    let tmp = gw.dir.path().join(".gateway.yaml.swp");
    std::fs::write(&tmp, &new).unwrap();
    std::fs::rename(&tmp, &gw.config_path).unwrap();
    wait_reload(&gw.store, &mut rx, |s| s.load().config.source.hash == want).await;
    assert!(post_ok(&gw).await);
    assert_eq!(b.posts(), 1);
}

#[tokio::test]
async fn other_files_in_the_directory_do_not_trigger_reloads() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start(&config_for(a.addr, "", "")).await;
    let mut rx = gw.store.subscribe();
    // A log file next to the config, written repeatedly: no reload attempt at all.
    let log = gw.dir.path().join("gateway.log");
    for i in 0..20 {
        std::fs::write(&log, format!("line {i}\n")).unwrap();
    }
    // Then a real change: the first attempt observed must be that one.
    let new = config_for(b.addr, "", "");
    let want = sha256(new.as_bytes());
    std::fs::write(&gw.config_path, &new).unwrap();
    wait_reload(&gw.store, &mut rx, |s| s.load().config.source.hash == want).await;
    // The config write itself may surface as one or two attempts (the second `Unchanged`);
    // twenty log writes reacting would show as many more.
    let attempts = *rx.borrow();
    assert!(
        attempts <= 2,
        "unrelated files triggered reloads: {attempts} attempts"
    );
}

#[tokio::test]
async fn two_hundred_reloads_under_load_lose_no_request() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let configs = [config_for(a.addr, "", ""), config_for(b.addr, "", "")];
    let gw = Arc::new(k8s_gateway(&configs[0]).await);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if post_ok(&gw).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Cycle: swap to B, swap to a broken file (rejected), swap back to A. Every valid swap
    // differs from the live config, so each one must be applied.
    let mut rx = gw.store.subscribe();
    for i in 0..200 {
        let version = i + 1;
        let g0 = *rx.borrow_and_update();
        if i % 3 == 1 {
            let before = gw.store.load().config.source.hash.clone();
            k8s_swap(gw.dir.path(), version, BROKEN);
            wait_reload(&gw.store, &mut rx, |s| {
                *s.subscribe().borrow() > g0
                    && matches!(s.last_outcome(), Some(Outcome::Rejected(_)))
            })
            .await;
            assert_eq!(gw.store.load().config.source.hash, before);
        } else {
            let content = &configs[if i % 3 == 0 { 1 } else { 0 }];
            let want = sha256(content.as_bytes());
            k8s_swap(gw.dir.path(), version, content);
            wait_reload(&gw.store, &mut rx, |s| s.load().config.source.hash == want).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "{failed} requests failed during reloads ({ok} succeeded)"
    );
    assert!(ok >= 200, "the load generator barely ran: {ok} requests");
    assert!(
        a.posts() > 0 && b.posts() > 0,
        "both configs served traffic"
    );
}

#[tokio::test]
async fn a_file_written_without_pause_is_still_reloaded() {
    // A watcher waiting for 500 ms of quiet, on a file rewritten every 20 ms for 4 s: it must
    // not hold the reload off until the writes stop (at most 2 s).
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let base = config_for(up.addr, "", "");
    std::fs::write(&path, &base).unwrap();
    let store = Store::new(&path, portcullis::config::load_file(&path).unwrap());
    let before = store.load().config.source.hash.clone();
    let watcher =
        portcullis::state::watcher::Watcher::new(store.clone(), Duration::from_millis(500));
    let (stop_watch, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        watcher
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    let started = std::time::Instant::now();
    let mut i = 0u64;
    let mut reloaded_at = None;
    while started.elapsed() < Duration::from_secs(4) {
        i += 1;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{base}# write {i}\n")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if reloaded_at.is_none() && store.load().config.source.hash != before {
            reloaded_at = Some(started.elapsed());
        }
    }
    let _ = stop_watch.send(());
    running.await.unwrap();
    let at = reloaded_at.expect("no reload while the file kept changing");
    assert!(
        at < Duration::from_millis(3500),
        "reloaded only after {at:?}"
    );
}
