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
pub mod listen;
mod preface;
mod serve;

pub use serve::KEEPALIVE;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Connections open on this listener now (`server.max_connections` bounds it).
    open: Arc<AtomicUsize>,
}

/// One open connection, counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    /// Count a new connection, unless `max` are open already.
    fn enter(open: &Arc<AtomicUsize>, max: usize) -> Option<Open> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics().connections_open.inc();
        Some(Open(open.clone()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics().connections_open.dec();
    }
}

/// Count (and now and then log) a connection closed because `max` were open.
fn refused_connection(max: usize) {
    static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
    metrics().connections_refused.inc();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            max_connections = max,
            "connection closed at once: server.max_connections are open (counted in portcullis_connections_refused_total; logged at most every 10 s)"
        );
    }
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
            open: Arc::new(AtomicUsize::new(0)),
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
        let max = self.store.peek(|s| s.config.server.max_connections);
        let Some(_open) = Open::enter(&self.open, max) else {
            refused_connection(max);
            return None;
        };
        match self.is_h2(&mut stream).await {
            Ok(true) if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) => {
                // HTTP/2 by ALPN: nothing was read yet, and Pingora's handshake would wait for
                // the preface for ever.
                let limit = self.store.peek(|s| s.config.server.header_timeout);
                let wait = limit.saturating_sub(accepted.elapsed());
                let stream: Stream = Box::new(preface::FirstBytes::new(
                    stream,
                    wait,
                    preface::PREFACE_AND_SETTINGS,
                ));
                return self.proxy.process_new(stream, shutdown).await;
            }
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
                    let Conn {
                        stream,
                        mut buf,
                        first_read,
                    } = conn;
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
                    conn = Conn {
                        stream,
                        buf,
                        first_read,
                    };
                }
            }
        }
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}

/// For the fuzz targets (`crate::fuzz`): `data` through the front door's head parser, with the
/// invariants the rest of the gateway relies on (ranges inside the head, the end found inside
/// the bytes, a view built from them).
#[doc(hidden)]
pub fn fuzz_head(data: &[u8]) {
    if let Some(end) = head::head_end(data) {
        assert!(
            end <= data.len() && end >= 2,
            "head end {end} of {}",
            data.len()
        );
    }
    if let head::Parsed::Complete(h) = head::parse(data) {
        assert!(
            h.len <= data.len(),
            "head of {} in {} bytes",
            h.len,
            data.len()
        );
        assert!(
            head::head_end(data).is_some_and(|e| e <= h.len),
            "end not found in a head"
        );
        let view = h.view(&data[..h.len]);
        let _ = (view.accepts_sse(), view.declared_length(), view.is_json());
        let _ = h.request_len();
    }
}

/// The differential fuzz target's two decisions on one HTTP/1.1 request (`data`: head and
/// body): as the front door decides it, and as Pingora's path does (Pingora's own parser reading
/// the same bytes). `None` when either path would not decide it: a head the front door does not
/// serve itself (Pingora's anyway), a body shorter than declared, a head Pingora refuses.
pub async fn fuzz_decisions(
    gateway: &Gateway,
    snap: &crate::state::Snapshot,
    data: &[u8],
) -> Option<(String, String)> {
    use crate::gateway::Observation;
    let head::Parsed::Complete(h) = head::parse(data) else {
        return None;
    };
    if !h.servable() || data.len() < h.len + h.body_len {
        return None;
    }
    let front = {
        let mut view = h.view(&data[..h.len]);
        view.head_bytes = h.len;
        let mut body = bytes::Bytes::copy_from_slice(&data[h.len..h.len + h.body_len]);
        let mut obs = Observation::start(&view.method);
        let plan = gateway.decide(snap, &view, &mut body, &mut obs).await;
        summary(plan, &view)
    };
    let stream: Stream = Box::new(std::io::Cursor::new(data[..h.len + h.body_len].to_vec()));
    let mut session = pingora_proxy::Session::new_h1(stream);
    if !matches!(session.read_request().await, Ok(true)) {
        // A head Pingora's parser refuses: the front door must not send it upstream either
        // (an answer of its own is fine: Pingora would have answered 400).
        return front
            .starts_with("forward")
            .then(|| (front, "Pingora refuses this head".to_owned()));
    }
    let req = session.req_header().clone();
    let view = crate::request::RequestView::from_parts(&req.method, &req.uri, &req.headers, false);
    let mut obs = Observation::start(&view.method);
    let mut body = super::pingora::body::SessionBody::new(&mut session);
    let plan = gateway.decide(snap, &view, &mut body, &mut obs).await;
    Some((front, summary(plan, &view)))
}

