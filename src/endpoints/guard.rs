//! Who may address an MCP endpoint at all, before any token is looked at (DNS-rebinding
//! protection): the `Host` must name this gateway (the host of `server.url`, or a loopback name),
//! and an `Origin`, when a browser sends one, must be allowed. Both fail closed: a value that is
//! not text, or a header sent twice, is refused.

use crate::config::Config;
use crate::request::Single;

/// Why a request may not address an MCP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No `Host` (nor `:authority`), or more than one: 400.
    HostMissing,
    /// A `Host` that is not this gateway's: 403.
    ForeignHost,
    /// An `Origin` not allowed (or not text, or sent twice): 403.
    Origin,
}

/// Check `host` and `origin` of a request to an MCP endpoint.
pub fn check(host: Single<'_>, origin: Single<'_>, rt: &Config) -> Result<(), Refused> {
    match host {
        Single::One(h) if host_allowed(h, rt) => {}
        Single::One(_) => return Err(Refused::ForeignHost),
        Single::Absent | Single::Many => return Err(Refused::HostMissing),
    }
    match origin {
        Single::Absent => Ok(()),
        Single::One(o) if origin_allowed(o, rt) => Ok(()),
        _ => Err(Refused::Origin),
    }
}

/// The host name of a `Host` value (port and IPv6 brackets removed); `None` when it is not a
/// plausible host.
fn host_name(value: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let name = if let Some(rest) = v.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match v.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => v,
        }
    };
    (!name.is_empty() && !name.contains(['/', '@', ' '])).then_some(name)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// A loopback name: `localhost`, `127.0.0.0/8`, `::1`.
fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Host` names this gateway: the host of `server.url`, a loopback name, or the listener's own
/// address when it is a specific one. No allocation: this runs on every MCP request.
pub fn host_allowed(value: &[u8], rt: &Config) -> bool {
    let Some(name) = host_name(value) else {
        return false;
    };
    let public = rt
        .server
        .public_url
        .as_ref()
        .and_then(|u| u.host_str())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    if public.is_some_and(|p| p.eq_ignore_ascii_case(name)) || is_loopback_name(name) {
        return true;
    }
    let listen = rt.server.listen.ip();
    !listen.is_unspecified()
        && name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == listen)
}

/// `Origin` is listed in `server.allowed_origins`, is the origin of `server.url`, or (on a
/// loopback listener) a loopback origin. A value that is not UTF-8 is refused.
pub fn origin_allowed(value: &[u8], rt: &Config) -> bool {
    let Ok(origin) = std::str::from_utf8(value) else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    rt.server
        .allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin)
        || rt
            .server
            .public_url
            .as_ref()
            .is_some_and(|u| u.origin().ascii_serialization() == origin)
        || (rt.server.listen.ip().is_loopback() && is_loopback_origin(origin))
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

/// Whether `query` carries an OAuth access token (RFC 6750 section 2.3: `access_token=...`, the
/// name compared after percent-decoding and case-insensitively). Such a request is refused: a
/// token in a URL ends up in logs and would be forwarded upstream with the query.
pub fn query_has_token(query: &[u8]) -> bool {
    query.split(|b| *b == b'&' || *b == b';').any(|pair| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let mut decoded = Vec::with_capacity(name.len());
        let mut i = 0;
        while i < name.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                name[i],
                name.get(i + 1).copied().and_then(hex),
                name.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    decoded.push((h * 16 + l) as u8);
                    i += 3;
                }
                (b'+', _, _) => {
                    decoded.push(b' ');
                    i += 1;
                }
                (b, _, _) => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        decoded.trim_ascii().eq_ignore_ascii_case(b"access_token")
    })
}

/// A query the gateway forwards as sent: only characters RFC 3986 allows in a query (so the
/// upstream reads exactly what was checked, whichever front end parsed the request).
pub fn query_forwardable(query: &[u8]) -> bool {
    query.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
            )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let yaml = format!("server:\n  listen: \"127.0.0.1:8080\"\n{extra}oauth:\n  enabled: false\nproxy:\n  servers:\n    - name: s\n      type: streamable-http\n      connection:\n        url: \"http://127.0.0.1:9/mcp\"\n");
        crate::config::load_str(&yaml, "t.yaml", &|_| None).unwrap()
    }

    #[test]
    fn hosts() {
        let rt = config("  url: \"https://MCP.example.com\"\n");
        for ok in [
            "mcp.example.com",
            "mcp.EXAMPLE.com:8443",
            "localhost",
            "localhost:1",
            "127.0.0.2",
            "[::1]:80",
        ] {
            assert!(host_allowed(ok.as_bytes(), &rt), "{ok}");
        }
        for bad in [
            "evil.example",
            "mcp.example.com.evil",
            "mcp.example.com:x",
            "a@mcp.example.com",
            "",
            "[::1",
            "127.0.0.1.evil",
            "::1",
            "\u{ff}",
        ] {
            assert!(!host_allowed(bad.as_bytes(), &rt), "{bad}");
        }
        assert!(!host_allowed(b"mcp.example.com\xff", &rt));
        assert_eq!(
            check(Single::Absent, Single::Absent, &rt),
            Err(Refused::HostMissing)
        );
        assert_eq!(
            check(Single::Many, Single::Absent, &rt),
            Err(Refused::HostMissing)
        );
        assert_eq!(
            check(Single::One(b"localhost"), Single::Many, &rt),
            Err(Refused::Origin)
        );
    }

    #[test]
    fn origins_fail_closed() {
        let rt = config("  allowed_origins: [\"https://claude.ai\"]\n");
        assert!(origin_allowed(b"https://claude.ai", &rt));
        assert!(origin_allowed(b"http://localhost:6274", &rt));
        assert!(!origin_allowed(b"https://evil.example", &rt));
        assert!(!origin_allowed(b"http://\xfflocalhost", &rt));
        assert!(!origin_allowed(b"null", &rt));
    }

    #[test]
    fn queries() {
        assert!(query_forwardable(b"a=1&b=%20x/y?z"));
        for q in [
            &b"access_token=x"[..],
            b"a=1&access_token=x",
            b"ACCESS_TOKEN=x",
            b"access%5Ftoken=x",
            b"access%5ftoken",
            b"x=1;access_token=y",
        ] {
            assert!(query_has_token(q), "{q:?}");
        }
        for q in [
            &b"token=x"[..],
            b"a=access_token",
            b"access_tokens=x",
            b"",
            b"%zz",
        ] {
            assert!(!query_has_token(q), "{q:?}");
        }
        for bad in [
            &b"a=\""[..],
            b"<x>",
            b"a b",
            b"\xff",
            b"a#b",
            b"{x}",
            b"a|b",
            b"a\\b",
            b"a^b",
            b"a`b",
        ] {
            assert!(!query_forwardable(bad), "{bad:?}");
        }
    }
}
