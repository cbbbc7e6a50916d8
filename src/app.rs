//! Assembles the gateway, one way for production and tests alike ([`assemble`]): the store of
//! snapshots, the token verifier, the listener's application (the front door before Pingora's
//! proxy), and the background services (config watcher, upstream prober, signing-key
//! refresher, the shutdown of shared-session upstreams). [`build`] puts them on a Pingora
//! server; [`Embedded`] runs them on the current tokio runtime, on a listener bound by the
//! caller (in-process tests bind port 0).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};

use crate::auth::{Authn, JwksRefresher};
use crate::config::Config;
use crate::gateway::{Gateway, Listener};
use crate::http::front::{listen, Front};
use crate::http::pingora::PingoraPath;
use crate::state::probe::{Health, Prober};
use crate::state::watcher::{Watcher, DEFAULT_DEBOUNCE};
use crate::state::Store;

/// Interval between upstream reachability probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Refuse configurations this build cannot serve (compile already checks most of it).
pub fn check_servable(rt: &Config) -> anyhow::Result<()> {
    if rt.oauth.enabled && rt.oauth.authorization_servers.is_empty() && rt.oauth.jwks_uri.is_none()
    {
        bail!("oauth.enabled needs `authorization_servers` or `jwks_uri`");
    }
    Ok(())
}

/// A background service shared between the server and its caller.
#[derive(Clone)]
pub struct Background(Arc<dyn BackgroundService + Send + Sync>);

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.start(shutdown).await;
    }
}

