//! The differential matrix: the same cases (errors, authentication, bodies, streaming, policy)
//! run over every way a request reaches the gateway: the front door (HTTP/1.1), a forced
//! hand-over (`server.fast_path: false`: Pingora's path, HTTP/1.1) and HTTP/2 with prior
//! knowledge (h2c: Pingora's path). Each case must get the same answer on every way, and the
//! upstream must see the same bytes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::authn::{config as authn_config, token};
use crate::common::{body_of_size, sha256, Gateway, Upstream};

/// How a request reaches the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// HTTP/1.1, served by the front door.
    Front,
    /// HTTP/1.1 with `server.fast_path: false`: every request through Pingora.
    HandOver,
    /// HTTP/2 with prior knowledge: Pingora's HTTP/2 server.
    H2c,
}

const WAYS: [Way; 3] = [Way::Front, Way::HandOver, Way::H2c];

/// One way, with its own upstream and gateway.
struct Lane {
    way: Way,
    up: Upstream,
    gw: Gateway,
    client: reqwest::Client,
}

/// A gateway config for `up` on `way`: `base` is a config written for `up` (`server:` first).
fn for_way(base: &str, way: Way) -> String {
    match way {
        Way::HandOver => base.replacen("server:\n", "server:\n  fast_path: false\n", 1),
        Way::Front | Way::H2c => base.to_string(),
    }
}

async fn lanes(config: impl Fn(std::net::SocketAddr) -> String) -> Vec<Lane> {
    let mut out = Vec::new();
    for way in WAYS {
        let up = Upstream::start().await;
        let gw = Gateway::start(&for_way(&config(up.addr), way)).await;
        let client = match way {
            Way::H2c => reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap(),
            _ => reqwest::Client::builder().http1_only().build().unwrap(),
        };
        out.push(Lane {
            way,
            up,
            gw,
            client,
        });
    }
    out
}

/// What a client got and what the upstream saw, with what varies by transport left out.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
    upstream_posts: usize,
    upstream_body: Option<String>,
    upstream_headers: BTreeMap<String, String>,
}

/// Answer headers compared (framing, `date` and `server` differ by transport).
const ANSWER_HEADERS: &[&str] = &[
    "content-type",
    "cache-control",
    "www-authenticate",
    "allow",
    "mcp-session-id",
    "x-accel-buffering",
    "x-seen-mcp-session-id",
];

/// Upstream request headers compared (the `traceparent` value is per request: its shape is).
const UPSTREAM_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "authorization",
    "mcp-session-id",
    "x-test-reply",
    "connection",
    "transfer-encoding",
];

async fn observe(lane: &Lane, req: reqwest::RequestBuilder) -> Seen {
    let before = lane.up.posts();
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = ANSWER_HEADERS
        .iter()
        .filter_map(|h| {
            let v = resp.headers().get(*h)?;
            Some((h.to_string(), v.to_str().unwrap_or("<bytes>").to_string()))
        })
        .collect();
    let body = resp.text().await.unwrap_or_default();
    let posts = lane.up.posts() - before;
    let (upstream_body, upstream_headers) = if posts > 0 {
        let seen = lane.up.last_headers();
        let mut h: BTreeMap<String, String> = UPSTREAM_HEADERS
            .iter()
            .filter_map(|n| Some((n.to_string(), seen.get(*n)?.to_str().ok()?.to_string())))
            .collect();
        let tp = seen
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let shape_ok = tp.len() == 55 && tp.starts_with("00-") && tp.split('-').count() == 4;
        h.insert("traceparent-shape".into(), shape_ok.to_string());
        // Each lane has its own upstream: what matters is that `Host` is the upstream's.
        if let Some(host) = h.get_mut("host") {
            *host = (*host == lane.up.addr.to_string()).to_string();
        }
        let last = lane.up.seen.last_body.lock().unwrap().clone().unwrap();
        (Some(sha256(&last)), h)
    } else {
        (None, BTreeMap::new())
    };
    Seen {
        status,
        headers,
        body,
        upstream_posts: posts,
        upstream_body,
        upstream_headers,
    }
}

/// A request to `path` of a lane's gateway.
type Build = dyn Fn(&Lane, &str) -> reqwest::RequestBuilder;

/// Run every case on every lane; each case must be seen alike on all of them.
async fn run(lanes: &[Lane], cases: &[(&str, Box<Build>)]) {
    for (name, build) in cases {
        let mut seen = Vec::new();
        for lane in lanes {
            let url = lane.gw.url("");
            let s = observe(lane, build(lane, &url)).await;
            seen.push((lane.way, s));
        }
        let (first_way, first) = &seen[0];
        for (way, s) in &seen[1..] {
            assert_eq!(
                s, first,
                "case `{name}`: {way:?} differs from {first_way:?}"
            );
        }
    }
}

