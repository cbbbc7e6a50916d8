//! Adversarial regression tests for the deny-by-default rules: every shape of a message the
//! policy covers is decided (never forwarded undecided), a request reaches an upstream at most
//! once, and the `Origin` and `Host` checks fail closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::authn::{config as authn_config, token};
use crate::common::{client, config_for, Gateway, Upstream};

/// POST `body` to `/mcp/up` with a `User` token (when `bearer`), return status and JSON body.
async fn post_raw(gw: &Gateway, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Bodies addressing a denied tool, prompt or resource in shapes other than a plain request.
const COVERED_SHAPES: &[(&str, &str, i64)] = &[
    // A notification (no id): JSON-RPC would give it no answer, so it is an invalid request.
    (
        "tools/call notification",
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_everything","arguments":{}}}"#,
        -32600,
    ),
    (
        "prompts/get notification",
        r#"{"jsonrpc":"2.0","method":"prompts/get","params":{"name":"secret"}}"#,
        -32600,
    ),
    (
        "resources/read notification",
        r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///etc/shadow"}}"#,
        -32600,
    ),
    (
        "resources/subscribe notification",
        r#"{"jsonrpc":"2.0","method":"resources/subscribe","params":{"uri":"file:///etc/shadow"}}"#,
        -32600,
    ),
    (
        "escaped method, notification",
        r#"{"jsonrpc":"2.0","method":"tools\/call","params":{"name":"delete_everything"}}"#,
        -32600,
    ),
    // Params that name nothing the policy could decide on.
    (
        "params missing",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        -32602,
    ),
    (
        "params as an array",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["delete_everything",{}]}"#,
        -32602,
    ),
    (
        "name is a number",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
        -32602,
    ),
    (
        "name is null",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
        -32602,
    ),
    (
        "name is an object",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"0":"delete_everything"}}}"#,
        -32602,
    ),
    (
        "name missing",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
        -32602,
    ),
    (
        "uri is a number",
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":1}}"#,
        -32602,
    ),
    (
        "uri missing on subscribe",
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}"#,
        -32602,
    ),
    (
        "prompt name is an array",
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":["secret"]}}"#,
        -32602,
    ),
    // Inside a batch, each of the above is just as undecidable.
    (
        "batched notification",
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_everything"}}]"#,
        -32600,
    ),
    (
        "batched request without params",
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call"}]"#,
        -32602,
    ),
];

async fn assert_refused_whole(gw: &Gateway, up: &Upstream, bearer: Option<&str>) {
    for (what, body, code) in COVERED_SHAPES {
        let (status, v) = post_raw(gw, bearer, body).await;
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["error"]["code"], *code, "{what}: {v}");
        assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
    }
    assert_eq!(up.posts(), 0, "an undecided message reached the upstream");
}

#[tokio::test]
async fn covered_methods_in_any_shape_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&authn_config(up.addr)).await;
    let user = token(&["User"], 600);
    assert_refused_whole(&gw, &up, Some(&user)).await;
    // The plain request is still decided as before: the User may call `echo` only.
    let (status, v) = post_raw(
        &gw,
        Some(&user),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(up.posts(), 1);
}

#[tokio::test]
async fn malformed_covered_messages_are_refused_with_authentication_off_too() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    assert_refused_whole(&gw, &up, None).await;
}

