//! Raw -> runtime: requiredness, semantic checks and typing, collecting every error (never
//! stopping at the first). Errors are located through a side table of positions built from the
//! YAML tree ([`Ctx`]); a "missing" error is suppressed where a structural error (unknown key,
//! wrong type, missing variable) was already reported for a related path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod auth;
mod ctx;
mod limits;
mod servers;
mod tls;

pub(crate) use ctx::Ctx;
use ctx::{http_url, is_loopback_host, root};

use crate::config::compiled::{
    BasicAuth, Config, OAuth, Provider, Proxy, Server, SourceInfo, Telemetry, Upstream,
};
use crate::config::diagnostic::FieldPath;
use crate::config::raw::{RawConfig, RawOAuth, RawProvider, RawProxy, RawServer, RawTelemetry};

/// Compiles a raw config; `None` when errors were recorded in `ctx`.
pub(crate) fn compile(raw: RawConfig, ctx: &mut Ctx<'_>, source: SourceInfo) -> Option<Config> {
    let server = compile_server(raw.server.unwrap_or_default(), ctx);
    let oauth = compile_oauth(raw.oauth, &server, ctx);
    let proxy = compile_proxy(raw.proxy.unwrap_or_default(), ctx);
    let auth = auth::compile_auth(raw.auth.unwrap_or_default(), &proxy, ctx);
    let rate_limits = limits::compile_rate_limits(raw.rate_limits, &proxy, oauth.enabled, ctx);
    let telemetry = compile_telemetry(raw.telemetry.unwrap_or_default(), ctx);
    if let Some(s) = server.server.as_ref() {
        if s.admin_scope.is_some() && !oauth.enabled {
            ctx.warn(
                &root().key("server").key("admin_scope"),
                "`admin_scope` has no effect: authentication is off, so `/status` is open on this loopback listener".into(),
                None,
            );
        }
    }
    if !ctx.errors.is_empty() {
        return None;
    }
    Some(Config {
        source,
        server: server.server?,
        oauth,
        auth,
        proxy,
        rate_limits,
        telemetry,
        warnings: std::mem::take(&mut ctx.warnings),
    })
}

/// The compiled server section; `server` is `None` if it had errors.
struct ServerOut {
    server: Option<Server>,
    listen: Option<SocketAddr>,
}

