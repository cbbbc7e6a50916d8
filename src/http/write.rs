//! The one writer of answers the gateway makes itself: a [`Reply`] rendered on any
//! [`Downstream`], the same fields on every front end (`Content-Type`, an exact
//! `Content-Length`, `Cache-Control: no-store`, `Date` from the front end, the reply's own
//! fields, `Connection: close` when the request's body was left unread).

use pingora_http::ResponseHeader;

use super::downstream::Downstream;
use crate::gateway::Observation;
use crate::mcp::reply::Reply;

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
    let sent = match head_of(&reply) {
        Ok(head) => {
            let empty = reply.body.is_empty();
            match d.head(head, !empty).await {
                Ok(()) if empty => d.end().await,
                Ok(()) => match d.chunk(reply.body).await {
                    Ok(()) => d.end().await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, status, "cannot build an answer head");
            Err(std::io::Error::other(e))
        }
    };
    obs.status(if sent.is_ok() { status } else { 499 });
    if body_unread && sent.is_ok() {
        d.linger().await;
    }
}

/// The response head of `reply`.
fn head_of(reply: &Reply) -> pingora_error::Result<ResponseHeader> {
    let mut head = ResponseHeader::build(reply.status, Some(4 + reply.headers.len()))?;
    if let Some(ct) = reply.content_type {
        head.insert_header(http::header::CONTENT_TYPE, ct)?;
    }
    head.insert_header(http::header::CONTENT_LENGTH, reply.body.len())?;
    if reply.no_store {
        head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    }
    for (name, value) in &reply.headers {
        head.append_header(*name, value.as_str())?;
    }
    Ok(head)
}
