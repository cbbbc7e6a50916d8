//! `examples/okta-ingress/gateway.yaml` as shipped, twice (two replicas sharing one session
//! key, as behind a load balancer without stickiness), in front of server-everything, with the
//! Okta-like OpenID provider of the suite issuing the tokens: RFC 9728 metadata, the 401
//! challenge, a session opened on one replica and used on the other, tool lists and calls per
//! group, the admin port.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{free_port, gateway_command, start_gateway, start_peer, Peers, Upstream};
use crate::oauth::{Idp, ADMIN, USER};

const KEY: &str = "c2hhcmVkLWJ5LWV2ZXJ5LXJlcGxpY2Etb2Yta2V5eHg=";

async fn rpc(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    sid: Option<&str>,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|d| d.contains("\"id\""))
        .map(str::to_owned)
        .unwrap_or(text);
    (
        status,
        sid,
        serde_json::from_str(&data).unwrap_or(Value::Null),
    )
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn two_replicas_behind_an_okta_style_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let peers = Peers::locate();
    let client = reqwest::Client::new();
    let idp = Idp::start(&peers, &client).await;
    let (_everything, everything_url) = start_peer(Upstream::Everything, &peers, dir.path()).await;
    let example = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/okta-ingress/gateway.yaml"
    ));
    let (port_a, port_b) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port_a}");
    let mut replicas = Vec::new();
    for port in [port_a, port_b] {
        let admin = free_port();
        let mut cmd = gateway_command(example);
        cmd.env("OKTA_ISSUER", &idp.issuer)
            .env("PORTCULLIS_PUBLIC_URL", &public)
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("PORTCULLIS_SESSION_KEY", KEY)
            .env("EVERYTHING_URL", &everything_url);
        // /ready is on the admin port.
        let sub = dir.path().join(format!("replica-{port}"));
        std::fs::create_dir_all(&sub).unwrap();
        let (proc, admin_base) = start_gateway(cmd, admin, &client, &sub).await;
        replicas.push((proc, format!("http://127.0.0.1:{port}"), admin_base));
    }
    let (a, b) = (&replicas[0].1, &replicas[1].1);

    // RFC 9728: the public URL and the Okta issuer; 401 points at it.
    let meta: Value = client
        .get(format!("{a}/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], format!("{public}/mcp"), "{meta}");
    assert_eq!(
        meta["authorization_servers"][0],
        idp.issuer.as_str(),
        "{meta}"
    );
    let resp = client
        .post(format!("{b}/mcp"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{public}/.well-known/oauth-protected-resource/mcp\""
        )),
        "{challenge}"
    );

    // Users: a session opened on A, used on B.
    let user = idp.token(&client, USER, "api://default").await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
    let (status, sid, v) = rpc(&client, &format!("{a}/mcp"), &user, None, init.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let sid = sid.expect("a session id");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    let (_, _, v) = rpc(
        &client,
        &format!("{b}/mcp"),
        &user,
        Some(&sid),
        list.clone(),
    )
    .await;
    let mut got = names(&v);
    got.sort();
    assert_eq!(got, ["everything__echo", "everything__get-sum"], "{v}");
    let echo = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"via b"}}});
    let (_, _, v) = rpc(&client, &format!("{b}/mcp"), &user, Some(&sid), echo).await;
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("via b"),
        "{v}"
    );
    let tiny = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"everything__get-tiny-image","arguments":{}}});
    let (_, _, v) = rpc(
        &client,
        &format!("{a}/mcp"),
        &user,
        Some(&sid),
        tiny.clone(),
    )
    .await;
    assert_eq!(v["error"]["code"], -32602, "hidden from users: {v}");

    // Admins see and call everything; another caller's session id is not theirs.
    let admin = idp.token(&client, ADMIN, "api://default").await;
    let (status, _, _) = rpc(
        &client,
        &format!("{a}/mcp"),
        &admin,
        Some(&sid),
        list.clone(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a user's session is not the admin's"
    );
    let (_, admin_sid, _) = rpc(&client, &format!("{b}/mcp"), &admin, None, init).await;
    let admin_sid = admin_sid.unwrap();
    let (_, _, v) = rpc(&client, &format!("{a}/mcp"), &admin, Some(&admin_sid), list).await;
    assert!(names(&v).len() > 5, "{v}");
    let (_, _, v) = rpc(&client, &format!("{a}/mcp"), &admin, Some(&admin_sid), tiny).await;
    assert!(v["result"]["content"].is_array(), "{v}");

    // The admin port serves /status without a token; the main port does not serve it.
    for (_, main, admin_base) in &replicas {
        let s = client
            .get(format!("{admin_base}/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(s.status(), StatusCode::OK);
        let s = client.get(format!("{main}/status")).send().await.unwrap();
        assert_eq!(s.status(), StatusCode::NOT_FOUND);
    }
}
