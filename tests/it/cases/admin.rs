//! `/live`, `/ready`, `/metrics`, `/status`.

use serde_json::Value;

use crate::common::{client, config_for, post, Gateway, Upstream};

#[tokio::test]
async fn live_is_always_200() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let resp = client().get(gw.url("/live")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn ready_waits_for_a_reachable_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    // The gateway's prober runs at start; a probe round here makes the result certain.
    gw.health.probe(&gw.store, None).await;
    let resp = client().get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["upstreams"]["up"]["reachable"], true);
}

#[tokio::test]
async fn ready_is_503_when_no_upstream_answers() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(&config_for(dead, "", "")).await;
    gw.health.probe(&gw.store, None).await;
    let resp = client().get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["upstreams"]["up"]["reachable"], false);
}

#[tokio::test]
async fn metrics_expose_requests_reloads_and_streams() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    post(&gw, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "portcullis_requests_total{method=\"POST\",route=\"mcp_server\",status=\"200\"}",
        "portcullis_request_duration_seconds_bucket",
        "portcullis_config_reloads_total{result=\"success\"}",
        "portcullis_config_info{hash=",
        "portcullis_sse_streams_open",
        "portcullis_upstream_request_duration_seconds_bucket{server=\"up\"",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
}

#[tokio::test]
async fn status_lists_upstreams_and_the_config() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let v: Value = client()
        .get(gw.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["upstreams"][0]["name"], "up");
    assert_eq!(v["upstreams"][0]["transport"], "streamable-http");
    assert_eq!(v["config"]["hash"].as_str().unwrap().len(), 64);
}
