//! `server.max_streams_per_principal`: a caller holds at most that many event streams open at
//! once, counted together on every endpoint and front end (HTTP/1.1 on the front door, h2c on
//! Pingora's path, `/mcp/{server}` and `/mcp`); past it 429 with a JSON-RPC error and nothing
//! upstream; other callers untouched; DELETE not counted; a closed stream gives its place back.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::jwt::{oauth_section, token, ISSUER};
use crate::common::{client, Gateway, Upstream};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);
const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// Authentication on; `up` (the test HTTP upstream) and `a` (a stdio server) behind `/mcp`.
fn config(upstream: std::net::SocketAddr, max: u32) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
  max_streams_per_principal: {max}
{oauth}auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "up:*": ["scope:user"]
    "a:*": ["scope:user"]
proxy:
  session_key: "{KEY}"
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
    - name: a
      type: stdio
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 20s }}
"#,
        oauth = oauth_section()
    )
}

fn h2c() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// `GET path` for `token` on `http` (an open stream stays open while the answer is held).
async fn get(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    token: &str,
    sid: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .get(gw.url(path))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .header("x-test-reply", "forever");
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    tokio::time::timeout(Duration::from_secs(20), req.send())
        .await
        .expect("an answer head")
        .unwrap()
}

/// The refusal: 429, `Retry-After`, a JSON-RPC error naming the rule and the cap.
async fn assert_refused(resp: reqwest::Response, max: u64) {
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32029, "{v}");
    assert_eq!(
        v["error"]["data"]["rule"], "max_streams_per_principal",
        "{v}"
    );
    assert_eq!(v["error"]["data"]["limit"], max, "{v}");
    assert_eq!(v["id"], Value::Null, "{v}");
}

/// Event streams `sub` holds open in the gateway now.
fn open_streams(gw: &Gateway, sub: &str) -> usize {
    let who = portcullis::auth::Principal {
        subject: sub.into(),
        issuer: ISSUER.into(),
        ..Default::default()
    };
    gw.embedded.parts.gateway.streams.open(&who)
}

/// Retry `open` until it is 200 (a closed stream's place comes back once the gateway sees the
/// client go; bounded).
async fn until_open<F, Fut>(mut open: F) -> reqwest::Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = open().await;
        if resp.status() == 200 {
            return resp;
        }
        assert_eq!(resp.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_caller_holds_at_most_max_streams_on_every_front_end_and_gets_places_back() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr, 2)).await;
    let (h1, h2) = (client(), h2c());
    let alice = token("alice", &["User"]);
    let bob = token("bob", &["User"]);

    // One on the front door (HTTP/1.1), one on Pingora's path (h2c): both count.
    let first = get(&h1, &gw, "/mcp/up", &alice, Some("s1")).await;
    assert_eq!(first.status(), 200);
    let second = get(&h2, &gw, "/mcp/up", &alice, Some("s1")).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.version(), reqwest::Version::HTTP_2);
    assert_eq!(up.seen.gets.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A third, on either front end: refused, and the upstream never sees it.
    assert_refused(get(&h1, &gw, "/mcp/up", &alice, Some("s1")).await, 2).await;
    assert_refused(get(&h2, &gw, "/mcp/up", &alice, Some("s2")).await, 2).await;
    assert_eq!(up.seen.gets.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Another caller is not touched; DELETE is not a stream.
    let other = get(&h1, &gw, "/mcp/up", &bob, Some("s3")).await;
    assert_eq!(other.status(), 200);
    let del = h1
        .delete(gw.url("/mcp/up"))
        .header("authorization", format!("Bearer {alice}"))
        .header("mcp-session-id", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);

    // The refusals are counted.
    let metrics = h1
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"portcullis_streams_refused_total{server="up"}"#),
        "{metrics}"
    );

    assert_eq!(open_streams(&gw, "alice"), 2);
    assert_eq!(open_streams(&gw, "bob"), 1);
    // A closed stream (either front end) gives its place back.
    drop(first);
    let third = until_open(|| get(&h1, &gw, "/mcp/up", &alice, Some("s1"))).await;
    drop(second);
    let fourth = until_open(|| get(&h2, &gw, "/mcp/up", &alice, Some("s1"))).await;
    assert_refused(get(&h1, &gw, "/mcp/up", &alice, Some("s1")).await, 2).await;
    drop((third, fourth, other));
}

#[tokio::test]
async fn streams_on_mcp_and_on_a_server_share_one_budget_and_survive_a_lowered_cap() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr, 2)).await;
    let mux = gw
        .store
        .load()
        .upstreams
        .get("a")
        .and_then(|u| u.shared.clone())
        .unwrap();
    assert!(mux.until_ready(Duration::from_secs(20)).await);
    let http = client();
    let alice = token("alice", &["User"]);

    // A session on /mcp.
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
    let resp = http
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {alice}"))
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let merged = get(&http, &gw, "/mcp", &alice, Some(&sid)).await;
    assert_eq!(merged.status(), 200, "the /mcp stream opens");
    let direct = get(&http, &gw, "/mcp/up", &alice, Some("s1")).await;
    assert_eq!(direct.status(), 200);
    let upstream_gets = up.seen.gets.load(std::sync::atomic::Ordering::SeqCst);
    assert_refused(get(&http, &gw, "/mcp", &alice, Some(&sid)).await, 2).await;
    assert_refused(get(&http, &gw, "/mcp/up", &alice, Some("s1")).await, 2).await;
    assert_eq!(
        up.seen.gets.load(std::sync::atomic::Ordering::SeqCst),
        upstream_gets,
        "a refused stream reached the upstream"
    );

    // A reload lowering the cap cuts no open stream and refuses new ones until enough end;
    // the count survives the reload.
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    gw.apply(&text.replace(
        "max_streams_per_principal: 2",
        "max_streams_per_principal: 1",
    ))
    .await;
    assert_eq!(gw.store.load().config.server.max_streams_per_principal, 1);
    drop(direct);
    // Once the gateway saw `direct` go, one stream is still open (the merged one, not cut by
    // the reload): still refused at the new cap of 1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open_streams(&gw, "alice") != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream was never counted out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_refused(get(&http, &gw, "/mcp/up", &alice, Some("s1")).await, 1).await;
    drop(merged);
    let again = until_open(|| get(&http, &gw, "/mcp/up", &alice, Some("s1"))).await;
    drop(again);
}
