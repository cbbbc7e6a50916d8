//! JWK set fetching and refreshing (I/O): where keys come from ([`JwksSource`]: a file, a JWKS
//! URL, or OIDC discovery of an issuer), the live merged key set ([`Jwks`]: last good set per
//! source, swapped atomically, so an IdP outage keeps the last good keys), the rate-limited
//! refresh on an unknown `kid`, and the background refresher ([`JwksRefresher`]).
//!
//! Verification itself is [`crate::auth::jwt`]'s job; [`Jwks::verify`] wires the cache, the
//! verifier and the unknown-`kid` refresh together. Requests only ever `load()` the current
//! [`KeySet`] (an `ArcSwap` read, no lock).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use url::Url;

use crate::auth::cache::TokenCache;
use crate::auth::jwt::{JwtError, KeySet, KeySetError, Verified, Verifier};

/// Largest JWK set or discovery document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Default minimum time between two refreshes triggered by an unknown `kid`.
pub const DEFAULT_UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);

/// Where a JWK set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWK set file (also given as a `file://` URL).
    File(PathBuf),
    /// A JWK set URL (`http`/`https`), fetched with GET.
    Url(Url),
    /// An issuer: GET `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`. Works for
    /// Okta custom authorization servers (`https://ORG.okta.com/oauth2/default`).
    Discovery(Url),
}

impl JwksSource {
    /// Parses a configured `jwks_uri`: `file://` URL, `http(s)://` URL, or a plain path.
    pub fn parse_jwks_uri(s: &str) -> Result<Self, JwksError> {
        if let Ok(url) = Url::parse(s) {
            match url.scheme() {
                "file" => {
                    return url
                        .to_file_path()
                        .map(JwksSource::File)
                        .map_err(|()| JwksError::Source(format!("bad file URL {s}")));
                }
                "http" | "https" => return Ok(JwksSource::Url(url)),
                // A Windows drive letter parses as a scheme; anything else is unsupported.
                other if other.len() > 1 => {
                    return Err(JwksError::Source(format!(
                        "unsupported scheme {other}: in {s}"
                    )));
                }
                _ => {}
            }
        }
        Ok(JwksSource::File(PathBuf::from(s)))
    }

    /// The sources for an `oauth` config section: the `jwks_uri` when set (overriding discovery),
    /// otherwise discovery of every authorization server.
    pub fn from_config(oauth: &crate::config::OAuth) -> Result<Vec<Self>, JwksError> {
        match &oauth.jwks_uri {
            Some(uri) => Ok(vec![Self::parse_jwks_uri(uri)?]),
            None => Ok(oauth
                .authorization_servers
                .iter()
                .cloned()
                .map(JwksSource::Discovery)
                .collect()),
        }
    }

    /// A short description for logs (no credentials: URL user info and query are dropped).
    pub fn describe(&self) -> String {
        fn clean(u: &Url) -> String {
            let mut u = u.clone();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        match self {
            JwksSource::File(p) => format!("file {}", p.display()),
            JwksSource::Url(u) => format!("jwks {}", clean(u)),
            JwksSource::Discovery(u) => format!("discovery {}", clean(u)),
        }
    }
}

/// Why a JWK set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// A source that cannot be used (bad URL, unsupported scheme).
    #[error("bad JWKS source: {0}")]
    Source(String),
    /// Reading a file failed.
    #[error("reading {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        error: String,
    },
    /// An HTTP request failed or answered with a non-success status.
    #[error("fetching {url}: {error}")]
    Http {
        /// The URL (without query).
        url: String,
        /// What went wrong.
        error: String,
    },
    /// The discovery document was unusable.
    #[error("discovery {url}: {error}")]
    Discovery {
        /// The discovery URL.
        url: String,
        /// What went wrong.
        error: String,
    },
    /// The document is not a usable JWK set.
    #[error(transparent)]
    KeySet(#[from] KeySetError),
}

