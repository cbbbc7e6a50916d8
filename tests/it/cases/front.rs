//! The front door (`src/http/front`): requests it serves and requests it hands to Pingora share
//! connections. Raw TCP clients here, so that keep-alive, pipelining and framing are seen as
//! sent.

use crate::common::raw::{post, Raw};
use crate::common::{config_for, Gateway, Upstream};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#;

/// Requests the front door serves and requests Pingora serves alternate on one keep-alive
/// connection, in both directions of the hand-over, and each gets its own answer.
#[tokio::test]
async fn one_connection_mixes_hot_and_handed_over_requests() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;

    raw.send(&post("/mcp/up", "", CALL)).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(String::from_utf8_lossy(&a.body).contains(&format!("\"len\":{}", CALL.len())));
    assert_eq!(gw.served(), (1, 0));

    raw.send(b"GET /live HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    assert_eq!(raw.answer().await.status, 200);
    assert_eq!(gw.served(), (2, 0));

    // Malformed JSON: answered by the front door, which read it.
    raw.send(&post("/mcp/up", "", "{\"jsonrpc\":")).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).contains("-32700"));

    // A chunked request body: only Pingora reads those.
    let chunked = format!(
        "POST /mcp/up HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{CALL}\r\n0\r\n\r\n",
        CALL.len()
    );
    raw.send(chunked.as_bytes()).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(String::from_utf8_lossy(&a.body).contains(&format!("\"len\":{}", CALL.len())));
    assert_eq!(gw.served(), (3, 1));

    // Back on the front door: an SSE answer, then a JSON one: the connection is still good.
    raw.send(&post("/mcp/up", "x-test-reply: sse:2:5\r\n", CALL))
        .await;
    let a = raw.answer().await;
    assert!(a.head.contains("transfer-encoding: chunked"), "{}", a.head);
    assert!(a.head.contains("x-accel-buffering: no"), "{}", a.head);
    let text = String::from_utf8_lossy(&a.body);
    assert_eq!(text.matches("notifications/progress").count(), 2, "{text}");

    // An empty answer (202, Content-Length: 0) keeps the connection too.
    raw.send(&post("/mcp/up", "x-test-reply: status:202\r\n", CALL))
        .await;
    let a = raw.answer().await;
    assert_eq!(a.status, 202, "{}", a.head);
    assert!(a.body.is_empty());

    raw.send(&post("/mcp/up", "", CALL)).await;
    assert_eq!(raw.answer().await.status, 200);
    // Both front ends forward with the same client and pool: one upstream connection.
    assert_eq!(up.post_connections(), 1);

    // An unknown server is answered before its body is read, so the connection closes after
    // the answer (the next request's start is not known).
    raw.send(&post("/mcp/nope", "", CALL)).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 404);
    assert!(a.head.contains("connection: close"), "{}", a.head);
    assert!(raw.closes().await);
    // The malformed body and the unknown server never reached the upstream.
    assert_eq!(up.posts(), 5);
    // Pingora: the chunked upload only.
    assert_eq!(gw.served(), (7, 1));
}

/// Requests written back to back before any answer (HTTP/1.1 pipelining) are answered in
/// order, each with its own body.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    let second = format!("{CALL}   ");
    let mut both = post("/mcp/up", "x-test-reply: silent:50\r\n", CALL);
    both.extend_from_slice(&post("/mcp/up", "", &second));
    raw.send(&both).await;
    let a = raw.answer().await;
    let b = raw.answer().await;
    assert!(String::from_utf8_lossy(&a.body).contains(&format!("\"len\":{}", CALL.len())));
    assert!(String::from_utf8_lossy(&b.body).contains(&format!("\"len\":{}", second.len())));
    assert_eq!(up.posts(), 2);
    assert_eq!(gw.served(), (2, 0));

    // A request Pingora serves (HTTP/1.0, kept alive), pipelined with one the front door
    // serves: Pingora gets exactly the first one's bytes, the second waits and comes back.
    let third = format!("{CALL}  ");
    let mut both = String::from_utf8(post("/mcp/up", "connection: keep-alive\r\n", CALL))
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1)
        .into_bytes();
    both.extend_from_slice(&post("/mcp/up", "", &third));
    raw.send(&both).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 200, "{}", a.head);
    let b = raw.answer().await;
    assert!(String::from_utf8_lossy(&b.body).contains(&format!("\"len\":{}", third.len())));
    assert_eq!(gw.served(), (3, 1));
}

