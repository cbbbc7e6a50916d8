//! Idle plain-text connections to one upstream address, lock-free, each checked before it is
//! handed out again (see [`super`]: a request is written at most once, so a connection the
//! upstream closed or wrote to while idle must not carry one).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::net::TcpStream;

use super::H1Error;

/// Idle connections kept per upstream.
const POOL_SIZE: usize = 256;
/// An idle connection older than this is not reused (below common upstream keep-alive limits
/// is not required: the upstream's own `Keep-Alive: timeout` is honoured, and every reused
/// connection is checked first).
pub(super) const POOL_IDLE: Duration = Duration::from_secs(55);
/// An idle connection is checked with a system call, not only from the reactor's readiness,
/// once it idled this long: the reactor that owns its socket may not have polled since (each
/// thread runs a runtime of its own and the pool is shared), and upstreams close idle
/// connections after seconds, not microseconds. Under load connections come back sooner and
/// the check costs nothing.
const PEEK_AFTER: Duration = Duration::from_millis(100);

/// An idle connection: the socket, when it must not be used any more, since when it idles.
type Idle = (TcpStream, Instant, Instant);

/// Idle plain-text connections to one upstream address.
pub struct Pool {
    pub(super) idle: ArrayQueue<Idle>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle: ArrayQueue::new(POOL_SIZE),
        }
    }
}

/// True when an idle connection can carry a request: nothing to read on it (a closed
/// connection reads as end of stream, and a live idle one has nothing to say). `ask`: ask the
/// socket itself (a non-blocking peek). Otherwise the reactor's readiness answers without a
/// system call in the common case (the last read of the previous answer left the socket
/// drained, so it is not readable unless the upstream closed it or sent something since, or its
/// reactor has not polled since); only a readable one is read, once, to tell which.
pub(super) fn idle_and_open(stream: &TcpStream, ask: bool) -> bool {
    use futures_util::FutureExt;
    if ask {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // The socket is non-blocking: an idle open one answers "would block".
        return match socket2::SockRef::from(stream).peek(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(n) => unexpected(n),
        };
    }
    let ready =
        tokio::task::unconstrained(stream.ready(tokio::io::Interest::READABLE)).now_or_never();
    match ready {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(_)) => {
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                // Readiness was stale: nothing there after all (now cleared).
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                Ok(n) => unexpected(n),
            }
        }
    }
}

/// An idle connection read `n` bytes: closed (0) or something no request asked for. Never usable.
fn unexpected(n: usize) -> bool {
    if n > 0 {
        crate::in_request!(
            debug,
            "unexpected bytes on an idle upstream connection; dropped"
        );
    }
    false
}

impl Pool {
    /// A pooled connection that is still usable, else a new one. `true` when reused.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(TcpStream, bool), H1Error> {
        while let Some((stream, until, since)) = self.idle.pop() {
            let now = Instant::now();
            if now < until && idle_and_open(&stream, now - since >= PEEK_AFTER) {
                return Ok((stream, true));
            }
        }
        Ok((Self::connect(addr, connect_timeout).await?, false))
    }

    /// A new connection (`TCP_NODELAY`, TCP keep-alive probes after a minute idle).
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<TcpStream, H1Error> {
        let stream =
            pingora_timeout::fast_timeout::fast_timeout(connect_timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| H1Error::ConnectTimeout)?
                .map_err(H1Error::Connect)?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }

    /// Return a connection whose exchange completed cleanly, usable for `keep` more at most.
    pub fn checkin(&self, stream: TcpStream, keep: Duration) {
        let now = Instant::now();
        let _ = self.idle.push((stream, now + keep.min(POOL_IDLE), now));
    }
}
