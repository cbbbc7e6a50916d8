//! Who may read the admin endpoints: `server.admin_listen` moves them to a listener of their
//! own (the main one answers 404 for them, the admin one serves nothing else);
//! `server.admin_scope` guards `/status` on the main listener; `server.metrics_auth` guards
//! `/metrics` wherever it is served.

use base64::Engine;
use serde_json::{json, Value};

use crate::common::jwt::{oauth_section, token};
use crate::common::{client, Gateway, Upstream};

const ADMIN: [&str; 4] = ["/live", "/ready", "/metrics", "/status"];

fn config(upstream: std::net::SocketAddr, server: &str, auth: bool) -> String {
    let oauth = if auth {
        oauth_section()
            + r#"auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
    "groups:Ops": ["scope:admin"]
  permissions:
    "up:*": ["scope:user"]
"#
    } else {
        "oauth:\n  enabled: false\n".to_owned()
    };
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
{server}
{oauth}proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
"#
    )
}

fn basic(user: &str, pass: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

async fn get(url: String, authorization: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn an_admin_listener_takes_the_admin_endpoints_and_serves_nothing_else() {
    let up = Upstream::start().await;
    let server = "  admin_listen: \"127.0.0.1:0\"";
    let gw = Gateway::start(&config(up.addr, server, true)).await;
    gw.health.probe(&gw.store, None).await;
    for path in ADMIN {
        let main = get(gw.url(path), None).await;
        assert_eq!(main.status(), 404, "{path} on the main listener");
        let admin = get(gw.admin_url(path), None).await;
        assert_eq!(admin.status(), 200, "{path} on the admin listener");
    }
    // `/status` needs no token there (the listener is the boundary).
    let v: Value = get(gw.admin_url("/status"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["upstreams"][0]["name"], "up");
    // No MCP, no metadata on the admin listener, whatever the token.
    let ops = format!("Bearer {}", token("ops", &["Ops", "User"]));
    for path in [
        "/mcp/up",
        "/mcp",
        "/.well-known/oauth-protected-resource/mcp/up",
    ] {
        let resp = client()
            .post(gw.admin_url(path))
            .header("content-type", "application/json")
            .header("authorization", &ops)
            .body(
                json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(
            get(gw.admin_url(path), Some(&ops)).await.status(),
            404,
            "GET {path}"
        );
    }
    assert_eq!(
        up.posts(),
        0,
        "nothing reached the upstream through the admin listener"
    );
}

#[tokio::test]
async fn status_on_the_main_listener_needs_the_admin_scope() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr, "  admin_scope: \"scope:admin\"", true)).await;
    let none = get(gw.url("/status"), None).await;
    assert_eq!(none.status(), 401);
    assert!(none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer "));
    let bad = get(gw.url("/status"), Some("Bearer not.a.token")).await;
    assert_eq!(bad.status(), 401);
    let user = format!("Bearer {}", token("alice", &["User"]));
    let denied = get(gw.url("/status"), Some(&user)).await;
    assert_eq!(denied.status(), 403);
    let challenge = denied.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("scope:admin"),
        "{challenge}"
    );
    let body = denied.text().await.unwrap();
    assert!(!body.contains("upstreams"), "{body}");
    let ops = format!("Bearer {}", token("ops", &["Ops"]));
    let ok = get(gw.url("/status"), Some(&ops)).await;
    assert_eq!(ok.status(), 200);
    // Probes stay open.
    assert_eq!(get(gw.url("/live"), None).await.status(), 200);
}

#[tokio::test]
async fn status_without_an_admin_scope_is_closed_when_authentication_is_on() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr, "", true)).await;
    let ops = format!("Bearer {}", token("ops", &["Ops", "User"]));
    let resp = get(gw.url("/status"), Some(&ops)).await;
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    assert!(text.contains("admin_scope"), "{text}");
}

#[tokio::test]
async fn metrics_take_basic_auth_on_either_listener() {
    let up = Upstream::start().await;
    for admin in [false, true] {
        let mut server = "  metrics_auth: { username: prom, password: \"s3cr:t\" }".to_owned();
        if admin {
            server.push_str("\n  admin_listen: \"127.0.0.1:0\"");
        }
        let gw = Gateway::start(&config(up.addr, &server, false)).await;
        let url = if admin {
            gw.admin_url("/metrics")
        } else {
            gw.url("/metrics")
        };
        for wrong in [
            None,
            Some(basic("prom", "wrong")),
            Some(basic("prom", "s3cr:t ")),
            Some(basic("Prom", "s3cr:t")),
            Some("Bearer x".to_owned()),
            Some("Basic !!!".to_owned()),
        ] {
            let resp = get(url.clone(), wrong.as_deref()).await;
            assert_eq!(resp.status(), 401, "{wrong:?}");
            let c = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(c.starts_with("Basic realm="), "{c}");
            assert!(!resp.text().await.unwrap().contains("portcullis_"));
        }
        let resp = get(url.clone(), Some(&basic("prom", "s3cr:t"))).await;
        assert_eq!(resp.status(), 200);
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("portcullis_requests_total"));
        // The scheme is case-insensitive.
        let lower = basic("prom", "s3cr:t").replacen("Basic", "basic", 1);
        assert_eq!(get(url, Some(&lower)).await.status(), 200);
    }
}
