//! stdio upstreams, against a scriptable child (`tests/it/fixtures/stdio_server.py`): one
//! child shared by many sessions (ids and progress tokens mapped), server-to-client requests
//! routed to the calling session, cancellation, garbage on stdout, a child killed mid-call,
//! a command that does not exist, and reloads that add, change and remove children without
//! leaving a process behind.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::{client, Gateway};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);

fn server_entry(name: &str, env: &str) -> String {
    format!(
        r#"    - name: {name}
      type: stdio
      connection:
        command: python3
        args: ["-u", "{FIXTURE}"]
        env: {{ FIXTURE_TAG: "{env}" }}
        timeout: 20s
"#
    )
}

fn config(servers: &[String], extra_env: &str) -> String {
    let mut s = String::from(
        "server:\n  listen: \"127.0.0.1:8080\"\n  grace_period: 5s\noauth:\n  enabled: false\nproxy:\n  servers:\n",
    );
    for e in servers {
        s.push_str(e);
    }
    if servers.is_empty() {
        s = s.replace("  servers:\n", "  servers: []\n");
    }
    s.replace("FIXTURE_TAG: \"", &format!("{extra_env}FIXTURE_TAG: \""))
}

async fn gateway(servers: &[&str]) -> Gateway {
    let entries: Vec<String> = servers.iter().map(|n| server_entry(n, "a")).collect();
    let gw = Gateway::start(&config(&entries, "")).await;
    for n in servers {
        assert!(
            mux(&gw, n).until_ready(Duration::from_secs(20)).await,
            "{n} did not start"
        );
    }
    gw
}

fn mux(gw: &Gateway, name: &str) -> std::sync::Arc<portcullis::upstream::shared::mux::Mux> {
    gw.store
        .load()
        .upstreams
        .get(name)
        .and_then(|u| u.shared.as_ref())
        .expect("mux")
        .clone()
}

fn pid(gw: &Gateway, name: &str) -> u32 {
    mux(gw, name).status().pid.expect("pid")
}

/// A POST to `/mcp/{server}`; `sse` picks the Accept header.
fn rpc(
    gw: &Gateway,
    server: &str,
    sid: Option<&str>,
    body: &Value,
    sse: bool,
) -> reqwest::RequestBuilder {
    let accept = if sse {
        "application/json, text/event-stream"
    } else {
        "application/json"
    };
    let mut req = client()
        .post(gw.url(&format!("/mcp/{server}")))
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    req
}

async fn initialize(gw: &Gateway, server: &str, caps: Value) -> String {
    let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":caps,"clientInfo":{"name":"it","version":"1"}}});
    let resp = rpc(gw, server, None, &body, true).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"]["serverInfo"]["name"], "fixture", "{v}");
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "{v}");
    sid
}

fn call(id: Value, tool: &str, args: Value, token: Option<&str>) -> Value {
    let mut params = json!({"name": tool, "arguments": args});
    if let Some(t) = token {
        params["_meta"] = json!({"progressToken": t});
    }
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
}

/// Send and read the JSON answer.
trait Answer {
    async fn answer(self) -> Value;
}

impl Answer for reqwest::RequestBuilder {
    async fn answer(self) -> Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

/// Reads JSON-RPC messages from an SSE answer as they arrive.
struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Events {
    fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        // Chunked, so the connection is reusable after the answer.
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        Events {
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(event).unwrap();
                let data: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(serde_json::from_str(&data).unwrap());
            }
            match tokio::time::timeout(Duration::from_secs(20), self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(_) => return None,
                Err(_) => panic!("no event within 20 s"),
            }
        }
    }

    async fn all(mut self) -> Vec<Value> {
        let mut v = Vec::new();
        while let Some(m) = self.next().await {
            v.push(m);
        }
        v
    }
}

