//! JWT bearer verification, no I/O: the key set ([`KeySet`], built from a JWK set document), the
//! verifier ([`Verifier`]: per-key-type algorithm allow-list, signature, `iss`, `aud`, `exp`,
//! `nbf` with leeway). The bounded cache of verified tokens is [`crate::auth::cache`].
//!
//! Fetching and refreshing key sets is [`crate::auth::jwks`]'s job. Nothing here logs or returns
//! the token itself; errors carry a low-cardinality [`JwtError::reason`] label for metrics.
//!
//! Order of checks: header shape -> algorithm allowed at all (never `none`, never `HS*`) -> key
//! lookup by `kid` and algorithm/key-type compatibility -> signature -> `exp` -> `nbf` -> `iss` ->
//! `aud`. Signature checks are done by `jsonwebtoken` (pure-Rust `rust_crypto` backend); claim
//! checks are done here so that issuers compare trailing-slash-insensitively and every failure
//! maps to exactly one reason.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::keys::allowed_alg;
pub use super::keys::{Key, KeySet, KeySetError, KeyType};

/// At most this many keys are tried for a token that names no `kid`.
pub const MAX_KIDLESS_CANDIDATES: usize = 8;

/// Why a token was rejected. [`JwtError::reason`] gives the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments, or a header/payload that is not a JSON object.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header `alg` is not allowed (`none`, `HS*`, unknown), or not allowed for the key found.
    /// Holds a fixed label (never the attacker's raw header text).
    #[error("algorithm {0} not allowed")]
    AlgNotAllowed(&'static str),
    /// No key with the token's `kid` (or no key of a compatible type for a `kid`-less token).
    #[error("no key for this token's kid")]
    UnknownKid,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is missing or not one of the configured issuers.
    #[error("issuer not accepted")]
    BadIssuer,
    /// `aud` is missing or contains none of the configured audiences.
    #[error("audience not accepted")]
    BadAudience,
    /// The token has no numeric `exp`.
    #[error("token has no exp")]
    MissingExp,
}

impl JwtError {
    /// Low-cardinality label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgNotAllowed(_) => "alg_not_allowed",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::BadIssuer => "bad_issuer",
            JwtError::BadAudience => "bad_audience",
            JwtError::MissingExp => "missing_exp",
        }
    }
}

/// A verified token: its claims and expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The payload, as JSON.
    pub claims: Value,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// The principal these claims stand for, remembered per scope map.
    pub principal: super::scopes::ScopesMemo,
    /// The [`KeySet::epoch`] of the keys that verified it.
    pub epoch: u64,
}

/// Checks tokens against configured issuers and audiences. Build once per config; `verify`
/// allocates only what decoding the token needs.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Issuers with any trailing `/` removed.
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
    /// One signature-only `Validation` per allowed algorithm, built once (not per request).
    validations: Vec<(Algorithm, Validation)>,
}

impl Verifier {
    /// `issuers`: accepted `iss` values (compared exactly, except for a trailing `/`).
    /// `audiences`: `aud` must contain one of them; empty means `aud` is not checked.
    /// `leeway`: clock skew allowed on `exp` and `nbf`.
    pub fn new(issuers: Vec<String>, audiences: Vec<String>, leeway: Duration) -> Self {
        Self {
            issuers: issuers
                .into_iter()
                .map(|i| i.trim_end_matches('/').to_owned())
                .collect(),
            audiences,
            leeway: leeway.as_secs(),
            validations: ALLOWED_ALGS
                .iter()
                .map(|&alg| (alg, signature_only(alg)))
                .collect(),
        }
    }

    /// Verifies `token` against `keys` at the current time.
    pub fn verify(&self, token: &str, keys: &KeySet) -> Result<Verified, JwtError> {
        self.verify_at(token, keys, unix_now())
    }