/// The assembled gateway, not yet serving.
pub struct Parts {
    /// The listener's application.
    pub front: Arc<Front>,
    /// The admin listener's application and address (`server.admin_listen`).
    pub admin: Option<(Arc<Front>, SocketAddr)>,
    /// The live snapshot and its reloads.
    pub store: Arc<Store>,
    /// Token verification and upstream health (what decisions use beyond the snapshot).
    pub gateway: Arc<Gateway>,
    /// Background services, by name.
    pub services: Vec<(&'static str, Background)>,
    /// Where the config says to listen.
    pub listen: SocketAddr,
    /// The main listener's certificate (`server.tls`), reloaded by a background service.
    pub tls: Option<Arc<crate::tls::ServerCerts>>,
}

/// Tunables of [`assemble`] that are not in the config file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Quiet time after the last file event before the config is reloaded.
    pub watch_debounce: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            watch_debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Assemble the gateway for `config` (already loaded from `path`); `conf` is Pingora's server
/// configuration (threads, grace period), which the proxy reads.
pub fn assemble(
    path: &Path,
    config: Config,
    conf: &Arc<ServerConf>,
    options: Options,
) -> anyhow::Result<Parts> {
    check_servable(&config)?;
    let listen = config.server.listen;
    let admin_listen = config.server.admin_listen;
    let grace = config.server.grace_period;
    let tls = match &config.server.tls {
        Some(t) => Some((
            crate::tls::ServerCerts::load(&t.cert_file, &t.key_file)
                .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?,
            t.reload_interval,
        )),
        None => None,
    };
    let authn = Authn::from_config(&config).context("cannot set up token verification")?;
    let store = Store::new(path, config);
    let health = Arc::new(Health::default());
    let streams = Arc::new(crate::gateway::streams::Streams::default());
    let gateway = Arc::new(Gateway {
        authn: authn.clone(),
        health: health.clone(),
        listener: Listener::Main,
        streams: streams.clone(),
    });
    let front = front_for(conf, &store, gateway.clone());
    let admin = admin_listen.map(|addr| {
        let gateway = Arc::new(Gateway {
            authn: authn.clone(),
            health: health.clone(),
            listener: Listener::Admin,
            streams,
        });
        (front_for(conf, &store, gateway), addr)
    });

    let mut services: Vec<(&'static str, Background)> = vec![
        (
            "upstream processes",
            Background(Arc::new(crate::upstream::registry::Shutdown {
                registry: store.registry().clone(),
                grace,
            })),
        ),
        (
            "config watcher",
            Background(Arc::new(Watcher::new(
                store.clone(),
                options.watch_debounce,
            ))),
        ),
        (
            "rate-limit buckets",
            Background(Arc::new(crate::state::sweeper::Sweeper {
                store: store.clone(),
                interval: crate::state::sweeper::SWEEP_INTERVAL,
            })),
        ),
        (
            "upstream health",
            Background(Arc::new(Prober {
                health,
                store: store.clone(),
                interval: PROBE_INTERVAL,
            })),
        ),
    ];
    if let Some((certs, interval)) = &tls {
        services.push((
            "TLS certificate",
            Background(Arc::new(crate::tls::CertWatcher {
                certs: certs.clone(),
                interval: *interval,
            })),
        ));
    }
    if let Some(authn) = authn {
        services.push((
            "signing keys",
            Background(Arc::new(JwksRefresher {
                jwks: authn.jwks.clone(),
                interval: authn.refresh,
                retry: Duration::from_secs(5),
            })),
        ));
    }
    Ok(Parts {
        front,
        admin,
        store,
        gateway,
        services,
        listen,
        tls: tls.map(|(certs, _)| certs),
    })
}

/// A listener's application deciding with `gateway`: the front door before Pingora's proxy.
fn front_for(conf: &Arc<ServerConf>, store: &Arc<Store>, gateway: Arc<Gateway>) -> Arc<Front> {
    let mut proxy =
        pingora_proxy::http_proxy(conf, PingoraPath::new(store.clone(), gateway.clone()));
    let mut opts = HttpServerOptions::default();
    opts.h2c = true; // HTTP/2 with prior knowledge on cleartext listeners.
                     // An HTTP/2 connection with no stream open for this long is closed, as an idle HTTP/1.1
                     // keep-alive connection is.
    opts.h2_idle_timeout = Some(crate::http::front::KEEPALIVE);
    proxy.server_options = Some(opts);
    Arc::new(Front::new(proxy, store.clone(), gateway))
}

/// Build the whole Pingora server for `config` (already loaded from `path`).
pub fn build(path: &Path, config: Config) -> anyhow::Result<Server> {
    for w in &config.warnings {
        tracing::warn!("{}", w.render_as_warning());
    }
    if !config.oauth.enabled {
        tracing::warn!(listen = %config.server.listen, "authentication is disabled (oauth.enabled: false); serving on a loopback listener only");
    }
    let conf = ServerConf {
        threads: config.server.threads.max(1),
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.grace_period.as_secs().max(1)),
        pid_file: format!("/tmp/portcullis-{}.pid", config.server.listen.port()),
        upgrade_sock: format!(
            "/tmp/portcullis-{}-upgrade.sock",
            config.server.listen.port()
        ),
        // One current-thread runtime per thread: fewer cross-thread wakeups on the hot path.
        work_stealing: false,
        ..ServerConf::default()
    };
    let grace = config.server.grace_period;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let parts = assemble(path, config, &server.configuration, Options::default())?;
    listen::raise_open_files(parts.store.peek(|s| s.config.server.max_connections));
    // The listeners are bound here, so an address in use is a startup error with its name.
    let main = listen::bind(parts.listen)
        .with_context(|| format!("cannot listen on {} (server.listen)", parts.listen))?;
    let tls = parts
        .tls
        .as_ref()
        .map(|c| Arc::new(Acceptor::from_server_config(Arc::new(c.server_config()))));
    server.add_service(listen::Listening::new(
        "portcullis proxy",
        parts.front,
        main,
        tls,
    ));
    if let Some((front, addr)) = parts.admin {
        let socket = listen::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (server.admin_listen)"))?;
        server.add_service(listen::Listening::new(
            "portcullis admin",
            front,
            socket,
            None,
        ));
        tracing::info!(listen = %addr, "admin endpoints on their own listener");
    }
    for (name, svc) in parts.services {
        server.add_service(background_service(name, svc));
    }
    server.add_service(background_service(
        "drain on shutdown",
        Drain {
            store: parts.store.clone(),
            grace,
        },
    ));
    tracing::info!(listen = %parts.listen, tls = parts.tls.is_some(), "portcullis listening");
    Ok(server)
}

