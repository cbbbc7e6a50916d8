//! Authentication and call authorization inline on `/mcp/{server}`: 401 with
//! `WWW-Authenticate` and RFC 9728 metadata, denied calls answered "Unknown tool" without ever
//! reaching the upstream.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::{client, Gateway, Upstream};

const ISSUER: &str = "https://issuer.example.com/oauth2/default";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: true
  provider: okta
  authorization_servers: ["{ISSUER}"]
  audiences: ["api://default"]
  jwks_uri: "file://{jwks}"
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
    "groups:Admin": ["scope:admin"]
  permissions:
    "up:echo": ["scope:user", "scope:admin"]
    "up:*": ["scope:admin"]
proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
"#,
        jwks = fixture("jwks.json")
    )
}

pub(crate) fn token(groups: &[&str], exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({
        "iss": ISSUER, "aud": "api://default", "sub": "alice",
        "iat": now, "exp": now + exp_offset, "groups": groups,
    });
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa1.pem")).unwrap()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

async fn call(gw: &Gateway, bearer: Option<&str>, tool: &str) -> reqwest::Response {
    let mut req = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{}}}).to_string());
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn no_token_is_401_with_resource_metadata() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let resp = call(&gw, None, "echo").await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp/up\""
    );
    assert_eq!(up.posts(), 0);
    // Answered by the front door (one decision; a refused token is checked once).
    assert_eq!(gw.served(), (1, 0));
}

#[tokio::test]
async fn bad_or_expired_tokens_are_401_invalid_token() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let expired = token(&["User"], -3600);
    for bad in ["not-a-jwt", expired.as_str()] {
        let resp = call(&gw, Some(bad), "echo").await;
        assert_eq!(resp.status(), 401);
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("resource_metadata="), "{challenge}");
    }
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn an_allowed_call_reaches_the_upstream_without_the_token() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let resp = call(&gw, Some(&token(&["User"], 600)), "echo").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v.get("result").is_some(), "{v}");
    assert_eq!(up.posts(), 1);
    assert!(up.last_headers().get("authorization").is_none());
    assert_eq!(gw.served(), (1, 0), "the front door served it");
}

#[tokio::test]
async fn a_denied_call_is_an_unknown_tool_and_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let resp = call(&gw, Some(&token(&["User"], 600)), "delete_everything").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32602);
    assert_eq!(v["error"]["message"], "Unknown tool: delete_everything");
    assert_eq!(up.posts(), 0);
    // The admin group may call it.
    let resp = call(&gw, Some(&token(&["Admin"], 600)), "delete_everything").await;
    let v: Value = resp.json().await.unwrap();
    assert!(v.get("result").is_some(), "{v}");
    assert_eq!(up.posts(), 1);
}

#[tokio::test]
async fn protected_resource_metadata_names_the_endpoint_and_issuers() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    for (path, resource) in [
        (
            "/.well-known/oauth-protected-resource/mcp/up",
            "http://127.0.0.1:8080/mcp/up",
        ),
        (
            "/.well-known/oauth-protected-resource",
            "http://127.0.0.1:8080",
        ),
    ] {
        let v: Value = client()
            .get(gw.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["resource"], resource);
        assert_eq!(v["authorization_servers"][0], ISSUER);
        let scopes: Vec<&str> = v["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(
            scopes.contains(&"scope:user") && scopes.contains(&"scope:admin"),
            "{v}"
        );
    }
}

