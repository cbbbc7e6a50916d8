//! SIGTERM on a real `portcullis serve`: an idle gateway exits at once (not after its grace
//! period, which would equal Kubernetes' kill deadline), its stdio child stopped; a call in
//! flight finishes first while new connections are refused, then the process exits; an answer
//! longer than the grace period streams on until it is over, then is cut.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{free_port, gateway_command, start_gateway};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);

fn config(port: u16) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:{port}"
  grace_period: 30s
oauth:
  enabled: false
proxy:
  servers:
    - name: fixture
      type: stdio
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 30s }}
"#
    )
}

/// True while `pid` is a live (not zombie) process.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

async fn child_pid(client: &reqwest::Client, base: &str) -> u32 {
    let status: serde_json::Value = client
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = status.to_string();
    let pid = status
        .pointer("/upstreams/0/process/pid")
        .and_then(serde_json::Value::as_u64);
    pid.unwrap_or_else(|| panic!("no child pid in /status: {text}")) as u32
}

#[tokio::test]
async fn an_idle_gateway_exits_at_once_on_sigterm_and_stops_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config(port)).unwrap();
    let client = reqwest::Client::new();
    let (mut gw, base) = start_gateway(gateway_command(&path), port, &client, dir.path()).await;
    let child = child_pid(&client, &base).await;
    assert!(running(child));
    let sent = Instant::now();
    gw.signal("TERM");
    let status = gw
        .wait_exit(Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("still running 2 s after SIGTERM; log:\n{}", gw.log_tail()));
    assert!(status.success(), "{status}: {}", gw.log_tail());
    assert!(!running(child), "the stdio child outlived the gateway");
    assert!(gw.log().contains("drained; exiting"), "{}", gw.log_tail());
    eprintln!("exited {:?} after SIGTERM", sent.elapsed());
}

#[tokio::test]
async fn a_call_in_flight_finishes_before_the_gateway_exits() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config(port)).unwrap();
    let client = reqwest::Client::new();
    let (mut gw, base) = start_gateway(gateway_command(&path), port, &client, dir.path()).await;
    // A 1.5 s call with progress: once its first progress event is here, it is in flight.
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"slow","arguments":{"steps":15,"ms":100},"_meta":{"progressToken":"p"}}});
    let mut resp = client
        .post(format!("{base}/mcp/fixture"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let chunk = resp.chunk().await.unwrap().expect("a progress event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    gw.signal("TERM");
    // The listener closes: a new connection is refused while the call runs.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let fresh = reqwest::Client::new();
        if fresh.get(format!("{base}/live")).send().await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepting 1 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gw.wait_exit(Duration::ZERO).await.is_none(),
        "exited with a call in flight"
    );
    while let Some(chunk) = resp.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("done 15"), "the call did not finish: {seen}");
    let answered = Instant::now();
    let status = gw
        .wait_exit(Duration::from_secs(2))
        .await
        .unwrap_or_else(|| {
            panic!(
                "still running 2 s after the last answer; log:\n{}",
                gw.log_tail()
            )
        });
    assert!(status.success(), "{status}");
    eprintln!("exited {:?} after the last answer", answered.elapsed());
}

#[tokio::test]
async fn an_answer_longer_than_the_grace_period_holds_the_exit_until_it_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        config(port).replace("grace_period: 30s", "grace_period: 2s"),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let (mut gw, base) = start_gateway(gateway_command(&path), port, &client, dir.path()).await;
    // A 6 s call streaming progress: it outlives the 2 s grace period.
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"slow","arguments":{"steps":60,"ms":100},"_meta":{"progressToken":"p"}}});
    let mut resp = client
        .post(format!("{base}/mcp/fixture"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let chunk = resp.chunk().await.unwrap().expect("a progress event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let signalled = Instant::now();
    gw.signal("TERM");
    // Held: the answer still streams after the signal.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        gw.wait_exit(Duration::ZERO).await.is_none(),
        "exited with an answer streaming before the grace period was over"
    );
    let before = seen.matches("notifications/progress").count();
    // Then cut at the grace period: the answer ends unfinished and the process exits.
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the answer outlived the grace period");
    assert!(
        seen.matches("notifications/progress").count() > before,
        "nothing streamed after the signal: {seen}"
    );
    assert!(!seen.contains("done 60"), "the call was not cut: {seen}");
    let status = gw
        .wait_exit(Duration::from_secs(6))
        .await
        .unwrap_or_else(|| panic!("still running; log:\n{}", gw.log_tail()));
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    // (Whether the gateway's drain or Pingora's own grace timer, both at `grace_period`, ends
    // the process first is a race; either exits with 0.)
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "exited after {took:?}"
    );
}
