//! Authentication on the request path: a bearer token is verified ([`super::jwt`], keys from
//! [`super::jwks`], a repeated token answered by [`super::cache`]) and becomes the caller's
//! [`Principal`] under the snapshot's claims-to-scopes map. The token itself is never logged or
//! stored (the cache keys on its hash).

use std::sync::Arc;
use std::time::Duration;

use super::cache::TokenCache;
use super::jwks::{Jwks, JwksError, JwksSource};
use super::jwt::Verifier;
use super::principal::Principal;
use super::scopes::ScopeMap;
use crate::config::Config;
use crate::telemetry::metrics::metrics;

/// Verified tokens kept, so a repeated token costs no signature check.
const TOKEN_CACHE: usize = 16 * 1024;

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No usable `Authorization: Bearer` header.
    Missing,
    /// A token was sent and refused; the low-cardinality reason.
    Invalid(&'static str),
}

/// Everything needed to authenticate requests; built once at start (the `oauth` section is
/// startup-only).
pub struct Authn {
    /// Signing keys, refreshed in the background.
    pub jwks: Arc<Jwks>,
    verifier: Verifier,
    cache: TokenCache,
    /// How often the background refresher fetches the keys again (`oauth.jwks_refresh`).
    pub refresh: Duration,
}

impl Authn {
    /// Build from the config, or `None` when authentication is off.
    pub fn from_config(rt: &Config) -> Result<Option<Arc<Authn>>, JwksError> {
        if !rt.oauth.enabled {
            return Ok(None);
        }
        let sources = JwksSource::from_config(&rt.oauth)?;
        let jwks = Arc::new(Jwks::new(sources, Duration::from_secs(10))?);
        let issuers = rt
            .oauth
            .authorization_servers
            .iter()
            .map(|u| u.as_str().to_owned())
            .collect();
        let verifier = Verifier::new(issuers, rt.oauth.audiences.clone(), rt.oauth.leeway);
        Ok(Some(Arc::new(Authn {
            jwks,
            verifier,
            cache: TokenCache::new(TOKEN_CACHE),
            refresh: rt.oauth.jwks_refresh,
        })))
    }

    /// True once a first key set is loaded.
    pub fn ready(&self) -> bool {
        self.jwks.ready()
    }

    /// The principal of the bearer `token` (`None`: no usable `Authorization: Bearer` header)
    /// under `map`. Counts the result in `portcullis_jwt_validations_total`; a refusal is
    /// logged at DEBUG with its reason, never with the token.
    pub async fn authenticate(
        &self,
        map: &ScopeMap,
        token: Option<&str>,
    ) -> Result<Arc<Principal>, Refusal> {
        let Some(token) = token else {
            metrics().jwt("missing");
            return Err(Refusal::Missing);
        };
        match self.jwks.verify(&self.verifier, &self.cache, token).await {
            Ok(verified) => {
                metrics().jwt("valid");
                Ok(map.principal(&verified.claims, &verified.principal))
            }
            Err(e) => {
                let reason = e.reason();
                metrics().jwt(reason);
                crate::in_request!(debug, reason, "bearer token rejected");
                Err(Refusal::Invalid(reason))
            }
        }
    }
}

/// The token of an `Authorization: Bearer ...` header value (scheme case-insensitive), if any.
pub fn bearer(value: Option<&[u8]>) -> Option<&str> {
    let v = std::str::from_utf8(value?).ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(Some(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some(b"Basic abc")), None);
        assert_eq!(bearer(Some(b"Bearer ")), None);
        assert_eq!(bearer(Some(b"Bearer \xff")), None);
        assert_eq!(bearer(None), None);
    }
}
