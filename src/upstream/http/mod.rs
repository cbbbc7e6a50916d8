//! Streamable HTTP upstreams: an address resolved at load, the lean HTTP/1.1 client ([`h1`]) over
//! plain TCP (its own pool) or TLS (pingora-core's transport connector and pool), and the one
//! encoder of upstream request heads ([`head`]).
//!
//! Every failure maps to one HTTP status and one metric kind here ([`Failure`]), whichever front
//! end received the request.

pub mod h1;
pub mod head;
pub mod order;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use prometheus::Histogram;

use crate::config::{HttpTarget, Upstream as UpstreamConfig};
use crate::telemetry::metrics::metrics;
use h1::{Conn, Exchange, H1Error, Pool};

/// Longest a POST waits for its session's GET stream to open upstream (see [`order`]).
pub const GET_FIRST_WAIT: Duration = Duration::from_secs(5);

/// How long after `notifications/initialized` was accepted a session's GET is expected (see
/// [`order`]): a client that opens none delays its next POST by this much, once.
pub const EXPECT_GET: Duration = Duration::from_millis(50);

/// How long an idle TLS connection stays in pingora-core's pool.
const TLS_POOL_IDLE: Duration = Duration::from_secs(55);

/// Why an exchange with an upstream did not produce an answer. Once a request was written, a
/// failure is final: it is never sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 502, or 504 for a timeout.
    pub status: u16,
    /// Metric label (`portcullis_upstream_errors_total{kind}`): `resolve`, `connect`, `tls`,
    /// `timeout`, `closed`, `protocol`, `unavailable`.
    pub kind: &'static str,
    /// Human-readable cause (never headers or bodies).
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Failure {
    /// A failure with status 502.
    pub fn unavailable(kind: &'static str, detail: impl Into<String>) -> Self {
        Failure {
            status: 502,
            kind,
            detail: detail.into(),
        }
    }

    /// The one mapping from a client error to status, kind and detail.
    pub fn from_h1(e: &H1Error) -> Self {
        let (status, kind) = match e {
            H1Error::ConnectTimeout | H1Error::ReadTimeout | H1Error::WriteTimeout => {
                (504, "timeout")
            }
            H1Error::Connect(_) => (502, "connect"),
            H1Error::Tls(_) => (502, "tls"),
            H1Error::Io(_) | H1Error::Closed => (502, "closed"),
            H1Error::Protocol(_) => (502, "protocol"),
        };
        let detail = match e {
            H1Error::Connect(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_string()
            }
            other => other.to_string(),
        };
        Failure {
            status,
            kind,
            detail,
        }
    }
}

/// TLS to one upstream: its peer template and pingora-core's connector (rustls, pool).
struct Tls {
    peer: HttpPeer,
    connector: TransportConnector,
}

/// One Streamable HTTP upstream, prepared at config load (never per request).
pub struct HttpUpstream {
    /// Its config entry.
    pub config: Arc<UpstreamConfig>,
    /// Where it listens.
    pub target: HttpTarget,
    /// The address (resolved at load; a name that does not resolve answers 502).
    addr: Result<SocketAddr, String>,
    tls: Option<Tls>,
    /// Time-to-response-head histogram (`portcullis_upstream_request_duration_seconds`).
    pub latency: Histogram,
    pool: Pool,
    /// Sessions whose GET stream is being opened (their POSTs wait for it: [`order`]).
    pub opening: order::Opening,
}

impl HttpUpstream {
    /// Prepare `config` (a Streamable HTTP upstream at `target`).
    pub fn new(config: Arc<UpstreamConfig>, target: HttpTarget) -> Self {
        let addr = resolve(&target);
        if let Err(e) = &addr {
            tracing::warn!(server = %config.name, error = %e, "upstream address does not resolve");
        }
        let tls = match (&addr, target.tls) {
            (Ok(a), true) => Some(Tls {
                peer: tls_peer(&config, &target, *a),
                connector: TransportConnector::new(None),
            }),
            _ => None,
        };
        HttpUpstream {
            latency: metrics().upstream_latency(&config.name),
            config,
            target,
            addr,
            tls,
            pool: Pool::default(),
            opening: order::Opening::default(),
        }
    }