/// An admin endpoint, whose answers change between two calls (counters, uptime).
fn is_admin(view: &crate::request::RequestView<'_>) -> bool {
    use crate::endpoints::Endpoint;
    matches!(view.path.map(Endpoint::parse), Some(Endpoint::Admin(_)))
}

/// What a plan decided, as text two plans can be compared by (answers in full, but for an
/// admin endpoint's body; forwards by operation, upstream, body and session; fan-outs by work
/// and legs).
fn summary(plan: crate::gateway::Plan<'_>, view: &crate::request::RequestView<'_>) -> String {
    use crate::gateway::{Plan, Work};
    let admin = is_admin(view);
    // What a forward carries upstream from the head besides its body: the caller it was
    // decided for, and the MCP fields passed on.
    let carried = format!(
        "session {:?} version {:?} method {:?} name {:?} accept-sse {}",
        view.session_id,
        view.protocol_version,
        view.mcp_method,
        view.mcp_name,
        view.accepts_sse()
    );
    match plan {
        Plan::Answer(r) if admin => format!("admin answer {} {:?}", r.status, r.content_type),
        Plan::Answer(r) => {
            let mut headers = r.headers.clone();
            headers.sort();
            format!(
                "answer {} {:?} {:?} {}",
                r.status,
                r.content_type,
                headers,
                String::from_utf8_lossy(&r.body)
            )
        }
        Plan::Forward(f) => format!(
            "forward {:?} to {} for {:?} body {} list {:?} session {:?} name {:?} stream {} ({carried})",
            f.op,
            f.upstream.name(),
            f.permit.principal().tag(),
            String::from_utf8_lossy(&f.body),
            f.list.map(|(k, _)| k),
            f.via.as_ref().map(|v| v.session.clone()),
            f.via.as_ref().map(|v| v.mcp_name.clone()),
            f.stream.is_some(),
        ),
        Plan::Fanout(f) => {
            let work = match &f.work {
                Work::Initialize { id, version, .. } => format!("initialize {id} {version}"),
                Work::List {
                    id, kind, cursors, ..
                } => format!("list {id} {kind:?} {cursors:?}"),
                Work::Discover { id, .. } => format!("discover {id}"),
                Work::Broadcast { body, answer } => format!("broadcast {answer:?} {}", body.len()),
                Work::Resolve { exposed, kind, .. } => format!("resolve {exposed} {kind:?}"),
                Work::Events => "events".to_owned(),
                Work::Listen { id, filter, uris, .. } => format!("listen {id} {filter:?} {uris:?}"),
                Work::Delete => "delete".to_owned(),
            };
            let legs: Vec<_> = f.legs.iter().map(|l| l.upstream.name()).collect();
            format!(
                "fanout {work} to {legs:?} for {:?} stream {} ({carried})",
                f.principal.tag(),
                f.stream.is_some()
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use pingora_core::apps::ServerApp;

    /// What a connection holds while it waits for a request is the front door's future: it
    /// must stay small (the request's own future is boxed only while a request is served), and
    /// so must a request's own.
    /// Memory per connection is measured by bench/conn_memory.sh.
    #[tokio::test]
    async fn a_waiting_connection_holds_a_small_future() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            "oauth:\n  enabled: false\nproxy:\n  servers:\n    - name: a\n      type: streamable-http\n      connection: { url: \"http://127.0.0.1:9/mcp\" }\n",
        )
        .unwrap();
        let config = crate::config::load_file(&path).unwrap();
        let conf = std::sync::Arc::new(pingora_core::server::configuration::ServerConf::default());
        let parts =
            crate::app::assemble(&path, config, &conf, crate::app::Options::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let l4 = |s| -> pingora_core::protocols::Stream {
            Box::new(pingora_core::protocols::l4::stream::Stream::from(s))
        };
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        let front = parts.front.clone();
        let connection = front.process_new(l4(server), &rx);
        let size = std::mem::size_of_val(&*connection);
        assert!(size < 2048, "the connection's future is {size} bytes");
        drop(connection);
        let mut conn = super::conn::Conn::new(l4(client));
        let next = super::serve::serve(&front, &mut conn, &mut rx, None);
        let size = std::mem::size_of_val(&next);

        assert!(size < 2048, "the wait for a request head is {size} bytes");
        drop(next);
        // A request's own future runs its relay or fan-out in futures of their own, so a
        // stream that idles for hours holds little beyond its relay loop.
        let size = super::serve::request_future_size(&front, &mut conn, &mut rx);
        assert!(size < 3072, "a request's future is {size} bytes");
    }
}
