//! The serde mirror of `gateway.yaml`: every key the file may hold, nothing validated beyond
//! its type. Every field is optional here (requiredness is checked by `compile`, which can then
//! report all errors at once) and every struct denies unknown keys.
//!
//! The seed (Go mcp-gateway) keys are `server.url`, `oauth.*`, `auth.*`, `proxy.servers[]`;
//! Portcullis adds `server.{listen, max_body_bytes, allowed_origins, threads, grace_period}`,
//! `proxy.{separator, session_key}`, per-server timeouts, stdio settings, headers and
//! `forward_authorization`, and `rate_limits`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::source::de::HINT_SEP;

/// The whole file.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Listener, public URL and request limits.
    pub(crate) server: Option<RawServer>,
    /// Token validation (OAuth 2 resource server).
    pub(crate) oauth: Option<RawOAuth>,
    /// Claims to scopes, and scopes required per tool.
    pub(crate) auth: Option<RawAuth>,
    /// The upstream MCP servers.
    pub(crate) proxy: Option<RawProxy>,
    /// Per-replica request rate limits.
    pub(crate) rate_limits: Option<List<RawRateLimit>>,
    /// Trace export.
    pub(crate) telemetry: Option<RawTelemetry>,
}

/// `telemetry`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    /// OTLP/HTTP collector base URL (`http://127.0.0.1:4318`); spans go to `/v1/traces`.
    /// Startup-only.
    pub(crate) otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default `portcullis`.
    pub(crate) service_name: Option<String>,
}

/// `server`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    /// Public base URL of the gateway (seed key); resource URLs derive from it.
    pub(crate) url: Option<String>,
    /// Socket address to listen on; startup-only. Default `127.0.0.1:8080`.
    pub(crate) listen: Option<String>,
    /// Request body cap, bytes or a size such as `4MiB`. Default 4 MiB.
    pub(crate) max_body_bytes: Option<ByteSize>,
    /// Allowed `Origin` values (`scheme://host[:port]`).
    pub(crate) allowed_origins: Option<List<String>>,
    /// Request head cap (request line and header fields), bytes or a size such as `32KiB`;
    /// 431 past it. Default 32 KiB, at most 64 KiB.
    pub(crate) max_header_bytes: Option<ByteSize>,
    /// Most client connections open at once on the main listener; a connection past it is
    /// closed at once. Default 10000.
    pub(crate) max_connections: Option<u64>,
    /// Most event streams (GET) one caller holds open at once, on every endpoint together
    /// (every anonymous caller counts as one); 429 past it. Default 100.
    pub(crate) max_streams_per_principal: Option<u64>,
    /// Longest time a request head may take to arrive (from a new connection, or from the
    /// first byte of a next request); 408 past it. Default 10s.
    pub(crate) header_timeout: Option<RawDuration>,
    /// Worker threads; startup-only. Default 2.
    pub(crate) threads: Option<u64>,
    /// Time given to in-flight requests at shutdown; startup-only. Default 30s.
    pub(crate) grace_period: Option<RawDuration>,
    /// Serve plain HTTP/1.1 requests on the front door (default `true`); `false` sends every
    /// request through Pingora's proxy (an escape hatch when a divergence is suspected).
    pub(crate) fast_path: Option<bool>,
    /// A second listener for `/live /ready /metrics /status` (they leave the main one);
    /// startup-only.
    pub(crate) admin_listen: Option<String>,
    /// The scope a token needs for `/status` on the main listener.
    pub(crate) admin_scope: Option<String>,
    /// Basic auth for `/metrics` (seed key; both set: required).
    pub(crate) metrics_auth: Option<RawBasicAuth>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) on `listen`; startup-only, the files reload.
    /// Both files empty (unset `${VAR:-}`): plain HTTP.
    pub(crate) tls: Option<RawServerTls>,
}

/// `server.tls`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    /// PEM certificate chain, leaf first.
    pub(crate) cert_file: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key_file: Option<String>,
    /// How often the two files are checked for a change. Default 10s.
    pub(crate) reload_interval: Option<RawDuration>,
}

