//! Which endpoint a request path names, and the `Origin` check (DNS-rebinding protection).

use pingora_proxy::Session;

use crate::config::Runtime;

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Admin endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `GET /live`.
    Live,
    /// `GET /ready`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /status`.
    Status,
}

/// The endpoint a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/mcp/{server}`.
    Server(Box<str>),
    /// `/mcp`.
    Aggregate,
    /// An admin endpoint.
    Admin(Admin),
    /// RFC 9728 metadata: `/.well-known/oauth-protected-resource` plus the endpoint path after it
    /// (`""`, `/mcp` or `/mcp/{server}`).
    WellKnown(Box<str>),
    /// Anything else.
    NotFound,
}

impl Route {
    /// Route a request path (without query). A trailing slash is tolerated.
    pub fn parse(path: &str) -> Route {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        match path {
            "/mcp" => Route::Aggregate,
            "/live" => Route::Admin(Admin::Live),
            "/ready" => Route::Admin(Admin::Ready),
            "/metrics" => Route::Admin(Admin::Metrics),
            "/status" => Route::Admin(Admin::Status),
            _ if path.starts_with(WELL_KNOWN) => {
                let rest = &path[WELL_KNOWN.len()..];
                if rest.is_empty() || rest.starts_with('/') {
                    Route::WellKnown(rest.into())
                } else {
                    Route::NotFound
                }
            }
            _ => match path.strip_prefix("/mcp/") {
                Some(name) if !name.is_empty() && !name.contains('/') => Route::Server(name.into()),
                _ => Route::NotFound,
            },
        }
    }
}

/// `Some(403)` when the request carries an `Origin` that is not allowed: listed in
/// `server.allowed_origins`, the origin of `server.url`, or (on a loopback listener) a loopback
/// origin. Requests without `Origin` (non-browser clients) pass.
pub fn check_origin(session: &Session, rt: &Runtime) -> Option<u16> {
    let origin = session.req_header().headers.get(http::header::ORIGIN)?;
    check_origin_value(origin.as_bytes(), rt)
}

/// [`check_origin`] for a raw `Origin` header value.
pub fn check_origin_value(origin: &[u8], rt: &Runtime) -> Option<u16> {
    let origin = std::str::from_utf8(origin).ok()?.trim_end_matches('/');
    let allowed = rt
        .server
        .allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin)
        || rt
            .server
            .public_url
            .as_ref()
            .is_some_and(|u| u.origin().ascii_serialization() == origin)
        || (rt.server.listen.ip().is_loopback() && is_loopback_origin(origin));
    (!allowed).then_some(403)
}

fn is_loopback_origin(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("/mcp/everything"),
            Route::Server("everything".into())
        );
        assert_eq!(
            Route::parse("/mcp/everything/"),
            Route::Server("everything".into())
        );
        assert_eq!(Route::parse("/mcp"), Route::Aggregate);
        assert_eq!(Route::parse("/mcp/"), Route::Aggregate);
        assert_eq!(Route::parse("/mcp/a/b"), Route::NotFound);
        assert_eq!(Route::parse("/live"), Route::Admin(Admin::Live));
        assert_eq!(Route::parse("/"), Route::NotFound);
        assert_eq!(
            Route::parse("/.well-known/oauth-protected-resource/mcp/x"),
            Route::WellKnown("/mcp/x".into())
        );
        assert_eq!(
            Route::parse("/.well-known/oauth-protected-resource"),
            Route::WellKnown("".into())
        );
        assert_eq!(
            Route::parse("/.well-known/oauth-protected-resourcex"),
            Route::NotFound
        );
        assert_eq!(Route::parse(""), Route::NotFound);
    }

    #[test]
    fn loopback_origins() {
        assert!(is_loopback_origin("http://localhost:6274"));
        assert!(is_loopback_origin("http://127.0.0.1"));
        assert!(is_loopback_origin("http://[::1]:80"));
        assert!(!is_loopback_origin("https://evil.example"));
        assert!(!is_loopback_origin("null"));
    }
}
