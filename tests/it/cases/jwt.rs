//! JWT verification and JWKS loading with real keys (`tests/fixtures/jwt/`): every rejection
//! asserts its exact `reason()`; key rotation, last-good-keys on failure, unknown-kid rate limit,
//! the verified-token cache, and OIDC discovery against an Okta-shaped issuer served locally.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::auth::jwks::{Jwks, JwksRefresher, JwksSource};
use portcullis::auth::jwt::{KeySet, Verifier};
use portcullis::auth::TokenCache;
use serde_json::{json, Value};

const ISS: &str = "https://example.okta.com/oauth2/default";
const AUD: &str = "api://portcullis";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keys() -> KeySet {
    KeySet::from_jwks_json(&read("jwks.json")).unwrap()
}

fn verifier() -> Verifier {
    // Configured with a trailing slash: comparison must not care.
    Verifier::new(
        vec![format!("{ISS}/")],
        vec![AUD.into()],
        Duration::from_secs(60),
    )
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now() + 300, "scp": ["mcp:read"]})
}

fn sign(alg: Algorithm, kid: Option<&str>, pem: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read(pem)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&read(pem)).unwrap(),
    };
    encode(&header, claims, &key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("rsa-1"), "rsa1.pem", claims)
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn reason(token: &str) -> &'static str {
    verifier().verify(token, &keys()).unwrap_err().reason()
}

#[test]
fn valid_rs256_token_is_accepted_with_its_claims() {
    let c = claims();
    let v = verifier().verify(&rs256(&c), &keys()).unwrap();
    assert_eq!(v.claims, c);
    assert_eq!(v.exp, c["exp"].as_u64().unwrap());
}

#[test]
fn valid_es256_token_is_accepted() {
    let token = sign(Algorithm::ES256, Some("ec-1"), "ec1.pem", &claims());
    let v = verifier().verify(&token, &keys()).unwrap();
    assert_eq!(v.claims["sub"], "alice");
}

#[test]
fn token_without_kid_is_tried_against_compatible_keys() {
    let token = sign(Algorithm::RS256, None, "rsa1.pem", &claims());
    assert!(verifier().verify(&token, &keys()).is_ok());
    let other = sign(Algorithm::RS256, None, "rsa2.pem", &claims());
    assert_eq!(reason(&other), "bad_signature");
}

#[test]
fn expired_token_is_rejected() {
    let mut c = claims();
    c["exp"] = json!(now() - 3600);
    assert_eq!(reason(&rs256(&c)), "expired");
}

#[test]
fn expired_within_leeway_is_accepted() {
    let mut c = claims();
    c["exp"] = json!(now() - 30);
    assert!(verifier().verify(&rs256(&c), &keys()).is_ok());
}

#[test]
fn nbf_in_the_future_is_rejected() {
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    assert_eq!(reason(&rs256(&c)), "not_yet_valid");
    c["nbf"] = json!(now() + 30); // within leeway
    assert!(verifier().verify(&rs256(&c), &keys()).is_ok());
}

#[test]
fn wrong_audience_is_rejected() {
    let mut c = claims();
    c["aud"] = json!("api://someone-else");
    assert_eq!(reason(&rs256(&c)), "bad_audience");
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(reason(&rs256(&c)), "bad_audience");
}

#[test]
fn audience_array_containing_ours_is_accepted() {
    let mut c = claims();
    c["aud"] = json!(["api://other", AUD]);
    assert!(verifier().verify(&rs256(&c), &keys()).is_ok());
}

#[test]
fn no_configured_audience_skips_the_check() {
    let v = Verifier::new(vec![ISS.into()], vec![], Duration::ZERO);
    let mut c = claims();
    c["aud"] = json!("anything");
    assert!(v.verify(&rs256(&c), &keys()).is_ok());
}

#[test]
fn wrong_issuer_is_rejected() {
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com/oauth2/default");
    assert_eq!(reason(&rs256(&c)), "bad_issuer");
    c["iss"] = json!(format!("{ISS}/")); // trailing slash in the token: still ours
    assert!(verifier().verify(&rs256(&c), &keys()).is_ok());
}