fn post_json(
    lane: &Lane,
    base: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    lane.client
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
}

#[tokio::test]
async fn errors_and_bodies_are_answered_alike_on_every_path() {
    let lanes = lanes(|up| {
        format!(
            "server:\n  listen: \"127.0.0.1:8080\"\n  max_body_bytes: 1MiB\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: up\n      type: streamable-http\n      connection:\n        url: \"http://{up}/mcp\"\n        timeout: 1s\n"
        )
    })
    .await;
    let call =
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let cases: Vec<(&str, Box<Build>)> = vec![
        (
            "allowed call",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", call)),
        ),
        (
            "unknown server",
            Box::new(move |l, b| post_json(l, b, "/mcp/nope", call)),
        ),
        (
            "unknown endpoint",
            Box::new(move |l, b| l.client.get(format!("{b}/nope"))),
        ),
        (
            "aggregate not yet",
            Box::new(move |l, b| post_json(l, b, "/mcp", call)),
        ),
        (
            "method not allowed",
            Box::new(move |l, b| l.client.put(format!("{b}/mcp/up"))),
        ),
        (
            "wrong content type",
            Box::new(move |l, b| {
                l.client
                    .post(format!("{b}/mcp/up"))
                    .header("content-type", "text/plain")
                    .body(call)
            }),
        ),
        (
            "malformed json",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", "{\"jsonrpc\":")),
        ),
        (
            "empty body",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", "")),
        ),
        (
            "not utf-8",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", b"{\"a\":\"\xff\"}".to_vec())),
        ),
        (
            "duplicate keys",
            Box::new(move |l, b| {
                post_json(
                    l,
                    b,
                    "/mcp/up",
                    r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
                )
            }),
        ),
        (
            "covered notification",
            Box::new(move |l, b| {
                post_json(
                    l,
                    b,
                    "/mcp/up",
                    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
                )
            }),
        ),
        (
            "covered without params",
            Box::new(move |l, b| {
                post_json(
                    l,
                    b,
                    "/mcp/up",
                    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
                )
            }),
        ),
        (
            "batch",
            Box::new(move |l, b| {
                post_json(
                    l,
                    b,
                    "/mcp/up",
                    r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
                )
            }),
        ),
        (
            "body 64 KiB - 1",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", body_of_size(64 * 1024 - 1))),
        ),
        (
            "body 64 KiB + 1",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", body_of_size(64 * 1024 + 1))),
        ),
        (
            "body at the cap",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", body_of_size(1024 * 1024))),
        ),
        (
            "body over the cap",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", body_of_size(1024 * 1024 + 1))),
        ),
        (
            "query forwarded",
            Box::new(move |l, b| post_json(l, b, "/mcp/up?x=1&y=a%20b", call)),
        ),
        (
            "foreign origin",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", call).header("origin", "https://evil.example")
            }),
        ),
        (
            "loopback origin",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", call).header("origin", "http://localhost:6274")
            }),
        ),
        (
            "upstream status",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", call).header("x-test-reply", "status:503")
            }),
        ),
        (
            "upstream too slow",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", call).header("x-test-reply", "silent:1500")
            }),
        ),
        (
            "admin live",
            Box::new(move |l, b| l.client.get(format!("{b}/live"))),
        ),
        (
            "mcp headers",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", call)
                    .header("mcp-session-id", "s-1")
                    .header("mcp-protocol-version", "2025-11-25")
                    .header("authorization", "Bearer not-forwarded")
            }),
        ),
    ];
    run(&lanes, &cases).await;
    // The cases did reach the upstreams (the comparison above is not vacuous).
    for lane in &lanes {
        assert!(lane.up.posts() >= 8, "{:?}: {}", lane.way, lane.up.posts());
    }
}