    /// Verifies `token` against `keys` as if the time were `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, keys: &KeySet, now: u64) -> Result<Verified, JwtError> {
        let header = parse_header(token)?;
        let alg =
            allowed_alg(&header.alg).ok_or(JwtError::AlgNotAllowed(alg_label(&header.alg)))?;
        let validation = self
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or(JwtError::AlgNotAllowed(alg_name(alg)))?;
        let (claims, key) = match header.kid.as_deref() {
            Some(kid) => {
                let idx = keys.by_kid.get(kid).ok_or(JwtError::UnknownKid)?;
                let mut candidates = idx
                    .iter()
                    .filter_map(|&i| keys.keys.get(i))
                    .filter(|k| k.allows(alg))
                    .peekable();
                if candidates.peek().is_none() {
                    return Err(JwtError::AlgNotAllowed(alg_name(alg)));
                }
                verify_with(token, alg, validation, candidates)?
            }
            None => {
                let mut candidates = keys
                    .keys
                    .iter()
                    .filter(|k| k.allows(alg))
                    .take(MAX_KIDLESS_CANDIDATES)
                    .peekable();
                if candidates.peek().is_none() {
                    return Err(JwtError::UnknownKid);
                }
                verify_with(token, alg, validation, candidates)?
            }
        };
        let exp = self.check_claims(&claims, now)?;
        if let Some(bound) = &key.issuer {
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if iss.trim_end_matches('/') != bound {
                return Err(JwtError::BadIssuer);
            }
        }
        Ok(Verified {
            claims,
            exp,
            principal: Default::default(),
            epoch: keys.epoch,
        })
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<u64, JwtError> {
        let exp = match claims.get("exp") {
            None | Some(Value::Null) => return Err(JwtError::MissingExp),
            Some(v) => numeric_date(v).ok_or(JwtError::Malformed("exp is not a number"))?,
        };
        if exp.saturating_add(self.leeway) < now {
            return Err(JwtError::Expired);
        }
        if let Some(v) = claims.get("nbf") {
            let nbf = numeric_date(v).ok_or(JwtError::Malformed("nbf is not a number"))?;
            if nbf > now.saturating_add(self.leeway) {
                return Err(JwtError::NotYetValid);
            }
        }
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(JwtError::BadIssuer)?;
        let iss = iss.trim_end_matches('/');
        if !self.issuers.iter().any(|i| i == iss) {
            return Err(JwtError::BadIssuer);
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.iter().any(|x| x == a),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::BadAudience);
            }
        }
        Ok(exp)
    }
}

/// The `iss` of a token, NOT verified: only for choosing which issuer's keys to verify with.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let _header = parts.next()?;
    let payload = b64url_decode(parts.next()?)?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&payload).ok()?.iss
}

/// A fixed label for a header `alg` string, so errors never echo attacker-controlled text.
fn alg_label(alg: &str) -> &'static str {
    match alg {
        "none" => "none",
        "HS256" => "HS256",
        "HS384" => "HS384",
        "HS512" => "HS512",
        "ES512" => "ES512",
        _ => match allowed_alg(alg) {
            Some(a) => alg_name(a),
            None => "unrecognized",
        },
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "other",
    }
}

fn numeric_date(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

/// Every algorithm accepted for some key type.
const ALLOWED_ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A `Validation` that makes jsonwebtoken check only the signature (with exactly `alg`); claims
/// are checked by `Verifier::check_claims`.
fn signature_only(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

fn verify_with<'k>(
    token: &str,
    alg: Algorithm,
    validation: &Validation,
    candidates: impl Iterator<Item = &'k Key>,
) -> Result<(Value, &'k Key), JwtError> {
    let mut last = JwtError::BadSignature;
    for key in candidates {
        match jsonwebtoken::decode::<Value>(token, &key.decoding, validation) {
            Ok(data) => {
                return match data.claims {
                    Value::Object(_) => Ok((data.claims, key)),
                    _ => Err(JwtError::Malformed("payload is not a JSON object")),
                };
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                last = match e.kind() {
                    ErrorKind::InvalidSignature => JwtError::BadSignature,
                    ErrorKind::InvalidAlgorithm => JwtError::AlgNotAllowed(alg_name(alg)),
                    ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                        JwtError::Malformed("undecodable segment")
                    }
                    ErrorKind::InvalidToken => JwtError::Malformed("not a JWS compact token"),
                    _ => JwtError::BadSignature,
                };
                if matches!(last, JwtError::Malformed(_)) {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

struct RawHeader {
    alg: String,
    kid: Option<String>,
}

fn parse_header(token: &str) -> Result<RawHeader, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three segments"));
    };
    let bytes = b64url_decode(h).ok_or(JwtError::Malformed("header is not base64url"))?;
    #[derive(serde::Deserialize)]
    struct H {
        alg: Option<String>,
        kid: Option<String>,
        crit: Option<Value>,
    }
    let h: H =
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed("header is not JSON"))?;
    if h.crit.is_some() {
        // RFC 7515 4.1.11: we understand no extensions, so a critical one must be rejected.
        return Err(JwtError::Malformed("unsupported crit header"));
    }
    Ok(RawHeader {
        alg: h.alg.ok_or(JwtError::Malformed("header has no alg"))?,
        kid: h.kid,
    })
}

/// Decodes unpadded (or padded) base64url.
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