/// A request that arrives while the previous answer is still streaming (the client pipelines)
/// waits in the buffer and is answered after it, on the same connection.
#[tokio::test]
async fn a_request_arriving_during_a_streamed_answer_is_kept_for_after_it() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    raw.send(&post("/mcp/up", "x-test-reply: sse:3:60\r\n", CALL))
        .await;
    // Wait for the first progress event: the answer is being relayed now.
    while !String::from_utf8_lossy(&raw.buf).contains("notifications/progress") {
        assert!(raw.more().await, "closed before the first event");
    }
    let second = format!("{CALL} ");
    raw.send(&post("/mcp/up", "", &second)).await;
    let a = raw.answer().await;
    let text = String::from_utf8_lossy(&a.body);
    assert_eq!(text.matches("notifications/progress").count(), 3, "{text}");
    let b = raw.answer().await;
    assert_eq!(b.status, 200);
    assert!(String::from_utf8_lossy(&b.body).contains(&format!("\"len\":{}", second.len())));
    assert_eq!(gw.served(), (2, 0));
}

/// Several hot-path calls on one client connection reuse one upstream connection.
#[tokio::test]
async fn hot_path_calls_reuse_the_pooled_upstream_connection() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    for _ in 0..5 {
        raw.send(&post("/mcp/up", "", CALL)).await;
        assert_eq!(raw.answer().await.status, 200);
    }
    assert_eq!(up.posts(), 5);
    assert_eq!(up.post_connections(), 1);
}

/// What the hot path forwards is what the Pingora path forwards: the upstream's path and
/// `Host`, the query kept, hop-by-hop headers and the client's `Authorization` dropped,
/// configured credentials injected, MCP headers passed both ways.
#[tokio::test]
async fn the_hot_path_rewrites_the_request_like_the_pingora_path() {
    let up = Upstream::start().await;
    let upstream_auth =
        "      auth:\n        type: header\n        header: X-Api-Key\n        value: s3cret\n";
    let gw = Gateway::start(&config_for(up.addr, "", upstream_auth)).await;
    let mut raw = Raw::connect(&gw).await;
    let extra = "mcp-session-id: abc\r\nmcp-protocol-version: 2025-11-25\r\nauthorization: Bearer client-token\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\nx-api-key: forged\r\naccept-encoding: gzip\r\n";
    raw.send(&post("/mcp/up?debug=1", extra, CALL)).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 200, "{}", a.head);
    let seen = up.last_headers();
    assert_eq!(seen["host"], up.addr.to_string());
    assert_eq!(seen["mcp-session-id"], "abc");
    assert_eq!(seen["mcp-protocol-version"], "2025-11-25");
    assert_eq!(seen["x-api-key"], "s3cret");
    assert_eq!(seen.get_all("x-api-key").iter().count(), 1);
    for dropped in [
        "authorization",
        "x-hop",
        "keep-alive",
        "accept-encoding",
        "connection",
    ] {
        assert!(seen.get(dropped).is_none(), "{dropped} was forwarded");
    }
    assert_eq!(seen["content-length"], CALL.len().to_string());
    assert_eq!(up.last_query().as_deref(), Some("debug=1"));
    assert_eq!(gw.served(), (1, 0), "the hot path served it");
}

/// `Connection: close` from the client is honoured on the hot path.
#[tokio::test]
async fn connection_close_ends_the_connection_after_the_answer() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    raw.send(&post("/mcp/up", "connection: close\r\n", CALL))
        .await;
    let a = raw.answer().await;
    assert_eq!(a.status, 200);
    assert!(a.head.contains("connection: close"), "{}", a.head);
    assert!(raw.closes().await);
}

/// An idle keep-alive connection is closed when the server stops.
#[tokio::test]
async fn idle_connections_close_when_the_server_stops() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    raw.send(&post("/mcp/up", "", CALL)).await;
    assert_eq!(raw.answer().await.status, 200);
    drop(gw); // signals shutdown
    assert!(raw.closes().await);
}

/// A body read whole and then refused (duplicate keys) is answered on the connection, which
/// stays usable: small and large bodies alike (the front door reads bodies up to
/// `max_body_bytes`).
#[tokio::test]
async fn refused_bodies_are_answered_and_the_connection_kept() {
    for size in [256 * 1024 - 100, 1024 * 1024] {
        refused_body_of(size).await;
    }
}

async fn refused_body_of(size: usize) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    let pad = "x".repeat(size - 80);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{{"name":"echo","pad":"{pad}"}}}}"#
    );
    raw.send(&post("/mcp/up", "", &body)).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 400, "{}", a.head);
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("duplicate key `id`"), "{text}");
    // The connection is still usable for the hot path.
    raw.send(&post("/mcp/up", "", CALL)).await;
    assert_eq!(raw.answer().await.status, 200);
    assert_eq!(up.posts(), 1);
    assert_eq!(gw.served(), (2, 0));
}
