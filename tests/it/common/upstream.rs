//! A scriptable MCP-shaped upstream on 127.0.0.1:0 that records what it receives.
//!
//! `POST /mcp` answers according to the request header `x-test-reply`:
//! - absent or `json`: `{"result":{"len":N,"sha256":H}}` describing the body it received;
//! - `sse:N:MS`: an SSE stream of N `notifications/progress` events, MS ms apart, then the result;
//! - `forever`: SSE events every 20 ms until the client goes away (then `cancelled` counts it);
//! - `silent:MS`: waits MS ms, then the JSON result;
//! - `status:CODE`: an empty answer with that status;
//! - `tool-error` / `rpc-error`: a JSON result with `isError: true` / a JSON-RPC error;
//! - `sse-tool-error`: a progress event, then a result with `isError: true`, as SSE.
//! - `task`: `tools/call` makes task `t-1` (working); `tasks/*` answer the task named, completed;
//! - `long-tools`: `tools/list` lists one tool named [`LONG_TOOL`] (71 characters);
//!   `tools/call` answers with the name it was called by;
//! - `listen`, `listen-close`, `listen-cut` (2026-07-28 `subscriptions/listen`): the
//!   acknowledgment of what was asked, then a tools list change, a log message, an update of
//!   each subscribed URI and of `res://other`, each stamped; then the stream stays open
//!   (`listen`), ends with the closing result (`listen-close`) or breaks (`listen-cut`).
//!
//! A `server/discover` with id `portcullis-discover` (the gateway asking which era it speaks)
//! is answered as a 2026-07-28 server and counted apart (`probes`, not `posts`).
//!
//! `GET /mcp` opens an SSE stream (3 events 30 ms apart; then, with `x-test-reply: forever`,
//! stays open until the client goes away); `DELETE /mcp` answers 200.
//! Every answer carries `mcp-session-id: upstream-session` and echoes some request headers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use futures_util::{stream, StreamExt};
use tokio::sync::Notify;

/// A tool name too long for `/mcp` under any prefix (71 characters).
pub const LONG_TOOL: &str =
    "a_tool_whose_name_is_far_too_long_to_carry_a_prefix_and_still_fit_in_64";

/// A `tools/list` answer with a visible and a hidden tool, marked publicly cacheable.
pub const TOOLS_RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"delete_everything","inputSchema":{"type":"object"}}],"cacheScope":"public"}}"#;

#[derive(Default)]
pub struct Seen {
    pub posts: AtomicUsize,
    /// The gateway's own `server/discover` (which era it speaks), not counted in `posts`.
    pub probes: AtomicUsize,
    pub gets: AtomicUsize,
    pub deletes: AtomicUsize,
    pub cancelled: AtomicUsize,
    pub cancel_notify: Notify,
    pub last_headers: Mutex<Option<HeaderMap>>,
    pub last_body: Mutex<Option<Bytes>>,
    pub last_query: Mutex<Option<String>>,
    /// The client addresses POSTs came from: one per upstream connection the gateway opened.
    pub peers: Mutex<std::collections::HashSet<SocketAddr>>,
    /// Every POST's body method with its `Mcp-Method` and `Mcp-Name` fields, in order.
    #[allow(clippy::type_complexity)]
    pub routing: Mutex<Vec<(String, Option<String>, Option<String>)>>,
    /// Signalled on every POST received.
    pub post_notify: Notify,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let seen = Arc::new(Seen::default());
        let app = Router::new()
            .route("/mcp", post(on_post).get(on_get).delete(on_delete))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Upstream { addr, seen }
    }

    pub fn posts(&self) -> usize {
        self.seen.posts.load(Ordering::SeqCst)
    }

    /// How many connections the gateway opened to this upstream for POSTs.
    pub fn post_connections(&self) -> usize {
        self.seen.peers.lock().unwrap().len()
    }

    /// The query string of the last POST.
    pub fn last_query(&self) -> Option<String> {
        self.seen.last_query.lock().unwrap().clone()
    }

    pub fn last_headers(&self) -> HeaderMap {
        self.seen
            .last_headers
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_default()
    }
}

fn base(status: StatusCode, ctype: &str, req: &HeaderMap) -> axum::http::response::Builder {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("mcp-session-id", "upstream-session");
    for h in ["mcp-protocol-version", "last-event-id", "mcp-session-id"] {
        if let Some(v) = req.get(h) {
            b = b.header(format!("x-seen-{h}"), v);
        }
    }
    b
}