fn compile_server(raw: RawServer, ctx: &mut Ctx<'_>) -> ServerOut {
    let p = root().key("server");
    let public_url = raw
        .url
        .as_deref()
        .and_then(|u| http_url(ctx, &p.key("url"), u));
    let bad_url = raw.url.is_some() && public_url.is_none();
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = match listen_text.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                &p.key("listen"),
                format!("invalid listen address `{listen_text}`"),
                Some("write an IP address and a port, e.g. `127.0.0.1:8080`, `0.0.0.0:8080` or `[::]:8080`".into()),
            );
            None
        }
    };
    let admin = compile_admin(&raw, listen, ctx);
    let (tls, tls_ok) = tls::compile_server_tls(raw.tls.as_ref(), ctx);
    let max_body = raw.max_body_bytes.map_or(4 << 20, |b| b.0);
    let body_ok = (1024..=256 << 20).contains(&max_body);
    if !body_ok {
        ctx.error(
            &p.key("max_body_bytes"),
            format!("`max_body_bytes` is {max_body}, outside the allowed range"),
            Some("use a size from `1KiB` (1024) to `256MiB` (268435456)".into()),
        );
    }
    let max_header = raw.max_header_bytes.map_or(32 << 10, |b| b.0);
    let header_ok = (1024..=64 << 10).contains(&max_header);
    if !header_ok {
        ctx.error(
            &p.key("max_header_bytes"),
            format!("`max_header_bytes` is {max_header}, outside the allowed range"),
            Some("use a size from `1KiB` (1024) to `64KiB` (65536)".into()),
        );
    }
    let header_timeout = raw.header_timeout.map_or(Duration::from_secs(10), |d| d.0);
    let header_timeout_ok = header_timeout >= Duration::from_millis(100);
    if !header_timeout_ok {
        ctx.error(
            &p.key("header_timeout"),
            "`header_timeout` is shorter than 100ms".into(),
            Some("e.g. `10s`".into()),
        );
    }
    let max_connections = raw.max_connections.unwrap_or(10_000);
    let connections_ok = (1..=1_000_000).contains(&max_connections);
    if !connections_ok {
        ctx.error(
            &p.key("max_connections"),
            format!("`max_connections` is {max_connections}"),
            Some("use 1 to 1000000 (each open connection costs the gateway about 3 KiB and a file descriptor)".into()),
        );
    }
    let max_streams = raw.max_streams_per_principal.unwrap_or(100);
    let streams_ok = (1..=1_000_000).contains(&max_streams);
    if !streams_ok {
        ctx.error(
            &p.key("max_streams_per_principal"),
            format!("`max_streams_per_principal` is {max_streams}"),
            Some("use 1 to 1000000 (event streams one caller may hold open at once)".into()),
        );
    }
    let mut origins = Vec::new();
    let mut origins_ok = true;
    for (i, o) in ctx.entries(&p.key("allowed_origins"), raw.allowed_origins) {
        let op = p.key("allowed_origins").index(i);
        match url::Url::parse(o.trim()) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty() =>
            {
                origins.push(u.origin().ascii_serialization());
            }
            _ => {
                origins_ok = false;
                ctx.error(
                    &op,
                    format!("invalid origin `{o}`"),
                    Some("an origin is `scheme://host[:port]` with no path, e.g. `https://claude.ai`".into()),
                );
            }
        }
    }
    let threads = raw.threads.unwrap_or(2);
    let threads_ok = (1..=1024).contains(&threads);
    if !threads_ok {
        ctx.error(
            &p.key("threads"),
            format!("`threads` is {threads}"),
            Some("use 1 to 1024 threads".into()),
        );
    }
    let grace_period = raw.grace_period.map_or(Duration::from_secs(30), |d| d.0);
    let server = match (listen, admin) {
        (Some(listen), Some((admin_listen, admin_scope, metrics_auth)))
            if !bad_url
                && body_ok
                && origins_ok
                && threads_ok
                && tls_ok
                && header_ok
                && header_timeout_ok
                && connections_ok
                && streams_ok =>
        {
            Some(Server {
                public_url,
                listen,
                max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
                allowed_origins: origins,
                max_header_bytes: usize::try_from(max_header).unwrap_or(64 << 10),
                header_timeout,
                max_connections: usize::try_from(max_connections).unwrap_or(1_000_000),
                max_streams_per_principal: usize::try_from(max_streams).unwrap_or(1_000_000),
                threads: usize::try_from(threads).unwrap_or(1),
                grace_period,
                fast_path: raw.fast_path.unwrap_or(true),
                admin_listen,
                admin_scope,
                metrics_auth,
                tls,
            })
        }
        _ => None,
    };
    ServerOut { server, listen }
}

/// `telemetry`: the collector's base URL becomes its `/v1/traces` URL.
fn compile_telemetry(raw: RawTelemetry, ctx: &mut Ctx<'_>) -> Telemetry {
    let p = root().key("telemetry");
    let otlp_traces = raw
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .and_then(|e| http_url(ctx, &p.key("otlp_endpoint"), e))
        .map(|mut u| {
            let path = format!("{}/v1/traces", u.path().trim_end_matches('/'));
            u.set_path(&path);
            u
        });
    let service_name = raw
        .service_name
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "portcullis".to_owned());
    Telemetry {
        otlp_traces,
        service_name,
    }
}

type Admin = (Option<SocketAddr>, Option<String>, Option<BasicAuth>);