async fn list(gw: &Gateway, bearer: &str, mode: &str) -> String {
    client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {bearer}"))
        .header("x-test-reply", mode)
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn tools_list_is_filtered_per_caller_in_json() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let user: Value =
        serde_json::from_str(&list(&gw, &token(&["User"], 600), "tools").await).unwrap();
    let names: Vec<&str> = user["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo"]);
    assert_eq!(user["result"]["cacheScope"], "private");
    let admin: Value =
        serde_json::from_str(&list(&gw, &token(&["Admin"], 600), "tools").await).unwrap();
    assert_eq!(admin["result"]["tools"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn tools_list_is_filtered_per_caller_in_sse_and_other_events_pass_untouched() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let text = list(&gw, &token(&["User"], 600), "tools-sse").await;
    // The notification event passes byte for byte (CRLF kept).
    assert!(text.starts_with(
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\r\n\r\n"
    ), "{text}");
    // The list event is rewritten: id kept, hidden tool gone.
    assert!(text.contains("id: 9\nevent: message\ndata: "), "{text}");
    assert!(text.contains("\"echo\""), "{text}");
    assert!(!text.contains("delete_everything"), "{text}");
    let admin = list(&gw, &token(&["Admin"], 600), "tools-sse").await;
    assert!(admin.contains("delete_everything"), "{admin}");
}

#[tokio::test]
async fn a_batch_holding_a_list_request_is_refused_whole() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let resp = client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", token(&["Admin"], 600)))
        .body(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert_eq!(up.posts(), 0);
}

#[tokio::test]
async fn denial_modes_forbidden_and_step_up() {
    let up = Upstream::start().await;
    let base = config(up.addr).replace(
        "  permissions:",
        "  options:\n    on_denied: MODE\n  permissions:",
    );
    let gw = Gateway::start(&base.replace("MODE", "forbidden")).await;
    let resp = call(&gw, Some(&token(&["User"], 600)), "delete_everything").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32003);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Forbidden"),
        "{v}"
    );

    let gw = Gateway::start(&base.replace("MODE", "step_up")).await;
    let resp = call(&gw, Some(&token(&["User"], 600)), "delete_everything").await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"scope:admin\""),
        "{challenge}"
    );
    assert_eq!(up.posts(), 0);
}

fn b64url(data: &[u8]) -> String {
    use base64_lite::encode;
    encode(data)
}

/// Minimal base64url (no padding), enough to hand-craft hostile tokens.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
            for c in chars.iter().take(chunk.len() + 1) {
                out.push(ALPHABET[*c as usize] as char);
            }
        }
        out
    }
}

fn signed(header: Header, claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa1.pem")).unwrap()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

fn claims_with(patch: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = json!({"iss": ISSUER, "aud": "api://default", "sub": "alice", "iat": now, "exp": now + 600, "groups": ["Admin"]});
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn every_kind_of_bad_token_is_401_over_http() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(up.addr)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rsa = |patch: Value| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("rsa-1".into());
        signed(h, claims_with(patch))
    };
    let payload = b64url(claims_with(json!({})).to_string().as_bytes());
    let alg_none = format!("{}.{payload}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        let secret = std::fs::read(fixture("rsa1.pub.pem")).unwrap();
        encode(
            &h,
            &claims_with(json!({})),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap()
    };
    let tampered = {
        let good = rsa(json!({}));
        let parts: Vec<&str> = good.split('.').collect();
        let evil = b64url(
            claims_with(json!({"groups": ["Admin", "Root"]}))
                .to_string()
                .as_bytes(),
        );
        format!("{}.{evil}.{}", parts[0], parts[2])
    };
    let unknown_kid = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("no-such-key".into());
        signed(h, claims_with(json!({})))
    };
    let cases = [
        ("alg none", alg_none),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key,
        ),
        ("tampered payload", tampered),
        ("unknown kid", unknown_kid),
        ("wrong audience", rsa(json!({"aud": "api://other"}))),
        (
            "wrong issuer",
            rsa(json!({"iss": "https://evil.example.com/oauth2/default"})),
        ),
        ("not yet valid", rsa(json!({"nbf": now + 3600}))),
        ("expired", rsa(json!({"exp": now - 3600}))),
    ];
    for (what, token) in cases {
        let resp = call(&gw, Some(&token), "echo").await;
        assert_eq!(resp.status(), 401, "{what}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    assert_eq!(up.posts(), 0);
    // And the same claims, properly signed, pass.
    assert_eq!(call(&gw, Some(&rsa(json!({}))), "echo").await.status(), 200);
}
