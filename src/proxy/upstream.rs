//! Upstream connection details, prepared once per config load, and the request rewrite shared by
//! both forwarding paths (Pingora's own for GET/DELETE, [`super::exchange`] for POST).

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use pingora_core::protocols::TcpKeepalive;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use prometheus::Histogram;

use crate::config::{HttpTarget, Runtime, Transport, Upstream};
use crate::telemetry::metrics::metrics;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// One HTTP upstream, ready to connect to.
pub struct Route {
    /// The config entry.
    pub upstream: Arc<Upstream>,
    /// Where it listens.
    pub target: HttpTarget,
    /// The peer template (address resolved at load time, timeouts applied).
    pub peer: Result<HttpPeer, String>,
    /// The resolved address, for health probes.
    pub addr: Option<std::net::SocketAddr>,
    /// Time-to-header histogram of this upstream.
    pub latency: Histogram,
    /// The upstream request target (path and query), parsed once.
    pub uri: http::Uri,
    /// The `Host` header value, built once.
    pub host: http::HeaderValue,
    /// Idle connections for the lean HTTP/1.1 client (plain-text upstreams).
    pub pool: crate::upstream::h1::Pool,
}

impl Route {
    /// A peer for one request. `streaming_get` lifts the idle read timeout for the long-lived
    /// GET notification stream (client disconnect and TCP keepalive end it instead).
    pub fn peer(&self, streaming_get: bool) -> Result<HttpPeer, &str> {
        let mut peer = match &self.peer {
            Ok(p) => p.clone(),
            Err(e) => return Err(e.as_str()),
        };
        if streaming_get {
            peer.options.read_timeout = None;
        }
        Ok(peer)
    }
}

/// Every HTTP upstream of a snapshot, by name.
#[derive(Default)]
pub struct Routes {
    by_name: HashMap<String, Route>,
    muxes: HashMap<String, Arc<crate::upstream::mux::Mux>>,
}

impl Routes {
    /// Prepare peers for every HTTP upstream of `rt`. Host names are resolved here, at load time,
    /// never per request; a name that does not resolve makes that upstream answer 502.
    pub fn build(rt: &Runtime) -> Self {
        let mut by_name = HashMap::new();
        for up in &rt.proxy.servers {
            let target = match &up.transport {
                Transport::StreamableHttp(t) => t.clone(),
                Transport::Sse(_) | Transport::Stdio(_) => continue,
            };
            let addr = resolve(&target);
            if let Err(e) = &addr {
                tracing::warn!(server = %up.name, error = %e, "upstream address does not resolve");
            }
            let peer = addr.clone().map(|a| build_peer(up, &target, a));
            let uri = target
                .path_and_query
                .parse::<http::Uri>()
                .unwrap_or_else(|_| http::Uri::from_static("/"));
            let host = http::HeaderValue::from_str(&target.host_header)
                .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
            by_name.insert(
                up.name.clone(),
                Route {
                    upstream: up.clone(),
                    latency: metrics().upstream_latency(&up.name),
                    uri,
                    host,
                    pool: Default::default(),
                    target,
                    addr: peer.as_ref().ok().and(addr.ok()),
                    peer,
                },
            );
        }
        Routes {
            by_name,
            muxes: HashMap::new(),
        }
    }

    /// The route of a server, if it is an HTTP upstream.
    pub fn get(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name)
    }

    /// Attach the snapshot's stdio and legacy SSE upstreams.
    pub fn set_muxes(&mut self, muxes: HashMap<String, Arc<crate::upstream::mux::Mux>>) {
        self.muxes = muxes;
    }

    /// The shared-session upstream named `name`: a stdio or legacy SSE server, or the SSE
    /// fallback of a Streamable HTTP server with `connection.fallback_sse`.
    pub fn mux(&self, name: &str) -> Option<&Arc<crate::upstream::mux::Mux>> {
        self.muxes.get(name)
    }

    /// Every shared-session upstream.
    pub fn muxes(&self) -> impl Iterator<Item = &Arc<crate::upstream::mux::Mux>> {
        self.muxes.values()
    }

    /// Every HTTP route, for health probing.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.by_name.values()
    }
}

fn resolve(t: &HttpTarget) -> Result<std::net::SocketAddr, String> {
    (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.address))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", t.address))
}

