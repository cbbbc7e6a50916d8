//! The pre-read body mechanism at Pingora's 64 KiB replay boundary and at the configured cap,
//! with JSON and SSE answers, Content-Length and chunked uploads.

use futures_util::StreamExt;
use serde_json::Value;

use crate::common::{body_of_size, config_for, post, sha256, Gateway, Upstream};

const KIB: usize = 1024;
const MAX: usize = 2 * 1024 * 1024;

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(
        up.addr,
        &format!("  max_body_bytes: {MAX}"),
        "",
    ))
    .await;
    (up, gw)
}

/// The upstream got exactly the bytes sent, and the client got the upstream's answer.
async fn assert_round_trip(size: usize, sse: bool, chunked: bool) {
    let (up, gw) = setup().await;
    let body = body_of_size(size);
    let mut req = if chunked {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(7919).map(|c| Ok(c.to_vec())).collect();
        post(
            &gw,
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
    } else {
        post(&gw, body.clone())
    };
    if sse {
        req = req.header("x-test-reply", "sse:2:1");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "size {size}");
    let text = resp.text().await.unwrap();
    let result_line = if sse {
        assert!(text.contains("notifications/progress"), "{text}");
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap()
            .to_string()
    } else {
        text
    };
    let v: Value = serde_json::from_str(&result_line).unwrap();
    assert_eq!(v["result"]["len"], size, "size {size}");
    assert_eq!(v["result"]["sha256"], sha256(&body), "size {size}");
    assert_eq!(up.posts(), 1);
    let h = up.last_headers();
    assert_eq!(h.get("content-length").unwrap(), &size.to_string());
    assert!(h.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn just_under_64k_json() {
    assert_round_trip(64 * KIB - 1, false, false).await;
}

#[tokio::test]
async fn exactly_64k_json() {
    assert_round_trip(64 * KIB, false, false).await;
}

#[tokio::test]
async fn just_over_64k_json() {
    assert_round_trip(64 * KIB + 1, false, false).await;
}

#[tokio::test]
async fn one_mib_json() {
    assert_round_trip(1024 * KIB, false, false).await;
}

#[tokio::test]
async fn exactly_max_json() {
    assert_round_trip(MAX, false, false).await;
}

#[tokio::test]
async fn just_under_64k_sse() {
    assert_round_trip(64 * KIB - 1, true, false).await;
}

#[tokio::test]
async fn exactly_64k_sse() {
    assert_round_trip(64 * KIB, true, false).await;
}

#[tokio::test]
async fn just_over_64k_sse() {
    assert_round_trip(64 * KIB + 1, true, false).await;
}

#[tokio::test]
async fn one_mib_sse() {
    assert_round_trip(1024 * KIB, true, false).await;
}

#[tokio::test]
async fn exactly_max_sse() {
    assert_round_trip(MAX, true, false).await;
}

#[tokio::test]
async fn chunked_upload_over_64k_is_forwarded_with_exact_length() {
    assert_round_trip(64 * KIB + 1, false, true).await;
    assert_round_trip(1024 * KIB, true, true).await;
}

#[tokio::test]
async fn small_body_json() {
    assert_round_trip(100, false, false).await;
}

#[tokio::test]
async fn empty_body_is_a_parse_error_and_never_forwarded() {
    let (up, gw) = setup().await;
    let resp = post(&gw, Vec::new()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    assert_eq!(up.posts(), 0);
}

/// Send raw bytes and read the whole answer (the gateway closes after a 413).
async fn raw_exchange(gw: &Gateway, head: String, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        // Done sending: the gateway's lingering drain sees EOF and closes at once.
        let _ = wr.shutdown().await;
    });
    let mut out = Vec::new();
    let _ = rd.read_to_end(&mut out).await;
    drop(writer.await);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn max_plus_one_declared_is_413_without_reading() {
    let (up, gw) = setup().await;
    let head = format!(
        "POST /mcp/up HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MAX + 1
    );
    // No body is sent at all: the answer must come from the declared length alone.
    let answer = raw_exchange(&gw, head, Vec::new()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":-32600"), "{answer}");
    assert!(answer.contains("limit"), "{answer}");
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn max_plus_one_chunked_is_413() {
    let (up, gw) = setup().await;
    let head = "POST /mcp/up HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
    let body = body_of_size(MAX + 1);
    let mut framed = Vec::new();
    for c in body.chunks(64 * KIB) {
        framed.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        framed.extend_from_slice(c);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&gw, head, framed).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn sse_answer_streams_event_by_event() {
    let (_up, gw) = setup().await;
    let resp = post(&gw, body_of_size(200))
        .header("x-test-reply", "sse:4:150")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let start = std::time::Instant::now();
    let mut arrivals = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            buf.drain(..end + 2);
            arrivals.push(start.elapsed());
        }
    }
    assert_eq!(arrivals.len(), 5);
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap.as_millis() >= 80, "events were buffered: {arrivals:?}");
    }
}

#[tokio::test]
async fn a_client_still_writing_an_oversized_body_reads_the_413() {
    let (up, gw) = setup().await;
    for _ in 0..5 {
        let resp = post(&gw, body_of_size(MAX + 512 * KIB))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32600);
    }
    assert_eq!(up.posts(), 0);
}