fn text_of(msg: &Value) -> String {
    msg["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn stats(gw: &Gateway, server: &str) -> Value {
    let resp = rpc(
        gw,
        server,
        None,
        &call(json!(1), "stats", json!({}), None),
        false,
    )
    .send()
    .await
    .unwrap();
    let v: Value = resp.json().await.unwrap();
    serde_json::from_str(&text_of(&v)).unwrap()
}

fn process_gone(pid: u32) -> bool {
    // Reaped: no /proc entry at all (a zombie would still have one, in state Z).
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_gone(pid: u32) -> bool {
    for _ in 0..500 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn one_child_serves_sessions_in_json_and_sse() {
    let gw = gateway(&["fx"]).await;
    let sid = initialize(&gw, "fx", json!({})).await;
    assert!(sid.starts_with("ps1-"), "{sid}");
    let list: Value = rpc(
        &gw,
        "fx",
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":"l","method":"tools/list"}),
        false,
    )
    .answer()
    .await;
    assert_eq!(list["id"], "l");
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        6,
        "{list}"
    );
    let resp = rpc(
        &gw,
        "fx",
        Some(&sid),
        &call(json!("e"), "echo", json!({"message":"hi"}), None),
        true,
    )
    .send()
    .await
    .unwrap();
    let events = Events::new(resp).all().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], "e");
    assert_eq!(text_of(&events[0]), "Echo: hi");
    // `ping` is answered by the gateway; notifications get 202.
    let ping: Value = rpc(
        &gw,
        "fx",
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":9,"method":"ping"}),
        false,
    )
    .answer()
    .await;
    assert_eq!(ping, json!({"jsonrpc":"2.0","id":9,"result":{}}));
    let note = rpc(
        &gw,
        "fx",
        Some(&sid),
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        false,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(note.status(), 202);
    // The child was initialized once, by the gateway, whatever the callers do.
    assert_eq!(stats(&gw, "fx").await["initialized"], 1);
    // A session id the gateway did not mint: 404 so the client re-initializes.
    let bad = rpc(
        &gw,
        "fx",
        Some("nope"),
        &call(json!(1), "echo", json!({}), None),
        false,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(bad.status(), 404);
    // Batches cannot be mapped one to one: refused whole.
    let batch = json!([
        call(json!(1), "echo", json!({}), None),
        call(json!(2), "echo", json!({}), None)
    ]);
    let r = rpc(&gw, "fx", Some(&sid), &batch, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let del = client()
        .delete(gw.url("/mcp/fx"))
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    // An ended session is not found any more.
    let after = rpc(
        &gw,
        "fx",
        Some(&sid),
        &call(json!(1), "echo", json!({}), None),
        false,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(after.status(), 404);
}

#[tokio::test]
async fn callers_with_the_same_ids_and_tokens_get_their_own_answers() {
    let gw = gateway(&["fx"]).await;
    let a = initialize(&gw, "fx", json!({})).await;
    let b = initialize(&gw, "fx", json!({})).await;
    let run = |sid: String, steps: u64| {
        let req = rpc(
            &gw,
            "fx",
            Some(&sid),
            &call(
                json!(1),
                "slow",
                json!({"steps": steps, "ms": 30}),
                Some("t"),
            ),
            true,
        );
        async move { Events::new(req.send().await.unwrap()).all().await }
    };
    let (ea, eb) = tokio::join!(run(a.clone(), 3), run(b.clone(), 5));
    for (events, steps) in [(ea, 3), (eb, 5)] {
        assert_eq!(events.len(), steps + 1, "{events:?}");
        for (i, e) in events[..steps].iter().enumerate() {
            assert_eq!(e["method"], "notifications/progress");
            assert_eq!(e["params"]["progressToken"], "t");
            assert_eq!(e["params"]["progress"], i + 1);
        }
        assert_eq!(events[steps]["id"], 1);
        assert_eq!(text_of(&events[steps]), format!("done {steps}"));
    }
    // Many callers at once, all using id 1: each answer carries its own message.
    let calls = (0..32).map(|i| {
        let req = rpc(
            &gw,
            "fx",
            Some(&a),
            &call(json!(1), "echo", json!({"message": format!("m{i}")}), None),
            false,
        );
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            (v["id"] == 1, text_of(&v) == format!("Echo: m{i}"))
        }
    });
    for (id_ok, text_ok) in futures_util::future::join_all(calls).await {
        assert!(id_ok && text_ok);
    }
}

#[tokio::test]
async fn sampling_reaches_the_calling_session_and_its_answer_the_child() {
    let gw = gateway(&["fx"]).await;
    let sid = initialize(&gw, "fx", json!({"sampling": {}})).await;
    let resp = rpc(
        &gw,
        "fx",
        Some(&sid),
        &call(json!("s"), "sample", json!({"prompt": "hello"}), None),
        true,
    )
    .send()
    .await
    .unwrap();
    let mut events = Events::new(resp);
    let req = events.next().await.unwrap();
    assert_eq!(req["method"], "sampling/createMessage", "{req}");
    assert_eq!(req["params"]["messages"][0]["content"]["text"], "hello");
    let answer = json!({"jsonrpc":"2.0","id":req["id"],"result":{
        "role":"assistant","model":"m","content":{"type":"text","text":"HELLO"}}});
    let r = rpc(&gw, "fx", Some(&sid), &answer, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let last = events.next().await.unwrap();
    assert_eq!(last["id"], "s");
    assert_eq!(text_of(&last), "sampled: HELLO");

    // A client that did not declare sampling is never asked; the child gets an error.
    let plain = initialize(&gw, "fx", json!({})).await;
    let resp = rpc(
        &gw,
        "fx",
        Some(&plain),
        &call(json!(2), "sample", json!({"prompt": "x"}), None),
        true,
    )
    .send()
    .await
    .unwrap();
    let events = Events::new(resp).all().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["result"]["isError"], true, "{events:?}");

    // Calls from two sessions in flight: the origin is ambiguous, so neither is asked.
    let other = initialize(&gw, "fx", json!({"sampling": {}})).await;
    let slow = rpc(
        &gw,
        "fx",
        Some(&other),
        &call(json!(3), "slow", json!({"steps": 10, "ms": 50}), None),
        true,
    );
    let slow = tokio::spawn(async move { Events::new(slow.send().await.unwrap()).all().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = rpc(
        &gw,
        "fx",
        Some(&sid),
        &call(json!(4), "sample", json!({"prompt": "y"}), None),
        true,
    )
    .send()
    .await
    .unwrap();
    let events = Events::new(resp).all().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["result"]["isError"], true);
    assert!(text_of(&events[0]).contains("ambiguous"), "{events:?}");
    let slow_events = slow.await.unwrap();
    assert!(slow_events
        .iter()
        .all(|e| e["method"] != "sampling/createMessage"));
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_call_upstream() {
    let gw = gateway(&["fx"]).await;
    let resp = rpc(
        &gw,
        "fx",
        None,
        &call(
            json!("c"),
            "slow",
            json!({"steps": 100, "ms": 50}),
            Some("p"),
        ),
        true,
    )
    .send()
    .await
    .unwrap();
    let mut events = Events::new(resp);
    assert_eq!(
        events.next().await.unwrap()["method"],
        "notifications/progress"
    );
    drop(events);
    let mut seen = Value::Null;
    for _ in 0..200 {
        seen = stats(&gw, "fx").await["cancelled"].clone();
        if seen.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The child saw a cancellation for the gateway's id of that call (a number, not "c").
    assert!(
        seen.as_array()
            .is_some_and(|a| a.len() == 1 && a[0].is_u64()),
        "{seen}"
    );
}

#[tokio::test]
async fn garbage_on_stdout_is_dropped_and_the_session_survives() {
    let entries = vec![server_entry("fx", "a")];
    let gw = Gateway::start(&config(&entries, "FIXTURE_BANNER: \"1\", ")).await;
    assert!(mux(&gw, "fx").until_ready(Duration::from_secs(20)).await);
    let sid = initialize(&gw, "fx", json!({})).await;
    let v: Value = rpc(
        &gw,
        "fx",
        Some(&sid),
        &call(json!(1), "garbage", json!({}), None),
        false,
    )
    .answer()
    .await;
    assert_eq!(text_of(&v), "ok");
    let v: Value = rpc(
        &gw,
        "fx",
        Some(&sid),
        &call(json!(2), "echo", json!({"message":"still"}), None),
        false,
    )
    .answer()
    .await;
    assert_eq!(text_of(&v), "Echo: still");
    assert_eq!(mux(&gw, "fx").status().restarts, 0);
}

#[tokio::test]
async fn a_child_killed_mid_call_fails_that_call_cleanly_and_restarts() {
    let gw = gateway(&["fkill"]).await;
    let first = pid(&gw, "fkill");
    let resp = rpc(
        &gw,
        "fkill",
        None,
        &call(
            json!("k"),
            "slow",
            json!({"steps": 100, "ms": 50}),
            Some("p"),
        ),
        true,
    )
    .send()
    .await
    .unwrap();
    let mut events = Events::new(resp);
    assert_eq!(
        events.next().await.unwrap()["method"],
        "notifications/progress"
    );
    let st = std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut last = Value::Null;
    while let Some(e) = events.next().await {
        last = e;
    }
    assert_eq!(last["id"], "k", "{last}");
    // The same error as any upstream failure, JSON or SSE, whatever the upstream's transport.
    assert_eq!(last["error"]["code"], -32000, "{last}");
    assert_eq!(last["error"]["data"]["server"], "fkill", "{last}");
    let msg = last["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`fkill`") && msg.contains("killed by signal 9"),
        "{msg}"
    );
    let m = mux(&gw, "fkill");
    assert!(m.until_ready(Duration::from_secs(20)).await);
    let st = m.status();
    assert_eq!(st.restarts, 1);
    assert_ne!(st.pid, Some(first));
    assert!(st
        .last_exit
        .as_deref()
        .unwrap_or_default()
        .contains("signal 9"));
    let v: Value = rpc(
        &gw,
        "fkill",
        None,
        &call(json!(2), "echo", json!({"message":"back"}), None),
        false,
    )
    .answer()
    .await;
    assert_eq!(text_of(&v), "Echo: back");
    assert!(wait_gone(first).await, "the killed child was not reaped");
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_upstream_restarts_total{server=\"fkill\"} 1"),
        "{metrics}"
    );
    // The echo after the restart was timed; the killed call was not.
    assert!(
        metrics.contains("portcullis_upstream_request_duration_seconds_count{server=\"fkill\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "portcullis_tool_calls_total{outcome=\"failed\",server=\"fkill\",tool=\"slow\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_reported_not_fatal() {
    let yaml = "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: ghost\n      type: stdio\n      connection:\n        command: /nonexistent/mcp-server\n";
    let gw = Gateway::start(yaml).await;
    let ready = client().get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    let detail = body["upstreams"]["ghost"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("cannot start `/nonexistent/mcp-server`"),
        "{body}"
    );
    let status: Value = client().get(gw.url("/status")).answer().await;
    let process = &status["upstreams"][0]["process"];
    assert!(
        process["last_exit"]
            .as_str()
            .unwrap_or_default()
            .contains("No such file"),
        "{status}"
    );
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
    let resp = rpc(&gw, "ghost", None, &body, true).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`ghost`") && msg.contains("cannot start"),
        "{msg}"
    );
    assert_eq!(v["id"], 1);
}

#[tokio::test]
async fn reloads_start_replace_and_drain_children_leaving_no_process() {
    let gw = gateway(&["fx"]).await;
    let fx1 = pid(&gw, "fx");
    // Add a server: it starts; the unchanged one keeps its process.
    let two = config(&[server_entry("fx", "a"), server_entry("fy", "a")], "");
    gw.apply(&two).await;
    assert!(mux(&gw, "fy").until_ready(Duration::from_secs(20)).await);
    assert_eq!(pid(&gw, "fx"), fx1);
    let fy1 = pid(&gw, "fy");
    // Change fx's environment: a new child replaces it; the old one is stopped and reaped.
    let changed = config(&[server_entry("fx", "b"), server_entry("fy", "a")], "");
    gw.apply(&changed).await;
    assert!(mux(&gw, "fx").until_ready(Duration::from_secs(20)).await);
    assert_ne!(pid(&gw, "fx"), fx1);
    assert!(wait_gone(fx1).await, "the replaced child is still there");
    // Remove both while a call is in flight on fy: the call finishes (drain), then fy stops.
    let fx2 = pid(&gw, "fx");
    let inflight = rpc(
        &gw,
        "fy",
        None,
        &call(json!(1), "slow", json!({"steps": 5, "ms": 100}), None),
        false,
    );
    let inflight = tokio::spawn(async move {
        inflight
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let old_fy = mux(&gw, "fy");
    gw.apply(&config(&[], "")).await;
    let v = inflight.await.unwrap();
    assert_eq!(text_of(&v), "done 5", "{v}");
    assert!(wait_gone(fx2).await, "removed fx is still there");
    assert!(wait_gone(fy1).await, "removed fy is still there");
    assert_eq!(
        old_fy.status().phase,
        portcullis::upstream::shared::mux::Phase::Stopped
    );
    // A request to a removed server is a 404.
    let r = rpc(
        &gw,
        "fy",
        None,
        &call(json!(1), "echo", json!({}), None),
        false,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn subscriptions_are_shared_and_released_with_the_last_session() {
    let gw = gateway(&["fx"]).await;
    let a = initialize(&gw, "fx", json!({})).await;
    let b = initialize(&gw, "fx", json!({})).await;
    let sub =
        |id: u64, m: &str| json!({"jsonrpc":"2.0","id":id,"method":m,"params":{"uri":"demo://x"}});
    for s in [&a, &b] {
        let v: Value = rpc(&gw, "fx", Some(s), &sub(1, "resources/subscribe"), false)
            .answer()
            .await;
        assert_eq!(v["result"], json!({}));
    }
    // a leaves: b still wants it, so the child is not told.
    let v: Value = rpc(&gw, "fx", Some(&a), &sub(2, "resources/unsubscribe"), false)
        .answer()
        .await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":2,"result":{}}));
    assert_eq!(stats(&gw, "fx").await["unsubscribed"], json!([]));
    // b's session ends: the last subscriber, so the child unsubscribes.
    let del = client()
        .delete(gw.url("/mcp/fx"))
        .header("mcp-session-id", &b)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = stats(&gw, "fx").await["unsubscribed"].clone();
        if seen != json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, json!(["demo://x"]));
}

#[tokio::test]
async fn children_get_a_minimal_environment_plus_their_own() {
    let gw = gateway(&["fx"]).await;
    let v: Value = rpc(
        &gw,
        "fx",
        None,
        &call(json!(1), "env", json!({}), None),
        false,
    )
    .answer()
    .await;
    let names: Vec<String> = serde_json::from_str(&text_of(&v)).unwrap();
    assert!(names.contains(&"FIXTURE_TAG".to_string()), "{names:?}");
    assert!(names.contains(&"PATH".to_string()), "{names:?}");
    // The gateway's own environment (cargo sets CARGO_PKG_NAME for this test process) stays out.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{names:?}");
}

#[tokio::test]
async fn a_caller_without_a_session_cannot_cancel_anothers_call() {
    let gw = gateway(&["fx"]).await;
    // Caller A: no session, id 1, a slow call.
    let a = rpc(
        &gw,
        "fx",
        None,
        &call(json!(1), "slow", json!({"steps": 4, "ms": 50}), None),
        false,
    );
    let a = tokio::spawn(async move { a.send().await.unwrap().json::<Value>().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Caller B, also without a session, names id 1 in a cancellation: it must not reach A's call.
    let cancel =
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}});
    let r = rpc(&gw, "fx", None, &cancel, false).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v = a.await.unwrap();
    assert_eq!(text_of(&v), "done 4", "{v}");
    assert_eq!(stats(&gw, "fx").await["cancelled"], json!([]));
}
