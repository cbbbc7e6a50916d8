//! The one relay loop: a [`Forward`] plan is sent upstream and the answer goes to the client as
//! it arrives, whichever front end received the request. SSE is never buffered (an event that
//! needs no rewrite passes byte for byte); a list answer is filtered per caller (JSON at its
//! end, SSE event by event); the answer to a `tools/call` is watched for its outcome; the client
//! is watched too: when it hangs up, the upstream exchange is dropped, which cancels the request
//! upstream.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::downstream::Downstream;
pub use super::stream::Ended;
use super::stream::{event, gone, start_sse, KEEPALIVE};
use super::write;
use crate::gateway::{Forward, Observation, Op};
use crate::mcp::filter::ListFilter;
use crate::mcp::jsonrpc::Envelope;
use crate::mcp::outcome::{Seen, Watch};
use crate::mcp::reply::{upstream_failure_body, Reply};
use crate::mcp::sse;
use crate::response::Head;
use crate::telemetry::metrics::metrics;
use crate::upstream::shared::session::{Events, Item, Messages};
use crate::upstream::{Answer, HttpAnswer, Request, SessionId};

/// Most bytes of a JSON list answer held for filtering.
const MAX_JSON_LIST: usize = 16 * 1024 * 1024;

/// Send `fwd` upstream and relay the answer to `d`. `traceparent` is the gateway's for this
/// request.
pub async fn forward<D: Downstream>(
    d: &mut D,
    fwd: Forward<'_>,
    view: &crate::request::RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    if fwd.via.is_some() {
        return super::routed::forward(d, fwd, view, traceparent, obs).await;
    }
    let req = request(&fwd, view, traceparent);
    let answer = match fwd.op {
        Op::Call => fwd.upstream.call(&fwd.permit, req).await,
        Op::Events => Box::pin(fwd.upstream.events(&fwd.permit, req)).await,
        Op::Delete => fwd.upstream.delete(&fwd.permit, req).await,
    };
    relay(d, &fwd, answer, obs).await
}

/// A GET stream ([`Op::Events`] to one upstream): as [`forward`] relays it, in a future sized
/// for the stream alone. The upstream's stream is opened in a future of its own, gone once it
/// answered, so an idle stream holds only the relay loop (not room for an upstream call).
pub async fn stream<D: Downstream>(
    d: &mut D,
    fwd: Forward<'_>,
    view: &crate::request::RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    if fwd.via.is_some() {
        // A GET on `/mcp` is a fan-out, never a routed forward; `forward` handles any other.
        return Box::pin(forward(d, fwd, view, traceparent, obs)).await;
    }
    let req = request(&fwd, view, traceparent);
    let answer = Box::pin(fwd.upstream.events(&fwd.permit, req)).await;
    relay(d, &fwd, answer, obs).await
}

/// The upstream request of `fwd` (one upstream, the client's own session).
fn request<'a>(
    fwd: &'a Forward<'_>,
    view: &'a crate::request::RequestView<'a>,
    traceparent: &'a str,
) -> Request<'a> {
    Request {
        view,
        body: fwd.body.clone(),
        envelope: fwd.envelope.as_ref(),
        traceparent,
        session: SessionId::Client,
        mcp_name: None,
        protocol_version: None,
        mcp_method: None,
    }
}

/// Relay the upstream's `answer` to `fwd` to the client (an upstream failure: a JSON-RPC error).
async fn relay<D: Downstream>(
    d: &mut D,
    fwd: &Forward<'_>,
    answer: Result<Answer<'_>, crate::upstream::http::Failure>,
    obs: &mut Observation,
) -> Ended {
    let server = fwd.upstream.name();
    let answer = match answer {
        Ok(a) => a,
        Err(f) => {
            metrics().upstream_error(server, f.kind);
            crate::in_request!(warn, server, kind = f.kind, detail = %f.detail, "upstream request failed");
            let reply = Reply::upstream_failure(f.status, &fwd.error_id(), server, &f.detail);
            write::reply(d, reply, false, obs).await;
            return Ended::Complete;
        }
    };
    let list = fwd.list_filter();
    let watch = fwd.tool().is_some();
    match answer {
        Answer::Local(reply) => {
            write::reply(d, reply, false, obs).await;
            Ended::Complete
        }
        Answer::Http(h) => {
            let id = list.is_some().then(|| fwd.error_id());
            // A listen stream passed through ends with its closing result when the snapshot
            // is retired (reload, shutdown), as the gateway's own listen streams do.
            let retire = (h.head.status() == 200
                && h.head.is_event_stream()
                && fwd.envelope.as_ref().and_then(Envelope::single_request)
                    == Some(crate::mcp::listen::METHOD))
            .then(|| (fwd.upstream.retirement.clone(), fwd.error_id()));
            http(d, h, list, id, watch, retire, obs).await
        }
        Answer::Messages(m) => messages(d, m, list, obs).await,
        Answer::Events(e) => events(d, e, obs).await,
    }
}