struct CancelGuard(Arc<Seen>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        self.0.cancel_notify.notify_waiters();
    }
}

async fn on_post(
    State(seen): State<Arc<Seen>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    // The gateway's own question (which era the upstream speaks) is not a client's request.
    if body.windows(21).any(|w| w == b"\"portcullis-discover\"") {
        seen.probes.fetch_add(1, Ordering::SeqCst);
        let answer = r#"{"jsonrpc":"2.0","id":"portcullis-discover","result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#;
        return base(StatusCode::OK, "application/json", &headers)
            .body(Body::from(answer))
            .unwrap();
    }
    seen.posts.fetch_add(1, Ordering::SeqCst);
    {
        let method = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["method"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let field = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        seen.routing
            .lock()
            .unwrap()
            .push((method, field("mcp-method"), field("mcp-name")));
    }
    seen.peers.lock().unwrap().insert(peer);
    seen.post_notify.notify_waiters();
    *seen.last_query.lock().unwrap() = query;
    *seen.last_headers.lock().unwrap() = Some(headers.clone());
    *seen.last_body.lock().unwrap() = Some(body.clone());
    let result = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"len":{},"sha256":"{}"}}}}"#,
        body.len(),
        super::sha256(&body)
    );
    let mode = headers
        .get("x-test-reply")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("json")
        .to_string();
    let parts: Vec<&str> = mode.split(':').collect();
    match parts.as_slice() {
        ["sse", n, ms] => {
            let n: usize = n.parse().unwrap();
            let gap = Duration::from_millis(ms.parse().unwrap());
            let events = stream::unfold(0usize, move |i| {
                let result = result.clone();
                async move {
                    if i > n {
                        return None;
                    }
                    tokio::time::sleep(gap).await;
                    let data = if i < n {
                        format!(
                            "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"t\",\"progress\":{}}}}}\n\n",
                            i + 1
                        )
                    } else {
                        format!("event: message\ndata: {result}\n\n")
                    };
                    Some((Ok::<_, std::io::Error>(Bytes::from(data)), i + 1))
                }
            });
            base(StatusCode::OK, "text/event-stream", &headers)
                .body(Body::from_stream(events))
                .unwrap()
        }
        ["forever"] => {
            let guard = CancelGuard(seen.clone());
            let events = stream::unfold((0u64, guard), |(i, guard)| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let data = format!("data: {{\"tick\":{i}}}\n\n");
                Some((Ok::<_, std::io::Error>(Bytes::from(data)), (i + 1, guard)))
            });
            base(StatusCode::OK, "text/event-stream", &headers)
                .body(Body::from_stream(events))
                .unwrap()
        }
        ["silent", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            base(StatusCode::OK, "application/json", &headers)
                .body(Body::from(result))
                .unwrap()
        }
        [m @ ("listen" | "listen-close" | "listen-cut")] => {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = body["id"].clone();
            let asked = body["params"]["notifications"].clone();
            let key = "io.modelcontextprotocol/subscriptionId";
            let frame = |v: serde_json::Value| -> Result<Bytes, std::io::Error> {
                Ok(Bytes::from(format!("event: message\ndata: {v}\n\n")))
            };
            let note = |method: &str, mut params: serde_json::Value| {
                params["_meta"] = serde_json::json!({ key: id.clone() });
                frame(serde_json::json!({ "jsonrpc": "2.0", "method": method, "params": params }))
            };
            let mut frames = vec![
                note("notifications/subscriptions/acknowledged", serde_json::json!({ "notifications": asked.clone() })),
                note("notifications/tools/list_changed", serde_json::json!({})),
                note("notifications/message", serde_json::json!({ "level": "info", "data": "x" })),
            ];
            for uri in asked["resourceSubscriptions"].as_array().into_iter().flatten() {
                frames.push(note("notifications/resources/updated", serde_json::json!({ "uri": uri })));
            }
            frames.push(note("notifications/resources/updated", serde_json::json!({ "uri": "res://other" })));
            let end: Vec<Result<Bytes, std::io::Error>> = match *m {
                "listen-close" => vec![frame(serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": { "_meta": { key: id.clone() } } }))],
                "listen-cut" => vec![Err(std::io::Error::other("cut"))],
                _ => Vec::new(),
            };
            let cut = *m == "listen-cut";
            let frames = stream::iter(frames).chain(stream::iter(end));
            let body = if *m == "listen" {
                Body::from_stream(frames.chain(stream::pending()))
            } else if cut {
                // Slowly enough that the events go out before the break.
                Body::from_stream(frames.then(|f| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    f
                }))
            } else {
                Body::from_stream(frames)
            };
            base(StatusCode::OK, "text/event-stream", &headers)
                .body(body)
                .unwrap()
        }
        ["long-tools"] => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let result = match v["method"].as_str() {
                Some("tools/list") => serde_json::json!({ "tools": [
                    { "name": LONG_TOOL, "inputSchema": { "type": "object" } } ] }),
                Some("tools/call") => serde_json::json!({ "content": [
                    { "type": "text", "text": v["params"]["name"] } ] }),
                _ => serde_json::json!({}),
            };
            let answer = serde_json::json!({ "jsonrpc": "2.0", "id": v["id"], "result": result });
            base(StatusCode::OK, "application/json", &headers)
                .body(Body::from(answer.to_string()))
                .unwrap()
        }
        ["task"] => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let result = if v["method"] == "tools/call" {
                serde_json::json!({ "task": { "taskId": "t-1", "status": "working" } })
            } else {
                serde_json::json!({ "taskId": v["params"]["taskId"], "status": "completed" })
            };
            let answer = serde_json::json!({ "jsonrpc": "2.0", "id": v["id"], "result": result });
            base(StatusCode::OK, "application/json", &headers)
                .body(Body::from(answer.to_string()))
                .unwrap()
        }
        ["tools"] => base(StatusCode::OK, "application/json", &headers)
            .body(Body::from(TOOLS_RESULT))
            .unwrap(),
        ["tools-sse"] => {
            // A notification, then the list result with CRLF line ends and split data lines,
            // delivered in small pieces.
            let stream_text = format!(
                "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\r\n\r\nid: 9\r\nevent: message\r\ndata: {}\r\n\r\n",
                TOOLS_RESULT
            );
            let pieces: Vec<Result<Bytes, std::io::Error>> = stream_text
                .into_bytes()
                .chunks(13)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            base(StatusCode::OK, "text/event-stream", &headers)
                .body(Body::from_stream(stream::iter(pieces)))
                .unwrap()
        }
        ["tool-error"] => base(StatusCode::OK, "application/json", &headers)
            .body(Body::from(
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"no"}],"isError":true}}"#,
            ))
            .unwrap(),
        ["rpc-error"] => base(StatusCode::OK, "application/json", &headers)
            .body(Body::from(
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool"}}"#,
            ))
            .unwrap(),
        ["sse-tool-error"] => base(StatusCode::OK, "text/event-stream", &headers)
            .body(Body::from(
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[],\"isError\":true}}\n\n",
            ))
            .unwrap(),
        ["status", code] => base(
            StatusCode::from_u16(code.parse().unwrap()).unwrap(),
            "application/json",
            &headers,
        )
        .body(Body::empty())
        .unwrap(),
        _ => base(StatusCode::OK, "application/json", &headers)
            .body(Body::from(result))
            .unwrap(),
    }
}

async fn on_get(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response<Body> {
    seen.gets.fetch_add(1, Ordering::SeqCst);
    *seen.last_headers.lock().unwrap() = Some(headers.clone());
    let forever = headers.get("x-test-reply").is_some_and(|v| v == "forever");
    let events = stream::unfold(0usize, move |i| async move {
        if i >= 3 && forever {
            // Open until the client goes away.
            std::future::pending::<()>().await;
        }
        if i >= 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let data = format!("id: {i}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"n\":{i}}}}}\n\n");
        Some((Ok::<_, std::io::Error>(Bytes::from(data)), i + 1))
    });
    base(StatusCode::OK, "text/event-stream", &headers)
        .body(Body::from_stream(events))
        .unwrap()
}

async fn on_delete(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response<Body> {
    seen.deletes.fetch_add(1, Ordering::SeqCst);
    *seen.last_headers.lock().unwrap() = Some(headers.clone());
    base(StatusCode::OK, "application/json", &headers)
        .body(Body::empty())
        .unwrap()
}
