//! One upstream's part of a fan-out on the aggregated `/mcp`: its request (under the session
//! held there), its time limit, being left out with a warning, and reading its response. Used
//! by every fan-out ([`super::fanout`]) and by merged listen streams
//! ([`super::subscriptions`]).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::gateway::Leg;
use crate::mcp::jsonrpc::{classify, Envelope};
use crate::request::RequestView;
use crate::telemetry::metrics::metrics;
use crate::upstream::{Answer, Request, SessionId};

/// Why a leg failed when its upstream answered 404: it no longer knows the session.
pub(super) const SESSION_GONE: &str = "the upstream no longer knows the session (HTTP 404)";

/// The longest an upstream may take to answer its part of a fan-out.
pub const FANOUT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn request<'a>(
    view: &'a RequestView<'a>,
    leg: &'a Leg<'_>,
    body: Bytes,
    envelope: Option<&'a Envelope>,
    traceparent: &'a str,
) -> Request<'a> {
    Request {
        view,
        body,
        envelope,
        traceparent,
        session: SessionId::Held(leg.session.as_deref()),
        mcp_name: None,
        protocol_version: leg.version.as_deref(),
        mcp_method: None,
    }
}

/// `fut`, bounded by the leg's timeout; a failure as text.
pub(super) async fn within<T, E: std::fmt::Display>(
    leg: &Leg<'_>,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    let limit = leg.upstream.config.timeout.min(FANOUT_TIMEOUT);
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", limit.as_secs())),
    }
}

pub(super) fn skipped(leg: &Leg<'_>, why: &str) {
    let server = leg.upstream.name();
    let reason = if why.starts_with("no answer within") {
        "timeout"
    } else {
        "error"
    };
    metrics().fanout_skipped(server, reason);
    crate::in_request!(
        warn,
        server,
        reason = why,
        "upstream left out of the /mcp answer"
    );
}

/// Read an answer to its end (a notification's `202`, a DELETE's answer).
pub(super) async fn drain(answer: Answer<'_>) {
    let mut r = answer.into_messages();
    while let Ok(Some(_)) = r.next().await {}
}

/// Send `body` (a request with id `id`) to `leg`, bounded by its timeout: the response's
/// `result`, or why there is none.
pub(super) async fn ask_leg(
    leg: &Leg<'_>,
    view: &RequestView<'_>,
    body: Bytes,
    traceparent: &str,
    id: &Value,
    own_method: Option<&str>,
) -> Result<Value, String> {
    let envelope = classify(&body).ok();
    let mut req = request(view, leg, body.clone(), envelope.as_ref(), traceparent);
    req.mcp_method = own_method;
    within(leg, async {
        let answer = leg
            .upstream
            .call(&leg.permit, req)
            .await
            .map_err(|f| f.detail)?;
        response(answer, id).await
    })
    .await
}

/// The response with id `id` in an answer (other messages are skipped): its `result`, or the
/// upstream's error as text.
pub(super) async fn response(answer: Answer<'_>, id: &Value) -> Result<Value, String> {
    let status = match &answer {
        Answer::Http(h) => h.head.status(),
        Answer::Local(r) => r.status,
        _ => 200,
    };
    if status == 404 {
        return Err(SESSION_GONE.into());
    }
    if status != 200 {
        return Err(format!("answered HTTP {status}"));
    }
    let mut r = answer.into_messages();
    while let Some(m) = r.next().await? {
        let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&m) else {
            continue;
        };
        if m.get("id") != Some(id) || m.contains_key("method") {
            continue;
        }
        if let Some(result) = m.remove("result") {
            return Ok(result);
        }
        let e = m.get("error").map(Value::to_string).unwrap_or_default();
        return Err(format!("answered with an error: {e}"));
    }
    Err("no response in the answer".into())
}