/// Ready an upstream's answer head for the client (its hop-by-hop fields were left out when
/// it was read). Returns true for an SSE stream, which goes out without a length and is marked
/// never to be buffered by intermediaries.
pub fn prepare_head(head: &mut Head) -> bool {
    let sse = head.is_event_stream();
    if sse {
        head.set_length(None);
        // Once: a server may say so itself (the Python SDK's does).
        if head.get("x-accel-buffering").is_none() {
            head.push("x-accel-buffering", "no");
        }
    }
    sse
}

/// A per-caller rewrite of a list answer.
enum Rewrite<'a> {
    /// SSE: each complete event's data is filtered; other events pass byte for byte.
    Sse(ListFilter<'a>, sse::Framer),
    /// JSON: the (capped) whole answer is filtered at its end.
    Json(ListFilter<'a>, BytesMut),
}

impl Rewrite<'_> {
    /// Transform one upstream chunk into what the client gets now (possibly nothing yet).
    /// `Err`: the answer (JSON) or one of its events (SSE) is larger than the gateway holds to
    /// filter.
    fn chunk(&mut self, chunk: Bytes) -> Result<Option<Bytes>, TooLarge> {
        match self {
            Rewrite::Sse(filter, framer) => {
                let events = framer.push(&chunk).map_err(|_| TooLarge)?;
                if events.is_empty() {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(chunk.len());
                for ev in events {
                    match sse::event_data(&ev).and_then(|d| filter.apply(&d)) {
                        Some(data) => out.extend_from_slice(&sse::with_data(&ev, &data)),
                        None => out.extend_from_slice(&ev),
                    }
                }
                Ok(Some(Bytes::from(out)))
            }
            Rewrite::Json(_, buf) => {
                if buf.len() + chunk.len() > MAX_JSON_LIST {
                    return Err(TooLarge);
                }
                buf.extend_from_slice(&chunk);
                Ok(None)
            }
        }
    }

    /// What remains at the end of the answer.
    fn finish(&mut self) -> Option<Bytes> {
        match self {
            Rewrite::Sse(_, framer) => Some(framer.rest()).filter(|b| !b.is_empty()),
            Rewrite::Json(filter, buf) => {
                let body = buf.split().freeze();
                Some(filter.apply(&body).map(Bytes::from).unwrap_or(body))
            }
        }
    }
}

/// A list answer, or one of its SSE events, past the 16 MiB the gateway holds to filter.
struct TooLarge;

/// What the next step of a relay is.
enum Step {
    Send(Bytes),
    Skip,
    Done,
    Failed(String),
    TooLarge,
    Gone,
    Retired,
}

/// Keep the last four bytes of what went out (`b` appended).
fn remember_tail(last: &mut [u8; 4], b: &[u8]) {
    if b.len() >= 4 {
        last.copy_from_slice(&b[b.len() - 4..]);
    } else {
        last.rotate_left(b.len());
        last[4 - b.len()..].copy_from_slice(b);
    }
}

/// Whether bytes ending in `last` end an SSE event (a blank line: LF, CRLF or CR).
fn at_event_end(last: &[u8; 4]) -> bool {
    last.ends_with(b"\n\n") || last.ends_with(b"\r\n\r\n") || last.ends_with(b"\r\r")
}

/// The JSON-RPC error a caller gets for a list answer too large to filter.
const TOO_LARGE: &str =
    "the upstream's list answer is larger than the 16 MiB the gateway filters; ask for smaller pages";

/// Relay a Streamable HTTP answer. `retire`: a listen stream's, and its id: the stream ends
/// with its closing result once the snapshot is retired.
async fn http<D: Downstream>(
    d: &mut D,
    answer: HttpAnswer<'_>,
    list: Option<ListFilter<'_>>,
    list_id: Option<Value>,
    watch: bool,
    mut retire: Option<(crate::upstream::routes::Retirement, Value)>,
    obs: &mut Observation,
) -> Ended {
    let HttpAnswer {
        mut head,
        body: mut h,
    } = answer;
    let status = head.status();
    let is_sse = prepare_head(&mut head);
    let _open = is_sse.then(|| obs.sse_stream());
    // A list answer is rewritten per caller: its length changes.
    let mut rewrite = list.filter(|_| status == 200).map(|filter| {
        head.set_length(None);
        if is_sse {
            Rewrite::Sse(filter, sse::Framer::default())
        } else {
            Rewrite::Json(filter, BytesMut::new())
        }
    });
    let mut outcome = watch.then(|| Watch::new(is_sse));
    // A JSON list answer is held whole to be filtered: its head waits for it, so an answer too
    // large to hold can still be refused with a clean JSON-RPC error.
    let mut held_head = None;
    if matches!(rewrite, Some(Rewrite::Json(..))) {
        held_head = Some(head);
    } else {
        let body_follows = h.has_buffered() && rewrite.is_none();
        if d.head(head, body_follows).await.is_err() {
            obs.status(499);
            return Ended::Broken;
        }
        obs.status(status);
    }
    let mut watching = true;
    // The last bytes that went out: whether they end an SSE event (a closing result may
    // follow then), whatever chunks they came in.
    let mut last = [0u8; 4];
    loop {
        let listening = retire.is_some();
        let retired = async {
            match &mut retire {
                Some((r, _)) => r.wait().await,
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            biased;
            () = retired, if listening => Step::Retired,
            next = h.next_chunk() => match next {
                Ok(Some(chunk)) => {
                    if let Some(w) = &mut outcome {
                        w.feed(&chunk);
                    }
                    match rewrite.as_mut().map(|rw| rw.chunk(chunk.clone())) {
                        None => Step::Send(chunk),
                        Some(Ok(Some(out))) => Step::Send(out),
                        Some(Ok(None)) => Step::Skip,
                        Some(Err(TooLarge)) => Step::TooLarge,
                    }
                }
                Ok(None) => Step::Done,
                Err(e) => Step::Failed(e.to_string()),
            },
            hung_up = d.hangup(), if watching => {
                if hung_up {
                    Step::Gone
                } else {
                    watching = false;
                    Step::Skip
                }
            }
        };
        match step {
            Step::Send(b) if b.is_empty() => {}
            Step::Send(b) => {
                if retire.is_some() {
                    remember_tail(&mut last, &b);
                }
                if d.chunk(b).await.is_err() {
                    return Ended::Broken;
                }
            }
            Step::Retired => {
                // Ending the upstream exchange (dropped, not pooled) ends its stream there.
                let Some((_, id)) = retire.take() else {
                    return Ended::Broken;
                };
                if !at_event_end(&last) || held_head.is_some() {
                    // Mid-event: cut (the client listens again), never a broken event.
                    d.abort().await;
                    return Ended::Broken;
                }
                let closed = event(&crate::mcp::listen::closed(&id));
                if d.chunk(closed).await.is_err() || d.end().await.is_err() {
                    return Ended::Broken;
                }
                return Ended::Complete;
            }
            Step::Skip => {}
            Step::Done => break,
            Step::Failed(e) => {
                metrics().upstream_error(h.server(), "aborted");
                if held_head.is_some() {
                    // Nothing went out yet (a held list answer): a clean 502.
                    crate::in_request!(warn, server = h.server(), error = %e, "upstream failed mid-answer");
                    let id = list_id.unwrap_or(Value::Null);
                    let reply = Reply::upstream_failure(502, &id, h.server(), &e);
                    write::reply(d, reply, false, obs).await;
                    return Ended::Complete;
                }
                crate::in_request!(warn, server = h.server(), error = %e, "upstream failed mid-answer; closing the client connection");
                d.abort().await;
                return Ended::Broken;
            }
            Step::TooLarge => {
                // The upstream connection is dropped (not pooled): that ends its answer.
                crate::in_request!(
                    warn,
                    server = h.server(),
                    "upstream list answer too large to filter"
                );
                metrics().upstream_error(h.server(), "too_large");
                let id = list_id.unwrap_or(Value::Null);
                if held_head.is_some() {
                    let reply = Reply::rpc_error(502, &id, -32603, TOO_LARGE);
                    write::reply(d, reply, false, obs).await;
                    return Ended::Complete;
                }
                // SSE: the stream ends with the error as its last event.
                let error = crate::mcp::reply::rpc_error_body(&id, -32603, TOO_LARGE, None);
                let mut event = Vec::with_capacity(error.len() + 24);
                event.extend_from_slice(b"event: message\ndata: ");
                event.extend_from_slice(&error);
                event.extend_from_slice(b"\n\n");
                if d.chunk(Bytes::from(event)).await.is_err() || d.end().await.is_err() {
                    return Ended::Broken;
                }
                return Ended::Complete;
            }
            Step::Gone => {
                // Dropping the exchange without returning it to the pool closes the upstream
                // connection: that is the cancellation the upstream sees.
                crate::in_request!(debug, "client went away; cancelling the upstream request");
                if held_head.is_some() {
                    obs.status(499);
                }
                return Ended::Broken;
            }
        }
    }
    if let Some(head) = held_head {
        if d.head(head, true).await.is_err() {
            obs.status(499);
            return Ended::Broken;
        }
        obs.status(status);
    }
    if let Some(tail) = rewrite
        .as_mut()
        .and_then(Rewrite::finish)
        .filter(|t| !t.is_empty())
    {
        if d.chunk(tail).await.is_err() {
            return Ended::Broken;
        }
    }
    if d.end().await.is_err() {
        return Ended::Broken;
    }
    h.finish();
    if let Some(w) = outcome {
        obs.answered(w.finish(), status);
    }
    Ended::Complete
}

/// Relay one call through a shared session: as SSE events (progress, server-to-client
/// requests, then the answer) to a client that reads a stream, else the answer as JSON.
async fn messages<D: Downstream>(
    d: &mut D,
    mut m: Messages,
    list: Option<ListFilter<'_>>,
    obs: &mut Observation,
) -> Ended {
    let finish = |bytes: Bytes| match &list {
        Some(f) => f.apply(&bytes).map(Bytes::from).unwrap_or(bytes),
        None => bytes,
    };
    if !m.streaming {
        let item = tokio::select! {
            item = next_answer(&mut m) => item,
            _ = gone(d) => {
                obs.status(499);
                return Ended::Broken;
            }
        };
        let reply = match item {
            Item::Answer { bytes, is_error } => {
                obs.answered(Seen::Answer { is_error }, 200);
                Reply::bytes(200, "application/json", finish(bytes))
            }
            Item::Failed { status, detail } => {
                Reply::upstream_failure(status, m.id(), m.server(), &detail)
            }
            Item::Message(_) | Item::Quiet => {
                Reply::upstream_failure(502, m.id(), m.server(), "no answer")
            }
        };
        write::reply(d, reply, false, obs).await;
        return Ended::Complete;
    }
    // Streaming: nothing is buffered; each message is one event as it arrives.
    if start_sse(d).await.is_err() {
        obs.status(499);
        return Ended::Broken;
    }
    obs.status(200);
    let _open = obs.sse_stream();
    let mut watching = true;
    loop {
        let item = tokio::select! {
            biased;
            item = m.next(KEEPALIVE) => item,
            hung_up = d.hangup(), if watching => {
                if hung_up {
                    return Ended::Broken;
                }
                watching = false;
                continue;
            }
        };
        let (chunk, last, answered) = match item {
            Item::Message(bytes) => (event(&bytes), false, None),
            Item::Answer { bytes, is_error } => {
                (event(&finish(bytes)), true, Some(Seen::Answer { is_error }))
            }
            Item::Failed { status, detail } => {
                let body = upstream_failure_body(status, m.id(), m.server(), &detail);
                (event(&body), true, None)
            }
            Item::Quiet => (Bytes::from_static(b": keepalive\n\n"), false, None),
        };
        if d.chunk(chunk).await.is_err() {
            return Ended::Broken;
        }
        if let Some(seen) = answered {
            obs.answered(seen, 200);
        }
        if last {
            return match d.end().await {
                Ok(()) => Ended::Complete,
                Err(_) => Ended::Broken,
            };
        }
    }
}

/// The answer of a call whose client reads no stream (related messages are skipped).
async fn next_answer(m: &mut Messages) -> Item {
    loop {
        match m.next(Duration::from_secs(3600)).await {
            Item::Quiet | Item::Message(_) => continue,
            other => return other,
        }
    }
}

/// Relay a shared session's notification stream until it ends or the client goes away.
async fn events<D: Downstream>(d: &mut D, mut e: Events, obs: &mut Observation) -> Ended {
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
            next = e.next() => match next {
                Some(bytes) => event(&bytes),
                // Replaced by a newer stream, the session closed, or the upstream was removed.
                None => break,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_end_is_seen_across_chunks() {
        for (chunks, end) in [
            (&[&b"data: {}\n\n"[..]][..], true),
            (&[&b"data: {}\n"[..], b"\n"], true),
            (&[&b"data: {}\r\n\r"[..], b"\n"], true),
            (&[&b"data: {}\r"[..], b"\r"], true),
            (&[&b"data: {"[..]], false),
            (&[&b"data: {}\n"[..]], false),
            (&[&b"\n\n"[..], b"data"], false),
        ] {
            let mut last = [0u8; 4];
            for c in chunks {
                remember_tail(&mut last, c);
            }
            assert_eq!(at_event_end(&last), end, "{chunks:?}");
        }
    }

    #[test]
    fn an_sse_head_says_never_buffer_once() {
        let count = |h: &Head| {
            h.fields()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"x-accel-buffering"))
                .count()
        };
        let mut plain = Head::new(200);
        plain.push("content-type", "text/event-stream");
        plain.set_length(Some(10));
        assert!(prepare_head(&mut plain));
        assert_eq!((count(&plain), plain.length()), (1, None));
        // The upstream said so itself.
        let mut said = Head::new(200);
        said.push("content-type", "text/event-stream");
        said.push("X-Accel-Buffering", "no");
        assert!(prepare_head(&mut said));
        assert_eq!(count(&said), 1);
    }
}
