//! Admin endpoints on the main listener: `/live`, `/ready`, `/metrics`, `/status`.

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;
use serde_json::json;

use super::respond;
use super::route::Admin;
use crate::reload::Live;
use crate::telemetry::metrics::metrics;
use crate::upstream::health::Health;

/// Answer an admin request; returns the status written.
/// `keys_ready` is false while authentication is on and no signing key set has loaded yet.
pub async fn serve(
    session: &mut Session,
    live: &Live,
    health: &Health,
    keys_ready: bool,
    which: Admin,
) -> Result<u16> {
    if session.req_header().method != http::Method::GET {
        let body = Bytes::from_static(b"{\"error\":\"method_not_allowed\"}");
        respond::send(
            session,
            405,
            "application/json",
            body,
            &[("allow", "GET")],
            false,
        )
        .await?;
        return Ok(405);
    }
    match which {
        Admin::Live => {
            respond::json(session, 200, &json!({ "status": "live" }), false).await?;
            Ok(200)
        }
        Admin::Ready => {
            let (upstreams, reachable) = health.current(live);
            let ready = reachable && keys_ready;
            let status = if ready { 200 } else { 503 };
            let body = json!({
                "status": if ready { "ready" } else { "not_ready" },
                "config": live.config.source.hash,
                "signing_keys": keys_ready,
                "upstreams": upstreams,
            });
            respond::json(session, status, &body, false).await?;
            Ok(status)
        }
        Admin::Metrics => {
            let text = metrics().render();
            respond::send(
                session,
                200,
                "text/plain; version=0.0.4",
                Bytes::from(text),
                &[],
                false,
            )
            .await?;
            Ok(200)
        }
        Admin::Status => {
            let loaded_at = live
                .config
                .source
                .loaded_at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (statuses, _) = health.current(live);
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
                        "process": live.routes.mux(&u.name).map(|m| m.status()),
                    })
                })
                .collect();
            let body = json!({
                "config": { "file": live.config.source.file, "hash": live.config.source.hash, "loaded_at": loaded_at },
                "upstreams": upstreams,
            });
            respond::json(session, 200, &body, false).await?;
            Ok(200)
        }
    }
}