#[test]
fn alg_none_is_rejected() {
    let header = b64url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let payload = b64url(claims().to_string().as_bytes());
    assert_eq!(reason(&format!("{header}.{payload}.")), "alg_not_allowed");
    let header = b64url(br#"{"alg":"none"}"#);
    assert_eq!(reason(&format!("{header}.{payload}.")), "alg_not_allowed");
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let public_pem = read("rsa1.pub.pem");
    for kid in [Some("rsa-1"), None] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let token = encode(&header, &claims(), &EncodingKey::from_secret(&public_pem)).unwrap();
        assert_eq!(reason(&token), "alg_not_allowed");
    }
}

#[test]
fn alg_incompatible_with_the_key_type_is_rejected() {
    // An RS256 header pointing at the EC key.
    let token = sign(Algorithm::RS256, Some("ec-1"), "rsa1.pem", &claims());
    assert_eq!(reason(&token), "alg_not_allowed");
}

#[test]
fn tampered_payload_is_rejected() {
    let token = rs256(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["scp"] = json!(["mcp:admin"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url(c.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(reason(&forged), "bad_signature");
}

#[test]
fn unknown_kid_is_rejected() {
    let token = sign(Algorithm::RS256, Some("rsa-2"), "rsa2.pem", &claims());
    assert_eq!(reason(&token), "unknown_kid");
}

#[test]
fn missing_exp_is_rejected() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(reason(&rs256(&c)), "missing_exp");
}

#[test]
fn garbage_is_malformed() {
    for t in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
        assert_eq!(reason(t), "malformed", "{t:?}");
    }
}

#[test]
fn errors_never_contain_the_token() {
    let mut c = claims();
    c["exp"] = json!(now() - 3600);
    let token = rs256(&c);
    let err = verifier().verify(&token, &keys()).unwrap_err();
    let shown = format!("{err} {err:?}");
    for part in token.split('.') {
        assert!(!shown.contains(part));
    }
}

#[test]
fn symmetric_and_encryption_keys_are_never_loaded() {
    let doc = json!({"keys": [
        {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
        {"kty": "RSA", "use": "enc", "kid": "e", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "alg": "HS256", "kid": "x", "n": "AQAB", "e": "AQAB"},
    ]});
    assert!(KeySet::from_jwks_json(doc.to_string().as_bytes()).is_err());
    let set = keys();
    assert_eq!(set.len(), 2);
    assert!(set.contains_kid("rsa-1") && set.contains_kid("ec-1"));
}

#[test]
fn token_cache_hit_returns_the_same_claims_without_verifying() {
    let cache = TokenCache::new(64);
    let token = rs256(&claims());
    let v = verifier();
    let first = v.verify_cached(&token, &keys(), &cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (0, 1));
    // An empty key set: only a cache hit can succeed, so no signature check happened.
    let second = v.verify_cached(&token, &KeySet::default(), &cache).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(second.claims["sub"], "alice");
    assert_eq!(cache.hits(), 1);
    // A different token is not a hit.
    let other = sign(Algorithm::ES256, Some("ec-1"), "ec1.pem", &claims());
    assert!(v.verify_cached(&other, &KeySet::default(), &cache).is_err());
    // Failures are not cached.
    assert_eq!(cache.len(), 1);
}

#[test]
fn token_cache_is_bounded_and_skips_expired() {
    let cache = TokenCache::new(16);
    let v = verifier();
    let keys = keys();
    assert_eq!(cache.capacity(), 64, "16 rounded up to one entry per shard");
    // ES256: RSA signing is slow in debug builds.
    for i in 0..160 {
        let mut c = claims();
        c["n"] = json!(i);
        let token = sign(Algorithm::ES256, Some("ec-1"), "ec1.pem", &c);
        v.verify_cached(&token, &keys, &cache).unwrap();
    }
    assert!(cache.len() <= cache.capacity(), "{}", cache.len());
    // Within leeway: verifies, but is not cached past its exp.
    let mut c = claims();
    c["exp"] = json!(now() - 10);
    let t = rs256(&c);
    v.verify_cached(&t, &keys, &cache).unwrap();
    assert!(cache.get(&t).is_none());
}

#[tokio::test]
async fn jwks_from_file_and_file_url() {
    for uri in [
        fixture("jwks.json").display().to_string(),
        url::Url::from_file_path(fixture("jwks.json"))
            .unwrap()
            .to_string(),
    ] {
        let source = JwksSource::parse_jwks_uri(&uri).unwrap();
        assert!(matches!(source, JwksSource::File(_)));
        let jwks = Jwks::new(vec![source], Duration::from_secs(2)).unwrap();
        assert!(!jwks.ready());
        assert!(jwks.refresh().await.is_empty());
        assert!(jwks.ready());
        assert!(verifier().verify(&rs256(&claims()), &jwks.keys()).is_ok());
    }
    assert!(matches!(
        JwksSource::parse_jwks_uri("https://idp.example.com/keys").unwrap(),
        JwksSource::Url(_)
    ));
    assert!(JwksSource::parse_jwks_uri("ftp://idp.example.com/keys").is_err());
}

fn temp_jwks(from: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::copy(fixture(from), &path).unwrap();
    (dir, path)
}

#[tokio::test]
async fn key_rotation_is_picked_up_by_refresh() {
    let (_dir, path) = temp_jwks("jwks.json");
    let jwks = Jwks::new(vec![JwksSource::File(path.clone())], Duration::from_secs(2)).unwrap();
    jwks.refresh().await;
    let old = rs256(&claims());
    let new = sign(Algorithm::RS256, Some("rsa-2"), "rsa2.pem", &claims());
    assert!(verifier().verify(&old, &jwks.keys()).is_ok());
    assert_eq!(
        verifier().verify(&new, &jwks.keys()).unwrap_err().reason(),
        "unknown_kid"
    );

    std::fs::copy(fixture("jwks-rotated.json"), &path).unwrap();
    assert!(jwks.refresh().await.is_empty());
    assert!(verifier().verify(&new, &jwks.keys()).is_ok());
    assert_eq!(
        verifier().verify(&old, &jwks.keys()).unwrap_err().reason(),
        "unknown_kid"
    );
}

#[tokio::test]
async fn failed_refresh_keeps_the_last_good_set() {
    let (_dir, path) = temp_jwks("jwks.json");
    let jwks = Jwks::new(vec![JwksSource::File(path.clone())], Duration::from_secs(2)).unwrap();
    jwks.refresh().await;
    let token = rs256(&claims());

    std::fs::write(&path, b"{ not json").unwrap();
    assert_eq!(jwks.refresh().await.len(), 1);
    assert!(verifier().verify(&token, &jwks.keys()).is_ok());

    std::fs::remove_file(&path).unwrap();
    assert_eq!(jwks.refresh().await.len(), 1);
    assert!(jwks.ready());
    assert!(verifier().verify(&token, &jwks.keys()).is_ok());
}

#[tokio::test]
async fn never_loaded_is_not_ready() {
    let jwks = Jwks::new(
        vec![JwksSource::File(fixture("does-not-exist.json"))],
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(jwks.refresh().await.len(), 1);
    assert!(!jwks.ready());
    assert!(jwks.keys().is_empty());
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let (_dir, path) = temp_jwks("jwks.json");
    let jwks = Jwks::new(vec![JwksSource::File(path.clone())], Duration::from_secs(2))
        .unwrap()
        .with_unknown_kid_interval(Duration::from_secs(30));
    jwks.refresh().await;
    let new = sign(Algorithm::RS256, Some("rsa-2"), "rsa2.pem", &claims());

    std::fs::copy(fixture("jwks-rotated.json"), &path).unwrap();
    assert!(jwks.refresh_for_unknown_kid().await, "first call refreshes");
    assert!(verifier().verify(&new, &jwks.keys()).is_ok());

    std::fs::copy(fixture("jwks.json"), &path).unwrap();
    assert!(
        !jwks.refresh_for_unknown_kid().await,
        "second call is rate limited"
    );
    // Not reloaded: the rotated set is still live.
    assert!(jwks.keys().contains_kid("rsa-2"));
    assert!(!jwks.keys().contains_kid("rsa-1"));
}

/// An Okta-shaped issuer (`/oauth2/default`, keys at `/oauth2/default/v1/keys`) on 127.0.0.1:0.
async fn okta_like(keys_file: &'static str) -> (url::Url, Arc<AtomicUsize>) {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/oauth2/default");
    let key_hits = Arc::new(AtomicUsize::new(0));
    // The fields Okta's custom authorization servers publish (OIDC Discovery 1.0 requires the
    // endpoint and the three `*_supported` lists besides `issuer` and `jwks_uri`).
    let doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/v1/authorize"),
        "token_endpoint": format!("{issuer}/v1/token"),
        "jwks_uri": format!("{issuer}/v1/keys"),
        "response_types_supported": ["code", "id_token", "code id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
    })
    .to_string();
    let hits = key_hits.clone();
    let app = axum::Router::new()
        .route(
            "/oauth2/default/.well-known/openid-configuration",
            get(move || async move { doc }),
        )
        .route(
            "/oauth2/default/v1/keys",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async move { std::fs::read_to_string(fixture(keys_file)).unwrap() }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url::Url::parse(&issuer).unwrap(), key_hits)
}

#[tokio::test]
async fn oidc_discovery_okta_style_and_background_refresher() {
    let (issuer, hits) = okta_like("jwks.json").await;
    let jwks = Arc::new(
        Jwks::new(
            vec![JwksSource::Discovery(issuer.clone())],
            Duration::from_secs(2),
        )
        .unwrap(),
    );
    let refresher = JwksRefresher {
        jwks: jwks.clone(),
        interval: Duration::from_secs(3600),
        retry: Duration::from_millis(50),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        refresher
            .run(async move {
                let _ = stop_rx.await;
            })
            .await;
    });
    tokio::time::timeout(Duration::from_secs(5), async {
        while !jwks.ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let v = Verifier::new(vec![issuer.to_string()], vec![AUD.into()], Duration::ZERO);
    let mut c = claims();
    c["iss"] = json!(issuer.as_str());
    assert!(v.verify(&rs256(&c), &jwks.keys()).is_ok());
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn discovery_of_an_unreachable_issuer_fails_without_panicking() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let issuer = url::Url::parse(&format!("http://{addr}/oauth2/default")).unwrap();
    let jwks = Jwks::new(vec![JwksSource::Discovery(issuer)], Duration::from_secs(2)).unwrap();
    assert_eq!(jwks.refresh().await.len(), 1);
    assert!(!jwks.ready());
}

#[tokio::test]
async fn several_issuers_merge_and_one_outage_keeps_the_others() {
    let (issuer, _) = okta_like("jwks-rotated.json").await;
    let (_dir, path) = temp_jwks("jwks.json");
    let jwks = Jwks::new(
        vec![
            JwksSource::File(path.clone()),
            JwksSource::Discovery(issuer),
        ],
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(jwks.refresh().await.is_empty());
    let keys = jwks.keys();
    assert!(keys.contains_kid("rsa-1") && keys.contains_kid("rsa-2"));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(jwks.refresh().await.len(), 1);
    assert!(jwks.keys().contains_kid("rsa-1"));
}

#[test]
fn a_jwk_alg_pins_the_algorithm() {
    // rsa-1 is published with "alg": "RS256": a PS256 token for it is refused...
    let token = sign(Algorithm::PS256, Some("rsa-1"), "rsa1.pem", &claims());
    assert_eq!(reason(&token), "alg_not_allowed");
    // ...while the same key published without "alg" accepts any RSA algorithm.
    let mut doc: Value = serde_json::from_slice(&read("jwks.json")).unwrap();
    for k in doc["keys"].as_array_mut().unwrap() {
        k.as_object_mut().unwrap().remove("alg");
    }
    let unpinned = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
    assert!(verifier().verify(&token, &unpinned).is_ok());
}

#[test]
fn unverified_issuer_picks_the_issuer_without_verifying() {
    use portcullis::auth::jwt::unverified_issuer;
    assert_eq!(unverified_issuer(&rs256(&claims())).as_deref(), Some(ISS));
    assert_eq!(unverified_issuer("garbage"), None);
}

#[tokio::test]
async fn jwks_verify_refreshes_once_on_unknown_kid() {
    let (_dir, path) = temp_jwks("jwks.json");
    let jwks = Jwks::new(vec![JwksSource::File(path.clone())], Duration::from_secs(2)).unwrap();
    jwks.refresh().await;
    let cache = TokenCache::new(64);
    let v = verifier();
    // The IdP rotates to rsa-2: the first rsa-2 token triggers a refresh and is accepted.
    std::fs::copy(fixture("jwks-rotated.json"), &path).unwrap();
    let new = sign(Algorithm::RS256, Some("rsa-2"), "rsa2.pem", &claims());
    assert!(jwks.verify(&v, &cache, &new).await.is_ok());
    // A token with a kid nobody publishes: no second refresh inside the interval.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("nobody".into());
    let key = EncodingKey::from_rsa_pem(&read("rsa1.pem")).unwrap();
    let stranger = encode(&header, &claims(), &key).unwrap();
    let err = jwks.verify(&v, &cache, &stranger).await.unwrap_err();
    assert_eq!(err.reason(), "unknown_kid");
    assert!(!jwks.refresh_for_unknown_kid().await);
}

#[tokio::test]
async fn a_discovered_key_only_verifies_its_own_issuer() {
    // Issuer A (discovered) publishes rsa-2; issuer B is also trusted. A token signed with A's
    // key but claiming iss B must fail: one trusted issuer cannot mint tokens for another.
    let (issuer_a, _) = okta_like("jwks-rotated.json").await;
    let issuer_b = "https://b.example.com/oauth2/default";
    let jwks = Jwks::new(
        vec![JwksSource::Discovery(issuer_a.clone())],
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(jwks.refresh().await.is_empty());
    let v = Verifier::new(
        vec![issuer_a.to_string(), issuer_b.into()],
        vec![AUD.into()],
        Duration::ZERO,
    );
    let mut c = claims();
    c["iss"] = json!(issuer_a.as_str());
    let own = sign(Algorithm::RS256, Some("rsa-2"), "rsa2.pem", &c);
    assert!(v.verify(&own, &jwks.keys()).is_ok());
    c["iss"] = json!(issuer_b);
    let cross = sign(Algorithm::RS256, Some("rsa-2"), "rsa2.pem", &c);
    assert_eq!(
        v.verify(&cross, &jwks.keys()).unwrap_err().reason(),
        "bad_issuer"
    );
}

/// Lookups take no lock; inserts from many threads at once are all kept (writers of a shard
/// take turns, none overwrites another's map).
#[test]
fn token_cache_keeps_every_concurrent_insert() {
    use portcullis::auth::jwt::Verified;
    let cache = TokenCache::new(4096);
    let exp = now() + 600;
    std::thread::scope(|s| {
        for t in 0..8 {
            let cache = &cache;
            s.spawn(move || {
                for i in 0..200 {
                    let v = Verified {
                        claims: json!({ "t": t, "i": i }),
                        exp,
                        principal: Default::default(),
                        epoch: 0,
                    };
                    cache.insert(&format!("token-{t}-{i}"), Arc::new(v));
                }
            });
        }
    });
    assert_eq!(cache.len(), 1600);
    for t in 0..8 {
        for i in 0..200 {
            let hit = cache.get(&format!("token-{t}-{i}")).expect("kept");
            assert_eq!(hit.claims["i"], i);
        }
    }
}

#[test]
fn key_location_headers_are_ignored_and_kid_is_only_a_name() {
    // Signed by a key the issuer never published (rsa2), pointing the verifier at it every way a
    // header can: a URL (jku, x5u) or the key itself (jwk). None is followed or trusted.
    let attacker = EncodingKey::from_rsa_pem(&read("rsa2.pem")).unwrap();
    for (field, kid) in [
        ("jku", Some("rsa-1")),
        ("x5u", Some("rsa-1")),
        ("jwk", None),
        ("jku", None),
    ] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        match field {
            "jku" => header.jku = Some("https://evil.example.com/jwks.json".into()),
            "x5u" => header.x5u = Some("https://evil.example.com/cert.pem".into()),
            _ => {
                let jwks: Value = serde_json::from_slice(&read("jwks.json")).unwrap();
                let mut jwk: jsonwebtoken::jwk::Jwk =
                    serde_json::from_value(jwks["keys"][0].clone()).unwrap();
                jwk.common.key_id = Some("attacker".into());
                header.jwk = Some(jwk);
            }
        }
        let token = encode(&header, &claims(), &attacker).unwrap();
        let r = reason(&token);
        assert!(r == "bad_signature" || r == "unknown_kid", "{field}: {r}");
    }
    // A token the real key signed is accepted whatever such headers say: they are not read.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.jku = Some("https://evil.example.com/jwks.json".into());
    let key = EncodingKey::from_rsa_pem(&read("rsa1.pem")).unwrap();
    assert!(verifier()
        .verify(&encode(&header, &claims(), &key).unwrap(), &keys())
        .is_ok());
    // `kid` is looked up by name only: paths, URLs and near-misses name no key.
    for kid in [
        "../../../../etc/passwd",
        "rsa-1/../rsa-1",
        "https://evil.example.com/k",
        "rsa-1\0",
        "RSA-1",
        " rsa-1",
    ] {
        let token = sign(Algorithm::RS256, Some(kid), "rsa1.pem", &claims());
        assert_eq!(reason(&token), "unknown_kid", "kid {kid:?}");
    }
}
