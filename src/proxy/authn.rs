//! Authentication on the request path: the bearer token is verified ([`crate::auth::jwt`],
//! keys from [`crate::auth::jwks`]), its claims become scopes ([`crate::auth::scopes`]); a
//! missing or bad token is answered 401 with `WWW-Authenticate` pointing at the RFC 9728
//! metadata of the endpoint. The token itself is never logged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;
use serde_json::json;

use super::respond;
use crate::auth::cache::TokenCache;
use crate::auth::jwks::{Jwks, JwksError, JwksSource};
use crate::auth::jwt::Verifier;
use crate::config::Runtime;
use crate::reload::Live;

/// Verified tokens kept, so a repeated token costs no signature check.
const TOKEN_CACHE: usize = 16 * 1024;

/// Everything needed to authenticate requests; built once at start (the `oauth` section is
/// startup-only).
pub struct Authn {
    /// Signing keys, refreshed in the background.
    pub jwks: Arc<Jwks>,
    verifier: Verifier,
    cache: TokenCache,
}

impl Authn {
    /// Build from the config, or `None` when authentication is off.
    pub fn from_config(rt: &Runtime) -> std::result::Result<Option<Arc<Authn>>, JwksError> {
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
        })))
    }

    /// True once a first key set is loaded.
    pub fn ready(&self) -> bool {
        self.jwks.ready()
    }

    /// Verify `token` and map its claims to scopes with `live`'s scope map. `Err` carries the
    /// reason (the metric label); nothing is counted or logged here.
    pub async fn scopes(
        &self,
        live: &Live,
        token: &str,
    ) -> std::result::Result<Arc<BTreeSet<String>>, &'static str> {
        match self.jwks.verify(&self.verifier, &self.cache, token).await {
            Ok(verified) => Ok(live
                .policy
                .scope_map()
                .scopes_memo(&verified.claims, &verified.scopes)),
            Err(e) => Err(e.reason()),
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

/// The public base URL: `server.url`, else the listener's address.
pub fn public_base(rt: &Runtime) -> String {
    match &rt.server.public_url {
        Some(u) => u.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{}", rt.server.listen),
    }
}

/// Authenticate a request to `/mcp/{server}`. `Ok(Some(scopes))` lets it through; `Ok(None)`
/// means a 401 was written.
pub async fn authenticate(
    authn: &Authn,
    session: &mut Session,
    live: &Live,
    server: &str,
) -> Result<Option<Arc<BTreeSet<String>>>> {
    // The token is borrowed from the request header: no copy on the request path.
    let token = bearer(
        session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let error = match check(authn, live, token).await {
        Ok(scopes) => {
            crate::telemetry::metrics::metrics().jwt("valid");
            return Ok(Some(scopes));
        }
        Err(error) => error,
    };
    let (challenge, body) = unauthorized(live, server, error);
    respond::send(
        session,
        401,
        "application/json",
        body,
        &[("www-authenticate", challenge.as_str())],
        false,
    )
    .await?;
    Ok(None)
}

/// Check the bearer `token` of a request (`None`: no usable `Authorization: Bearer`). `Ok`: the
/// caller's scopes (the caller counts the `valid` result once it serves the request); `Err`:
/// the rejection reason (`None` when no token was sent), already counted and logged at DEBUG.
pub async fn check(
    authn: &Authn,
    live: &Live,
    token: Option<&str>,
) -> std::result::Result<Arc<BTreeSet<String>>, Option<&'static str>> {
    let metrics = crate::telemetry::metrics::metrics();
    let Some(token) = token else {
        metrics.jwt("missing");
        return Err(None);
    };
    authn.scopes(live, token).await.map_err(|reason| {
        metrics.jwt(reason);
        tracing::debug!(reason, "bearer token rejected");
        Some(reason)
    })
}

/// The 401 answer for `/mcp/{server}`: the `WWW-Authenticate` challenge (RFC 9728
/// `resource_metadata`, plus `error="invalid_token"` when a token was sent and refused) and
/// the JSON body.
pub fn unauthorized(live: &Live, server: &str, error: Option<&str>) -> (String, Bytes) {
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/mcp/{server}",
        public_base(&live.config)
    );
    let challenge = match error {
        None => format!("Bearer resource_metadata=\"{metadata}\""),
        Some(_) => format!(
            "Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\", error_description=\"the access token is not valid\""
        ),
    };
    let body = json!({ "error": if error.is_some() { "invalid_token" } else { "unauthorized" },
                       "message": "a valid bearer token is required" });
    (challenge, Bytes::from(body.to_string()))
}

/// RFC 9728 protected resource metadata for the endpoint at `path` (`""`, `/mcp`,
/// `/mcp/{server}`).
pub async fn metadata(session: &mut Session, live: &Live, path: &str) -> Result<u16> {
    let rt = &live.config;
    let base = public_base(rt);
    let resource = if path.is_empty() {
        base.clone()
    } else {
        format!("{base}{path}")
    };
    let mut scopes: BTreeSet<&str> = BTreeSet::new();
    for (_, s) in &rt.auth.mappings {
        scopes.extend(s.iter().map(String::as_str));
    }
    for p in &rt.auth.permissions {
        scopes.extend(p.scopes.iter().map(String::as_str));
    }
    let body = json!({
        "resource": resource,
        "authorization_servers": rt.oauth.authorization_servers.iter().map(|u| u.as_str().trim_end_matches('/')).collect::<Vec<_>>(),
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "Portcullis MCP gateway",
    });
    respond::json(session, 200, &body, false).await?;
    Ok(200)
}
