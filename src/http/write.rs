//! The one writer of answers the gateway makes itself: a [`Reply`] rendered on any
//! [`Downstream`], the same fields on every front end (`Content-Type`, an exact
//! `Content-Length`, `Cache-Control: no-store`, `Date` from the front end, the reply's own
//! fields, `Connection: close` when the request's body was left unread).

use super::downstream::Downstream;
use crate::gateway::Observation;
use crate::mcp::reply::Reply;
use crate::response::Head;

/// Write `reply`. `body_unread`: the request's body was not read (the connection closes after,
/// lingering first so the client sees the answer). Records the status sent (499 when the client
/// was gone).
pub async fn reply<D: Downstream>(
    d: &mut D,
    reply: Reply,
    body_unread: bool,
    obs: &mut Observation,
) {
    if body_unread {
        d.close_after();
    }
    let status = reply.status;
    let (head, body) = head_of(reply);
    let empty = body.is_empty();
    let sent = match d.head(head, !empty).await {
        Ok(()) if empty => d.end().await,
        Ok(()) => match d.chunk(body).await {
            Ok(()) => d.end().await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    obs.status(if sent.is_ok() { status } else { 499 });
    if body_unread && sent.is_ok() {
        d.linger().await;
    }
}

/// The response head and the body of `reply`.
fn head_of(reply: Reply) -> (Head, bytes::Bytes) {
    let mut head = Head::new(reply.status);
    if let Some(ct) = reply.content_type {
        head.push("content-type", ct);
    }
    if reply.no_store {
        head.push("cache-control", "no-store");
    }
    for (name, value) in reply.headers {
        head.push(name, value);
    }
    head.set_length(Some(reply.body.len() as u64));
    (head, reply.body)
}
