//! Upstream faults, each against a raw TCP upstream scripted here: one that accepts and never
//! answers, one that answers a byte at a time, one that dies in the middle of an SSE stream.
//! The gateway answers every client clearly and within its timeouts, and keeps serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::raw::{post, Raw};
use crate::common::Gateway;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#;

/// A raw upstream: for each connection, read a request head, then run `answer` on the socket.
async fn raw_upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                answer(s).await;
            });
        }
    });
    addr
}

fn config(upstream: SocketAddr, timeout: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
        timeout: {timeout}
"#
    )
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_a_timeout_answer() {
    let up = raw_upstream(|s| async move {
        // Holds the connection open, silent.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let gw = Gateway::start(&config(up, "500ms")).await;
    let started = Instant::now();
    let mut raw = Raw::connect(&gw).await;
    raw.send(&post("/mcp/up", "", CALL)).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 504, "{}", a.head);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let body = String::from_utf8_lossy(&a.body);
    assert!(body.contains("\"error\""), "{body}");
    // The gateway still serves the next request on the same connection.
    raw.send(b"GET /live HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    assert_eq!(raw.answer().await.status, 200);
}

#[tokio::test]
async fn an_upstream_answering_a_byte_at_a_time_is_relayed_whole() {
    const ANSWER: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"slow but whole"}]}}"#;
    let up = raw_upstream(|mut s| async move {
        let whole = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        for b in whole.as_bytes() {
            if s.write_all(std::slice::from_ref(b)).await.is_err() {
                return;
            }
            s.flush().await.ok();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let gw = Gateway::start(&config(up, "5s")).await;
    let mut raw = Raw::connect(&gw).await;
    raw.send(&post("/mcp/up", "", CALL)).await;
    let a = raw.answer().await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(String::from_utf8_lossy(&a.body), ANSWER);
}

#[tokio::test]
async fn an_upstream_dying_mid_stream_ends_the_client_stream_and_the_gateway_serves_on() {
    let up = raw_upstream(|mut s| async move {
        let event = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(chunk.as_bytes()).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Killed: the connection drops with no last chunk and no answer to the call.
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    let gw = Gateway::start(&config(up, "5s")).await;
    let started = Instant::now();
    let mut raw = Raw::connect(&gw).await;
    raw.send(&post("/mcp/up", "", CALL)).await;
    // Read until the gateway ends the stream: a closed connection, or a clean chunked end
    // carrying the event that came.
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), raw.conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                all.extend_from_slice(&buf[..n]);
                if all.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!(
                "the client stream never ended: {}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("notifications/progress"),
        "the event before the failure arrives: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The gateway serves on.
    let mut next = Raw::connect(&gw).await;
    next.send(b"GET /live HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    assert_eq!(next.answer().await.status, 200);
}

/// An upstream answering every request with a `tools/list` result of `items` tools, as JSON or
/// as one SSE event.
async fn big_list_upstream(items: usize, sse: bool) -> SocketAddr {
    raw_upstream(move |mut s| async move {
        let mut body = String::from(r#"{"jsonrpc":"2.0","id":3,"result":{"tools":["#);
        for i in 0..items {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"name":"tool_{i}","description":"{}","inputSchema":{{"type":"object"}}}}"#,
                "x".repeat(200)
            ));
        }
        body.push_str("]}}");
        let (ctype, payload) = if sse {
            (
                "text/event-stream",
                format!("event: message\ndata: {body}\n\n"),
            )
        } else {
            ("application/json", body)
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(payload.as_bytes()).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await
}

/// Authentication on (list answers are filtered per caller), one upstream `up`.
fn filtered_config(upstream: SocketAddr) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
{oauth}auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "up:*": ["scope:user"]
proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
        timeout: 10s
"#,
        oauth = crate::common::jwt::oauth_section()
    )
}

async fn list(gw: &Gateway) -> reqwest::Response {
    const LIST: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    crate::common::client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "authorization",
            format!("Bearer {}", crate::common::jwt::token("alice", &["User"])),
        )
        .body(LIST)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_list_answer_too_large_to_filter_gets_a_clean_json_rpc_error() {
    // About 20 MiB of tools: past the 16 MiB the gateway holds to filter.
    for sse in [false, true] {
        let up = big_list_upstream(90_000, sse).await;
        let gw = Gateway::start(&filtered_config(up)).await;
        let r = list(&gw).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            text.len() < 4096,
            "sse {sse}: the oversized list went through ({} bytes)",
            text.len()
        );
        let json = if sse {
            assert_eq!(status, 200);
            let data = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no event: {text}"));
            data.to_owned()
        } else {
            assert_eq!(status, 502, "{text}");
            text
        };
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["id"], 3, "{v}");
        assert_eq!(v["error"]["code"], -32603, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("16 MiB"),
            "{v}"
        );
    }
    // Small lists are filtered and relayed as before.
    let up = big_list_upstream(3, false).await;
    let gw = Gateway::start(&filtered_config(up)).await;
    let r = list(&gw).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("tool_2"));
}
