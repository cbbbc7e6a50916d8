//! Admin endpoints: `/live`, `/ready`, `/metrics`, `/status` (on the main listener, or on
//! `server.admin_listen`; who may read them is decided in [`crate::gateway::Gateway::decide`]).

use bytes::Bytes;
use serde_json::json;

use super::Admin;
use crate::config::BasicAuth;
use crate::mcp::reply::Reply;
use crate::request::Single;
use crate::state::probe::Health;
use crate::state::Snapshot;
use crate::telemetry::metrics::metrics;

/// Whether `authorization` is `Basic` with exactly `auth`'s user name and password (compared
/// through SHA-256 digests, so the time taken tells nothing about the expected value).
pub fn basic_auth_ok(authorization: Single<'_>, auth: &BasicAuth) -> bool {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let Single::One(value) = authorization else {
        return false;
    };
    let Some(encoded) = value
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case(b"basic "))
        .map(|_| value[6..].trim_ascii())
    else {
        return false;
    };
    let Ok(sent) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let expected = format!("{}:{}", auth.username, auth.password);
    let (a, b) = (Sha256::digest(&sent), Sha256::digest(expected.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The answer to an admin request. `keys_ready` is false while authentication is on and no
/// signing key set has loaded yet.
pub fn answer(
    method: &http::Method,
    live: &Snapshot,
    health: &Health,
    keys_ready: bool,
    which: Admin,
) -> Reply {
    if method != http::Method::GET {
        return Reply::bytes(
            405,
            "application/json",
            Bytes::from_static(b"{\"error\":\"method_not_allowed\"}"),
        )
        .with_header("allow", "GET");
    }
    match which {
        Admin::Live => Reply::json(200, &json!({ "status": "live" })),
        Admin::Ready => {
            let (upstreams, reachable) = health.current(live);
            let ready = reachable && keys_ready;
            Reply::json(
                if ready { 200 } else { 503 },
                &json!({
                    "status": if ready { "ready" } else { "not_ready" },
                    "config": live.config.source.hash,
                    "signing_keys": keys_ready,
                    "upstreams": upstreams,
                }),
            )
        }
        Admin::Metrics => Reply::bytes(
            200,
            "text/plain; version=0.0.4",
            Bytes::from(metrics().render()),
        ),
        Admin::Status => {
            let loaded_at = live
                .config
                .source
                .loaded_at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (statuses, _) = health.current(live);
            let seen = live.names.seen();
            let upstreams: Vec<_> = live
                .config
                .proxy
                .servers
                .iter()
                .map(|u| {
                    json!({
                        "name": u.name,
                        "transport": u.transport.kind(),
                        "health": statuses.get(&u.name),
                        "process": live.upstreams.get(&u.name).and_then(|up| up.shared.as_ref()).map(|m| m.status()),
                        "on_mcp": {
                            "prefix": u.prefix,
                            "aliases": u.aliases.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                            "tools_seen": seen.get(&u.name),
                        },
                    })
                })
                .collect();
            Reply::json(
                200,
                &json!({
                    "config": { "file": live.config.source.file, "hash": live.config.source.hash, "loaded_at": loaded_at },
                    "upstreams": upstreams,
                }),
            )
        }
    }
}
