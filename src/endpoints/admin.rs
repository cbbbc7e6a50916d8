//! Admin endpoints on the main listener: `/live`, `/ready`, `/metrics`, `/status`.

use bytes::Bytes;
use serde_json::json;

use super::Admin;
use crate::mcp::reply::Reply;
use crate::state::probe::Health;
use crate::state::Snapshot;
use crate::telemetry::metrics::metrics;

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
