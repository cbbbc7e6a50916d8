//! Verification keys: a JWK set document turned into the keys the verifier may use
//! ([`KeySet`]: public signature keys only, by `kid`, each with the algorithms its type allows),
//! and which keys a refresh retired ([`KeySet::succeeding`]).

use std::collections::HashMap;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The kind of a public key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC on P-256: ES256.
    EcP256,
    /// EC on P-384: ES384.
    EcP384,
    /// OKP Ed25519: EdDSA.
    Ed25519,
}

impl KeyType {
    /// Whether `alg` may be verified with a key of this type.
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyType::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyType::EcP256 => alg == ES256,
            KeyType::EcP384 => alg == ES384,
            KeyType::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key of a [`KeySet`].
#[derive(Clone)]
pub struct Key {
    /// The JWK `kid`, if any.
    pub kid: Option<String>,
    /// Key type, deciding the allowed algorithms.
    pub key_type: KeyType,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    /// The issuer whose key this is (keys found by discovery), without a trailing `/`. A token
    /// verified by this key must carry this `iss`, so one trusted issuer cannot mint tokens for
    /// another. `None` (keys from a configured `jwks_uri`): any configured issuer.
    pub issuer: Option<String>,
    /// SHA-256 of the JWK as published: tells a retired key from a kept one across refreshes.
    fingerprint: [u8; 32],
    pub(super) decoding: DecodingKey,
}

impl Key {
    pub(super) fn allows(&self, alg: Algorithm) -> bool {
        self.key_type.allows(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a JWK set document could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// Not JSON, or no `keys` array.
    #[error("not a JWK set: {0}")]
    NotJwkSet(String),
    /// The document parsed but held no usable signature key.
    #[error("JWK set has no usable signature key ({skipped} skipped)")]
    NoUsableKey {
        /// Keys present but skipped (encryption keys, symmetric keys, unsupported curves...).
        skipped: usize,
    },
}

/// Verification keys by `kid`: public keys only (symmetric `oct` keys and `use: enc` keys are
/// skipped when building it, so HMAC can never be verified against anything here).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub(super) keys: Vec<Key>,
    pub(super) by_kid: HashMap<String, Vec<usize>>,
    skipped: usize,
    /// Bumped by each refresh that retired a key (see [`KeySet::succeeding`]): a token verified
    /// under an older epoch is verified again, so a retired key stops working at once.
    pub(super) epoch: u64,
}

impl KeySet {
    /// Builds a key set from a JWK set document (`{"keys": [...]}`). Keys that cannot be used for
    /// signature verification are skipped (counted in [`KeySet::skipped`]); a document with no
    /// usable key is an error.
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, KeySetError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc =
            serde_json::from_slice(json).map_err(|e| KeySetError::NotJwkSet(e.to_string()))?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        let mut skipped = 0;
        for raw in doc.keys {
            match key_from_jwk_value(raw) {
                Some(k) => keys.push(k),
                None => skipped += 1,
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey { skipped });
        }
        let mut set = Self::from_keys(keys);
        set.skipped = skipped;
        Ok(set)
    }

    /// Binds every key of this set to `issuer` (see [`Key::issuer`]).
    pub fn bound_to_issuer(mut self, issuer: &str) -> Self {
        let issuer = issuer.trim_end_matches('/');
        for k in &mut self.keys {
            k.issuer = Some(issuer.to_owned());
        }
        self
    }

    /// Builds a key set from keys (e.g. the union of several issuers' sets).
    pub fn from_keys(keys: Vec<Key>) -> Self {
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
        }
        Self {
            keys,
            by_kid,
            skipped: 0,
            epoch: 0,
        }
    }

    /// This set as the successor of `previous`: same epoch, or the next one when a key of
    /// `previous` (same JWK, same issuer binding) is gone from this set.
    pub fn succeeding(mut self, previous: &KeySet) -> Self {
        let retired = previous.keys.iter().any(|old| {
            !self
                .keys
                .iter()
                .any(|k| k.fingerprint == old.fingerprint && k.issuer == old.issuer)
        });
        self.epoch = previous.epoch + u64::from(retired);
        self
    }

    /// How many refreshes retired a key so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The union of several key sets (keys with the same `kid` are all kept and all tried).
    pub fn merged<'a>(sets: impl IntoIterator<Item = &'a KeySet>) -> Self {
        let keys = sets
            .into_iter()
            .flat_map(|s| s.keys.iter().cloned())
            .collect();
        Self::from_keys(keys)
    }

    /// All keys, in document order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys present in the document but skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether a key with this `kid` exists.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}

fn key_from_jwk_value(raw: Value) -> Option<Key> {
    if raw
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let pinned = match raw.get("alg").and_then(Value::as_str) {
        None => None,
        // A key pinned to an algorithm we never accept (HS*, RSA-OAEP, ...) is unusable.
        Some(a) => Some(allowed_alg(a)?),
    };
    let fingerprint: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(raw.to_string().as_bytes()).into()
    };
    let jwk: Jwk = serde_json::from_value(raw).ok()?;
    let key_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyType::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyType::EcP256,
            EllipticCurve::P384 => KeyType::EcP384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyType::Ed25519,
            _ => return None,
        },
        // Symmetric keys are never loaded: no HMAC verification, ever.
        _ => return None,
    };
    if pinned.is_some_and(|a| !key_type.allows(a)) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        issuer: None,
        fingerprint,
        key_type,
        alg: pinned,
        decoding,
    })
}

/// Maps a header/JWK `alg` string to an algorithm we accept for some key type; `None` for
/// `none`, every `HS*`, and anything unknown.
pub(super) fn allowed_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA" => {
            Algorithm::from_str(alg).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(kids: &[&str]) -> KeySet {
        let jwks = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt/jwks.json"
        ))
        .unwrap();
        let mut doc: Value = serde_json::from_slice(&jwks).unwrap();
        if let Some(keys) = doc["keys"].as_array_mut() {
            keys.retain(|k| kids.contains(&k["kid"].as_str().unwrap_or_default()));
        }
        KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_refresh_that_drops_a_key_starts_a_new_epoch() {
        let both = set(&["rsa-1", "ec-1"]);
        assert_eq!(both.epoch(), 0);
        // Same keys, or one added: same epoch (cached tokens stay valid).
        let same = set(&["rsa-1", "ec-1"]).succeeding(&both);
        assert_eq!(same.epoch(), 0);
        let one = set(&["rsa-1"]);
        let added = set(&["rsa-1", "ec-1"]).succeeding(&one);
        assert_eq!(added.epoch(), 0);
        // A key retired: the next epoch.
        let retired = set(&["ec-1"]).succeeding(&both);
        assert_eq!(retired.epoch(), 1);
        assert_eq!(set(&["ec-1"]).succeeding(&retired).epoch(), 1);
        // The same kid bound to another issuer is another key.
        let bound = set(&["ec-1"]).bound_to_issuer("https://a.example");
        assert_eq!(set(&["ec-1"]).succeeding(&bound).epoch(), 1);
    }
}
