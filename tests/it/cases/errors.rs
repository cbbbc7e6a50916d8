//! Bad input gets a clear answer and nothing reaches the upstream.

use serde_json::Value;

use crate::common::{client, config_for, post, Gateway, Upstream};

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    (up, gw)
}

async fn expect_rpc_error(resp: reqwest::Response, status: u16, code: i64) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["error"]["code"], code, "{v}");
    v
}

#[tokio::test]
async fn malformed_json_is_400_parse_error() {
    let (up, gw) = setup().await;
    for body in [
        &b"{\"jsonrpc\":\"2.0\","[..],
        b"not json",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"} {}",
    ] {
        let resp = post(&gw, body.to_vec()).send().await.unwrap();
        expect_rpc_error(resp, 400, -32700).await;
    }
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn non_utf8_body_is_400_parse_error() {
    let (up, gw) = setup().await;
    let body = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\xfe\"}}".to_vec();
    let resp = post(&gw, body).send().await.unwrap();
    expect_rpc_error(resp, 400, -32700).await;
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn duplicate_keys_are_rejected() {
    let (up, gw) = setup().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"dangerous"}}"#;
    let resp = post(&gw, body).send().await.unwrap();
    let v = expect_rpc_error(resp, 400, -32600).await;
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("duplicate key `name`"));
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn not_json_rpc_is_invalid_request() {
    let (up, gw) = setup().await;
    let resp = post(&gw, r#"{"hello":"world"}"#).send().await.unwrap();
    expect_rpc_error(resp, 400, -32600).await;
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "text/plain")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    expect_rpc_error(resp, 415, -32600).await;
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn content_type_with_charset_is_accepted() {
    let (up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.posts(), 1);
}

#[tokio::test]
async fn unknown_server_is_404_json() {
    let (up, gw) = setup().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let resp = client()
            .request(method.clone(), gw.url("/mcp/nope"))
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{method}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains("`nope`"), "{v}");
    }
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let (_up, gw) = setup().await;
    let resp = client().get(gw.url("/nothing/here")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let _: Value = resp.json().await.unwrap();
}

#[tokio::test]
async fn other_methods_are_405() {
    let (_up, gw) = setup().await;
    let resp = client().put(gw.url("/mcp/up")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE");
}

/// An address nothing listens on: bind port 0, note it, close it.
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn upstream_down_is_502_naming_the_server_with_the_request_id() {
    let gw = Gateway::start(&config_for(dead_addr().await, "", "")).await;
    let resp = post(&gw, r#"{"jsonrpc":"2.0","id":"abc","method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    let v = expect_rpc_error(resp, 502, -32000).await;
    assert_eq!(v["id"], "abc");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`up`"),
        "{v}"
    );
    assert_eq!(v["error"]["data"]["server"], "up");
}

#[tokio::test]
async fn upstream_down_on_get_is_502_json_not_a_pingora_page() {
    let gw = Gateway::start(&config_for(dead_addr().await, "", "")).await;
    let resp = client()
        .get(gw.url("/mcp/up"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let v = expect_rpc_error(resp, 502, -32000).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`up`"),
        "{v}"
    );
}

#[tokio::test]
async fn slow_upstream_past_timeout_is_504() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "        timeout: 300ms")).await;
    let resp = post(
        &gw,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow"}}"#,
    )
    .header("x-test-reply", "silent:3000")
    .send()
    .await
    .unwrap();
    let v = expect_rpc_error(resp, 504, -32000).await;
    assert_eq!(v["id"], 5);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{v}"
    );
}