/// Ends the process once a graceful shutdown (SIGTERM) has drained, instead of sleeping out
/// Pingora's whole grace period: Pingora stops accepting and tells every service; this waits
/// until no request is being served (SSE streams included; at most `grace`), then until the
/// stdio and legacy SSE upstreams have stopped (their children reaped; at most what is left of
/// `grace`, at least 1 s), and exits with status 0. An idle gateway exits within a few hundred
/// milliseconds. Production only: in-process tests never exit their test process.
struct Drain {
    store: Arc<Store>,
    grace: Duration,
}

/// How long the gateway must stay idle before it exits: covers a connection accepted just
/// before the shutdown whose request head is still being read.
const SETTLE: Duration = Duration::from_millis(100);

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + self.grace;
        // `subscriptions/listen` streams end now, each with its closing result.
        self.store.retire_live();
        let busy = crate::gateway::observe::in_flight();
        tracing::info!(in_flight = busy, grace = ?self.grace, "shutting down: draining the requests in flight");
        let drained = tokio::time::timeout_at(deadline, idle_for(SETTLE)).await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = crate::gateway::observe::in_flight(),
                "the grace period is over; exiting with requests in flight"
            );
        }
        // Also what a reload racing the shutdown may have started.
        self.store.registry().retire_all(self.grace);
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_secs(1));
        if tokio::time::timeout(left, self.store.registry().until_stopped())
            .await
            .is_err()
        {
            tracing::warn!("stdio / legacy SSE upstreams did not stop in time");
        }
        // A request that began meanwhile (its head was still being read) gets its answer.
        if crate::gateway::observe::in_flight() > 0 {
            let _ = tokio::time::timeout_at(deadline, idle_for(SETTLE)).await;
        }
        tracing::info!(
            after_ms = started.elapsed().as_millis() as u64,
            "drained; exiting"
        );
        // Spans still buffered for export go out first (bounded by the exporter's timeout).
        crate::telemetry::otel::flush();
        std::process::exit(0);
    }
}

/// Returns once no request has been in flight for `settle`.
async fn idle_for(settle: Duration) {
    loop {
        crate::gateway::observe::until_idle().await;
        tokio::time::sleep(settle).await;
        if crate::gateway::observe::in_flight() == 0 {
            return;
        }
    }
}

/// Load `path` and run the gateway until it is told to stop.
pub fn serve(path: &Path) -> anyhow::Result<()> {
    let config = crate::config::load_file(path)
        .map_err(|d| anyhow::anyhow!("{d}"))
        .with_context(|| format!("cannot start with {}", path.display()))?;
    let server = build(path, config)?;
    server.run_forever()
}

/// The gateway running on the current tokio runtime: its background services started, its
/// listener served, until [`Embedded::stop`] or drop.
pub struct Embedded {
    /// The assembled gateway.
    pub parts: Parts,
    /// Where it serves.
    pub addr: SocketAddr,
    /// Where the admin listener serves, if configured (bound here; port 0 allowed).
    pub admin_addr: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Embedded {
    /// Assemble the gateway for the config file at `path` (as [`build`] does), start its
    /// background services, and serve on `listener`.
    pub async fn start(
        path: &Path,
        listener: tokio::net::TcpListener,
        options: Options,
    ) -> anyhow::Result<Self> {
        let config = crate::config::load_file(path).map_err(|d| anyhow::anyhow!("{d}"))?;
        let conf = Arc::new(ServerConf::default());
        let parts = assemble(path, config, &conf, options)?;
        let (stop, watch) = tokio::sync::watch::channel(false);
        for (_, svc) in &parts.services {
            let svc = svc.clone();
            let watch = watch.clone();
            tokio::spawn(async move { svc.start(watch).await });
        }
        let addr = listener.local_addr()?;
        let admin_addr = match &parts.admin {
            Some((front, at)) => {
                let admin = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot bind the admin listener {at}"))?;
                let bound = admin.local_addr()?;
                tokio::spawn(listen::serve(front.clone(), admin, None, watch.clone()));
                Some(bound)
            }
            None => None,
        };
        let tls = parts
            .tls
            .as_ref()
            .map(|c| Arc::new(Acceptor::from_server_config(Arc::new(c.server_config()))));
        tokio::spawn(listen::serve(parts.front.clone(), listener, tls, watch));
        Ok(Embedded {
            parts,
            addr,
            admin_addr,
            stop,
        })
    }

    /// Stop serving and stop the background services.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}
