//! Headers both ways, credentials, SSE streaming on POST and GET, cancellation, timeouts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use crate::common::{body_of_size, client, config_for, post, Gateway, Upstream};

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[tokio::test]
async fn mcp_headers_pass_both_ways_and_host_is_the_upstreams() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let resp = post(&gw, PING)
        .header("mcp-session-id", "client-session")
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["mcp-session-id"], "upstream-session");
    assert_eq!(h["x-seen-mcp-session-id"], "client-session");
    assert_eq!(h["x-seen-mcp-protocol-version"], "2025-11-25");
    assert_eq!(h["x-seen-last-event-id"], "42");
    let seen = up.last_headers();
    assert_eq!(seen["host"], up.addr.to_string());
}

#[tokio::test]
async fn client_authorization_is_not_forwarded_by_default_and_credentials_are_injected() {
    let up = Upstream::start().await;
    let extra = "      auth:\n        type: header\n        header: x-n8n-key\n        value: \"s3cr$t{x}\"";
    let gw = Gateway::start(&config_for(up.addr, "", extra)).await;
    let resp = post(&gw, PING)
        .header("authorization", "Bearer client-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last_headers();
    assert!(
        seen.get("authorization").is_none(),
        "client token leaked upstream"
    );
    assert_eq!(seen["x-n8n-key"], "s3cr$t{x}");
}

#[tokio::test]
async fn bearer_credentials_replace_the_clients_token() {
    let up = Upstream::start().await;
    let extra = "      auth:\n        type: bearer\n        value: upstream-token";
    let gw = Gateway::start(&config_for(up.addr, "", extra)).await;
    post(&gw, PING)
        .header("authorization", "Bearer client-token")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last_headers()["authorization"], "Bearer upstream-token");
}

#[tokio::test]
async fn forward_authorization_passes_the_clients_token() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(
        up.addr,
        "",
        "      forward_authorization: true",
    ))
    .await;
    post(&gw, PING)
        .header("authorization", "Bearer client-token")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last_headers()["authorization"], "Bearer client-token");
}

#[tokio::test]
async fn get_stream_and_delete_pass_through_with_headers() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let resp = client()
        .get(gw.url("/mcp/up"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "s1")
        .header("last-event-id", "7")
        .header("authorization", "Bearer client-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert_eq!(resp.headers()["x-seen-last-event-id"], "7");
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches("notifications/message").count(), 3);
    let seen = up.last_headers();
    assert!(seen.get("authorization").is_none());
    assert_eq!(seen["host"], up.addr.to_string());

    let resp = client()
        .delete(gw.url("/mcp/up"))
        .header("mcp-session-id", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen.deletes.load(Ordering::SeqCst), 1);
    assert_eq!(up.last_headers()["mcp-session-id"], "s1");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let resp = post(&gw, body_of_size(300))
        .header("x-test-reply", "forever")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    // Read a couple of events, then hang up.
    stream.next().await.unwrap().unwrap();
    stream.next().await.unwrap().unwrap();
    let cancelled = up.seen.cancel_notify.notified();
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), cancelled)
        .await
        .expect("the upstream stream was not cancelled after the client left");
    assert_eq!(up.seen.cancelled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stream_longer_than_the_idle_timeout_survives_while_events_flow() {
    let up = Upstream::start().await;
    // 8 events 100 ms apart = 900 ms total, with a 400 ms idle timeout.
    let gw = Gateway::start(&config_for(up.addr, "", "        timeout: 400ms")).await;
    let resp = post(&gw, body_of_size(300))
        .header("x-test-reply", "sse:8:100")
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches("notifications/progress").count(), 8);
    assert!(
        text.contains("\"sha256\""),
        "the final result is missing: {text}"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_get_the_same_service() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("x-test-reply", "sse:3:50")
        .body(body_of_size(70 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches("notifications/progress").count(), 3);
    assert!(text.contains(&format!("\"len\":{}", 70 * 1024)), "{text}");
}

/// An SSE answer has no Content-Length: it must go out chunked so the client's connection
/// stays open for the next request (a close-delimited body would cost a new connection per
/// call). Two calls on one raw connection prove it.
#[tokio::test]
async fn sse_answers_are_chunked_and_keep_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    for round in 0..2 {
        let req = format!(
            "POST /mcp/up HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nx-test-reply: sse:2:5\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "round {round}: connection closed after {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(!text.contains("connection: close"), "{text}");
    }
    assert_eq!(up.posts(), 2);
}
