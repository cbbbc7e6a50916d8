//! What a request path addresses ([`Endpoint`]), and the answers of the endpoints the gateway
//! serves itself: admin ([`admin`]), OAuth protected-resource metadata and the 401 challenge
//! ([`oauth`]), and the checks that guard the MCP endpoints ([`guard`]: `Host`, `Origin`). Each
//! returns a [`crate::mcp::reply::Reply`]: no I/O here.

pub mod admin;
pub mod guard;
pub mod oauth;

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
pub enum Endpoint<'p> {
    /// `/mcp/{server}`.
    Server(&'p str),
    /// `/mcp`.
    Aggregate,
    /// An admin endpoint.
    Admin(Admin),
    /// RFC 9728 metadata: `/.well-known/oauth-protected-resource` plus the endpoint path after
    /// it (`""`, `/mcp` or `/mcp/{server}`).
    WellKnown(&'p str),
    /// Anything else.
    NotFound,
}

impl<'p> Endpoint<'p> {
    /// Route a request path (without query). A trailing slash is tolerated.
    pub fn parse(path: &'p str) -> Endpoint<'p> {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        match path {
            "/mcp" => Endpoint::Aggregate,
            "/live" => Endpoint::Admin(Admin::Live),
            "/ready" => Endpoint::Admin(Admin::Ready),
            "/metrics" => Endpoint::Admin(Admin::Metrics),
            "/status" => Endpoint::Admin(Admin::Status),
            _ if path.starts_with(WELL_KNOWN) => {
                let rest = &path[WELL_KNOWN.len()..];
                if rest.is_empty() || rest.starts_with('/') {
                    Endpoint::WellKnown(rest)
                } else {
                    Endpoint::NotFound
                }
            }
            _ => match path.strip_prefix("/mcp/") {
                Some(name) if !name.is_empty() && !name.contains('/') => Endpoint::Server(name),
                _ => Endpoint::NotFound,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("/mcp/everything"),
            Endpoint::Server("everything")
        );
        assert_eq!(
            Endpoint::parse("/mcp/everything/"),
            Endpoint::Server("everything")
        );
        assert_eq!(Endpoint::parse("/mcp"), Endpoint::Aggregate);
        assert_eq!(Endpoint::parse("/mcp/"), Endpoint::Aggregate);
        assert_eq!(Endpoint::parse("/mcp/a/b"), Endpoint::NotFound);
        assert_eq!(Endpoint::parse("/live"), Endpoint::Admin(Admin::Live));
        assert_eq!(Endpoint::parse("/"), Endpoint::NotFound);
        assert_eq!(
            Endpoint::parse("/.well-known/oauth-protected-resource/mcp/x"),
            Endpoint::WellKnown("/mcp/x")
        );
        assert_eq!(
            Endpoint::parse("/.well-known/oauth-protected-resource"),
            Endpoint::WellKnown("")
        );
        assert_eq!(
            Endpoint::parse("/.well-known/oauth-protected-resourcex"),
            Endpoint::NotFound
        );
        assert_eq!(Endpoint::parse(""), Endpoint::NotFound);
    }
}
