//! OAuth 2.0 protected resource (RFC 9728): the metadata document of each endpoint, and the
//! 401 answer whose `WWW-Authenticate` challenge points clients at it.

use std::collections::BTreeSet;

use serde_json::json;

use crate::auth::Refusal;
use crate::config::Config;
use crate::mcp::reply::Reply;

/// The public base URL: `server.url`, else the listener's address.
pub fn public_base(rt: &Config) -> String {
    match &rt.server.public_url {
        Some(u) => u.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{}", rt.server.listen),
    }
}

/// The metadata URL of the endpoint at `path` (`/mcp/{server}`).
pub fn metadata_url(rt: &Config, path: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource{path}",
        public_base(rt)
    )
}

/// The path of the MCP endpoint of `server` (`None`: the aggregated `/mcp`).
fn endpoint_path(server: Option<&str>) -> String {
    match server {
        Some(s) => format!("/mcp/{s}"),
        None => "/mcp".to_owned(),
    }
}

/// The 401 answer for `/mcp/{server}` (or `/mcp`): the `WWW-Authenticate` challenge (RFC 9728
/// `resource_metadata`, plus `error="invalid_token"` when a token was sent and refused) and a
/// JSON body.
pub fn unauthorized(rt: &Config, server: Option<&str>, refusal: Refusal) -> Reply {
    let metadata = metadata_url(rt, &endpoint_path(server));
    let (challenge, error) = match refusal {
        Refusal::Missing => (format!("Bearer resource_metadata=\"{metadata}\""), "unauthorized"),
        Refusal::Invalid(_) => (
            format!(
                "Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\", error_description=\"the access token is not valid\""
            ),
            "invalid_token",
        ),
    };
    Reply::error(401, error, "a valid bearer token is required")
        .with_header("www-authenticate", challenge)
}

/// The step-up challenge of a denial answered 403 (`auth.options.on_denied: step_up`).
pub fn insufficient_scope(rt: &Config, server: Option<&str>, scopes: &str) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{scopes}\", resource_metadata=\"{}\"",
        metadata_url(rt, &endpoint_path(server))
    )
}

/// RFC 9728 protected resource metadata for the endpoint at `path` (`""`, `/mcp`,
/// `/mcp/{server}`).
pub fn metadata(rt: &Config, path: &str) -> Reply {
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
    Reply::json(
        200,
        &json!({
            "resource": resource,
            "authorization_servers": rt.oauth.authorization_servers.iter().map(|u| u.as_str().trim_end_matches('/')).collect::<Vec<_>>(),
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "Portcullis MCP gateway",
        }),
    )
}
