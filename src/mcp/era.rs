//! The two eras of MCP on one endpoint. A request whose `MCP-Protocol-Version` names a version
//! after the legacy ones is of the stateless 2026-07-28 era (the Python SDK's servers tell the
//! eras apart the same way); anything else, including no header, is legacy (`initialize`,
//! `Mcp-Session-Id`).
//!
//! A modern request is checked before anything is decided on it, so the routing headers and the
//! body can never name different things:
//!
//! ```text
//!  MCP-Protocol-Version, Mcp-Method, Mcp-Name sent twice ──────────────> 400  -32020
//!  not one request or notification (batch, response) ─────────────────> 400  -32600
//!  request: params._meta without protocolVersion or clientCapabilities ─> 400  -32602
//!  header version != params._meta version ──────────────────────────────> 400  -32020
//!  Mcp-Method != method (absent counts) ────────────────────────────────> 400  -32020
//!  tools/call, prompts/get, resources/read: Mcp-Name != name / uri ─────> 400  -32020
//!  a version the gateway does not speak ────────────────────────────────> 400  -32022 {supported, requested}
//! ```
//!
//! Header values are compared exactly after trimming spaces and tabs; `Mcp-Name` may be sent as
//! `=?base64?B64?=` (strict, padded standard base64 of UTF-8).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::jsonrpc::{Envelope, Message};
use super::reply::Reply;
use crate::request::{RequestView, Single};

/// Protocol versions of the legacy era the gateway speaks to clients, newest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The version answered to a client that asked for `requested`: that one when the gateway
/// speaks it, else the newest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[0])
}

/// The stateless protocol version.
pub const MODERN: &str = "2026-07-28";

/// The 2026-07-28 `server/discover` result of a legacy upstream, from its `initialize` result
/// (capabilities, `serverInfo` in `_meta`, instructions).
pub fn discovered(init: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    let caps = init
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut result = json!({
        "supportedVersions": [MODERN],
        "capabilities": caps,
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": { "io.modelcontextprotocol/serverInfo": init.get("serverInfo").cloned().unwrap_or(Value::Null) },
    });
    if let Some(i) = init.get("instructions") {
        result["instructions"] = i.clone();
    }
    result
}
/// JSON-RPC error: a routing header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// JSON-RPC error: a protocol version the server does not speak.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// Which era a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2024-11-05 .. 2025-11-25: sessions.
    Legacy,
    /// 2026-07-28 and later: stateless.
    Modern,
}

/// The era of a request, by its `MCP-Protocol-Version`.
pub fn of(view: &RequestView<'_>) -> Era {
    match view.protocol_version {
        Single::Absent => Era::Legacy,
        Single::Many => Era::Modern,
        Single::One(v) => {
            let v = trim(v);
            if LEGACY_VERSIONS.iter().any(|l| l.as_bytes() == v) {
                Era::Legacy
            } else {
                Era::Modern
            }
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// An `Mcp-Name` value as text: trimmed, `=?base64?...?=` decoded.
fn header_text(v: &[u8]) -> Option<Cow<'_, str>> {
    let v = trim(v);
    if let Some(inner) = v
        .strip_prefix(b"=?base64?")
        .and_then(|r| r.strip_suffix(b"?="))
    {
        let bytes = STANDARD.decode(inner).ok()?;
        // Canonical only: re-encoding gives the same text.
        if STANDARD.encode(&bytes).as_bytes() != inner {
            return None;
        }
        return String::from_utf8(bytes).ok().map(Cow::Owned);
    }
    std::str::from_utf8(v).ok().map(Cow::Borrowed)
}

/// A name as an `Mcp-Name` value: as is when it is printable ASCII without surrounding
/// whitespace, else `=?base64?...?=`.
pub fn header_value(name: &str) -> Cow<'_, str> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) || b == b' ')
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.starts_with("=?base64?");
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("=?base64?{}?=", STANDARD.encode(name.as_bytes())))
    }
}

/// The per-request envelope of a modern request (`params._meta`).
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(rename = "_meta", borrow)]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow)]
    version: Option<Cow<'a, str>>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    capabilities: Option<serde::de::IgnoredAny>,
}

