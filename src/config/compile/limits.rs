//! Compiling `rate_limits`: the key (`principal`, `server`, `tool`, `claim:NAME`), the rate and
//! burst, and the optional `tools` patterns (checked against the configured servers like
//! permission patterns).

use super::auth::split_pattern;
use super::ctx::{root, Ctx};
use crate::config::compiled::{Proxy, RateLimit, RateLimitKey};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{List, RawRateLimit};

const KEYS: [&str; 4] = ["principal", "server", "tool", "claim:NAME"];

/// Bounds that keep the limiter's arithmetic (nanoseconds per unit times burst, in 64 bits)
/// exact: at most 1e13 ns per unit times 1e6 units.
const MIN_RATE: f64 = 0.0001;
const MAX_RATE: f64 = 1e9;
const MAX_BURST: u32 = 1_000_000;

/// Compiles `rate_limits`; `tools` patterns are checked against `proxy`'s servers, `claim:`
/// keys against whether tokens are read at all.
pub(crate) fn compile_rate_limits(
    raw: Option<List<RawRateLimit>>,
    proxy: &Proxy,
    oauth_enabled: bool,
    ctx: &mut Ctx<'_>,
) -> Vec<RateLimit> {
    let mut out: Vec<RateLimit> = Vec::new();
    for (i, r) in ctx.entries(&root().key("rate_limits"), raw) {
        let p = root().key("rate_limits").index(i);
        let key = match r.key.as_deref().map(str::trim) {
            Some("principal") => Some(RateLimitKey::Principal),
            Some("server") => Some(RateLimitKey::Server),
            Some("tool") => Some(RateLimitKey::Tool),
            Some(k) if k.starts_with("claim:") => {
                let claim = k["claim:".len()..].trim();
                if claim.is_empty() {
                    ctx.error(
                        &p.key("key"),
                        "`claim:` names no claim".into(),
                        Some("write `claim:NAME`, e.g. `claim:groups`".into()),
                    );
                    None
                } else {
                    Some(RateLimitKey::Claim(claim.to_owned()))
                }
            }
            Some(k) => {
                let hint = match did_you_mean(k, KEYS.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? one of {}", KEYS.join(", ")),
                    None => format!("one of {}", KEYS.join(", ")),
                };
                ctx.error(
                    &p.key("key"),
                    format!("unknown rate limit key `{k}`"),
                    Some(hint),
                );
                None
            }
            None => {
                ctx.missing(
                    &p.key("key"),
                    "a rate limit needs a `key`".into(),
                    Some(format!("one of {}", KEYS.join(", "))),
                );
                None
            }
        };
        let errors = ctx.errors.len();
        let tools = compile_tools(&r, &p, proxy, ctx);
        let tools_ok = ctx.errors.len() == errors;
        if let (Some(k), true) = (&key, tools_ok) {
            if let Some(first) = out.iter().find(|o| &o.key == k && o.tools == tools) {
                let what = if tools.is_empty() {
                    "this key".to_owned()
                } else {
                    "this key and these tools".to_owned()
                };
                ctx.error(
                    &p.key("key"),
                    "duplicate rate limit".into(),
                    Some(format!("`{}` already limits by {what}", first.source)),
                );
            }
        }
        let rps = match r.requests_per_second {
            Some(v) if v.is_finite() && (MIN_RATE..=MAX_RATE).contains(&v) => Some(v),
            Some(v) => {
                ctx.error(
                    &p.key("requests_per_second"),
                    format!("`requests_per_second` is {v}"),
                    Some(format!("use a number from {MIN_RATE} (one request in about 3 hours) to {MAX_RATE}, e.g. `2` or `0.5`")),
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
        if r.burst == Some(0) || r.burst.is_some_and(|b| b > MAX_BURST) {
            ctx.error(
                &p.key("burst"),
                format!("`burst` is {}", r.burst.unwrap_or_default()),
                Some(format!("use 1 to {MAX_BURST}")),
            );
        }
        if let (Some(RateLimitKey::Claim(c)), false) = (&key, oauth_enabled) {
            ctx.warn(
                &p.key("key"),
                format!(
                    "`claim:{c}` never applies: authentication is off, so callers have no claims"
                ),
                None,
            );
        }
        let burst_ok = r.burst.is_none_or(|b| (1..=MAX_BURST).contains(&b));
        if let (Some(key), Some(rps), true, true) = (key, rps, tools_ok, burst_ok) {
            let default_burst = rps.ceil().clamp(1.0, f64::from(MAX_BURST)) as u32;
            out.push(RateLimit {
                key,
                requests_per_second: rps,
                burst: r.burst.unwrap_or(default_burst).max(1),
                tools,
                source: format!("rate_limits[{i}]"),
            });
        }
    }
    out
}

/// The `tools` patterns of one rule, split into server and tool parts.
fn compile_tools(
    r: &RawRateLimit,
    p: &crate::config::diagnostic::FieldPath,
    proxy: &Proxy,
    ctx: &mut Ctx<'_>,
) -> Vec<(String, String)> {
    let Some(list) = &r.tools else {
        return Vec::new();
    };
    let tp = p.key("tools");
    if list.iter().all(Option::is_none) {
        ctx.error(
            &tp,
            "`tools` is empty".into(),
            Some("list `server:tool` patterns, or remove `tools` to count every request".into()),
        );
    }
    let mut out = Vec::new();
    for (j, pattern) in list.iter().enumerate() {
        let Some(pattern) = pattern else { continue };
        let Some((server, tool)) = split_pattern(pattern, &proxy.separator) else {
            ctx.error(
                &tp.index(j),
                format!("invalid tool pattern `{pattern}`"),
                Some(format!(
                    "write `server:tool` or `server{}tool`, with `*` globs, e.g. `n8n:delete_*`",
                    proxy.separator
                )),
            );
            continue;
        };
        let glob = crate::config::Glob::new(server);
        if !proxy.servers.iter().any(|s| glob.matches(&s.name)) {
            ctx.warn(
                &tp.index(j),
                format!("tool pattern `{pattern}` matches no configured server"),
                None,
            );
        }
        out.push((server.to_owned(), tool.to_owned()));
    }
    out
}