/// `server.admin_listen`, `admin_scope`, `metrics_auth`; `None` after an error.
fn compile_admin(raw: &RawServer, listen: Option<SocketAddr>, ctx: &mut Ctx<'_>) -> Option<Admin> {
    let p = root().key("server");
    let mut ok = true;
    // Empty (`"${PORTCULLIS_ADMIN_LISTEN:-}"` left unset): no admin listener.
    let admin_listen = match raw.admin_listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(a) if listen.is_some_and(|l| l.port() == a.port() && a.port() != 0) => {
                ok = false;
                ctx.error(
                    &p.key("admin_listen"),
                    format!("`admin_listen` `{a}` uses the port of `server.listen`"),
                    Some("give the admin listener a port of its own, e.g. `127.0.0.1:9090`".into()),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                ok = false;
                ctx.error(
                    &p.key("admin_listen"),
                    format!("invalid admin listen address `{text}`"),
                    Some(
                        "write an IP address and a port, e.g. `127.0.0.1:9090` or `0.0.0.0:9090`"
                            .into(),
                    ),
                );
                None
            }
        },
    };
    let admin_scope = match raw.admin_scope.as_deref().map(str::trim) {
        Some("") => {
            ok = false;
            ctx.error(
                &p.key("admin_scope"),
                "`admin_scope` is empty".into(),
                Some("name a scope, e.g. `scope:admin`".into()),
            );
            None
        }
        other => other.map(str::to_owned),
    };
    let metrics_auth = match &raw.metrics_auth {
        None => None,
        Some(b) => {
            let user = b.username.as_deref().unwrap_or_default();
            let pass = b.password.as_deref().unwrap_or_default();
            if user.is_empty() && pass.is_empty() {
                // The seed's rule: basic auth is required when both are set, so
                // `${METRICS_USER:-}` / `${METRICS_PASS:-}` left empty leave `/metrics` open.
                None
            } else if user.is_empty() || pass.is_empty() {
                ok = false;
                ctx.error(
                    &p.key("metrics_auth"),
                    "`metrics_auth` sets only one of `username` and `password`".into(),
                    Some("set both (basic auth is then required), or neither (`/metrics` stays open)".into()),
                );
                None
            } else if user.contains(':') {
                ok = false;
                ctx.error(
                    &p.key("metrics_auth").key("username"),
                    "a basic-auth user name cannot contain `:`".into(),
                    None,
                );
                None
            } else {
                Some(BasicAuth {
                    username: user.to_owned(),
                    password: pass.to_owned(),
                })
            }
        }
    };
    ok.then_some((admin_listen, admin_scope, metrics_auth))
}

fn compile_oauth(raw: Option<RawOAuth>, server: &ServerOut, ctx: &mut Ctx<'_>) -> OAuth {
    let p = root().key("oauth");
    let present = raw.is_some();
    let raw = raw.unwrap_or_default();
    let enabled = raw.enabled.unwrap_or(present);
    let mut issuers = Vec::new();
    let listed = ctx.entries(&p.key("authorization_servers"), raw.authorization_servers);
    for (i, s) in &listed {
        let sp = p.key("authorization_servers").index(*i);
        if let Some(u) = http_url(ctx, &sp, s) {
            if u.scheme() == "http" && !is_loopback_host(&u) {
                ctx.error(
                    &sp,
                    format!("authorization server `{u}` must use https"),
                    Some(
                        "plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost)"
                            .into(),
                    ),
                );
            } else {
                issuers.push(u);
            }
        }
    }
    let jwks_uri = raw.jwks_uri.map(|j| j.trim().to_owned());
    if let Some(j) = &jwks_uri {
        let ok = match url::Url::parse(j) {
            Ok(u) => {
                u.scheme() == "https"
                    || u.scheme() == "file"
                    || (u.scheme() == "http" && is_loopback_host(&u))
            }
            Err(_) => false,
        };
        if !ok {
            ctx.error(
                &p.key("jwks_uri"),
                format!("invalid `jwks_uri` `{j}`"),
                Some("use an https URL (http only for loopback hosts) or a `file:///path/to/jwks.json` URL".into()),
            );
        }
    }
    if enabled && listed.is_empty() && jwks_uri.is_none() {
        ctx.missing(
            &p.key("authorization_servers"),
            "authentication is enabled but no issuer is configured".into(),
            Some("list issuers in `oauth.authorization_servers` or set `oauth.jwks_uri`; or set `oauth.enabled: false` on a loopback listener".into()),
        );
    }
    let audiences = ctx.values(&p.key("audiences"), raw.audiences);
    if enabled && audiences.is_empty() {
        ctx.warn(
            &p,
            "no `oauth.audiences`: tokens are accepted whatever their `aud`".into(),
            Some("list the audience(s) of this gateway, e.g. `api://default`".into()),
        );
    }
    if let Some(listen) = server.listen {
        if !enabled && !listen.ip().is_loopback() {
            let at = if present && raw.enabled.is_some() {
                p.key("enabled")
            } else {
                root().key("server").key("listen")
            };
            ctx.error(
                &at,
                "authentication may be disabled only on a loopback listener".into(),
                Some(format!(
                    "`server.listen` is `{listen}`; enable `oauth` with an authorization server, or listen on 127.0.0.1"
                )),
            );
        }
    }
    OAuth {
        enabled,
        provider: match raw.provider {
            Some(RawProvider::Okta) => Provider::Okta,
            Some(RawProvider::Oidc) | None => Provider::Oidc,
        },
        authorization_servers: issuers,
        audiences,
        jwks_uri,
        leeway: raw.leeway.map_or(Duration::from_secs(60), |d| d.0),
        jwks_refresh: jwks_refresh(raw.jwks_refresh, &p, ctx),
    }
}

