//! Compiling the policy sections: `auth` (claims, `claim:value` mappings, `server:name`
//! permission patterns checked against the configured servers).

use super::ctx::{root, Ctx};
use crate::config::compiled::{Auth, OnDenied, Permission, Proxy, ScopeMode};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{RawAuth, RawOnDenied, RawScopeMode};

/// Compiles `auth`; permission patterns are checked against the configured servers.
pub(crate) fn compile_auth(raw: RawAuth, proxy: &Proxy, ctx: &mut Ctx<'_>) -> Auth {
    let p = root().key("auth");
    let claims_at = ctx.entries(&p.key("claims"), raw.claims);
    for (i, c) in &claims_at {
        if c.trim().is_empty() {
            ctx.error(&p.key("claims").index(*i), "empty claim name".into(), None);
        }
    }
    let claims: Vec<String> = claims_at.into_iter().map(|(_, c)| c).collect();
    let mut mappings = Vec::new();
    for (key, scopes) in raw.mappings.map(|m| m.0).unwrap_or_default() {
        let mp = p.key("mappings").key(&key);
        let scopes = ctx.values(&mp, scopes);
        match key.split_once(':') {
            Some((claim, value)) if !claim.is_empty() && !value.is_empty() => {
                if !claims.iter().any(|c| c == claim) {
                    ctx.warn(
                        &mp,
                        format!("mapping `{key}` uses claim `{claim}`, which is not listed in `auth.claims`"),
                        Some(format!("add `{claim}` to `auth.claims`, or the mapping never applies")),
                    );
                }
            }
            _ => ctx.key_error(
                &mp,
                format!("invalid mapping key `{key}`"),
                Some("a mapping key is `claim:value`, e.g. `groups:Admin`".into()),
            ),
        }
        mappings.push((key, scopes));
    }
    let names: Vec<&str> = proxy.servers.iter().map(|s| s.name.as_str()).collect();
    let mut permissions = Vec::new();
    for (pattern, scopes) in raw.permissions.map(|m| m.0).unwrap_or_default() {
        let pp = p.key("permissions").key(&pattern);
        let scopes = ctx.values(&pp, scopes);
        if scopes.is_empty() {
            ctx.missing(
                &pp,
                format!("permission `{pattern}` lists no scope"),
                Some(
                    "list at least one scope; to deny, remove the pattern (no match is denied)"
                        .into(),
                ),
            );
        }
        let Some((server, name)) = split_pattern(&pattern, &proxy.separator) else {
            ctx.key_error(
                &pp,
                format!("invalid permission pattern `{pattern}`"),
                Some(format!(
                    "write `server:name` or `server{}name`, with `*` globs, e.g. `n8n:*`",
                    proxy.separator
                )),
            );
            continue;
        };
        if !names
            .iter()
            .any(|n| crate::config::Glob::new(server).matches(n))
        {
            let list = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let configured = if list.is_empty() {
                "no server is configured".to_string()
            } else {
                format!("configured servers: {list}")
            };
            match did_you_mean(server, names.iter().copied()).filter(|_| !server.contains('*')) {
                Some(s) => ctx.key_error(
                    &pp,
                    format!("permission `{pattern}` refers to unknown server `{server}`"),
                    Some(format!("did you mean `{s}`? {configured}")),
                ),
                None => ctx.warn(
                    &pp,
                    format!("permission `{pattern}` matches no configured server"),
                    Some(configured),
                ),
            }
        }
        permissions.push(Permission {
            server: server.to_owned(),
            name: name.to_owned(),
            scopes,
            source: pattern.clone(),
        });
    }
    let options = raw.options.unwrap_or_default();
    Auth {
        claims,
        mappings,
        permissions,
        scope_mode: match options.scope_mode {
            Some(RawScopeMode::All) => ScopeMode::All,
            Some(RawScopeMode::Any) | None => ScopeMode::Any,
        },
        default_scope: options.default_scope,
        on_denied: match options.on_denied {
            Some(RawOnDenied::Forbidden) => OnDenied::Forbidden,
            Some(RawOnDenied::StepUp) => OnDenied::StepUp,
            Some(RawOnDenied::Hide) | None => OnDenied::Hide,
        },
    }
}

/// A `server:name` (or `server{separator}name`) pattern's two parts, both non-empty.
pub(super) fn split_pattern<'p>(pattern: &'p str, separator: &str) -> Option<(&'p str, &'p str)> {
    pattern
        .split_once(':')
        .or_else(|| {
            pattern
                .split_once(separator)
                .filter(|_| !separator.is_empty())
        })
        .filter(|(s, n)| !s.is_empty() && !n.is_empty())
}
