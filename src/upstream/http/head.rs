//! The one encoder of upstream request heads, for every method and both front ends: the
//! upstream's path (the client's query appended), its `Host`, the configured credentials, the
//! gateway's `traceparent`, and the client's other fields minus hop-by-hop ones (fixed, and any
//! the request's `Connection` names) and those the gateway owns.

use super::HttpUpstream;
use crate::request::RequestView;

/// Fields that never cross the gateway: hop-by-hop (RFC 9110 §7.6.1) plus ones the gateway owns.
/// `Accept-Encoding` too: answers stay uncompressed (SSE is never compressed, and list answers are
/// read to be filtered).
const DROPPED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "accept-encoding",
    "host",
    "content-length",
    "traceparent",
];

/// True for a request field that is not forwarded as sent: see [`DROPPED`], and the fields the
/// request's `Connection` value names.
fn dropped(name: &[u8], connection: Option<&[u8]>) -> bool {
    DROPPED
        .iter()
        .any(|d| d.as_bytes().eq_ignore_ascii_case(name))
        || connection.is_some_and(|list| crate::response::named_in(list, name))
}

/// Encode the upstream request head for `view` as HTTP/1.1 bytes into `out`. `body_len`: the
/// exact `Content-Length` of a body sent (`None`: no body, no length). `traceparent`: the
/// gateway's own (W3C), replacing the client's. `own`: fields the gateway writes in place of
/// the client's on the aggregated `/mcp`.
pub fn encode(
    view: &RequestView<'_>,
    up: &HttpUpstream,
    body_len: Option<usize>,
    traceparent: &str,
    own: Own<'_>,
    out: &mut Vec<u8>,
) {
    let held = own.session;
    let base = &up.target.path_and_query;
    out.extend_from_slice(view.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(base.as_bytes());
    if let Some(q) = view.query {
        out.push(if base.contains('?') { b'&' } else { b'?' });
        out.extend_from_slice(q);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(up.host_header().as_bytes());
    out.extend_from_slice(b"\r\n");
    let cfg = &up.config;
    let connection = view.connection.one();
    for (name, value) in view.fields.iter() {
        if dropped(name, connection)
            || (held.is_some() && name.eq_ignore_ascii_case(b"mcp-session-id"))
            || ((own.mcp_name.is_some() || own.mcp_method.is_some())
                && name.eq_ignore_ascii_case(b"mcp-name"))
            || (own.mcp_method.is_some() && name.eq_ignore_ascii_case(b"mcp-method"))
            || (own.protocol_version.is_some()
                && name.eq_ignore_ascii_case(b"mcp-protocol-version"))
            || (name.eq_ignore_ascii_case(b"authorization") && !cfg.forward_authorization)
            || cfg
                .inject_headers
                .iter()
                .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        push(out, name, value);
    }
    for (name, value) in &cfg.inject_headers {
        push(out, name.as_str().as_bytes(), value.as_bytes());
    }
    push(out, b"traceparent", traceparent.as_bytes());
    if let Some(Some(id)) = held {
        push(out, b"mcp-session-id", id);
    }
    if let Some(v) = own.protocol_version {
        push(out, b"mcp-protocol-version", v.as_bytes());
    }
    if let Some(method) = own.mcp_method {
        push(out, b"mcp-method", method.as_bytes());
    }
    if let Some(name) = own.mcp_name {
        push(
            out,
            b"mcp-name",
            crate::mcp::era::header_value(name).as_bytes(),
        );
    }
    if let Some(len) = body_len {
        // Written straight into the buffer: no temporary string per request.
        let _ = std::io::Write::write_fmt(out, format_args!("content-length: {len}\r\n"));
    }
    out.extend_from_slice(b"\r\n");
}

/// Fields the gateway writes itself on the aggregated `/mcp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Own<'a> {
    /// A session id the gateway holds for the client, in place of the client's
    /// `Mcp-Session-Id` (`Some(None)`: none at all); `None`: the client's, as sent.
    pub session: Option<Option<&'a [u8]>>,
    /// The upstream's own name, in place of the client's `Mcp-Name`.
    pub mcp_name: Option<&'a str>,
    /// The version the upstream negotiated, in place of the client's `MCP-Protocol-Version`.
    pub protocol_version: Option<&'a str>,
    /// A request of the gateway's own: this `Mcp-Method` in place of the client's, and no
    /// `Mcp-Name` but `mcp_name`.
    pub mcp_method: Option<&'a str>,
}

fn push(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::request::Fields;

    fn upstream(extra: &str) -> HttpUpstream {
        let yaml = format!("server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: s\n      type: streamable-http\n      connection:\n        url: \"http://127.0.0.1:9/mcp?k=v\"\n{extra}");
        let rt = crate::config::load_str(&yaml, "t.yaml", &|_| None).unwrap();
        let up = rt.proxy.servers[0].clone();
        let crate::config::Transport::StreamableHttp(t) = &up.transport else {
            unreachable!()
        };
        HttpUpstream::new(up.clone(), t.clone())
    }

    fn encode_str(headers: &[(&str, &str)], up: &HttpUpstream, len: Option<usize>) -> String {
        encode_own(headers, up, len, Own::default())
    }

    fn encode_own(
        headers: &[(&str, &str)],
        up: &HttpUpstream,
        len: Option<usize>,
        own: Own<'_>,
    ) -> String {
        let mut map = http::HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let uri: http::Uri = "/mcp/s?x=1".parse().unwrap();
        let view = RequestView::new(
            http::Method::POST,
            Some(uri.path()),
            uri.query().map(str::as_bytes),
            false,
            Fields::Map(&map),
        );
        let mut out = Vec::new();
        encode(&view, up, len, "00-t-s-01", own, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fields_the_gateway_owns_on_mcp_replace_the_clients() {
        let up = upstream("");
        let client = [
            ("mcp-session-id", "pcs1.sealed"),
            ("Mcp-Name", "P__forbidden"),
            ("mcp-protocol-version", "2025-11-25"),
            ("accept", "application/json"),
        ];
        let own = Own {
            session: Some(Some(b"upstream-1")),
            mcp_name: Some("allowed"),
            protocol_version: Some("2025-06-18"),
            mcp_method: None,
        };
        let head = encode_own(&client, &up, Some(2), own).to_ascii_lowercase();
        for gone in ["pcs1.sealed", "p__forbidden", "2025-11-25"] {
            assert!(!head.contains(gone), "{gone} reached the upstream:\n{head}");
        }
        for there in [
            "mcp-session-id: upstream-1\r\n",
            "mcp-name: allowed\r\n",
            "mcp-protocol-version: 2025-06-18\r\n",
            "accept: application/json\r\n",
        ] {
            assert_eq!(head.matches(there).count(), 1, "{there}:\n{head}");
        }
        // No session held: the client's id is dropped and none is sent.
        let none = Own {
            session: Some(None),
            ..Own::default()
        };
        assert!(!encode_own(&client, &up, None, none).contains("mcp-session-id"));
        // A name that is not plain ASCII goes base64-wrapped.
        let wrapped = Own {
            mcp_name: Some("écho"),
            ..Own::default()
        };
        assert!(encode_own(&[], &up, None, wrapped).contains("mcp-name: =?base64?w6ljaG8=?=\r\n"));
        // A request of the gateway's own: its method, and none of the client's routing fields.
        let routed = [("mcp-method", "tools/call"), ("mcp-name", "echo")];
        let probe = Own {
            mcp_method: Some("server/discover"),
            ..Own::default()
        };
        let head = encode_own(&routed, &up, None, probe);
        assert_eq!(head.matches("mcp-method").count(), 1, "{head}");
        assert!(head.contains("mcp-method: server/discover\r\n"), "{head}");
        assert!(!head.contains("mcp-name"), "{head}");
    }

    #[test]
    fn hop_by_hop_owned_and_named_fields_are_dropped() {
        let up = upstream("      auth: { type: header, header: x-key, value: secret }\n");
        let text = encode_str(
            &[
                ("host", "gateway.example"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
                ("authorization", "Bearer client"),
                ("x-key", "forged"),
                ("accept-encoding", "gzip"),
                ("traceparent", "00-client-client-01"),
                ("mcp-session-id", "abc"),
                ("content-length", "99"),
                ("expect", "100-continue"),
            ],
            &up,
            Some(2),
        );
        assert!(
            text.starts_with("POST /mcp?k=v&x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\n"),
            "{text}"
        );
        for gone in [
            "gateway.example",
            "x-drop",
            "client",
            "forged",
            "gzip",
            ": 99",
            "expect",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert!(text.contains("mcp-session-id: abc\r\n"));
        assert!(text.contains("x-key: secret\r\n"));
        assert!(text.contains("traceparent: 00-t-s-01\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n"), "{text}");
        // No body: no length.
        let text = encode_str(&[], &up, None);
        assert!(!text.contains("content-length"), "{text}");
    }

    #[test]
    fn authorization_is_forwarded_only_when_configured() {
        let up = upstream("      forward_authorization: true\n");
        let text = encode_str(&[("authorization", "Bearer client")], &up, None);
        assert!(text.contains("authorization: Bearer client\r\n"), "{text}");
    }
}
