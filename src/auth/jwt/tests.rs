//! Tests of [`super`].
use super::*;

#[test]
fn b64url_roundtrip_known_values() {
    assert_eq!(
        b64url_decode("eyJhIjoxfQ").as_deref(),
        Some(&b"{\"a\":1}"[..])
    );
    assert_eq!(b64url_decode("").as_deref(), Some(&b""[..]));
    assert!(b64url_decode("a").is_none());
    assert!(b64url_decode("ab+c").is_none());
}

#[test]
fn alg_allow_list() {
    for bad in ["none", "HS256", "HS384", "HS512", "RSA-OAEP", ""] {
        assert!(allowed_alg(bad).is_none(), "{bad}");
    }
    assert!(KeyType::Rsa.allows(Algorithm::PS384));
    assert!(!KeyType::Rsa.allows(Algorithm::ES256));
    assert!(!KeyType::EcP256.allows(Algorithm::ES384));
    assert!(!KeyType::Ed25519.allows(Algorithm::HS256));
}