/// The live key set of one or more sources. The merged set is published through an `ArcSwap`;
/// each source keeps its last good set, so a failing source never removes keys.
pub struct Jwks {
    sources: Vec<JwksSource>,
    current: ArcSwap<KeySet>,
    /// Last good set per source; only touched by refreshes (serialized by this lock).
    per_source: tokio::sync::Mutex<Vec<Option<Arc<KeySet>>>>,
    client: reqwest::Client,
    base: Instant,
    /// Milliseconds since `base` + 1 of the last unknown-kid refresh; 0: never.
    last_unknown_kid: AtomicU64,
    unknown_kid_interval: Duration,
    loaded: std::sync::atomic::AtomicBool,
    /// Turns true with `loaded`, for callers that wait for the first key set.
    loaded_watch: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("sources", &self.sources)
            .field("keys", &self.current.load().len())
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set over `sources`, empty until the first [`Jwks::refresh`]. HTTP requests time out
    /// after `timeout`.
    pub fn new(sources: Vec<JwksSource>, timeout: Duration) -> Result<Self, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Source(format!("HTTP client: {e}")))?;
        let n = sources.len();
        Ok(Self {
            sources,
            current: ArcSwap::from_pointee(KeySet::default()),
            per_source: tokio::sync::Mutex::new(vec![None; n]),
            client,
            base: Instant::now(),
            last_unknown_kid: AtomicU64::new(0),
            unknown_kid_interval: DEFAULT_UNKNOWN_KID_INTERVAL,
            loaded: std::sync::atomic::AtomicBool::new(false),
            loaded_watch: tokio::sync::watch::channel(false).0,
        })
    }

    /// Sets the minimum time between two unknown-`kid` refreshes (default 30 s).
    pub fn with_unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval = interval;
        self
    }

    /// The sources, in configured order.
    pub fn sources(&self) -> &[JwksSource] {
        &self.sources
    }

    /// The current merged key set (cheap: an atomic load).
    pub fn keys(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// True once at least one source has loaded a key set.
    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Resolves once at least one source has loaded a key set.
    pub async fn wait_ready(&self) {
        let mut rx = self.loaded_watch.subscribe();
        let _ = rx.wait_for(|loaded| *loaded).await;
    }

    /// Fetches every source once. A source that fails keeps its last good set (and the error is
    /// returned in the list, with the source index); the merged set is republished either way.
    pub async fn refresh(&self) -> Vec<(usize, JwksError)> {
        let mut slots = self.per_source.lock().await;
        let mut errors = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            match self.fetch(source).await {
                Ok(set) => {
                    crate::in_request!(debug,
                        source = %source.describe(),
                        keys = set.len(),
                        skipped = set.skipped(),
                        "JWKS loaded"
                    );
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = Some(Arc::new(set));
                    }
                }
                Err(e) => {
                    let kept = slots.get(i).and_then(|s| s.as_ref()).map_or(0, |s| s.len());
                    crate::in_request!(warn,
                        source = %source.describe(),
                        error = %e,
                        kept_keys = kept,
                        "JWKS refresh failed; keeping last good keys"
                    );
                    errors.push((i, e));
                }
            }
        }
        let merged = KeySet::merged(slots.iter().flatten().map(|s| s.as_ref()))
            .succeeding(&self.current.load());
        let any = slots.iter().any(Option::is_some);
        if merged.epoch() != self.current.load().epoch() {
            crate::in_request!(
                info,
                keys = merged.len(),
                "a signing key was retired; tokens it signed are no longer accepted"
            );
        }
        self.current.store(Arc::new(merged));
        if any {
            self.loaded.store(true, Ordering::Release);
            self.loaded_watch.send_replace(true);
        }
        errors
    }

    /// Refreshes because a token named an unknown `kid`, at most once per configured interval
    /// (tracked with an atomic timestamp; concurrent callers race on a compare-and-swap and only
    /// the winner fetches). Returns true when this call refreshed.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let now = u64::try_from(self.base.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last_unknown_kid.load(Ordering::Acquire);
        let interval = u64::try_from(self.unknown_kid_interval.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return false;
        }
        if self
            .last_unknown_kid
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let _ = self.refresh().await;
        true
    }

    /// The whole request-path check: `cache` first, then [`Verifier::verify_cached`] against the
    /// current keys; on `unknown_kid`, one [`Jwks::refresh_for_unknown_kid`] (rate limited) and,
    /// if it ran, one retry.
    pub async fn verify(
        &self,
        verifier: &Verifier,
        cache: &TokenCache,
        token: &str,
    ) -> Result<Arc<Verified>, JwtError> {
        match verifier.verify_cached(token, &self.current.load(), cache) {
            Err(JwtError::UnknownKid) if self.refresh_for_unknown_kid().await => {
                verifier.verify_cached(token, &self.current.load(), cache)
            }
            other => other,
        }
    }

    async fn fetch(&self, source: &JwksSource) -> Result<KeySet, JwksError> {
        match source {
            JwksSource::File(path) => {
                let io_err = |error: String| JwksError::Io {
                    path: path.display().to_string(),
                    error,
                };
                // tokio's `fs` feature is off in this crate: read on the blocking pool.
                let owned = path.clone();
                let bytes = tokio::task::spawn_blocking(move || std::fs::read(owned))
                    .await
                    .map_err(|e| io_err(e.to_string()))?
                    .map_err(|e| io_err(e.to_string()))?;
                Ok(KeySet::from_jwks_json(&bytes)?)
            }
            JwksSource::Url(url) => {
                let bytes = self.get(url).await?;
                Ok(KeySet::from_jwks_json(&bytes)?)
            }
            JwksSource::Discovery(issuer) => {
                let disco = discovery_url(issuer)?;
                let bytes = self.get(&disco).await?;
                let jwks_uri = jwks_uri_from_discovery(issuer, &bytes).map_err(|error| {
                    JwksError::Discovery {
                        url: disco.to_string(),
                        error,
                    }
                })?;
                let bytes = self.get(&jwks_uri).await?;
                Ok(KeySet::from_jwks_json(&bytes)?.bound_to_issuer(issuer.as_str()))
            }
        }
    }

    async fn get(&self, url: &Url) -> Result<bytes::Bytes, JwksError> {
        let err = |error: String| {
            let mut u = url.clone();
            u.set_query(None);
            JwksError::Http {
                url: u.to_string(),
                error,
            }
        };
        let resp = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(err("document too large".into()));
        }
        // Read chunk by chunk under the cap: a chunked answer declares no length.
        let mut resp = resp;
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| err(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(err("document too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// `{issuer}/.well-known/openid-configuration`, keeping the issuer's path (Okta:
/// `/oauth2/default/.well-known/openid-configuration`).
pub fn discovery_url(issuer: &Url) -> Result<Url, JwksError> {
    let base = issuer.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| JwksError::Source(format!("issuer {issuer}: {e}")))
}

/// Reads `jwks_uri` from an OpenID Provider discovery document, parsed and validated as OIDC
/// Discovery 1.0 provider metadata by the `openidconnect` crate (its fetching is not used: the
/// gateway's own client caps sizes and timeouts). Checks that its `issuer` is the one asked for
/// (trailing-slash-insensitive, OIDC Discovery 4.3) and that `jwks_uri` is http(s).
pub fn jwks_uri_from_discovery(issuer: &Url, doc: &[u8]) -> Result<Url, String> {
    use openidconnect::core::CoreProviderMetadata;
    let meta: CoreProviderMetadata = serde_json::from_slice(doc)
        .map_err(|e| format!("not an OpenID Provider metadata document: {e}"))?;
    let got = meta.issuer().as_str();
    if got.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
        return Err(format!("issuer mismatch: document says {got}"));
    }
    let url = meta.jwks_uri().url().clone();
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("jwks_uri scheme {} not allowed", url.scheme()));
    }
    Ok(url)
}

