//! Compiling the policy sections: `auth` (claims, `claim:value` mappings, `server:name`
//! permission patterns checked against the configured servers) and `rate_limits`.

use std::collections::HashMap;

use super::ctx::{root, Ctx};
use crate::config::compiled::{
    Auth, OnDenied, Permission, Proxy, RateLimit, RateLimitKey, ScopeMode,
};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{List, RawAuth, RawOnDenied, RawRateLimit, RawRateLimitKey, RawScopeMode};

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
        let split = pattern.split_once(':').or_else(|| {
            pattern
                .split_once(proxy.separator.as_str())
                .filter(|_| !proxy.separator.is_empty())
        });
        let Some((server, name)) = split.filter(|(s, n)| !s.is_empty() && !n.is_empty()) else {
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

/// Compiles `rate_limits`.
pub(crate) fn compile_rate_limits(
    raw: Option<List<RawRateLimit>>,
    ctx: &mut Ctx<'_>,
) -> Vec<RateLimit> {
    let mut out = Vec::new();
    let mut seen: HashMap<RateLimitKey, usize> = HashMap::new();
    for (i, r) in ctx.entries(&root().key("rate_limits"), raw) {
        let p = root().key("rate_limits").index(i);
        let key = match r.key {
            Some(RawRateLimitKey::Principal) => Some(RateLimitKey::Principal),
            Some(RawRateLimitKey::Server) => Some(RateLimitKey::Server),
            Some(RawRateLimitKey::Tool) => Some(RateLimitKey::Tool),
            None => {
                ctx.missing(
                    &p.key("key"),
                    "a rate limit needs a `key`".into(),
                    Some("one of `principal`, `server`, `tool`".into()),
                );
                None
            }
        };
        if let Some(k) = key {
            if let Some(first) = seen.insert(k, i) {
                ctx.error(
                    &p.key("key"),
                    "duplicate rate limit key".into(),
                    Some(format!("`rate_limits[{first}]` already limits by this key")),
                );
            }
        }
        let rps = match r.requests_per_second {
            Some(v) if v.is_finite() && v > 0.0 => Some(v),
            Some(v) => {
                ctx.error(
                    &p.key("requests_per_second"),
                    format!("`requests_per_second` is {v}"),
                    Some("use a positive number, e.g. `2` or `0.5`".into()),
                );
                None
            }
            None => {
                ctx.missing(
                    &p.key("requests_per_second"),
                    "a rate limit needs `requests_per_second`".into(),
                    None,
                );
                None
            }
        };
        if r.burst == Some(0) {
            ctx.error(&p.key("burst"), "`burst` must be at least 1".into(), None);
        }
        if let (Some(key), Some(rps)) = (key, rps) {
            let default_burst = rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
            out.push(RateLimit {
                key,
                requests_per_second: rps,
                burst: r.burst.unwrap_or(default_burst),
            });
        }
    }
    out
}