    /// The resolved address, for health probes.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.as_ref().ok().copied()
    }

    /// The upstream's `Host` header value.
    pub fn host_header(&self) -> &str {
        &self.target.host_header
    }

    /// Send `head` and `body` (written once) and read the answer's head. `stream`: the GET
    /// notification stream, which may idle for hours (no read timeout; the client hanging up
    /// ends it).
    pub async fn exchange(
        &self,
        head: &[u8],
        body: &[u8],
        stream: bool,
    ) -> Result<(Exchange, crate::response::Head), Failure> {
        let addr = *self
            .addr
            .as_ref()
            .map_err(|e| Failure::unavailable("resolve", e.clone()))?;
        let up = &self.config;
        let timeout = (!stream).then_some(up.timeout);
        let started = Instant::now();
        let conn = match &self.tls {
            None => {
                let (tcp, _) = self
                    .pool
                    .checkout(addr, up.connect_timeout)
                    .await
                    .map_err(|e| Failure::from_h1(&e))?;
                Conn::Plain(tcp)
            }
            Some(tls) => {
                let s = match tls.connector.reused_stream(&tls.peer).await {
                    Some(s) => s,
                    // Boxed: pingora's connect future is about 8 KB, and every request's
                    // future would carry (and move) that much inline.
                    None => Box::pin(tls.connector.new_stream(&tls.peer))
                        .await
                        .map_err(|e| {
                            Failure::from_h1(&match e.etype() {
                                pingora_error::ErrorType::ConnectTimedout => {
                                    H1Error::ConnectTimeout
                                }
                                _ => H1Error::Tls(format!(
                                    "{}: {}",
                                    e.etype().as_str().to_lowercase().replace('_', " "),
                                    e.cause.as_ref().map(|c| c.to_string()).unwrap_or_default()
                                )),
                            })
                        })?,
                };
                Conn::Tls(s)
            }
        };
        let (ex, resp) = Exchange::start(conn, head, body, timeout)
            .await
            .map_err(|e| Failure::from_h1(&e))?;
        self.latency.observe(started.elapsed().as_secs_f64());
        Ok((ex, resp))
    }

    /// Give a finished exchange's connection back to its pool, if it can serve another request.
    pub fn release(&self, ex: Exchange) {
        if !ex.reusable() {
            return;
        }
        match (ex.into_conn(), &self.tls) {
            ((Conn::Plain(tcp), keep), _) => self.pool.checkin(tcp, keep),
            ((Conn::Tls(s), keep), Some(tls)) => tls.connector.release_stream(
                s,
                tls.peer.reuse_hash(),
                Some(keep.min(TLS_POOL_IDLE)),
            ),
            ((Conn::Tls(_), _), None) => {}
        }
    }
}

fn resolve(t: &HttpTarget) -> Result<SocketAddr, String> {
    (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.address))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", t.address))
}

fn tls_peer(up: &UpstreamConfig, t: &HttpTarget, addr: SocketAddr) -> HttpPeer {
    let sni = t
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut peer = HttpPeer::new(addr, true, sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(up.connect_timeout);
    o.total_connection_timeout = Some(up.connect_timeout * 2);
    // The lean client speaks HTTP/1.1 on the stream it gets.
    o.alpn = ALPN::H1;
    if let Some(t) = &t.tls_options {
        use pingora_core::utils::tls::{parse_x509, CertKey, WrappedX509};
        // The bytes were parsed with the same parser at config load, so neither of pingora's
        // parses below (which panic on a bad certificate) can fail.
        if let Some(ca) = &t.ca {
            let roots: Vec<WrappedX509> = ca
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            o.ca = Some(Arc::from(roots));
        }
        if let Some(c) = &t.client {
            peer.client_cert_key = Some(Arc::new(CertKey::new(c.chain.clone(), c.key.clone())));
        }
    }
    peer
}

/// A body chunk of an upstream answer, or its end.
pub type Chunk = Result<Option<Bytes>, Failure>;