fn mismatch(id: &Value, what: &str) -> Reply {
    Reply::rpc_error(400, id, HEADER_MISMATCH, what)
}

/// Check a modern request's headers against its body (see the module docs). `Ok`: the request
/// may be decided on.
pub fn check(view: &RequestView<'_>, envelope: &Envelope, body: &[u8]) -> Result<(), Reply> {
    let id = envelope.error_id();
    for (field, name) in [
        (view.protocol_version, "mcp-protocol-version"),
        (view.mcp_method, "mcp-method"),
        (view.mcp_name, "mcp-name"),
    ] {
        if field == Single::Many {
            return Err(mismatch(
                &id,
                &format!("{name} header appears more than once"),
            ));
        }
    }
    let message = match envelope.single() {
        Some(m @ (Message::Request { .. } | Message::Notification { .. })) if !envelope.batch => m,
        _ => {
            let m = "Invalid Request: the body must be a single JSON-RPC request or notification object";
            return Err(Reply::rpc_error(400, &Value::Null, -32600, m));
        }
    };
    let header_version = view.protocol_version.one().map(trim).unwrap_or_default();
    if let Message::Request { .. } = message {
        let meta = serde_json::from_slice::<Top<'_>>(body)
            .ok()
            .and_then(|t| t.params)
            .and_then(|p| p.meta);
        let Some(meta) = meta else {
            let m = "Invalid params: a 2026-07-28 request needs params._meta";
            return Err(Reply::rpc_error(400, &id, -32602, m));
        };
        let (Some(version), Some(_)) = (meta.version, meta.capabilities) else {
            let m = "Invalid params: params._meta needs io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities";
            return Err(Reply::rpc_error(400, &id, -32602, m));
        };
        if version.as_bytes() != header_version {
            let m = "mcp-protocol-version header does not match the request envelope's protocol version";
            return Err(mismatch(&id, m));
        }
    }
    let method = message.method().unwrap_or_default();
    if view.mcp_method.one().map(trim) != Some(method.as_bytes()) {
        return Err(mismatch(
            &id,
            "mcp-method header does not match the request body's method",
        ));
    }
    if let Message::Request {
        method,
        uses: Some(used),
        ..
    } = message
    {
        let field = match method.as_str() {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        if let Some(field) = field {
            let named = view.mcp_name.one().and_then(header_text);
            if named.as_deref() != Some(used.name.as_str()) {
                let m = format!(
                    "mcp-name header does not match the request body's '{field}' parameter"
                );
                return Err(mismatch(&id, &m));
            }
        }
    }
    if header_version != MODERN.as_bytes() {
        let requested = String::from_utf8_lossy(header_version);
        return Err(unsupported(&id, &requested, &[MODERN]));
    }
    Ok(())
}

/// Methods 2026-07-28 removed (answered 404 `-32601` to a modern request).
pub const REMOVED: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// For a modern request the classifier refused: the 404 `-32601` of a removed method, when
/// the body and `Mcp-Method` both name one (a removed method is not judged by its params).
pub fn removed(view: &RequestView<'_>, body: &[u8], id: &Value) -> Option<Reply> {
    #[derive(Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: Cow<'a, str>,
    }
    let m = serde_json::from_slice::<Method<'_>>(body).ok()?;
    let named = view.mcp_method.one().map(trim) == Some(m.method.as_bytes());
    (named && REMOVED.contains(&&*m.method)).then(|| {
        let text = format!("Method not found: `{}` was removed in 2026-07-28", m.method);
        Reply::rpc_error(404, id, -32601, &text)
    })
}

/// `-32022`: the version is not one the endpoint speaks; `supported` lists what it does.
pub fn unsupported(id: &Value, requested: &str, supported: &[&str]) -> Reply {
    Reply::json(
        400,
        &json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": UNSUPPORTED_VERSION,
                "message": format!("Unsupported protocol version: {requested}"),
                "data": { "supported": supported, "requested": requested },
            },
        }),
    )
}

#[cfg(test)]
#[path = "era_tests.rs"]
mod tests;
