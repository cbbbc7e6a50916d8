//! 2026-07-28 `subscriptions/listen` on the aggregated `/mcp`: one listen stream merging a
//! listen stream of every upstream the caller may reach.
//!
//! ```text
//!  client ── subscriptions/listen {filter, URIs on /mcp} ──> gateway
//!    gateway ── subscriptions/listen {filter, that upstream's own URIs} ──> each upstream
//!            <── its acknowledgment (what it honors) ── each (bounded by its timeout)
//!  client <── the gateway's acknowledgment: what any upstream honors, URIs namespaced
//!  client <── each upstream event the client asked for: URI namespaced, stamped with its id
//!  client <── the closing result: reload or shutdown (the snapshot is retired), or an
//!             upstream ended its stream gracefully. An upstream stream that breaks cuts the
//!             client's too (no result: the client re-listens and refetches).
//! ```
//!
//! A legacy-only stdio or legacy SSE upstream serves its part from a session of the gateway's
//! own (`upstream::shared::session`); a Streamable HTTP upstream that does not speak 2026-07-28
//! refuses it and is left out with a warning and `portcullis_fanout_skipped_total`.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::downstream::Downstream;
use super::legs::{request, skipped, within};
use super::stream::{event, start_sse, Ended, KEEPALIVE};
use super::write;
use crate::gateway::{Fanout, Leg, Observation, Work};
use crate::mcp::jsonrpc::classify;
use crate::mcp::listen::{self, Event, Filter};
use crate::mcp::reply::Reply;
use crate::request::RequestView;
use crate::upstream::{Answer, MessageReader};

/// One upstream's open listen stream.
struct Opened<'u> {
    server: &'u str,
    /// What it honors, in its own URIs.
    honored: Filter,
    reader: MessageReader<'u>,
}

