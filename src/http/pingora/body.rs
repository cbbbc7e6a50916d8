//! A request body read from a Pingora session, whole and capped, before the upstream is chosen.
//!
//! Pingora reads request bodies only after `upstream_peer`, and its replay buffer for a body read
//! early is capped at 64 KiB (pingora issues #575, #688, #780). The gateway therefore reads the
//! whole body in `request_filter`, up to `server.max_body_bytes`, and forwards it itself (the
//! upstream exchange is `crate::upstream`'s, for both front ends). A declared `Content-Length`
//! over the cap is refused without reading a byte; a chunked body is refused as soon as it
//! passes the cap.

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;

use crate::request::{parse_content_length, BodyError, BodySource};

/// Most bytes read and dropped after an early answer before the connection is closed anyway.
const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Longest time spent doing so.
const LINGER_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The body of the request of a Pingora session.
pub struct SessionBody<'s> {
    session: &'s mut Session,
    /// True once read (or tried).
    pub read: bool,
}

impl<'s> SessionBody<'s> {
    /// The body of `session`'s request.
    pub fn new(session: &'s mut Session) -> Self {
        SessionBody {
            session,
            read: false,
        }
    }
}

/// The declared `Content-Length` of the session's request (`Err` when malformed or repeated).
pub fn declared_length(session: &Session) -> Result<Option<usize>, BodyError> {
    let mut values = session
        .req_header()
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => parse_content_length(v.as_bytes())
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or(BodyError::BadLength),
        (Some(_), Some(_)) => Err(BodyError::BadLength),
    }
}

impl BodySource for SessionBody<'_> {
    async fn read(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        self.read = true;
        let declared = declared_length(self.session)?;
        if declared.is_some_and(|len| len > limit) {
            return Err(BodyError::TooLarge { limit });
        }
        let downstream = self.session.as_downstream_mut();
        // The first chunk is usually the whole body: return it without copying.
        let first = match downstream.read_request_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(Bytes::new()),
            Err(e) => return Err(BodyError::Read(e.to_string())),
        };
        if first.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if declared == Some(first.len()) && downstream.is_body_done() {
            return Ok(first);
        }
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(first.len() * 2).min(limit));
        buf.extend_from_slice(&first);
        loop {
            match downstream.read_request_body().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > limit {
                        return Err(BodyError::TooLarge { limit });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => return Err(BodyError::Read(e.to_string())),
            }
        }
    }
}

/// After an early answer, read and drop what the client is still sending, bounded in bytes and
/// time, so it finishes writing and reads the answer instead of getting a reset (nginx's
/// lingering close). A declared body beyond the bound is not drained at all.
pub async fn linger(session: &mut Session) {
    if matches!(declared_length(session), Ok(Some(len)) if len > LINGER_MAX_BYTES) {
        return;
    }
    let downstream = session.as_downstream_mut();
    let drain = async {
        let mut dropped = 0usize;
        while let Ok(Some(chunk)) = downstream.read_request_body().await {
            dropped += chunk.len();
            if dropped > LINGER_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_MAX_TIME, drain).await;
}
