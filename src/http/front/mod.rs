//! The front door: the listener's connections, before Pingora's HTTP proxy.
//!
//! Pingora's `HttpProxy` spends about as much CPU per request as nginx spends on a whole proxy
//! hop (BENCHMARKS.md: 12.9 µs to answer `/live` with no upstream; much of it moving and boxing
//! its per-request futures). So the front door serves plain HTTP/1.1 keep-alive connections
//! itself ([`serve`]): every request whose head it parses (HTTP/1.1, origin-form target, a body
//! delimited by one `Content-Length` or none). Everything else goes to Pingora's `HttpProxy`
//! whole, the bytes already read first ([`ServerSession::set_pipelined_prefix`]), and the
//! connection comes back here after it: HTTP/2 (ALPN or the h2c preface), chunked uploads,
//! `Expect`, `Upgrade`, HTTP/1.0, heads it does not parse, and every request when
//! `server.fast_path` is off.
//!
//! ```text
//!  connection ──> h2 (ALPN or h2c preface) ───────────────────────> Pingora HttpProxy
//!       │
//!       └─> HTTP/1.1 request head ──> plain? ── yes ──> serve ──────────┐
//!                    ^                  │                               │
//!                    │                  no ──> Pingora HttpProxy ───────┤
//!                    └──────────── keep-alive ──────────────────────────┘
//! ```
//!
//! Both paths are thin: they build a view of the request and ask [`crate::gateway`] for a plan,
//! then write its answer ([`crate::http::write`]) or relay the upstream's
//! ([`crate::http::relay`]). What a request gets does not depend on who served it. A request
//! handed over carries exactly its own bytes when its length is known; bytes of a next
//! (pipelined) request wait here for the connection.

mod conn;
mod head;
mod serve;

pub use serve::KEEPALIVE;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::AsyncWriteExt;

use super::pingora::PingoraPath;
use crate::gateway::Gateway;
use crate::state::Store;
use crate::telemetry::metrics::metrics;
use conn::Conn;
use serve::Outcome;

/// How long closing a connection may wait for its last bytes to go out.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The listener's application: the front door in front of Pingora's `HttpProxy`.
pub struct Front {
    proxy: Arc<HttpProxy<PingoraPath>>,
    store: Arc<Store>,
    gateway: Arc<Gateway>,
    h2c: bool,
    served: Served,
}

/// HTTP/1.1 requests of one [`Front`] by who served them (also exported, for all fronts, as
/// `portcullis_front_requests_total{path}`).
#[derive(Debug, Default)]
pub struct Served {
    /// By the front door.
    pub hot: AtomicU64,
    /// By Pingora's proxy.
    pub pingora: AtomicU64,
}

impl Front {
    /// `proxy` serves everything the front door does not; `store` and `gateway` are the ones
    /// `proxy` decides with too.
    pub fn new(proxy: HttpProxy<PingoraPath>, store: Arc<Store>, gateway: Arc<Gateway>) -> Self {
        let h2c = proxy.server_options().is_some_and(|o| o.h2c);
        Front {
            proxy: Arc::new(proxy),
            store,
            gateway,
            h2c,
            served: Served::default(),
        }
    }

    /// Count a request served by the front door.
    fn count_hot(&self) {
        self.served.hot.fetch_add(1, Ordering::Relaxed);
        metrics().front_hot.inc();
    }

    /// Requests this front served itself and handed to Pingora so far.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// True when the connection speaks HTTP/2 (ALPN, or the h2c preface on clear text). A
    /// client that has not sent the preface's length within `server.header_timeout` is an
    /// error (closed without a word: the peek may have taken some of its bytes).
    async fn is_h2(&self, stream: &mut Stream) -> std::io::Result<bool> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return Ok(true);
        }
        if !self.h2c || stream.get_ssl_digest().is_some() {
            return Ok(false);
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        let wait = self.store.peek(|s| s.config.server.header_timeout);
        let peeked = pingora_timeout::fast_timeout::fast_timeout(wait, stream.try_peek(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
        Ok(peeked && buf == H2_PREFACE)
    }
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = tokio::time::Instant::now();
        match self.is_h2(&mut stream).await {
            Ok(true) => return self.proxy.process_new(stream, shutdown).await,
            Ok(false) => {}
            Err(_) => return None,
        }
        let mut stop = shutdown.clone();
        let mut conn = Conn::new(stream);
        let mut fresh = Some(accepted);
        loop {
            let outcome = serve::serve(self, &mut conn, &mut stop, fresh.take()).await;
            match outcome {
                Outcome::Again => {}
                Outcome::Close => {
                    // Orderly close (a TLS close_notify), bounded: the peer may be gone or may
                    // have stopped reading.
                    let _ = pingora_timeout::fast_timeout::fast_timeout(
                        CLOSE_TIMEOUT,
                        conn.stream.shutdown(),
                    )
                    .await;
                    return None;
                }
                Outcome::HandOver(len) => {
                    self.served.pingora.fetch_add(1, Ordering::Relaxed);
                    metrics().front_pingora.inc();
                    let Conn { stream, mut buf } = conn;
                    // This request's bytes go first; bytes of a next one (pipelined) wait here
                    // for the connection to come back.
                    let prefix = match len {
                        Some(n) if n < buf.len() => buf.split_to(n),
                        _ => std::mem::take(&mut buf),
                    };
                    let mut session = ServerSession::new_http1(stream);
                    if !prefix.is_empty() {
                        session.set_pipelined_prefix(prefix);
                    }
                    let keepalive = (!*shutdown.borrow()).then_some(serve::KEEPALIVE.as_secs());
                    session.set_keepalive(keepalive);
                    // HTTP/1.1 pipelining is never enabled on Pingora's sessions, so a reused
                    // connection carries no bytes of a next request (Pingora refuses reuse when
                    // it read past a request) and no persistent settings that matter here.
                    let reused = self.proxy.process_new_http(session, shutdown).await?;
                    let (stream, _settings) = reused.consume();
                    conn = Conn { stream, buf };
                }
            }
        }
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}