/// Serve a `subscriptions/listen` fan-out ([`Work::Listen`]).
pub async fn listen<D: Downstream>(
    d: &mut D,
    f: &Fanout<'_>,
    view: &RequestView<'_>,
    traceparent: &str,
    obs: &mut Observation,
) -> Ended {
    let Work::Listen {
        id,
        meta,
        filter,
        uris,
    } = &f.work
    else {
        return Ended::Complete;
    };
    let opens = f.legs.iter().map(|leg| {
        let mine: Vec<&str> = uris
            .iter()
            .filter(|(server, _, _)| server == leg.upstream.name())
            .map(|(_, original, _)| original.as_str())
            .collect();
        open(leg, view, traceparent, id, meta, filter, mine)
    });
    let opened: Vec<Opened<'_>> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .flatten()
        .collect();
    if !f.legs.is_empty() && opened.is_empty() {
        let m = "no upstream opened a listen stream";
        let reply = Reply::upstream_failure(502, id, "mcp", m);
        write::reply(d, reply, false, obs).await;
        return Ended::Complete;
    }
    // What the client is told: what any upstream honors, its URIs as the client named them.
    let mut honored = Filter::default();
    for o in &opened {
        honored.join(&Filter {
            uris: Vec::new(),
            ..o.honored.clone()
        });
        for (server, original, exposed) in uris {
            if server == o.server && o.honored.uris.iter().any(|u| u == original) {
                honored.uris.push(exposed.clone());
            }
        }
    }
    let names = &f.snap.names;
    let legs: Vec<(&str, Filter)> = opened
        .iter()
        .map(|o| (o.server, o.honored.clone()))
        .collect();
    // Each leg's messages, then `None` once it ended (whatever the reason).
    let mut merged = stream::select_all(opened.into_iter().enumerate().map(|(i, o)| {
        stream::unfold(Some(o.reader), move |r| async move {
            let mut r = r?;
            match r.next().await {
                Ok(Some(m)) => Some(((i, Some(m)), Some(r))),
                _ => Some(((i, None), None)),
            }
        })
        .boxed()
    }));
    if start_sse(d).await.is_err() {
        obs.status(499);
        return Ended::Broken;
    }
    obs.status(200);
    let _open = obs.sse_stream();
    if d.chunk(event(&listen::acknowledged(id, &honored)))
        .await
        .is_err()
    {
        return Ended::Broken;
    }
    let mut retirement = f.snap.upstreams.retirement();
    let mut watching = true;
    // A keep-alive goes out after KEEPALIVE without a write (events left out do not count).
    let mut quiet_until = tokio::time::Instant::now() + KEEPALIVE;
    let graceful = loop {
        let next = async {
            match merged.next().await {
                Some(item) => item,
                // No upstream at all: nothing will ever come.
                None => std::future::pending().await,
            }
        };
        let chunk = tokio::select! {
            biased;
            () = retirement.wait() => break true,
            (i, m) = next => {
                let (server, leg) = (legs[i].0, &legs[i].1);
                let Some(m) = m else {
                    crate::in_request!(info, server, "an upstream's listen stream ended; ending the client's");
                    break false;
                };
                let Ok(v) = serde_json::from_slice::<Value>(&m) else { continue };
                if v.get("id").is_some() && v.get("method").is_none() {
                    // The upstream's closing result (or an error in its place).
                    break v.get("result").is_some();
                }
                match Event::of(&v) {
                    Some(e) if leg.admits(e) => event(&outward(names, server, v, id)),
                    _ => continue,
                }
            },
            () = tokio::time::sleep_until(quiet_until) => Bytes::from_static(b": keepalive\n\n"),
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
        quiet_until = tokio::time::Instant::now() + KEEPALIVE;
    };
    if !graceful {
        // Cut, not closed: the client learns the stream was lost and listens again.
        return Ended::Broken;
    }
    if d.chunk(event(&listen::closed(id))).await.is_err() {
        return Ended::Broken;
    }
    match d.end().await {
        Ok(()) => Ended::Complete,
        Err(_) => Ended::Broken,
    }
}

/// An upstream event for the client: its URI namespaced, stamped with the client's id.
fn outward(names: &crate::mcp::names::Names, server: &str, mut v: Value, id: &Value) -> Bytes {
    if let Some(slot) = v.pointer_mut("/params/uri") {
        if let Some(uri) = slot.as_str() {
            *slot = Value::from(names.expose_uri(server, uri));
        }
    }
    listen::stamp(v, id)
}

/// Open `leg`'s listen stream for the flags of `filter` and `uris` (the upstream's own),
/// bounded by the leg's timeout up to its acknowledgment. `None`: it failed (left out, with a
/// warning).
async fn open<'u>(
    leg: &'u Leg<'u>,
    view: &RequestView<'_>,
    traceparent: &str,
    id: &Value,
    meta: &Value,
    filter: &Filter,
    uris: Vec<&str>,
) -> Option<Opened<'u>> {
    let asked = Filter {
        uris: uris.iter().map(|u| (*u).to_owned()).collect(),
        ..filter.clone()
    };
    let body = Bytes::from(
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": listen::METHOD,
            "params": { "notifications": asked.to_json(), "_meta": meta },
        })
        .to_string(),
    );
    let envelope = classify(&body).ok();
    let req = request(view, leg, body, envelope.as_ref(), traceparent);
    let opened = within(leg, async {
        let answer = leg
            .upstream
            .call(&leg.permit, req)
            .await
            .map_err(|f| f.detail)?;
        match &answer {
            Answer::Http(h) if h.head.status() != 200 || !h.head.is_event_stream() => {
                return Err(format!(
                    "answered HTTP {} without a stream (it may not speak 2026-07-28)",
                    h.head.status()
                ));
            }
            Answer::Local(r) => return Err(format!("answered HTTP {}", r.status)),
            _ => {}
        }
        let mut reader = answer.into_messages();
        loop {
            let m = reader
                .next()
                .await?
                .ok_or("the stream ended before its acknowledgment")?;
            let Ok(v) = serde_json::from_slice::<Value>(&m) else {
                continue;
            };
            if let Some(mut honored) = listen::honored(&v) {
                // Never more than was asked.
                honored.tools &= asked.tools;
                honored.prompts &= asked.prompts;
                honored.resources &= asked.resources;
                honored.uris.retain(|u| asked.uris.contains(u));
                return Ok((honored, reader));
            }
            if v.get("id").is_some() && v.get("method").is_none() {
                let e = v.get("error").map(Value::to_string).unwrap_or_default();
                return Err(format!("answered without a stream: {e}"));
            }
        }
    })
    .await;
    match opened {
        Ok((honored, reader)) => Some(Opened {
            server: leg.upstream.name(),
            honored,
            reader,
        }),
        Err(why) => {
            skipped(leg, &why);
            None
        }
    }
}