fn build_peer(up: &Upstream, t: &HttpTarget, addr: std::net::SocketAddr) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, t.tls, t.host.clone());
    let o = &mut peer.options;
    o.connection_timeout = Some(up.connect_timeout);
    o.total_connection_timeout = Some(up.connect_timeout * 2);
    o.read_timeout = Some(up.timeout);
    o.write_timeout = Some(up.timeout);
    o.idle_timeout = Some(POOL_IDLE);
    o.tcp_keepalive = Some(TcpKeepalive {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        count: 5,
        #[cfg(target_os = "linux")]
        user_timeout: Duration::from_secs(0),
    });
    o.alpn = if t.tls { ALPN::H2H1 } else { ALPN::H1 };
    peer
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus ones the gateway owns.
const DROP_UPSTREAM: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::EXPECT,
    // Responses must stay uncompressed: SSE is never compressed and later filters read bodies.
    header::ACCEPT_ENCODING,
    HeaderName::from_static("proxy-connection"),
];

/// True for a header that never crosses the gateway: hop-by-hop (fixed, or named by the
/// request's `Connection` header) or owned by the gateway.
fn hop_by_hop(name: &HeaderName, connection: Option<&http::HeaderValue>) -> bool {
    hop_by_hop_raw(name.as_str(), connection.map(|v| v.as_bytes()))
}

/// Encode the upstream request head of the pre-read POST path as HTTP/1.1 bytes: the same
/// rewrite as [`rewrite_request`] (path, `Host`, credentials, hop-by-hop cleanup) plus the exact
/// `Content-Length`, without cloning the downstream header.
pub fn encode_request_head(req: &RequestHeader, route: &Route, body_len: usize, out: &mut Vec<u8>) {
    let headers = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    let connection = req.headers.get(header::CONNECTION).map(|v| v.as_bytes());
    encode_head(
        req.method.as_str(),
        req.uri.query(),
        headers,
        connection,
        route,
        body_len,
        out,
    );
}

/// [`encode_request_head`] over raw header fields (`name`, `value`) as parsed from the wire by
/// the front door ([`crate::front`]); names compare case-insensitively. `connection` is the
/// request's `Connection` value (the headers it names are dropped too).
pub fn encode_head<'h>(
    method: &str,
    query: Option<&str>,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    connection: Option<&[u8]>,
    route: &Route,
    body_len: usize,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(route.target.path_and_query.as_bytes());
    if let Some(q) = query {
        out.push(if route.target.path_and_query.contains('?') {
            b'&'
        } else {
            b'?'
        });
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(route.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let up = &route.upstream;
    for (name, value) in headers {
        if hop_by_hop_raw(name, connection)
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("authorization") && !up.forward_authorization)
            || up
                .inject_headers
                .iter()
                .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        {
            continue;
        }
        push_header(out, name.as_bytes(), value);
    }
    for (name, value) in &up.inject_headers {
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    // Written straight into the buffer: no temporary string per request.
    let _ = std::io::Write::write_fmt(out, format_args!("content-length: {body_len}\r\n\r\n"));
}

/// [`hop_by_hop`] for a raw header name and the raw `Connection` value.
fn hop_by_hop_raw(name: &str, connection: Option<&[u8]>) -> bool {
    if DROP_UPSTREAM
        .iter()
        .any(|d| d.as_str().eq_ignore_ascii_case(name))
    {
        return true;
    }
    connection.is_some_and(|list| {
        list.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    })
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Rewrite a downstream request header into the upstream's: path, `Host`, credentials,
/// hop-by-hop cleanup. `body_len` is set for the pre-read POST path (exact `Content-Length`).
pub fn rewrite_request(req: &mut RequestHeader, route: &Route, body_len: Option<usize>) {
    let connection = req.headers.get(header::CONNECTION).cloned();
    let dropped: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| hop_by_hop(n, connection.as_ref()))
        .cloned()
        .collect();
    for name in &dropped {
        req.remove_header(name);
    }
    match req.uri.query() {
        None => req.set_uri(route.uri.clone()),
        Some(q) => {
            let base = &route.target.path_and_query;
            let sep = if base.contains('?') { '&' } else { '?' };
            if let Ok(uri) = format!("{base}{sep}{q}").parse::<http::Uri>() {
                req.set_uri(uri);
            }
        }
    }
    let up = &route.upstream;
    let _ = req.insert_header(header::HOST, route.host.clone());
    if !up.forward_authorization {
        req.remove_header(&header::AUTHORIZATION);
    }
    for (name, value) in &up.inject_headers {
        let _ = req.insert_header(name.clone(), value.clone());
    }
    if let Some(len) = body_len {
        req.remove_header(&header::TRANSFER_ENCODING);
        let _ = req.insert_header(header::CONTENT_LENGTH, len);
    }
}
