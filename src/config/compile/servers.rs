//! Compiling one `proxy.servers[]` entry into an [`Upstream`]: name rules, transport-specific
//! requirements (URL for HTTP transports, command for stdio), timeouts, and the headers injected
//! upstream (from `auth` and `connection.headers`), all errors collected.

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::ctx::{http_url, Ctx};
use crate::config::compiled::{HttpTarget, StdioCommand, Transport, Upstream};
use crate::config::diagnostic::FieldPath;
use crate::config::raw::{RawAuthType, RawTransport, RawUpstream};

/// Headers the gateway manages itself; a config may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "mcp-session-id",
];

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Compiles one server; `None` when it had errors (recorded in `ctx`).
pub(crate) fn compile_upstream(
    s: RawUpstream,
    sp: &FieldPath,
    separator: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Upstream> {
    let before = ctx.errors.len();
    let name = match s.name {
        Some(n) if !valid_name(&n) => {
            ctx.error(
                &sp.key("name"),
                format!("invalid server name `{n}`"),
                Some("use 1 to 64 characters from `A-Z a-z 0-9 _ -`".into()),
            );
            None
        }
        Some(n) if !separator.is_empty() && n.contains(separator) => {
            ctx.error(
                &sp.key("name"),
                format!("server name `{n}` contains the separator `{separator}`"),
                Some("tool names are `SERVER{sep}TOOL`, so a server name cannot contain the separator".replace("{sep}", separator)),
            );
            None
        }
        Some(n) => Some(n),
        None => {
            ctx.missing(&sp.key("name"), "a server needs a `name`".into(), None);
            None
        }
    };
    let kind = s.kind;
    if kind.is_none() {
        ctx.missing(
            &sp.key("type"),
            "a server needs a `type`".into(),
            Some("one of `streamable-http`, `stdio`, `sse`".into()),
        );
    }
    let conn = s.connection.unwrap_or_default();
    let cp = sp.key("connection");
    let timeout = positive(ctx, &cp.key("timeout"), conn.timeout.map(|d| d.0), 300);
    let connect_timeout = positive(
        ctx,
        &cp.key("connect_timeout"),
        conn.connect_timeout.map(|d| d.0),
        5,
    );
    let http = matches!(kind, Some(RawTransport::StreamableHttp | RawTransport::Sse));
    let type_name = match kind {
        Some(RawTransport::StreamableHttp) => "streamable-http",
        Some(RawTransport::Sse) => "sse",
        Some(RawTransport::Stdio) => "stdio",
        None => "",
    };
    let not_for = |ctx: &mut Ctx<'_>, set: bool, path: FieldPath, field: &str, only: &str| {
        if set {
            let hint = if only.starts_with('`') {
                only.to_owned()
            } else {
                format!("`{field}` is only for {only} servers")
            };
            ctx.error(
                &path,
                format!("`{field}` does not apply to a {type_name} server"),
                Some(hint),
            );
        }
    };
    let mut inject = Vec::new();
    let transport = match kind {
        Some(k @ (RawTransport::StreamableHttp | RawTransport::Sse)) => {
            let only = "stdio";
            not_for(
                ctx,
                conn.command.is_some(),
                cp.key("command"),
                "command",
                only,
            );
            not_for(ctx, conn.args.is_some(), cp.key("args"), "args", only);
            not_for(ctx, conn.env.is_some(), cp.key("env"), "env", only);
            not_for(ctx, conn.cwd.is_some(), cp.key("cwd"), "cwd", only);
            if k == RawTransport::Sse {
                not_for(
                    ctx,
                    conn.fallback_sse.is_some(),
                    cp.key("fallback_sse"),
                    "fallback_sse",
                    "streamable-http",
                );
            }
            let target = match &conn.url {
                Some(u) => http_url(ctx, &cp.key("url"), u).and_then(|url| {
                    let https = url.scheme() == "https";
                    let tls =
                        super::tls::upstream_tls(ctx, &cp.key("tls"), conn.tls.as_ref(), https)?;
                    http_target(ctx, &cp.key("url"), url, conn.fallback_sse.unwrap_or(false)).map(
                        |t| HttpTarget {
                            tls_options: tls,
                            ..t
                        },
                    )
                }),
                None => {
                    ctx.missing(
                        &cp.key("url"),
                        format!("a {type_name} server needs `connection.url`"),
                        Some("e.g. `url: \"http://127.0.0.1:3001/mcp\"`".into()),
                    );
                    None
                }
            };
            target.map(|t| match k {
                RawTransport::Sse => Transport::Sse(t),
                _ => Transport::StreamableHttp(t),
            })
        }
        Some(RawTransport::Stdio) => {
            let only = "HTTP (streamable-http, sse)";
            not_for(ctx, conn.url.is_some(), cp.key("url"), "url", only);
            not_for(
                ctx,
                conn.headers.is_some(),
                cp.key("headers"),
                "headers",
                only,
            );
            not_for(
                ctx,
                conn.connect_timeout.is_some(),
                cp.key("connect_timeout"),
                "connect_timeout",
                only,
            );
            not_for(ctx, conn.tls.is_some(), cp.key("tls"), "tls", only);
            not_for(
                ctx,
                conn.fallback_sse.is_some(),
                cp.key("fallback_sse"),
                "fallback_sse",
                "streamable-http",
            );
            let has_auth = s
                .auth
                .as_ref()
                .is_some_and(|a| a.kind != Some(RawAuthType::None));
            not_for(ctx, has_auth, sp.key("auth"), "auth", "`auth` is only for HTTP servers; pass credentials to a stdio server with `connection.env`");
            not_for(
                ctx,
                s.forward_authorization == Some(true),
                sp.key("forward_authorization"),
                "forward_authorization",
                only,
            );
            let mut env = Vec::new();
            for (k, v) in conn.env.map(|m| m.0).unwrap_or_default() {
                let ep = cp.key("env").key(&k);
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    ctx.key_error(
                        &ep,
                        format!("invalid environment variable name `{k}`"),
                        None,
                    );
                }
                match v {
                    Some(v) => env.push((k, v)),
                    None => ctx.missing(
                        &ep,
                        format!("`{k}` has no value"),
                        Some("write `\"\"` for an empty value".into()),
                    ),
                }
            }
            match conn.command {
                Some(c) if !c.trim().is_empty() => Some(Transport::Stdio(StdioCommand {
                    command: c,
                    args: ctx.values(&cp.key("args"), conn.args),
                    env,
                    cwd: conn.cwd.map(PathBuf::from),
                })),
                Some(_) => {
                    ctx.error(&cp.key("command"), "`command` is empty".into(), None);
                    None
                }
                None => {
                    ctx.missing(
                        &cp.key("command"),
                        "a stdio server needs `connection.command`".into(),
                        Some("e.g. `command: npx` with `args: [\"-y\", \"@modelcontextprotocol/server-everything\"]`".into()),
                    );
                    None
                }
            }
        }
        None => None,
    };
    if http {
        if let Some(auth) = s.auth {
            let ap = sp.key("auth");
            match auth.kind {
                Some(RawAuthType::Header) => {
                    let name = match auth.header {
                        Some(h) => header_name(ctx, &ap.key("header"), &h),
                        None => {
                            ctx.missing(
                                &ap.key("header"),
                                "`auth.type: header` needs `header`".into(),
                                Some("e.g. `header: x-api-key`".into()),
                            );
                            None
                        }
                    };
                    let value = required_value(ctx, &ap, auth.value, "header", "");
                    if let (Some(n), Some(v)) = (name, value) {
                        inject.push((n, v, ap.key("header")));
                    }
                }
                Some(RawAuthType::Bearer) => {
                    if auth.header.is_some() {
                        ctx.error(&ap.key("header"), "`header` does not apply to `type: bearer`".into(), Some("bearer credentials go in `Authorization`; use `type: header` for another header".into()));
                    }
                    if let Some(v) = required_value(ctx, &ap, auth.value, "bearer", "Bearer ") {
                        inject.push((http::header::AUTHORIZATION, v, ap.key("value")));
                    }
                }
                Some(RawAuthType::None) => {
                    for (set, f) in [
                        (auth.header.is_some(), "header"),
                        (auth.value.is_some(), "value"),
                    ] {
                        if set {
                            ctx.error(
                                &ap.key(f),
                                format!("`{f}` does not apply to `type: none`"),
                                None,
                            );
                        }
                    }
                }
                None => ctx.missing(
                    &ap.key("type"),
                    "upstream `auth` needs a `type`".into(),
                    Some("one of `header`, `bearer`, `none`".into()),
                ),
            }
        }
        for (k, v) in conn.headers.map(|m| m.0).unwrap_or_default() {
            let hp = cp.key("headers").key(&k);
            let name = header_name(ctx, &hp, &k);
            let Some(v) = v else {
                ctx.missing(
                    &hp,
                    format!("header `{k}` has no value"),
                    Some("write `\"\"` for an empty value".into()),
                );
                continue;
            };
            let value = header_value(ctx, &hp, &v);
            if let (Some(n), Some(v)) = (name, value) {
                inject.push((n, v, hp));
            }
        }
    }
    let forward = s.forward_authorization.unwrap_or(false);
    let (prefix, aliases) = names(ctx, sp, separator, name.as_deref(), s.prefix, s.aliases);
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (n, v, path) in inject {
        if headers.iter().any(|(h, _)| h == n) {
            ctx.error(
                &path,
                format!("header `{n}` is set twice for this server"),
                Some("set each upstream header once, in `auth` or in `connection.headers`".into()),
            );
        } else if forward && n == http::header::AUTHORIZATION {
            ctx.error(
                &path,
                "`Authorization` is both injected and forwarded".into(),
                Some("remove `forward_authorization: true` or the injected credential".into()),
            );
        } else {
            headers.push((n, v));
        }
    }
    if ctx.errors.len() > before {
        return None;
    }
    Some(Upstream {
        name: name?,
        transport: transport?,
        connect_timeout,
        timeout,
        inject_headers: headers,
        forward_authorization: forward,
        prefix: prefix?,
        aliases,
    })
}