/// `proxy.servers[].connection.tls`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    /// PEM CA certificates trusted for this upstream instead of the system's.
    pub(crate) ca_file: Option<String>,
    /// PEM client certificate chain (mutual TLS); needs `key_file`.
    pub(crate) cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub(crate) key_file: Option<String>,
}

/// `server.metrics_auth`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    /// User name.
    pub(crate) username: Option<String>,
    /// Password.
    pub(crate) password: Option<String>,
}

/// `oauth`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    /// Whether tokens are required. Default: true when the section is present.
    pub(crate) enabled: Option<bool>,
    /// Identity provider flavour (seed key).
    pub(crate) provider: Option<RawProvider>,
    /// Issuer URLs, found by OIDC discovery (seed key).
    pub(crate) authorization_servers: Option<List<String>>,
    /// Accepted `aud` values.
    pub(crate) audiences: Option<List<String>>,
    /// JWKS URL or `file://` path overriding discovery.
    pub(crate) jwks_uri: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`. Default 60s.
    pub(crate) leeway: Option<RawDuration>,
    /// How often the signing keys are fetched again. Default 5m.
    pub(crate) jwks_refresh: Option<RawDuration>,
}

/// `oauth.provider`.
#[derive(Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawProvider {
    /// Okta (custom authorization servers).
    Okta,
    /// Any OIDC issuer.
    Oidc,
}

/// `auth`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    /// Token claims that yield `claim:value` keys (seed key).
    pub(crate) claims: Option<List<String>>,
    /// `claim:value` key to scopes (seed key).
    pub(crate) mappings: Option<OrderedMap<Option<List<String>>>>,
    /// `server:name` pattern to required scopes (seed key).
    pub(crate) permissions: Option<OrderedMap<Option<List<String>>>>,
    /// Policy options (seed key).
    pub(crate) options: Option<RawAuthOptions>,
}

/// `auth.options`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthOptions {
    /// `any` (one listed scope suffices) or `all`.
    pub(crate) scope_mode: Option<RawScopeMode>,
    /// Scope required when no pattern matches; null denies.
    pub(crate) default_scope: Option<String>,
    /// How a denied call is answered: `hide` (default: JSON-RPC -32602 "Unknown tool"),
    /// `forbidden` (JSON-RPC error saying it is not allowed) or `step_up` (HTTP 403 with
    /// `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`).
    pub(crate) on_denied: Option<RawOnDenied>,
}

/// `auth.options.on_denied`.
#[derive(Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawOnDenied {
    /// Answer as if the name did not exist.
    Hide,
    /// Say it is forbidden.
    Forbidden,
    /// HTTP 403 asking for more scopes.
    StepUp,
}

/// `auth.options.scope_mode`.
#[derive(Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawScopeMode {
    /// At least one scope.
    Any,
    /// Every scope.
    All,
}

/// `proxy`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    /// Joins server and tool names on `/mcp`. Default `__`.
    pub(crate) separator: Option<String>,
    /// Base64 of 32 bytes sealing legacy session ids.
    pub(crate) session_key: Option<String>,
    /// The upstream servers (seed key).
    pub(crate) servers: Option<List<RawUpstream>>,
}

/// `proxy.servers[]`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    /// Unique name; prefixes tools and routes `/mcp/{name}`.
    pub(crate) name: Option<String>,
    /// Transport.
    #[serde(rename = "type")]
    pub(crate) kind: Option<RawTransport>,
    /// Where and how to reach the server.
    pub(crate) connection: Option<RawConnection>,
    /// Credentials the gateway adds to upstream requests.
    pub(crate) auth: Option<RawUpstreamAuth>,
    /// Forward the client's `Authorization` header. Default false.
    pub(crate) forward_authorization: Option<bool>,
    /// What this server's names start with on `/mcp` (`PREFIX{separator}NAME`). Default: `name`.
    pub(crate) prefix: Option<String>,
    /// Upstream tool or prompt name -> the name exposed after the prefix on `/mcp`.
    pub(crate) aliases: Option<OrderedMap<Option<String>>>,
}

/// `proxy.servers[].type`.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawTransport {
    /// MCP Streamable HTTP.
    StreamableHttp,
    /// A child process speaking MCP on stdin/stdout.
    Stdio,
    /// Legacy HTTP+SSE (2024-11-05).
    Sse,
}

/// `proxy.servers[].connection`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    /// Upstream URL (HTTP transports).
    pub(crate) url: Option<String>,
    /// Maximum idle time between bytes from the upstream. Default 300s.
    pub(crate) timeout: Option<RawDuration>,
    /// TCP/TLS connect timeout. Default 5s.
    pub(crate) connect_timeout: Option<RawDuration>,
    /// Program to run (stdio).
    pub(crate) command: Option<String>,
    /// Program arguments (stdio).
    pub(crate) args: Option<List<String>>,
    /// Environment variables for the child (stdio).
    pub(crate) env: Option<OrderedMap<Option<String>>>,
    /// Working directory of the child (stdio).
    pub(crate) cwd: Option<String>,
    /// Fall back to legacy SSE when Streamable HTTP is refused.
    pub(crate) fallback_sse: Option<bool>,
    /// Extra request headers (HTTP transports).
    pub(crate) headers: Option<OrderedMap<Option<String>>>,
    /// TLS options for an `https://` URL.
    pub(crate) tls: Option<RawUpstreamTls>,
}

