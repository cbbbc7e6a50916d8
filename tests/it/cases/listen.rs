//! 2026-07-28 `subscriptions/listen`, with authentication on: `/mcp` merges the listen streams
//! of every upstream the caller may reach (acknowledgment first, events stamped with the
//! client's id and URIs namespaced, only what was asked and allowed), ends with the closing
//! result on reload and is cut when an upstream's stream breaks; every resource URI is
//! authorized like `resources/subscribe` on both endpoints, and a stream takes a place among
//! the caller's open streams.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::jwt::{oauth_section, token};
use crate::common::{client, Gateway, Upstream};

const SUB: &str = "io.modelcontextprotocol/subscriptionId";

fn config(a: &Upstream, b: &Upstream, extra: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
  max_streams_per_principal: 2
{oauth}
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
    "groups:Admin": ["scope:admin"]
  permissions:
    "a:res://ok": ["scope:user"]
    "a:res://secret": ["scope:admin"]
    "b:*": ["scope:user"]
proxy:
  servers:
    - name: a
      type: streamable-http
      connection: {{ url: "http://{a}/mcp" }}
    - name: b
      type: streamable-http
      connection: {{ url: "http://{b}/mcp" }}
{extra}"#,
        oauth = oauth_section(),
        a = a.addr,
        b = b.addr,
    )
}

fn listen_body(id: Value, uris: &[&str]) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {
        "notifications": { "toolsListChanged": true, "resourceSubscriptions": uris },
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    } })
}

async fn open(gw: &Gateway, path: &str, user: &str, mode: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "authorization",
            format!("Bearer {}", token(user, &["User"])),
        )
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .header("x-test-reply", mode)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The messages of an SSE answer as they come; `None` once it ended (`Err`: it broke).
struct Events {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Events {
    fn of(resp: reqwest::Response) -> Events {
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        Events {
            body: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Result<Option<Value>, String> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let ev: String = self.buf.drain(..end + 2).collect();
                    if let Some(data) = ev.lines().find_map(|l| l.strip_prefix("data: ")) {
                        return Ok(Some(serde_json::from_str(data).unwrap()));
                    }
                    continue;
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Ok(None),
                }
            }
        })
        .await
        .expect("no event within 10 s")
    }
}

#[tokio::test]
async fn mcp_merges_what_was_asked_and_allowed_and_closes_on_reload() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let text = config(&a, &b, "");
    let gw = Gateway::start(&text).await;
    let id = json!("listen-7");
    let uris = [
        "mcp://a/res://ok",
        "mcp://a/res://secret",
        "mcp://a/res://ok",
        "mcp://b/res://x",
        "mcp://nowhere/res://y",
        "res://not-namespaced",
    ];
    let mut ev = Events::of(
        open(
            &gw,
            "/mcp",
            "alice",
            "listen",
            &listen_body(id.clone(), &uris),
        )
        .await,
    );
    // The acknowledgment first: what the upstreams honored, as the client named it.
    let ack = ev.next().await.unwrap().unwrap();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(ack["params"]["_meta"][SUB], id);
    assert_eq!(
        ack["params"]["notifications"],
        json!({ "toolsListChanged": true, "resourceSubscriptions": ["mcp://a/res://ok", "mcp://b/res://x"] })
    );
    // Each upstream was asked for its own URIs only, never one the caller may not use.
    for (up, own) in [(&a, json!(["res://ok"])), (&b, json!(["res://x"]))] {
        let sent: Value =
            serde_json::from_slice(up.seen.last_body.lock().unwrap().as_ref().unwrap()).unwrap();
        assert_eq!(sent["method"], "subscriptions/listen");
        assert_eq!(sent["id"], id);
        assert_eq!(
            sent["params"]["notifications"]["resourceSubscriptions"],
            own
        );
        assert_eq!(
            sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
    }
    // Events: list changes and the subscribed updates, namespaced and stamped; never the log
    // message or the update of a URI nobody subscribed.
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = ev.next().await.unwrap().unwrap();
        assert_eq!(e["params"]["_meta"][SUB], id, "{e}");
        got.push((
            e["method"].as_str().unwrap().to_owned(),
            e["params"]["uri"].clone(),
        ));
    }
    got.sort_by_key(|(m, u)| format!("{m}{u}"));
    assert_eq!(
        got,
        vec![
            (
                "notifications/resources/updated".into(),
                json!("mcp://a/res://ok")
            ),
            (
                "notifications/resources/updated".into(),
                json!("mcp://b/res://x")
            ),
            ("notifications/tools/list_changed".into(), Value::Null),
            ("notifications/tools/list_changed".into(), Value::Null),
        ]
    );
    // A reload: the stream ends with its closing result, then nothing.
    gw.apply(&format!("{text}\n# changed\n")).await;
    let end = ev.next().await.unwrap().unwrap();
    assert_eq!(end["id"], id, "{end}");
    assert_eq!(end["result"]["_meta"][SUB], id);
    assert_eq!(end["result"]["resultType"], "complete");
    assert_eq!(ev.next().await, Ok(None));
}