/// `prefix` and `aliases`: what this server's names look like on `/mcp`. Every exposed name
/// must satisfy the strictest client rule, `^[a-zA-Z0-9_-]{1,64}$`.
fn names(
    ctx: &mut Ctx<'_>,
    sp: &FieldPath,
    separator: &str,
    name: Option<&str>,
    prefix: Option<String>,
    aliases: Option<crate::config::raw::OrderedMap<Option<String>>>,
) -> (Option<String>, Vec<(String, String)>) {
    let sp_has_prefix = prefix.is_some();
    let prefix = match prefix {
        Some(p) if !valid_name(&p) => {
            ctx.error(
                &sp.key("prefix"),
                format!("invalid prefix `{p}`"),
                Some("use 1 to 64 characters from `A-Z a-z 0-9 _ -`".into()),
            );
            None
        }
        Some(p) if !separator.is_empty() && p.contains(separator) => {
            ctx.error(
                &sp.key("prefix"),
                format!("prefix `{p}` contains the separator `{separator}`"),
                Some(format!("names on /mcp are `PREFIX{separator}NAME`, so a prefix cannot contain the separator")),
            );
            None
        }
        Some(p) => Some(p),
        None => name.map(str::to_owned),
    };
    // `PREFIX{separator}NAME` is split at the first separator: a prefix whose end and the
    // separator make an earlier one (`git_` + `__`) would send its names to another server.
    let prefix = prefix.filter(|p| {
        let joined = format!("{p}{separator}");
        let clean = separator.is_empty() || joined.find(separator) == Some(p.len());
        if !clean {
            let field = if sp_has_prefix { "prefix" } else { "name" };
            ctx.error(
                &sp.key(field),
                format!("`{p}` ends in a way that makes `{p}{separator}NAME` split too early"),
                Some(format!("on /mcp names are split at the first `{separator}`; end the {field} with a character other than `{}`", separator.chars().next().unwrap_or('_'))),
            );
        }
        clean
    });
    // A shortened name needs 9 characters of its own (`-` and 8 hex digits) and one more.
    let prefix = prefix.filter(|p| {
        let room = 64usize.saturating_sub(p.len() + separator.len());
        if room < 10 {
            ctx.error(
                &sp.key("prefix"),
                format!("prefix `{p}` leaves {room} characters for names on /mcp"),
                Some(
                    "names on /mcp have at most 64 characters; set a `prefix` of at most 52".into(),
                ),
            );
        }
        room >= 10
    });
    let mut out: Vec<(String, String)> = Vec::new();
    for (upstream_name, exposed) in aliases.map(|m| m.0).unwrap_or_default() {
        let ap = sp.key("aliases").key(&upstream_name);
        let Some(exposed) = exposed else {
            ctx.missing(
                &ap,
                format!("alias of `{upstream_name}` has no value"),
                None,
            );
            continue;
        };
        let full = prefix
            .as_deref()
            .map(|p| p.len() + separator.len() + exposed.len());
        if !valid_name(&exposed) || full.is_some_and(|n| n > 64) {
            ctx.error(
                &ap,
                format!("alias `{exposed}` would expose an invalid name"),
                Some(format!(
                    "`PREFIX{separator}ALIAS` must be 1 to 64 characters from `A-Z a-z 0-9 _ -`"
                )),
            );
            continue;
        }
        if let Some((other, _)) = out.iter().find(|(_, e)| *e == exposed) {
            ctx.error(
                &ap,
                format!("alias `{exposed}` is also the alias of `{other}`"),
                Some("each alias must name one upstream tool or prompt".into()),
            );
            continue;
        }
        out.push((upstream_name, exposed));
    }
    (prefix, out)
}

