//! Reading a request body, whole and capped, before the upstream is chosen.
//!
//! Pingora reads request bodies only after `upstream_peer`, and its replay buffer for a body read
//! early is capped at 64 KiB (pingora issues #575, #688, #780). The gateway therefore reads the
//! whole body here, in `request_filter`, up to `server.max_body_bytes`, and forwards it itself
//! (see [`crate::proxy::exchange`]). A declared `Content-Length` over the cap is refused without
//! reading a byte; a chunked body is refused as soon as it passes the cap.

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;

/// Why the body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is (or declares to be) larger than the cap.
    #[error("request body exceeds {limit} bytes")]
    TooLarge {
        /// The configured cap.
        limit: usize,
    },
    /// The client sent a malformed `Content-Length`.
    #[error("malformed Content-Length header")]
    BadLength,
    /// The client went away or timed out while sending.
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// The declared `Content-Length`, if any.
pub fn declared_length(session: &Session) -> Result<Option<usize>, BodyError> {
    match session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
    {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map(Some)
            .ok_or(BodyError::BadLength),
    }
}

/// Read the whole request body, refusing anything over `limit` bytes.
pub async fn read_capped(session: &mut Session, limit: usize) -> Result<Bytes, BodyError> {
    let declared = declared_length(session)?;
    if let Some(len) = declared {
        if len > limit {
            return Err(BodyError::TooLarge { limit });
        }
    }
    let downstream = session.as_downstream_mut();
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

/// Most bytes read and dropped after an early 413 before the connection is closed anyway.
const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Longest time spent doing so.
const LINGER_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// After an early answer (413), read and drop what the client is still sending, bounded in
/// bytes and time, so it finishes writing and reads the answer instead of getting a reset
/// (nginx's lingering close). A declared body beyond the bound is not drained at all.
pub async fn linger(session: &mut Session, limit: usize) {
    let budget = limit.saturating_mul(4).min(LINGER_MAX_BYTES);
    if matches!(declared_length(session), Ok(Some(len)) if len > budget) {
        return;
    }
    let downstream = session.as_downstream_mut();
    let drain = async {
        let mut dropped = 0usize;
        while let Ok(Some(chunk)) = downstream.read_request_body().await {
            dropped += chunk.len();
            if dropped > budget {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_MAX_TIME, drain).await;
}