#[tokio::test]
async fn a_broken_upstream_stream_cuts_the_clients_and_a_closed_one_closes_it() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&config(&a, &b, "")).await;
    let body = listen_body(json!(1), &[]);
    let mut ev = Events::of(open(&gw, "/mcp", "alice", "listen-cut", &body).await);
    let mut seen = Vec::new();
    let ended = loop {
        match ev.next().await {
            Ok(Some(m)) => seen.push(m),
            other => break other,
        }
    };
    assert!(
        ended.is_err(),
        "a cut stream must not end cleanly: {seen:?}"
    );
    assert!(seen.iter().all(|m| m.get("result").is_none()), "{seen:?}");
    assert_eq!(
        seen[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    let mut ev = Events::of(open(&gw, "/mcp", "alice", "listen-close", &body).await);
    let last = loop {
        match ev.next().await.unwrap() {
            Some(m) if m.get("id").is_some() => break m,
            Some(_) => {}
            None => panic!("ended without the closing result"),
        }
    };
    assert_eq!(last["result"]["_meta"][SUB], 1);
    assert_eq!(ev.next().await, Ok(None));
}

#[tokio::test]
async fn a_uri_the_caller_may_not_use_is_refused_on_the_server_endpoint() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&config(&a, &b, "")).await;
    for uris in [
        vec!["res://secret"],
        vec!["res://ok", "res://secret"],
        vec!["res://nope"],
    ] {
        let resp = open(
            &gw,
            "/mcp/a",
            "alice",
            "listen",
            &listen_body(json!(3), &uris),
        )
        .await;
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["id"], 3, "{uris:?}: {v}");
        assert!(v["error"]["code"].is_i64(), "{uris:?}: {v}");
    }
    assert_eq!(a.posts(), 0, "a refused listen reached the upstream");
    // Allowed: passed through to the upstream's own listen.
    let mut ev = Events::of(
        open(
            &gw,
            "/mcp/a",
            "alice",
            "listen",
            &listen_body(json!(4), &["res://ok"]),
        )
        .await,
    );
    let ack = ev.next().await.unwrap().unwrap();
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["res://ok"])
    );
    assert_eq!(a.posts(), 1);
    // A filter that is not one is refused on both endpoints, never passed on.
    let bad = json!({ "jsonrpc": "2.0", "id": 5, "method": "subscriptions/listen", "params": {
        "notifications": { "resourceSubscriptions": "res://ok" },
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                   "io.modelcontextprotocol/clientCapabilities": {} } } });
    for path in ["/mcp/a", "/mcp"] {
        let resp = open(&gw, path, "alice", "listen", &bad).await;
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(5), json!(-32602)),
            "{path}"
        );
    }
    assert_eq!(a.posts() + b.posts(), 1);
}

#[tokio::test]
async fn listen_streams_count_against_the_callers_open_streams() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&config(&a, &b, "")).await;
    let body = listen_body(json!(1), &[]);
    let first = Events::of(open(&gw, "/mcp", "alice", "listen", &body).await);
    let second = Events::of(open(&gw, "/mcp/b", "alice", "listen", &body).await);
    let posts = a.posts() + b.posts();
    for path in ["/mcp", "/mcp/a"] {
        let resp = open(&gw, path, "alice", "listen", &body).await;
        assert_eq!(resp.status(), 429, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["error"]["data"]["rule"], "max_streams_per_principal",
            "{v}"
        );
    }
    assert_eq!(
        a.posts() + b.posts(),
        posts,
        "a refused stream reached an upstream"
    );
    // Another caller has places of its own; a closed stream gives its place back.
    let _other = Events::of(open(&gw, "/mcp", "bob", "listen", &body).await);
    drop(first);
    let mut back = None;
    for _ in 0..100 {
        let resp = open(&gw, "/mcp", "alice", "listen", &body).await;
        if resp.status() == 200 {
            back = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back.is_some(), "the place did not come back");
    drop(second);
}
