//! 2026-07-28 requests: routing headers checked against the body before anything is decided
//! (a mismatch never reaches an upstream, on either front end), a legacy-only stdio upstream
//! serving them through the gateway's own session, and `/mcp` declining them in a way clients
//! fall back from.

use serde_json::{json, Value};

use crate::common::{client, config_for, Gateway, Upstream};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/stdio_server.py"
);

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}})
}

fn call(name: &str) -> Value {
    json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":name,"arguments":{"message":"m"},"_meta":meta()}})
}

async fn send(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
    h2: bool,
) -> (u16, Value) {
    let c = if h2 {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap()
    } else {
        client()
    };
    let mut req = c
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .map(str::to_owned)
        .unwrap_or(text);
    (status, serde_json::from_str(&data).unwrap_or(Value::Null))
}

const V: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

#[tokio::test]
async fn a_header_that_disagrees_with_the_body_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    for h2 in [false, true] {
        for headers in [
            vec![V, ("mcp-method", "tools/call"), ("mcp-name", "other")],
            vec![V, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
            vec![V, ("mcp-name", "echo")],
            vec![V, ("mcp-method", "tools/call")],
            vec![
                V,
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-name", "echo"),
            ],
        ] {
            let (status, v) = send(&gw, "/mcp/up", &headers, &call("echo"), h2).await;
            assert_eq!(
                (status, v["error"]["code"].as_i64()),
                (400, Some(-32020)),
                "{headers:?} h2={h2}: {v}"
            );
            assert_eq!(v["id"], 5);
        }
        let (status, v) = send(
            &gw,
            "/mcp/up",
            &[V, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
            &json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}}),
            h2,
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_i64()),
            (400, Some(-32602)),
            "no _meta: {v}"
        );
    }
    assert_eq!(up.posts(), 0, "a refused request reached the upstream");
    // Headers that agree: forwarded byte for byte, headers included.
    let (status, _) = send(
        &gw,
        "/mcp/up",
        &[V, ("mcp-method", "tools/call"), ("mcp-name", " echo ")],
        &call("echo"),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(up.posts(), 1);
    assert_eq!(up.last_headers()["mcp-name"], "echo");
}

fn stdio_config() -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
proxy:
  servers:
    - name: fx
      type: stdio
      connection: {{ command: python3, args: ["-u", "{FIXTURE}"], timeout: 20s }}
"#
    )
}

