//! Answers the gateway composes itself: JSON-RPC errors, small JSON bodies, `202 Accepted`. A
//! [`Reply`] says what to send; each front end renders it the same way (`http::write`), so every
//! gateway-made answer has one implementation whatever path the request took.

use bytes::Bytes;
use serde_json::{json, Value};

/// JSON-RPC error code for a gateway-side server error (implementation-defined range).
pub const UPSTREAM_ERROR: i64 = -32000;

/// A complete answer made by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` (none for a body-less answer).
    pub content_type: Option<&'static str>,
    /// More header fields.
    pub headers: Vec<(&'static str, String)>,
    /// The body (sent with an exact `Content-Length`).
    pub body: Bytes,
    /// `Cache-Control: no-store` (every JSON answer of the gateway's; not on `202`).
    pub no_store: bool,
}

impl Reply {
    /// A JSON body.
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply::bytes(status, "application/json", Bytes::from(value.to_string()))
    }

    /// A body of `content_type`.
    pub fn bytes(status: u16, content_type: &'static str, body: Bytes) -> Reply {
        Reply {
            status,
            content_type: Some(content_type),
            headers: Vec::new(),
            body,
            no_store: true,
        }
    }

    /// A JSON-RPC error answering request `id` (null when there is none to echo).
    pub fn rpc_error(status: u16, id: &Value, code: i64, message: &str) -> Reply {
        Reply::bytes(
            status,
            "application/json",
            rpc_error_body(id, code, message, None),
        )
    }

    /// `{"error": kind, "message": message}`: the answer to a request that is not JSON-RPC
    /// (unknown endpoint, method not allowed, forbidden origin).
    pub fn error(status: u16, kind: &str, message: &str) -> Reply {
        Reply::json(status, &json!({ "error": kind, "message": message }))
    }

    /// `202 Accepted` with no body (a notification or a response was taken).
    pub fn accepted() -> Reply {
        Reply {
            status: 202,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::new(),
            no_store: false,
        }
    }

    /// The JSON-RPC error for an upstream that failed before answering: it names the server.
    pub fn upstream_failure(status: u16, id: &Value, server: &str, detail: &str) -> Reply {
        Reply::bytes(
            status,
            "application/json",
            upstream_failure_body(status, id, server, detail),
        )
    }

    /// Add a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// The body of a JSON-RPC error response.
pub fn rpc_error_body(id: &Value, code: i64, message: &str, data: Option<Value>) -> Bytes {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(d), Some(obj)) = (data, error.as_object_mut()) {
        obj.insert("data".into(), d);
    }
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": error });
    Bytes::from(body.to_string())
}

/// The body of [`Reply::upstream_failure`]: a JSON-RPC error naming the server.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_name_the_server_and_echo_the_id() {
        let r = Reply::upstream_failure(504, &Value::from(3), "n8n", "no data");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], UPSTREAM_ERROR);
        assert_eq!(v["error"]["data"]["server"], "n8n");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"));
        assert_eq!(r.status, 504);
    }
}