/// Refreshes a [`Jwks`] every `interval`, immediately at start, and every `retry` while no key
/// set has loaded yet.
pub struct JwksRefresher {
    /// The key set to refresh.
    pub jwks: Arc<Jwks>,
    /// Time between refreshes once loaded.
    pub interval: Duration,
    /// Time between attempts while nothing has loaded yet.
    pub retry: Duration,
}

impl JwksRefresher {
    /// Run until `shutdown` resolves. Usable without a Pingora server (tests).
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let _ = self.jwks.refresh().await;
            let wait = if self.jwks.ready() {
                self.interval
            } else {
                self.retry.min(self.interval)
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.run(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn okta_doc(issuer: &str) -> Vec<u8> {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/v1/authorize"),
            "jwks_uri": format!("{issuer}/v1/keys"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn discovery_document_of_an_okta_custom_authorization_server() {
        let issuer = Url::parse("https://example.okta.com/oauth2/default").unwrap();
        let url = discovery_url(&issuer).unwrap();
        assert_eq!(
            url.as_str(),
            "https://example.okta.com/oauth2/default/.well-known/openid-configuration"
        );
        let jwks = jwks_uri_from_discovery(&issuer, &okta_doc(issuer.as_str())).unwrap();
        assert_eq!(
            jwks.as_str(),
            "https://example.okta.com/oauth2/default/v1/keys"
        );
    }

    #[test]
    fn discovery_documents_that_are_refused() {
        let issuer = Url::parse("https://example.okta.com/oauth2/default").unwrap();
        let other = okta_doc("https://evil.example/oauth2/default");
        let e = jwks_uri_from_discovery(&issuer, &other).unwrap_err();
        assert!(e.contains("issuer mismatch"), "{e}");
        let bare = br#"{"issuer":"https://example.okta.com/oauth2/default"}"#;
        let e = jwks_uri_from_discovery(&issuer, bare).unwrap_err();
        assert!(
            e.contains("not an OpenID Provider metadata document"),
            "{e}"
        );
        let e = jwks_uri_from_discovery(&issuer, b"<html>").unwrap_err();
        assert!(e.contains("not an OpenID Provider"), "{e}");
    }
}
