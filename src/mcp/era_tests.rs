#![allow(clippy::unwrap_used)]

use super::*;
use crate::mcp::jsonrpc::classify;
use crate::request::Fields;

fn check_with(headers: &[(&str, &str)], body: &Value) -> Result<(), (u16, i64)> {
    let mut map = http::HeaderMap::new();
    for (n, v) in headers {
        map.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let view = RequestView::new(
        http::Method::POST,
        Some("/mcp"),
        None,
        false,
        Fields::Map(&map),
    );
    let bytes = body.to_string();
    let envelope = classify(bytes.as_bytes()).unwrap();
    check(&view, &envelope, bytes.as_bytes()).map_err(|r| {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        (r.status, v["error"]["code"].as_i64().unwrap())
    })
}

fn call(name: &str) -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}})
}

const V: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

#[test]
fn the_era_is_the_version_header() {
    let view = |v: Option<&str>| {
        let mut map = http::HeaderMap::new();
        if let Some(v) = v {
            map.insert("mcp-protocol-version", v.parse().unwrap());
        }
        of(&RequestView::new(
            http::Method::POST,
            Some("/mcp"),
            None,
            false,
            Fields::Map(&map),
        ))
    };
    assert_eq!(view(None), Era::Legacy);
    assert_eq!(view(Some("2025-11-25")), Era::Legacy);
    assert_eq!(view(Some(" 2025-06-18 ")), Era::Legacy);
    assert_eq!(view(Some("2026-07-28")), Era::Modern);
    assert_eq!(view(Some("v999.0.0")), Era::Modern);
}

#[test]
fn headers_that_agree_with_the_body_pass() {
    let ok = [V, ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    assert_eq!(check_with(&ok, &call("echo")), Ok(()));
    // Surrounding whitespace is not part of a value; names are case-insensitive.
    let ws = [V, ("MCP-METHOD", " tools/call\t"), ("Mcp-Name", "  echo  ")];
    assert_eq!(check_with(&ws, &call("echo")), Ok(()));
    // A name that is not plain ASCII comes base64-wrapped.
    let b64 = [
        V,
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?w6ljaG8=?="),
    ];
    assert_eq!(check_with(&b64, &call("écho")), Ok(()));
    // Methods without a name need no Mcp-Name.
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    assert_eq!(
        check_with(&[V, ("mcp-method", "tools/list")], &list),
        Ok(())
    );
    // A notification carries no _meta requirement.
    let note = json!({"jsonrpc":"2.0","method":"notifications/whatever"});
    assert_eq!(
        check_with(&[V, ("mcp-method", "notifications/whatever")], &note),
        Ok(())
    );
}

#[test]
fn headers_that_disagree_with_the_body_are_400_32020() {
    let mismatch = Err((400, HEADER_MISMATCH));
    for headers in [
        vec![V, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
        vec![V, ("mcp-name", "echo")],
        vec![V, ("mcp-method", "TOOLS/CALL"), ("mcp-name", "echo")],
        vec![V, ("mcp-method", "tools/call"), ("mcp-name", "other")],
        vec![V, ("mcp-method", "tools/call")],
        vec![V, ("mcp-method", "tools/call"), ("mcp-name", "ECHO")],
        vec![
            V,
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw?="),
        ],
        vec![
            V,
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-name", "echo"),
        ],
        vec![V, V, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
        vec![
            ("mcp-protocol-version", "2026-07-29"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
    ] {
        assert_eq!(check_with(&headers, &call("echo")), mismatch, "{headers:?}");
    }
    // A body that names a tool the header does not: the body's name is the one decided on,
    // and the header must say the same.
    let two = [V, ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    assert_eq!(check_with(&two, &call("delete_everything")), mismatch);
}

#[test]
fn envelopes_and_versions_are_checked() {
    let no_meta = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}});
    assert_eq!(
        check_with(&[V, ("mcp-method", "tools/list")], &no_meta),
        Err((400, -32602))
    );
    let no_caps = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
    assert_eq!(
        check_with(&[V, ("mcp-method", "tools/list")], &no_caps),
        Err((400, -32602))
    );
    let future = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999.0.0","io.modelcontextprotocol/clientCapabilities":{}}}});
    let h = [
        ("mcp-protocol-version", "v999.0.0"),
        ("mcp-method", "tools/list"),
    ];
    assert_eq!(check_with(&h, &future), Err((400, UNSUPPORTED_VERSION)));
    let batch = json!([call("echo")]);
    assert_eq!(
        check_with(&[V, ("mcp-method", "tools/call")], &batch),
        Err((400, -32600))
    );
    let answer = json!({"jsonrpc":"2.0","id":1,"result":{}});
    assert_eq!(check_with(&[V], &answer), Err((400, -32600)));
}
