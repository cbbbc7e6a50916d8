//! Who is calling: the identity a verified token carries, with the scopes its claims map to.
//! Audit lines, rate limits and session binding need the subject, not only the scopes.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// The token's `sub` (empty for an anonymous caller).
    pub subject: Box<str>,
    /// The token's `iss` (empty for an anonymous caller).
    pub issuer: Box<str>,
    /// The OAuth client the token was issued to (`cid`, `azp` or `client_id`), if named.
    pub client: Option<Box<str>>,
    /// The scopes the token's claims map to.
    pub scopes: BTreeSet<String>,
    /// True when authentication is off (`oauth.enabled: false`): the policy is not applied.
    pub anonymous: bool,
    /// [`Principal::tag`], computed once (a principal lives as long as its cached token).
    pub tag: std::sync::OnceLock<[u8; 16]>,
    /// The token's claims (`claim:NAME` rate limits read them); not shown by `Debug`.
    pub claims: Claims,
}

/// A verified token's claims, kept for decisions that read a claim; `Debug` shows only the
/// claim names (values may identify a person).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Claims(pub Value);

impl Claims {
    /// The values of `claim`, read as `auth.claims` reads them
    /// ([`super::claims::claim_values`]: dotted paths, space-separated strings, arrays of
    /// strings; no duplicates); empty when absent.
    pub fn values(&self, claim: &str) -> Vec<&str> {
        super::claims::claim_values(&self.0, claim)
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Value::Object(m) => f.debug_set().entries(m.keys()).finish(),
            _ => f.write_str("{}"),
        }
    }
}

impl Principal {
    /// The caller of a gateway without authentication.
    pub fn anonymous() -> Arc<Principal> {
        static ANONYMOUS: std::sync::OnceLock<Arc<Principal>> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| {
                Arc::new(Principal {
                    anonymous: true,
                    ..Principal::default()
                })
            })
            .clone()
    }

    /// The principal of verified `claims` holding `scopes`.
    pub fn from_claims(claims: &Value, scopes: BTreeSet<String>) -> Principal {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
        let client = ["cid", "azp", "client_id"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .map(Box::from);
        Principal {
            subject: text("sub").into(),
            issuer: text("iss").into(),
            client,
            scopes,
            anonymous: false,
            tag: std::sync::OnceLock::new(),
            claims: Claims(claims.clone()),
        }
    }

    /// 16 bytes of SHA-256 over issuer, NUL and subject: what a sealed `/mcp` session is bound
    /// to (no identifying text in the id, the same on every replica).
    pub fn tag(&self) -> [u8; 16] {
        *self.tag.get_or_init(|| {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(self.issuer.as_bytes());
            h.update([0]);
            h.update(self.subject.as_bytes());
            let d = h.finalize();
            let mut out = [0u8; 16];
            out.copy_from_slice(&d[..16]);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_from_okta_claims() {
        let claims =
            json!({"sub": "00u1", "iss": "https://x.okta.com/oauth2/default", "cid": "0oa9"});
        let p = Principal::from_claims(&claims, BTreeSet::from(["s".to_string()]));
        assert_eq!(&*p.subject, "00u1");
        assert_eq!(p.client.as_deref(), Some("0oa9"));
        assert!(!p.anonymous);
        assert!(Principal::anonymous().anonymous);
    }
}