/// A plain-TCP upstream: answers its first request on a connection (keep-alive), then, for
/// every later request on that connection, reads it whole, counts it, and closes without an
/// answer. Counts every request it reads.
async fn answer_once_then_hang_up() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut served = 0;
                let mut buf = Vec::new();
                loop {
                    // Read one request: head, then Content-Length bytes.
                    let (head_end, len) = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map(|v| v.trim().parse::<usize>().unwrap())
                                .unwrap_or(0);
                            break (p + 4, len);
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    counter.fetch_add(1, Ordering::SeqCst);
                    served += 1;
                    if served > 1 {
                        return; // read, counted, closed without answering
                    }
                    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_call_the_upstream_read_is_never_sent_again() {
    let (addr, seen) = answer_once_then_hang_up().await;
    let gw = Gateway::start(&config_for(addr, "", "")).await;
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"charge_card","arguments":{}}}"#;
    let (status, _) = post_raw(&gw, None, call).await;
    assert_eq!(status, 200);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // The second call goes out on the pooled connection; the upstream reads it and hangs up.
    let (status, v) = post_raw(&gw, None, call).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["id"], 9, "{v}");
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`up`"),
        "names the server: {v}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the upstream received the second call more than once"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used() {
    // The upstream closes every connection after its first answer (like a server whose
    // keep-alive timeout ran out while the connection idled in the pool).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                // Keep-alive, then the server times the idle connection out.
                drop(s);
                let _ = closed_tx.send(());
            });
        }
    });
    let gw = Gateway::start(&config_for(addr, "", "")).await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
    for round in 1..=3 {
        let (status, v) = post_raw(&gw, None, call).await;
        assert_eq!(status, 200, "round {round}: {v}");
        closed_rx.recv().await.unwrap();
        // Let the FIN reach the gateway's side of the pooled connection.
        tokio::task::yield_now().await;
    }
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn origin_that_is_not_utf8_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let origin = reqwest::header::HeaderValue::from_bytes(b"http://\xffevil.example").unwrap();
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("origin", origin)
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_mcp_endpoints() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(
        up.addr,
        "  url: \"https://mcp.example.com\"",
        "",
    ))
    .await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for host in [
        "evil.example",
        "mcp.example.com.evil.example",
        "127.0.0.1.evil.example",
    ] {
        let resp = client()
            .post(gw.url("/mcp/up"))
            .header("content-type", "application/json")
            .header("host", host)
            .body(ping)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "Host: {host}");
    }
    assert_eq!(up.posts(), 0);
    for host in [
        "mcp.example.com",
        "MCP.example.com:443",
        "localhost",
        "localhost:8080",
        "127.0.0.1",
        "[::1]:9",
    ] {
        let resp = client()
            .post(gw.url("/mcp/up"))
            .header("content-type", "application/json")
            .header("host", host)
            .body(ping)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "Host: {host}");
    }
}

/// RFC 6750's query form of a token is refused on every path and front end, whatever the
/// name's spelling; nothing reaches the upstream (the query would be forwarded with it).
#[tokio::test]
async fn a_token_in_the_query_string_is_refused() {
    for fast_path in [true, false] {
        let up = Upstream::start().await;
        let gw = Gateway::start(&config_for(
            up.addr,
            &format!("  fast_path: {fast_path}"),
            "",
        ))
        .await;
        for target in [
            "/mcp/up?access_token=abc",
            "/mcp/up?x=1&ACCESS_TOKEN=abc",
            "/mcp/up?access%5Ftoken=abc",
            "/mcp?access_token=abc",
            "/status?access_token=abc",
            "/.well-known/oauth-protected-resource/mcp?access_token=abc",
            "/nowhere?access_token=abc",
        ] {
            let resp = client()
                .post(gw.url(target))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "{target} (fast_path {fast_path})");
            let text = resp.text().await.unwrap();
            assert!(text.contains("query string"), "{text}");
        }
        assert_eq!(up.posts(), 0);
    }
}

#[tokio::test]
async fn a_tool_name_is_decided_as_the_upstream_will_read_it() {
    // The User may call `echo` only. Names that look like it but are not it are denied; a name
    // that is `echo` once its escapes are read is allowed, and the upstream reads `echo`.
    let up = Upstream::start().await;
    let gw = Gateway::start(&authn_config(up.addr)).await;
    let user = token(&["User"], 600);
    let variants = [
        (r#""Echo""#, false),
        (r#""ECHO""#, false),
        (r#""echo ""#, false),
        (r#"" echo""#, false),
        (r#""echo\u0000""#, false),
        (r#""echo\n""#, false),
        (r#""\u0435cho""#, false),  // Cyrillic е
        (r#""echo\u200b""#, false), // zero-width space
        (r#""ｅcho""#, false),      // fullwidth e
        (r#""up__echo""#, false),
        (r#""up:echo""#, false),
        (r#""ech\u006f""#, true),
        (r#""\u0065cho""#, true),
    ];
    for (name, allowed) in variants {
        let before = up.posts();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{name},"arguments":{{}}}}}}"#
        );
        let (status, v) = post_raw(&gw, Some(&user), &body).await;
        if allowed {
            assert_eq!(status, 200, "{name}: {v}");
            assert_eq!(up.posts(), before + 1, "{name}");
            let seen = up.seen.last_body.lock().unwrap().clone().unwrap();
            let parsed: Value = serde_json::from_slice(&seen).unwrap();
            assert_eq!(
                parsed["params"]["name"], "echo",
                "{name}: the upstream reads what was decided"
            );
        } else {
            assert!(
                v["error"].is_object(),
                "{name} was not denied: {status} {v}"
            );
            assert_eq!(up.posts(), before, "{name} reached the upstream");
        }
    }
}
