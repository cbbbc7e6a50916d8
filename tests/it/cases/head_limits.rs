//! Limits with clear answers, on every front end: request heads (`server.max_header_bytes`,
//! 100 fields: 431), slow heads (`server.header_timeout`: 408, or a silent close for a
//! connection that sent nothing), batches (100 messages: -32600) and nesting (-32700). Nothing
//! refused reaches the upstream.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::raw::{post, Raw};
use crate::common::{client, config_for, Gateway, Upstream};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#;

fn padded(bytes: usize) -> String {
    format!("x-pad: {}\r\n", "a".repeat(bytes))
}

#[tokio::test]
async fn heads_past_the_limit_get_431_on_both_front_ends() {
    let up = Upstream::start().await;
    for fast_path in [true, false] {
        let gw = Gateway::start(&config_for(
            up.addr,
            &format!("  fast_path: {fast_path}\n  max_header_bytes: 16KiB"),
            "",
        ))
        .await;
        let before = up.posts();

        // Under the limit: served.
        let mut raw = Raw::connect(&gw).await;
        raw.send(&post("/mcp/up", &padded(15 * 1024), CALL)).await;
        assert_eq!(raw.answer().await.status, 200, "fast_path {fast_path}");

        // Just past it, complete: 431 with a JSON body naming the key.
        let mut raw = Raw::connect(&gw).await;
        raw.send(&post("/mcp/up", &padded(17 * 1024), CALL)).await;
        let a = raw.answer().await;
        assert_eq!(a.status, 431, "fast_path {fast_path}: {}", a.head);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert!(body.to_string().contains("max_header_bytes"), "{body}");

        // Split over many fields: the total counts.
        let many: String = (0..40)
            .map(|i| format!("x-f{i}: {}\r\n", "b".repeat(500)))
            .collect();
        let mut raw = Raw::connect(&gw).await;
        raw.send(&post("/mcp/up", &many, CALL)).await;
        assert_eq!(raw.answer().await.status, 431, "fast_path {fast_path}");

        // Too many fields, each small: 431 (the front door hands such a head to Pingora,
        // which reads it and asks the same decision).
        let fields: String = (0..101).map(|i| format!("x-f{i}: 1\r\n")).collect();
        let mut raw = Raw::connect(&gw).await;
        raw.send(&post("/mcp/up", &fields, CALL)).await;
        assert_eq!(raw.answer().await.status, 431, "fast_path {fast_path}");

        // A head that never ends: refused once it outgrows the limit, not read to the end.
        let mut raw = Raw::connect(&gw).await;
        let mut endless = b"POST /mcp/up HTTP/1.1\r\nhost: localhost\r\n".to_vec();
        endless.extend_from_slice(padded(20 * 1024).trim_end().as_bytes());
        raw.send(&endless).await;
        let a = raw.answer().await;
        assert_eq!(a.status, 431, "fast_path {fast_path}: {}", a.head);
        // Once the client stops sending, the gateway (draining what was still coming) closes.
        tokio::io::AsyncWriteExt::shutdown(&mut raw.conn)
            .await
            .unwrap();
        assert!(
            raw.closes().await,
            "the connection closes after a refused head"
        );

        // One burst far past every buffer size (1 MiB, the most Pingora itself would read):
        // refused by the limit, never handed over.
        let mut raw = Raw::connect(&gw).await;
        raw.send(&post("/mcp/up", &padded(1 << 20), CALL)).await;
        assert_eq!(raw.answer().await.status, 431, "fast_path {fast_path}");

        // More fields than Pingora's own cap (256).
        let fields: String = (0..300).map(|i| format!("x-f{i}: 1\r\n")).collect();
        let mut raw = Raw::connect(&gw).await;
        raw.send(&post("/mcp/up", &fields, CALL)).await;
        assert_eq!(raw.answer().await.status, 431, "fast_path {fast_path}");

        // A field httparse refuses (a control byte in its name), in a head that never ends:
        // not handed to Pingora's laxer reader, refused at the limit.
        let mut raw = Raw::connect(&gw).await;
        let mut odd = b"POST /mcp/up HTTP/1.1\r\nhost: localhost\r\nx-\x01bad: 1\r\n".to_vec();
        odd.extend_from_slice(padded(20 * 1024).trim_end().as_bytes());
        raw.send(&odd).await;
        assert_eq!(raw.answer().await.status, 431, "fast_path {fast_path}");

        assert_eq!(
            up.posts(),
            before + 1,
            "only the request under the limit went upstream"
        );
    }
}

