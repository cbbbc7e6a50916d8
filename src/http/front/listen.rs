//! The listeners: sockets bound and connections accepted by the gateway itself, each
//! connection handed to the front door ([`Front`]) on one of Pingora's worker threads.
//!
//! Pingora's own listening service would do the same, but every connection it accepts is a
//! task whose future holds room for a TLS handshake (about 7.5 KB, on a plain listener too) for
//! as long as the connection lives: with it, a connection that has sent nothing cost 13 KiB.
//! Here a plain connection's task holds only what serving it needs, and a TLS handshake runs in
//! a future of its own, freed once it is done (bench/conn_memory.sh, BENCHMARKS.md).
//!
//! ```text
//!  bind (at build: errors are startup errors) ─> accept loop ─> one task per connection
//!                                                   │              │ TLS: handshake (boxed)
//!                                                   │              └─> Front::process_new, again
//!                                                   │                  while the connection lives
//!  shutdown ─> the loop ends, the socket closes ────┘
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4;
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;

use super::Front;

/// Connections waiting to be accepted (Pingora's listeners use the same backlog).
const BACKLOG: i32 = 65535;
/// How long a TLS handshake may take (as Pingora's listener allows).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after an accept failed for want of a resource, so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// The errors after which accepting fails again at once (out of descriptors or memory).
const AGAIN_AT_ONCE: [i32; 4] = [
    nix::errno::Errno::EMFILE as i32,
    nix::errno::Errno::ENFILE as i32,
    nix::errno::Errno::ENOBUFS as i32,
    nix::errno::Errno::ENOMEM as i32,
];

/// Raise the soft limit on open files towards what `max_connections` needs (a descriptor for
/// each client connection and one for its upstream, and room for the rest), up to the hard
/// limit; warn when even the hard limit is short (accepts would then fail with "too many open
/// files" before `max_connections` is reached). Called once at startup.
pub fn raise_open_files(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .saturating_add(1024);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    let target = want.min(hard);
    if target > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => tracing::info!(
                from = soft,
                to = target,
                "raised the open-file limit for server.max_connections"
            ),
            Err(e) => tracing::warn!(error = %e, soft, "cannot raise the open-file limit"),
        }
    }
    if target < want {
        tracing::warn!(
            limit = target,
            needed = want,
            max_connections,
            "the open-file limit is below what server.max_connections needs (two descriptors per connection): accepts will fail before max_connections; raise it (ulimit -n, systemd LimitNOFILE, the container runtime's nofile) or lower server.max_connections"
        );
    }
}

/// Bind `addr` for a listener (address reuse on, non-blocking, a deep backlog).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A listener as a Pingora service: its connections are served on the server's worker
/// threads, and it stops accepting when the server shuts down.
pub struct Listening {
    name: String,
    front: Arc<Front>,
    socket: Option<std::net::TcpListener>,
    tls: Option<Arc<Acceptor>>,
}

impl Listening {
    /// Serve `front` on `socket` (bound by [`bind`]); HTTPS when `tls` is given.
    pub fn new(
        name: &str,
        front: Arc<Front>,
        socket: std::net::TcpListener,
        tls: Option<Arc<Acceptor>>,
    ) -> Self {
        Listening {
            name: name.to_owned(),
            front,
            socket: Some(socket),
            tls,
        }
    }
}

#[async_trait]
impl pingora_core::services::Service for Listening {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        match tokio::net::TcpListener::from_std(socket) {
            Ok(listener) => serve(self.front.clone(), listener, self.tls.clone(), shutdown).await,
            Err(e) => {
                tracing::error!(listener = %self.name, error = %e, "cannot serve the listener")
            }
        }
        // As Pingora's listening service does once it stops accepting: Pingora's proxy closes
        // its keep-alive connections after their request in flight.
        self.front.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Accept connections on `listener` and serve each with `front` (HTTPS when `tls` is given)
/// until `shutdown` turns true. Each connection is a task on one of Pingora's worker threads
/// (the current runtime's, outside a Pingora server).
pub async fn serve(
    front: Arc<Front>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Acceptor>>,
    shutdown: ShutdownWatch,
) {
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                accept_failed(&e);
                // Out of descriptors or memory it fails again at once: pause. A connection
                // that failed on its own (reset before the accept) costs no pause.
                if e.raw_os_error().is_some_and(|n| AGAIN_AT_ONCE.contains(&n)) {
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let front = front.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        pingora_runtime::current_handle().spawn(async move {
            // No socket digest (Pingora's listener records the peer's address in one, a few
            // hundred bytes per connection): nothing in the gateway reads it.
            let l4 = L4::from(tcp);
            let mut stream: pingora_core::protocols::Stream = match tls {
                None => Box::new(l4),
                Some(acceptor) => {
                    // Boxed: the handshake's state is freed once it is done.
                    let handshake = Box::pin(tokio::time::timeout(
                        TLS_HANDSHAKE_TIMEOUT,
                        acceptor.tls_handshake(l4),
                    ));
                    match handshake.await {
                        Ok(Ok(s)) => Box::new(s),
                        _ => return,
                    }
                }
            };
            while let Some(reused) = front.process_new(stream, &shutdown).await {
                stream = reused;
            }
        });
    }
}

/// Log a failed accept, at most every 10 s (out of file descriptors, it fails for every
/// connection).
fn accept_failed(e: &std::io::Error) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::error!(error = %e, "accepting a connection failed (logged at most every 10 s)");
    }
}
