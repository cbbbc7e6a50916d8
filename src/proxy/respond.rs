//! The one place that writes responses the gateway makes itself: JSON-RPC errors, JSON bodies
//! and the small admin texts. Every body carries `Content-Length` and `Cache-Control: no-store`.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::{json, Value};

/// JSON-RPC error code for a gateway-side server error (implementation-defined range).
pub const UPSTREAM_ERROR: i64 = -32000;

/// The body of a JSON-RPC error response.
pub fn rpc_error_body(id: &Value, code: i64, message: &str, data: Option<Value>) -> Bytes {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(d), Some(obj)) = (data, error.as_object_mut()) {
        obj.insert("data".into(), d);
    }
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": error });
    Bytes::from(body.to_string())
}

/// Write a complete response. `close` drops the connection afterwards (for instance when the
/// request body was left unread).
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: &[(&'static str, &str)],
    close: bool,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (k, v) in extra {
        resp.insert_header(*k, *v)?;
    }
    if close {
        session.set_keepalive(None);
        resp.insert_header(http::header::CONNECTION, "close")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Write a JSON-RPC error with the given HTTP status.
pub async fn rpc_error(
    session: &mut Session,
    status: u16,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<Value>,
    close: bool,
) -> Result<()> {
    let body = rpc_error_body(id, code, message, data);
    send(session, status, "application/json", body, &[], close).await
}

/// Write a plain JSON body (non-JSON-RPC answers such as 404 for an unknown server).
pub async fn json(session: &mut Session, status: u16, value: &Value, close: bool) -> Result<()> {
    let body = Bytes::from(value.to_string());
    send(session, status, "application/json", body, &[], close).await
}

/// The JSON-RPC error for an upstream that failed before answering.
pub async fn upstream_failure(
    session: &mut Session,
    status: u16,
    id: &Value,
    server: &str,
    detail: &str,
) -> Result<()> {
    let body = upstream_failure_body(status, id, server, detail);
    send(session, status, "application/json", body, &[], false).await
}

/// The body of [`upstream_failure`]: a JSON-RPC error naming the server.
pub fn upstream_failure_body(status: u16, id: &Value, server: &str, detail: &str) -> Bytes {
    let message = if status == 504 {
        format!("upstream server `{server}` timed out: {detail}")
    } else {
        format!("upstream server `{server}` is unavailable: {detail}")
    };
    rpc_error_body(
        id,
        UPSTREAM_ERROR,
        &message,
        Some(json!({ "server": server })),
    )
}
