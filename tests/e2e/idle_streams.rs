//! 10,000 idle event streams open at once on a real `portcullis serve`, in front of
//! server-everything over stdio: every stream opens (200, `text/event-stream`), the gateway
//! keeps serving calls meanwhile, each stream's memory (RSS growth over the 10,000) stays under
//! 16 KiB, and every stream's place is given back when the clients go (all 10,000 open again).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{free_port, gateway_command, start_gateway, Peers};

const STREAMS: usize = 10_000;
/// Streams opened at once while filling up.
const WAVE: usize = 250;
/// The target: 16 KiB per idle stream (about 12 KiB measured, debug and release builds alike;
/// the figure is printed and recorded in BENCHMARKS.md).
const MAX_BYTES_PER_STREAM: u64 = 16 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn gauge(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1)
}

/// A new session on `/mcp/stdio`: its id.
async fn session(client: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Open a GET stream for `sid` on its own connection; the connection once the head said 200.
async fn open(port: u16, sid: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "GET /mcp/stdio HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("a stream's head")
            .unwrap();
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    s
}

/// A stream for every session in `sids`, opened [`WAVE`] at a time.
async fn open_all(port: u16, sids: &[String]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(sids.len());
    for wave in sids.chunks(WAVE) {
        held.extend(join_all(wave.iter().map(|sid| open(port, sid))).await);
    }
    held
}

/// `portcullis_sse_streams_open` on the gateway at `base`.
async fn streams_open(client: &reqwest::Client, base: &str) -> i64 {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    gauge(&metrics, "portcullis_sse_streams_open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_streams_stay_open_and_cost_little_each() {
    // This process holds the 10,000 client sockets: its soft open-file limit up to the hard one.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let need = STREAMS as u64 + 2048;
    if soft < need {
        setrlimit(Resource::RLIMIT_NOFILE, need.min(hard), hard).unwrap();
    }
    assert!(
        need <= hard,
        "the hard open-file limit ({hard}) is below the {need} this test needs"
    );
    let peers = Peers::locate();
    let dir = tempfile::Builder::new()
        .prefix("portcullis-e2e-idle-streams-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let path = dir.path().join("gateway.yaml");
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:{port}"
  grace_period: 1s
  max_connections: 12000
  max_streams_per_principal: 10000
oauth:
  enabled: false
proxy:
  servers:
    - name: stdio
      type: stdio
      connection:
        command: "{node}"
        args: ["{js}", "stdio"]
        timeout: 60s
"#,
        node = peers.node().display(),
        js = peers.everything_js().display(),
    );
    std::fs::write(&path, yaml).unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (mut gateway, base) =
        start_gateway(gateway_command(&path), port, &client, dir.path()).await;
    let url = format!("{base}/mcp/stdio");
    let call = |sid: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}});
            let resp = client
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", sid)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.unwrap();
            let data = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .next_back()
                .map(str::to_owned)
                .unwrap_or(text);
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["result"]["content"][0]["text"], "Echo: hi", "{v}");
        }
    };

    // The sessions first (the upstream answers through the gateway's one stdio session).
    let mut sids = Vec::with_capacity(STREAMS);
    while sids.len() < STREAMS {
        let wave = join_all((0..WAVE).map(|_| session(&client, &url))).await;
        sids.extend(wave);
    }
    call(sids[0].clone()).await;
    // Warm up: a wave opened and closed, so the runtime's and allocator's first growth is not
    // counted as the streams'.
    let warm = join_all(sids[..WAVE].iter().map(|sid| open(port, sid))).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(gateway.pid());

    let started = Instant::now();
    let held = open_all(port, &sids).await;
    let opened_in = started.elapsed();
    gateway.assert_running();
    // Calls are still served while every stream is open.
    join_all(sids[..20].iter().cloned().map(call)).await;
    let open_now = streams_open(&client, &base).await;
    assert!(open_now >= STREAMS as i64, "{open_now}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(gateway.pid());
    let per_stream = (after.saturating_sub(before) * 1024) / STREAMS as u64;
    println!(
        "idle streams: {STREAMS} opened in {:.1} s; gateway RSS {before} KiB -> {after} KiB: {:.1} KiB per stream (client connection and stream state)",
        opened_in.as_secs_f64(),
        per_stream as f64 / 1024.0
    );
    assert!(
        per_stream <= MAX_BYTES_PER_STREAM,
        "{per_stream} bytes per idle stream (bound {MAX_BYTES_PER_STREAM})"
    );

    // The clients go: every stream ends and gives its place back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open_now = streams_open(&client, &base).await;
        if open_now == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "streams still open a minute after their clients left: {open_now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every place came back: all 10,000 open again (the cap is 10,000).
    let again = open_all(port, &sids).await;
    assert_eq!(again.len(), STREAMS);
    drop(again);
    gateway.assert_running();
}