#[tokio::test]
async fn a_legacy_stdio_upstream_serves_2026_07_28_through_the_gateway() {
    let gw = Gateway::start(&stdio_config()).await;
    let mux = gw
        .store
        .load()
        .upstreams
        .get("fx")
        .and_then(|u| u.shared.clone())
        .unwrap();
    assert!(mux.until_ready(std::time::Duration::from_secs(20)).await);
    let discover =
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":meta()}});
    let (status, v) = send(
        &gw,
        "/mcp/fx",
        &[V, ("mcp-method", "server/discover")],
        &discover,
        false,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = &v["result"];
    assert_eq!(r["supportedVersions"], json!(["2026-07-28"]), "{v}");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "fixture",
        "{v}"
    );
    assert!(r["capabilities"]["tools"].is_object(), "{v}");
    // The upstream's own: its list changes and updates reach listen streams.
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true, "{v}");
    assert_eq!(r["capabilities"]["resources"]["subscribe"], true, "{v}");
    assert_eq!(
        (r["resultType"].as_str(), r["cacheScope"].as_str()),
        (Some("complete"), Some("private"))
    );

    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":meta()}});
    let (_, v) = send(
        &gw,
        "/mcp/fx",
        &[V, ("mcp-method", "tools/list")],
        &list,
        false,
    )
    .await;
    let r = &v["result"];
    assert!(r["tools"].as_array().unwrap().len() > 3, "{v}");
    assert_eq!(
        (
            r["resultType"].as_str(),
            r["ttlMs"].as_u64(),
            r["cacheScope"].as_str()
        ),
        (Some("complete"), Some(0), Some("private")),
        "{v}"
    );

    let (_, v) = send(
        &gw,
        "/mcp/fx",
        &[V, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
        &call("echo"),
        false,
    )
    .await;
    assert_eq!(v["result"]["content"][0]["text"], "Echo: m", "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert_eq!(v["id"], 5);

    // A listen request without a filter: refused before anything is sent.
    let body =
        json!({"jsonrpc":"2.0","id":3,"method":"subscriptions/listen","params":{"_meta":meta()}});
    let (status, v) = send(
        &gw,
        "/mcp/fx",
        &[V, ("mcp-method", "subscriptions/listen")],
        &body,
        false,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (400, Some(-32602)),
        "{v}"
    );
    // Removed in 2026-07-28: 404 -32601, even when the classifier could not read its params.
    for method in ["ping", "resources/subscribe"] {
        let body = json!({"jsonrpc":"2.0","id":3,"method":method,"params":{"_meta":meta()}});
        let (status, v) = send(&gw, "/mcp/fx", &[V, ("mcp-method", method)], &body, false).await;
        assert_eq!(
            (status, v["error"]["code"].as_i64()),
            (404, Some(-32601)),
            "{method}: {v}"
        );
    }
    // No client notifications in 2026-07-28: taken and dropped.
    let note = json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"});
    let (status, _) = send(
        &gw,
        "/mcp/fx",
        &[V, ("mcp-method", "notifications/roots/list_changed")],
        &note,
        false,
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn the_aggregated_endpoint_serves_2026_07_28_statelessly() {
    let up = Upstream::start().await;
    let yaml = stdio_config().replace(
        "  servers:\n",
        &format!("  servers:\n    - name: up\n      type: streamable-http\n      connection: {{ url: \"http://{}/mcp\" }}\n", up.addr),
    );
    let gw = Gateway::start(&yaml).await;
    let mux = gw
        .store
        .load()
        .upstreams
        .get("fx")
        .and_then(|u| u.shared.clone())
        .unwrap();
    assert!(mux.until_ready(std::time::Duration::from_secs(20)).await);
    let discover =
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":meta()}});
    let (status, v) = send(
        &gw,
        "/mcp",
        &[V, ("mcp-method", "server/discover")],
        &discover,
        false,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = &v["result"];
    assert_eq!(r["supportedVersions"], json!(["2026-07-28"]), "{v}");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "portcullis",
        "{v}"
    );
    // List changes as the upstreams offer them: `subscriptions/listen` on /mcp merges theirs.
    assert!(
        r["capabilities"]["tools"]["listChanged"].is_boolean(),
        "{v}"
    );
    assert!(
        r.get("protocolVersion").is_none() && r.get("serverInfo").is_none(),
        "{v}"
    );
    // Lists: namespaced, completed, private.
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":meta()}});
    let (_, v) = send(
        &gw,
        "/mcp",
        &[V, ("mcp-method", "tools/list")],
        &list,
        false,
    )
    .await;
    let r = &v["result"];
    assert!(r["tools"].to_string().contains("fx__echo"), "{v}");
    assert_eq!(
        (
            r["resultType"].as_str(),
            r["ttlMs"].as_u64(),
            r["cacheScope"].as_str()
        ),
        (Some("complete"), Some(0), Some("private")),
        "{v}"
    );
    // A call to the stdio upstream, by its namespaced name in body and header alike.
    let headers = [V, ("mcp-method", "tools/call"), ("mcp-name", "fx__echo")];
    let (_, v) = send(&gw, "/mcp", &headers, &call("fx__echo"), false).await;
    assert_eq!(v["result"]["content"][0]["text"], "Echo: m", "{v}");
    // To an HTTP upstream: the upstream's own name in the body and in Mcp-Name.
    let posts = up.posts();
    let headers = [V, ("mcp-method", "tools/call"), ("mcp-name", "up__echo")];
    let (status, _) = send(&gw, "/mcp", &headers, &call("up__echo"), false).await;
    assert_eq!(status, 200);
    assert_eq!(up.posts(), posts + 1);
    assert_eq!(up.last_headers()["mcp-name"], "echo");
    assert!(up.last_headers().get("mcp-session-id").is_none());
    // Checked first: a header naming another tool is -32020 and reaches nobody.
    let posts = up.posts();
    let headers = [V, ("mcp-method", "tools/call"), ("mcp-name", "up__other")];
    let (status, v) = send(&gw, "/mcp", &headers, &call("up__echo"), false).await;
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{v}"
    );
    assert_eq!(up.posts(), posts);
    // Removed methods, a listen without its filter, GET.
    for (method, status_code, code) in [
        ("initialize", 404, -32601),
        ("subscriptions/listen", 400, -32602),
    ] {
        let body = json!({"jsonrpc":"2.0","id":3,"method":method,"params":{"_meta":meta()}});
        let (status, v) = send(&gw, "/mcp", &[V, ("mcp-method", method)], &body, false).await;
        assert_eq!(
            (status, v["error"]["code"].as_i64()),
            (status_code, Some(code)),
            "{method}: {v}"
        );
    }
    let resp = client()
        .get(gw.url("/mcp"))
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
}
