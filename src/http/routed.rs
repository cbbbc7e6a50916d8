//! A request of the aggregated `/mcp` routed to the one upstream that owns what it names: sent
//! under the session the gateway holds for the client there, its answer relayed message by
//! message with server-to-client request ids and resource URIs namespaced.

use bytes::{Bytes, BytesMut};

use super::downstream::Downstream;
use super::stream::{event, gone, start_sse, Ended, KEEPALIVE};
use super::write;
use crate::gateway::{Forward, Observation};
use crate::mcp::aggregate as agg;
use crate::mcp::outcome::{answer_is_error, Seen};
use crate::mcp::reply::Reply;
use crate::request::RequestView;
use crate::telemetry::metrics::metrics;
use crate::upstream::{Answer, Request, SessionId};

/// Most bytes of one upstream answer read whole.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A request routed to one upstream from `/mcp`: sent under the session held there, its answer
/// relayed message by message (as SSE to a client that reads a stream, else the response as
/// JSON), each message namespaced.
pub async fn forward<D: Downstream>(
    d: &mut D,
    fwd: Forward<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    let Some(via) = &fwd.via else {
        return Ended::Complete;
    };
    let server = fwd.upstream.name();
    let names = via.names;
    let req = Request {
        view,
        body: fwd.body.clone(),
        envelope: fwd.envelope.as_ref(),
        traceparent,
        session: SessionId::Held(via.session.as_deref()),
        mcp_name: via.mcp_name.as_deref(),
        protocol_version: via.version.as_deref(),
        mcp_method: None,
    };
    let answer = match fwd.upstream.call(&fwd.permit, req).await {
        Ok(a) => a,
        Err(f) => {
            metrics().upstream_error(server, f.kind);
            crate::in_request!(warn, server, kind = f.kind, detail = %f.detail, "upstream request failed");
            let reply = Reply::upstream_failure(f.status, &fwd.error_id(), server, &f.detail);
            write::reply(d, reply, false, obs).await;
            return Ended::Complete;
        }
    };
    let watch = fwd.tool().is_some();
    let task = via.task.as_deref();
    let outward = |m: Bytes| {
        let m = agg::outward(names, server, &m).unwrap_or(m);
        match task {
            Some((binding, key)) => {
                crate::mcp::tasks::outward(names, key, server, binding, &m).unwrap_or(m)
            }
            None => m,
        }
    };
    let streamed = match &answer {
        Answer::Http(h) => h.head.is_event_stream() && h.head.status() == 200,
        Answer::Messages(_) | Answer::Events(_) => true,
        Answer::Local(_) => false,
    };
    if !streamed {
        let (status, body) = match answer {
            Answer::Local(reply) => (reply.status, reply.body),
            Answer::Http(mut h) => {
                let status = h.head.status();
                let mut all = BytesMut::new();
                loop {
                    match h.body.next_chunk().await {
                        Ok(Some(c)) if all.len() + c.len() <= MAX_ANSWER => {
                            all.extend_from_slice(&c)
                        }
                        Ok(None) => break,
                        Ok(Some(_)) | Err(_) => {
                            let reply = Reply::upstream_failure(
                                502,
                                &fwd.error_id(),
                                server,
                                "the answer could not be read",
                            );
                            write::reply(d, reply, false, obs).await;
                            return Ended::Complete;
                        }
                    }
                }
                h.body.finish();
                (status, all.freeze())
            }
            Answer::Messages(_) | Answer::Events(_) => (502, Bytes::new()),
        };
        if watch {
            if let Some(is_error) = answer_is_error(&body) {
                obs.answered(Seen::Answer { is_error }, status);
            }
        }
        let reply = if body.is_empty() {
            Reply {
                content_type: None,
                no_store: false,
                ..Reply::bytes(status, "application/json", body)
            }
        } else {
            Reply::bytes(status, "application/json", outward(body))
        };
        write::reply(d, reply, false, obs).await;
        return Ended::Complete;
    }
    let mut r = answer.into_messages();
    if !view.accepts_sse() {
        // The response only, as JSON; a client that hangs up cancels the call upstream.
        loop {
            let next = tokio::select! {
                biased;
                next = r.next() => next,
                _ = gone(d) => {
                    obs.status(499);
                    return Ended::Broken;
                }
            };
            match next {
                Ok(Some(m)) => {
                    if let Some(is_error) = answer_is_error(&m) {
                        if watch {
                            obs.answered(Seen::Answer { is_error }, 200);
                        }
                        write::reply(
                            d,
                            Reply::bytes(200, "application/json", outward(m)),
                            false,
                            obs,
                        )
                        .await;
                        return Ended::Complete;
                    }
                }
                _ => {
                    let reply = Reply::upstream_failure(502, &fwd.error_id(), server, "no answer");
                    write::reply(d, reply, false, obs).await;
                    return Ended::Complete;
                }
            }
        }
    }
    if start_sse(d).await.is_err() {
        obs.status(499);
        return Ended::Broken;
    }
    obs.status(200);
    let _open = obs.sse_stream();
    let mut watching = true;
    loop {
        let chunk = tokio::select! {
            biased;
            next = r.next() => match next {
                Ok(Some(m)) => {
                    if watch {
                        if let Some(is_error) = answer_is_error(&m) {
                            obs.answered(Seen::Answer { is_error }, 200);
                        }
                    }
                    event(&outward(m))
                }
                Ok(None) => break,
                Err(e) => {
                    crate::in_request!(warn, server, error = %e, "upstream failed mid-answer; closing the client connection");
                    metrics().upstream_error(server, "aborted");
                    d.abort().await;
                    return Ended::Broken;
                }
            },
            _ = tokio::time::sleep(KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
            hung_up = d.hangup(), if watching => {
                if hung_up {
                    return Ended::Broken;
                }
                watching = false;
                continue;
            }
        };
        if d.chunk(chunk).await.is_err() {
            return Ended::Broken;
        }
    }
    match d.end().await {
        Ok(()) => Ended::Complete,
        Err(_) => Ended::Broken,
    }
}