#[tokio::test]
async fn http2_heads_past_the_limit_get_431() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "  max_header_bytes: 8KiB", "")).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let send = |pad: usize| {
        h2.post(gw.url("/mcp/up"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-pad", "a".repeat(pad))
            .body(CALL)
            .send()
    };
    let ok = send(1000).await.unwrap();
    assert_eq!(ok.version(), reqwest::Version::HTTP_2);
    assert_eq!(ok.status(), 200);
    assert_eq!(send(9000).await.unwrap().status(), 431);
    assert_eq!(up.posts(), 1);
}

#[tokio::test]
async fn slow_heads_are_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "  header_timeout: 300ms", "")).await;

    // A connection that sends nothing is closed silently once the head timeout passes.
    let started = Instant::now();
    let mut idle = Raw::connect(&gw).await;
    assert!(idle.closes().await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // A slowloris head, one byte every 50 ms from the first: cut off (silently: too few bytes
    // to tell HTTP/1.1 from HTTP/2 yet) within the head timeout.
    let started = Instant::now();
    let mut slow = Raw::connect(&gw).await;
    let request = post("/mcp/up", "", CALL);
    for b in request.iter().take(40) {
        if slow.conn.try_write(std::slice::from_ref(b)).is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut peek = [0u8; 1];
        match slow.conn.try_read(&mut peek) {
            Ok(0) => break,
            Ok(n) => slow.buf.extend_from_slice(&peek[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(slow.buf.is_empty() && slow.closes().await);

    // A head that starts well and then trickles: 408, then closed.
    let mut slow = Raw::connect(&gw).await;
    slow.send(&request[..40]).await;
    let started = Instant::now();
    for b in request[40..].iter().take(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut peek = [0u8; 1];
        if matches!(slow.conn.try_read(&mut peek), Ok(n) if n > 0) {
            slow.buf.push(peek[0]);
            break;
        }
        if slow.conn.try_write(std::slice::from_ref(b)).is_err() {
            break;
        }
    }
    let a = slow.answer().await;
    assert_eq!(a.status, 408, "{}", a.head);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(slow.closes().await);

    // A keep-alive connection may idle between requests longer than the head timeout.
    let mut keep = Raw::connect(&gw).await;
    keep.send(&post("/mcp/up", "", CALL)).await;
    assert_eq!(keep.answer().await.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    keep.send(&post("/mcp/up", "", CALL)).await;
    assert_eq!(keep.answer().await.status, 200);
    assert_eq!(up.posts(), 2);
}

#[tokio::test]
async fn batches_are_capped_and_nesting_is_bounded_on_both_front_ends() {
    let up = Upstream::start().await;
    for fast_path in [true, false] {
        let gw = Gateway::start(&config_for(
            up.addr,
            &format!("  fast_path: {fast_path}"),
            "",
        ))
        .await;
        let before = up.posts();
        let batch = |n: usize| {
            let items: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
                .collect();
            format!("[{}]", items.join(","))
        };
        let send = |body: String| {
            client()
                .post(gw.url("/mcp/up"))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body)
                .send()
        };
        assert_eq!(
            send(batch(100)).await.unwrap().status(),
            200,
            "100 messages pass"
        );
        let r = send(batch(101)).await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("100"),
            "{v}"
        );

        // 200 levels of arrays inside params: a parse error, no stack overflow.
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"a":{}{}}}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let r = send(deep).await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32700, "{v}");
        assert_eq!(up.posts(), before + 1, "fast_path {fast_path}");
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "  max_connections: 2", "")).await;
    // Two keep-alive connections, each served once: both open now.
    let mut a = Raw::connect(&gw).await;
    let mut b = Raw::connect(&gw).await;
    for c in [&mut a, &mut b] {
        c.send(&post("/mcp/up", "", CALL)).await;
        assert_eq!(c.answer().await.status, 200);
    }
    // A third is closed without a byte, even one that sends a request.
    let mut third = Raw::connect(&gw).await;
    third.send(&post("/mcp/up", "", CALL)).await;
    assert!(
        third.closes().await,
        "a connection past max_connections was served"
    );
    // The first two still work.
    a.send(&post("/mcp/up", "", CALL)).await;
    assert_eq!(a.answer().await.status, 200);
    // Once one closes, a new connection is served (the count follows closes).
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Raw::connect(&gw).await;
        c.send(&post("/mcp/up", "", CALL)).await;
        // Closed without a byte, or answered (the answer stays buffered).
        if !c.closes().await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection accepted after one closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.posts(), 4);
}
