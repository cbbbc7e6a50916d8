//! 1,000 config reloads under wrk load on a real `portcullis serve`: every reload goes live (the
//! file changes each time; SIGHUP triggers it), and not one request fails.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::harness::{free_port, gateway_command, start_gateway};

const RELOADS: u64 = 1000;
/// The most the reloads may take (a busy 2-core machine runs other tests meanwhile).
const LIMIT: Duration = Duration::from_secs(120);

/// An upstream answering every POST with a small JSON-RPC result, keep-alive.
async fn upstream() -> std::net::SocketAddr {
    use axum::routing::post;
    async fn answer() -> ([(&'static str, &'static str); 1], &'static str) {
        (
            [("content-type", "application/json")],
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#,
        )
    }
    let app = axum::Router::new().route("/mcp", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn config(port: u16, upstream: std::net::SocketAddr, generation: u64) -> String {
    // Each generation differs (a timeout and a comment), so each reload is a new snapshot.
    format!(
        "# generation {generation}\nserver:\n  listen: \"127.0.0.1:{port}\"\n  grace_period: 1s\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: up\n      type: streamable-http\n      connection:\n        url: \"http://{upstream}/mcp\"\n        timeout: {}s\n",
        30 + generation % 7
    )
}

fn successes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("portcullis_config_reloads_total{result=\"success\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_under_load_fail_no_request() {
    let dir = tempfile::Builder::new()
        .prefix("portcullis-e2e-reload-")
        .tempdir()
        .unwrap();
    let up = upstream().await;
    let port = free_port();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config(port, up, 0)).unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (mut gateway, base) =
        start_gateway(gateway_command(&path), port, &client, dir.path()).await;

    let script = dir.path().join("post.lua");
    std::fs::File::create(&script)
        .unwrap()
        .write_all(
            br#"wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
"#,
        )
        .unwrap();
    let wrk = std::process::Command::new("wrk")
        // Runs until stopped (SIGINT: wrk then prints its report); a request slower than 10 s
        // would count as a socket error.
        .args(["-t1", "-c16", "-d600s", "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("{base}/mcp/up"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wrk (scripts/peers.sh installs it)");

    let metrics = format!("{base}/metrics");
    let started = Instant::now();
    let before = successes(
        &client
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let mut generation = 0;
    let mut done = 0;
    while done < RELOADS {
        generation += 1;
        // Written whole (a rename), as editors and ConfigMaps do: never a half file.
        let tmp = dir.path().join("gateway.yaml.tmp");
        std::fs::write(&tmp, config(port, up, generation)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        gateway.signal("HUP");
        tokio::time::sleep(Duration::from_millis(8)).await;
        if generation % 25 == 0 {
            let text = client
                .get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            done = successes(&text) - before;
        }
        assert!(
            started.elapsed() < LIMIT,
            "only {done} reloads went live in {:?}; the gateway's log ends:\n{}",
            started.elapsed(),
            gateway.log_tail()
        );
    }
    let stop = std::process::Command::new("kill")
        .args(["-INT", &wrk.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let out = tokio::task::spawn_blocking(move || wrk.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("requests in"), "{report}");
    assert!(
        !report.contains("Non-2xx"),
        "failed requests during reloads:\n{report}"
    );
    assert!(
        !report.contains("Socket errors"),
        "socket errors during reloads:\n{report}"
    );
    let requests: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        requests > 2_000,
        "too little load to mean anything: {report}"
    );
    eprintln!("{done} reloads under {requests} requests, none failed");
    gateway.assert_running();
}
