//! Request smuggling and framing attacks on the front door and Pingora's path: whatever a client
//! sends, the gateway and the upstream never disagree on where a request ends (the gateway
//! re-frames every body it forwards), ambiguous framing is refused and the connection closed,
//! and nothing hidden in a body reaches the upstream as a request of its own.

use crate::common::raw::Raw;
use crate::common::{config_for, Gateway, Upstream};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#;
const SMUGGLED: &str =
    r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"smuggled"}}"#;

/// A complete second request, as bytes hidden in a first one's body.
fn hidden() -> String {
    format!(
        "POST /mcp/up HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    )
}

/// True when some request the upstream received carried the smuggled call.
fn upstream_saw_smuggled(up: &Upstream) -> bool {
    up.seen
        .last_body
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|b| String::from_utf8_lossy(b).contains("smuggled"))
}

const HEAD: &str =
    "POST /mcp/up HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n";

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let up = Upstream::start().await;
    for fast_path in [true, false] {
        let gw = Gateway::start(&config_for(
            up.addr,
            &format!("  fast_path: {fast_path}"),
            "",
        ))
        .await;
        // CL.TE: by Content-Length the body hides a second request; by chunked it is empty.
        let body = format!("0\r\n\r\n{}", hidden());
        for te in ["chunked", "Chunked", " chunked", "chunked, identity"] {
            let mut raw = Raw::connect(&gw).await;
            raw.send(
                format!(
                    "{HEAD}content-length: {}\r\ntransfer-encoding: {te}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
            let a = raw.answer().await;
            assert_eq!(
                a.status, 400,
                "fast_path {fast_path}, TE `{te}`: {}",
                a.head
            );
            assert!(
                raw.closes().await,
                "the connection closes after ambiguous framing"
            );
        }
        assert_eq!(up.posts(), 0, "fast_path {fast_path}");
    }
}

#[tokio::test]
async fn conflicting_or_malformed_lengths_are_refused() {
    let up = Upstream::start().await;
    for fast_path in [true, false] {
        let gw = Gateway::start(&config_for(
            up.addr,
            &format!("  fast_path: {fast_path}"),
            "",
        ))
        .await;
        let cases = [
            format!("content-length: {}\r\ncontent-length: 5\r\n", CALL.len()),
            format!("content-length: {}, 5\r\n", CALL.len()),
            format!("content-length: +{}\r\n", CALL.len()),
            "transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n".to_string(),
            "transfer-encoding: gzip, chunked\r\n".to_string(),
        ];
        for extra in cases {
            let mut raw = Raw::connect(&gw).await;
            raw.send(format!("{HEAD}{extra}\r\n{CALL}{}", hidden()).as_bytes())
                .await;
            let a = raw.answer().await;
            assert!(
                a.status == 400 || a.status == 501,
                "fast_path {fast_path}, `{}`: {}",
                extra.trim(),
                a.head
            );
        }
        // A bad chunk size.
        let mut raw = Raw::connect(&gw).await;
        raw.send(
            format!("{HEAD}transfer-encoding: chunked\r\n\r\nzz\r\n{CALL}\r\n0\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(raw.answer().await.status, 400, "fast_path {fast_path}");
        assert!(!upstream_saw_smuggled(&up));
        assert_eq!(up.posts(), 0, "fast_path {fast_path}");
    }
}

#[tokio::test]
async fn obsolete_line_folding_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    for folded in [
        "x-a: 1\r\n  folded\r\n",
        "authorization: Bearer a\r\n\tb\r\n",
        "content-length:\r\n 71\r\n",
    ] {
        let mut raw = Raw::connect(&gw).await;
        raw.send(format!("{HEAD}{folded}content-length: {}\r\n\r\n{CALL}", CALL.len()).as_bytes())
            .await;
        let a = raw.answer().await;
        assert_eq!(a.status, 400, "`{}`: {}", folded.escape_debug(), a.head);
    }
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn a_body_longer_than_its_length_is_a_next_request_decided_on_its_own() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    // The extra bytes after a Content-Length body are a pipelined request: answered in order,
    // each decided by itself, each forwarded with its own framing.
    let mut raw = Raw::connect(&gw).await;
    raw.send(
        format!(
            "{HEAD}content-length: {}\r\n\r\n{CALL}{}",
            CALL.len(),
            hidden()
        )
        .as_bytes(),
    )
    .await;
    let first = raw.answer().await;
    assert_eq!(first.status, 200);
    let second = raw.answer().await;
    assert_eq!(second.status, 200);
    assert_eq!(up.posts(), 2);
    let last = up.seen.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(
        &last[..],
        SMUGGLED.as_bytes(),
        "the upstream got exactly the second body"
    );
}

#[tokio::test]
async fn bare_lf_heads_are_read_like_crlf_ones() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let mut raw = Raw::connect(&gw).await;
    let head = HEAD.replace("\r\n", "\n");
    raw.send(format!("{head}content-length: {}\n\n{CALL}", CALL.len()).as_bytes())
        .await;
    let a = raw.answer().await;
    // Bare LF line ends are read as httparse and Pingora read them (RFC 9112 allows a
    // recipient to): served, with the framing the gateway sends upstream.
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(up.posts(), 1);
    let last = up.seen.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(&last[..], CALL.as_bytes());
    assert!(
        !up.seen
            .last_headers
            .lock()
            .unwrap()
            .clone()
            .unwrap()
            .contains_key("transfer-encoding"),
        "the upstream got the gateway's own framing"
    );
}