fn positive(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    d: Option<Duration>,
    default_secs: u64,
) -> Duration {
    match d {
        Some(d) if d.is_zero() => {
            ctx.error(
                path,
                "a timeout must be greater than zero".into(),
                Some("e.g. `30s` or `5m`".into()),
            );
            d
        }
        Some(d) => d,
        None => Duration::from_secs(default_secs),
    }
}

fn required_value(
    ctx: &mut Ctx<'_>,
    ap: &FieldPath,
    value: Option<String>,
    kind: &str,
    prefix: &str,
) -> Option<HeaderValue> {
    match value {
        Some(v) => header_value(ctx, &ap.key("value"), &format!("{prefix}{v}")),
        None => {
            ctx.missing(
                &ap.key("value"),
                format!("`auth.type: {kind}` needs `value`"),
                Some("e.g. `value: \"${API_KEY}\"`".into()),
            );
            None
        }
    }
}

fn header_name(ctx: &mut Ctx<'_>, path: &FieldPath, name: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) if RESERVED_HEADERS.contains(&n.as_str()) => {
            ctx.error(
                path,
                format!("header `{n}` is managed by the gateway and cannot be set"),
                None,
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            ctx.error(
                path,
                format!("invalid HTTP header name `{name}`"),
                Some("header names are letters, digits and `-` (no spaces, no `:`), e.g. `x-api-key`".into()),
            );
            None
        }
    }
}

/// The value is never echoed: it may be a secret.
fn header_value(ctx: &mut Ctx<'_>, path: &FieldPath, value: &str) -> Option<HeaderValue> {
    match HeaderValue::from_str(value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some(v)
        }
        Err(_) => {
            ctx.error(
                path,
                "invalid HTTP header value".into(),
                Some("header values cannot contain control characters such as newlines, or non-ASCII text".into()),
            );
            None
        }
    }
}

fn http_target(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    url: url::Url,
    fallback_sse: bool,
) -> Option<HttpTarget> {
    if !url.username().is_empty() || url.password().is_some() {
        ctx.error(
            path,
            "credentials in an upstream URL are not supported".into(),
            Some(
                "remove `user:password@` from the URL and use `auth` (type `header` or `bearer`)"
                    .into(),
            ),
        );
        return None;
    }
    let host = url.host_str()?.to_owned();
    let port = url.port_or_known_default()?;
    let mut path_and_query = url.path().to_owned();
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    Some(HttpTarget {
        tls: url.scheme() == "https",
        address: format!("{host}:{port}"),
        host,
        port,
        path_and_query,
        host_header,
        fallback_sse,
        tls_options: None,
        url,
    })
}