/// `proxy.servers[].auth`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamAuth {
    /// `header`, `bearer` or `none`.
    #[serde(rename = "type")]
    pub(crate) kind: Option<RawAuthType>,
    /// Header name (type `header`).
    pub(crate) header: Option<String>,
    /// Header value or bearer token.
    pub(crate) value: Option<String>,
}

/// `proxy.servers[].auth.type`.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawAuthType {
    /// A named header with a fixed value.
    Header,
    /// `Authorization: Bearer <value>`.
    Bearer,
    /// No credentials.
    None,
}

/// `rate_limits[]`.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// What the bucket is keyed by: `principal`, `server`, `tool` or `claim:NAME`.
    pub(crate) key: Option<String>,
    /// Sustained rate.
    pub(crate) requests_per_second: Option<f64>,
    /// Bucket size. Default: the rate rounded up, at least 1.
    pub(crate) burst: Option<u32>,
    /// `server:tool` patterns: the rule counts only calls of these tools (and overrides the
    /// rule of the same key without `tools` for them).
    pub(crate) tools: Option<List<String>>,
}

/// A list whose entries keep their index: an entry removed after an error (or written as null)
/// is `None`, so later entries keep the index (and path) they have in the file.
pub(crate) type List<T> = Vec<Option<T>>;

/// A mapping read in file order, keys as strings.
pub(crate) struct OrderedMap<V>(pub(crate) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V_(PhantomData))
    }
}

/// A duration: a humantime string (`30s`, `5m`, `500ms`, `1h 30m`) or an integer of seconds.
#[derive(Clone, Copy)]
pub(crate) struct RawDuration(pub(crate) Duration);

const DURATION_HINT: &str =
    "write a number of seconds or a duration such as `30s`, `5m`, `500ms` or `1h 30m`";

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: negative{HINT_SEP}{DURATION_HINT}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`{HINT_SEP}fractions of a second are written with a unit, e.g. `1500ms`"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`{HINT_SEP}{DURATION_HINT}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                let t = v.trim();
                if let Ok(secs) = t.parse::<u64>() {
                    return Ok(RawDuration(Duration::from_secs(secs)));
                }
                humantime::parse_duration(t).map(RawDuration).map_err(|_| {
                    E::custom(format!("invalid duration `{v}`{HINT_SEP}{DURATION_HINT}"))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size: an integer or a string with a unit (`4MiB`, `512KiB`, `1MB`, `1024B`).
#[derive(Clone, Copy)]
pub(crate) struct ByteSize(pub(crate) u64);

const SIZE_HINT: &str = "write a number of bytes or a size such as `4MiB`, `512KiB` or `1MB`";

/// Parses `4MiB`, `512 KiB`, `1MB`, `1024`, case-insensitively.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "invalid size `{v}`{HINT_SEP}{SIZE_HINT}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "invalid size `{v}`{HINT_SEP}{SIZE_HINT}"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "invalid size `{v}`{HINT_SEP}{SIZE_HINT}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("invalid size `{v}`{HINT_SEP}{SIZE_HINT}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Some(4 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Some(512 * 1024));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("12XB"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("99999999999999GiB"), None);
    }
}