#[tokio::test]
async fn authentication_and_policy_are_alike_on_every_path() {
    let lanes = lanes(authn_config).await;
    // Leaked: every case closure owns a copy of these `&'static str`s.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let user = leak(token(&["User"], 600));
    let admin = leak(token(&["Admin"], 600));
    let expired = leak(token(&["User"], -3600));
    let call = |tool: &str| {
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{}}})
            .to_string()
    };
    let allowed = leak(call("echo"));
    let denied = leak(call("delete_everything"));
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let cases: Vec<(&str, Box<Build>)> = vec![
        (
            "no token",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", allowed)),
        ),
        (
            "bad token",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", allowed).bearer_auth("not-a-jwt")),
        ),
        (
            "expired token",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", allowed).bearer_auth(expired)),
        ),
        (
            "no token, large body",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", body_of_size(512 * 1024))),
        ),
        (
            "allowed",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", allowed).bearer_auth(user)),
        ),
        (
            "denied",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", denied).bearer_auth(user)),
        ),
        (
            "admin may",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", denied).bearer_auth(admin)),
        ),
        (
            "list filtered, JSON",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", list)
                    .bearer_auth(user)
                    .header("x-test-reply", "tools")
            }),
        ),
        (
            "list filtered, SSE",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", list)
                    .bearer_auth(user)
                    .header("x-test-reply", "tools-sse")
            }),
        ),
        (
            "batched list",
            Box::new(move |l, b| post_json(l, b, "/mcp/up", format!("[{list}]")).bearer_auth(user)),
        ),
        (
            "metadata",
            Box::new(move |l, b| {
                l.client
                    .get(format!("{b}/.well-known/oauth-protected-resource/mcp/up"))
            }),
        ),
    ];
    run(&lanes, &cases).await;
    for lane in &lanes {
        assert_eq!(lane.up.posts(), 4, "{:?}", lane.way);
    }
}

#[tokio::test]
async fn streams_are_relayed_alike_on_every_path() {
    let lanes = lanes(|up| crate::common::config_for(up, "", "")).await;
    let call =
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let cases: Vec<(&str, Box<Build>)> = vec![
        (
            "sse progress",
            Box::new(move |l, b| {
                post_json(l, b, "/mcp/up", call).header("x-test-reply", "sse:3:10")
            }),
        ),
        (
            "get stream",
            Box::new(move |l, b| {
                l.client
                    .get(format!("{b}/mcp/up"))
                    .header("accept", "text/event-stream")
                    .header("mcp-session-id", "s-1")
            }),
        ),
        (
            "delete",
            Box::new(move |l, b| {
                l.client
                    .delete(format!("{b}/mcp/up"))
                    .header("mcp-session-id", "s-1")
            }),
        ),
        (
            "202",
            Box::new(move |l, b| {
                post_json(
                    l,
                    b,
                    "/mcp/up",
                    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                )
                .header("x-test-reply", "status:202")
            }),
        ),
    ];
    run(&lanes, &cases).await;
    for lane in &lanes {
        assert_eq!(
            lane.up.seen.gets.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        assert_eq!(
            lane.up
                .seen
                .deletes
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    }
}

/// The forced hand-over really goes through Pingora, and the front door serves the rest.
#[tokio::test]
async fn fast_path_off_sends_everything_through_pingora() {
    let lanes = lanes(|up| crate::common::config_for(up, "", "")).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for lane in &lanes {
        let r = post_json(lane, &lane.gw.url(""), "/mcp/up", ping)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v.get("result").is_some(), "{v}");
    }
    assert_eq!(lanes[0].gw.served(), (1, 0), "front door");
    assert_eq!(lanes[1].gw.served(), (0, 1), "forced hand-over");
    // HTTP/2 never meets the front door's HTTP/1.1 parser.
    assert_eq!(lanes[2].gw.served(), (0, 0), "h2c");
}

/// Send `raw` on a new HTTP/1.1 connection and return the status of the answer.
async fn raw_status(gw: &Gateway, raw: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&out);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Queries a proxy must not pass on as sent (characters RFC 3986 does not allow, bytes that
/// are not text) are refused on both HTTP/1.1 paths; nothing reaches the upstream.
#[tokio::test]
async fn unforwardable_queries_are_refused_on_both_paths() {
    let lanes = lanes(|up| crate::common::config_for(up, "", "")).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for query in [&b"a=\"b\""[..], b"a=<b>", b"a=\xff", b"a={b}", b"a=b|c"] {
        for lane in lanes.iter().filter(|l| l.way != Way::H2c) {
            let mut raw = b"POST /mcp/up?".to_vec();
            raw.extend_from_slice(query);
            raw.extend_from_slice(
                format!(
                    " HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ping}",
                    ping.len()
                )
                .as_bytes(),
            );
            let status = raw_status(&lane.gw, &raw).await;
            assert_eq!(
                status,
                400,
                "{:?}, query {:?}",
                lane.way,
                String::from_utf8_lossy(query)
            );
        }
    }
    for lane in &lanes {
        assert_eq!(lane.up.posts(), 0, "{:?}", lane.way);
    }
}
