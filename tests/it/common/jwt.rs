//! Tokens for gateways with authentication on: RS256, signed with the test key of
//! `tests/fixtures/jwt`, whose public half the gateway reads from a `file://` JWKS.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// The issuer the tokens name.
pub const ISSUER: &str = "https://issuer.example.com/oauth2/default";

/// A file of `tests/fixtures/jwt`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The `oauth` section accepting [`token`]s (audience `api://default`), with `groups` read.
pub fn oauth_section() -> String {
    format!(
        r#"oauth:
  enabled: true
  provider: okta
  authorization_servers: ["{ISSUER}"]
  audiences: ["api://default"]
  jwks_uri: "file://{}"
"#,
        fixture("jwks.json")
    )
}

/// A token for `sub` in `groups`, valid for 10 minutes.
pub fn token(sub: &str, groups: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({
        "iss": ISSUER, "aud": "api://default", "sub": sub,
        "iat": now, "exp": now + 600, "groups": groups,
    });
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa1.pem")).unwrap()).unwrap();
    encode(&header, &claims, &key).unwrap()
}