/// `oauth.jwks_refresh`: default 5 minutes, at least one second.
fn jwks_refresh(
    raw: Option<crate::config::raw::RawDuration>,
    p: &FieldPath,
    ctx: &mut Ctx<'_>,
) -> Duration {
    let every = raw.map_or(Duration::from_secs(300), |d| d.0);
    if every < Duration::from_secs(1) {
        ctx.error(
            &p.key("jwks_refresh"),
            format!("`jwks_refresh` is {every:?}"),
            Some("refresh the signing keys at most once a second, e.g. `5m`".into()),
        );
    }
    every
}

fn compile_proxy(raw: RawProxy, ctx: &mut Ctx<'_>) -> Proxy {
    let p = root().key("proxy");
    let separator = raw.separator.unwrap_or_else(|| "__".into());
    if separator.is_empty()
        || !separator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        ctx.error(
            &p.key("separator"),
            format!("invalid separator `{separator}`"),
            Some(
                "use one or more of `A-Z a-z 0-9 _ -` (the default `__` suits every client)".into(),
            ),
        );
    }
    let session_key = raw.session_key.as_deref().and_then(|k| {
        let key = decode_base64(k.trim()).and_then(|b| <[u8; 32]>::try_from(b).ok());
        if key.is_none() {
            ctx.error(
                &p.key("session_key"),
                "`session_key` must be the base64 encoding of exactly 32 bytes".into(),
                Some("generate one with `openssl rand -base64 32`".into()),
            );
        }
        key
    });
    let mut servers = Vec::new();
    let mut index = HashMap::new();
    let raw_servers = ctx.entries(&p.key("servers"), raw.servers);
    if raw_servers.is_empty() {
        ctx.warn(
            &p,
            "no upstream servers are configured".into(),
            Some("add entries under `proxy.servers`".into()),
        );
    }
    let mut first_use: HashMap<String, usize> = HashMap::new();
    for (i, s) in raw_servers {
        let sp = p.key("servers").index(i);
        let name = s.name.clone();
        let compiled = servers::compile_upstream(s, &sp, &separator, ctx);
        if let Some(name) = name {
            if let Some(first) = first_use.get(&name) {
                ctx.error(
                    &sp.key("name"),
                    format!("duplicate server name `{name}`"),
                    Some(format!("`proxy.servers[{first}]` already uses this name; server names must be unique")),
                );
                continue;
            }
            first_use.insert(name, i);
        }
        if let Some(u) = compiled {
            if let Some(other) = servers
                .iter()
                .find(|o: &&Arc<Upstream>| o.prefix == u.prefix)
            {
                ctx.error(
                    &sp.key("prefix"),
                    format!("prefix `{}` is also the prefix of server `{}`", u.prefix, other.name),
                    Some("each server needs its own prefix on /mcp (a server's default prefix is its name)".into()),
                );
                continue;
            }
            index.insert(u.name.clone(), servers.len());
            servers.push(Arc::new(u));
        }
    }
    Proxy {
        separator,
        session_key,
        servers,
        index,
    }
}

/// Standard or URL-safe base64, padding optional.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let s = s.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .ok()
}

/// Source information for a text.
pub(crate) fn source_info(file: &str, text: &str) -> SourceInfo {
    use sha2::Digest;
    SourceInfo {
        file: file.to_owned(),
        hash: hex::encode(sha2::Sha256::digest(text.as_bytes())),
        loaded_at: SystemTime::now(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a$==").is_none());
        let k = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(decode_base64(k).unwrap(), (0u8..32).collect::<Vec<_>>());
    }
}
