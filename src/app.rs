//! Assembles the Pingora server: the proxy service on the configured listener, the config
//! watcher and the upstream health prober as background services.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;

use crate::auth::jwks::JwksRefresher;
use crate::config::Runtime;
use crate::front::Front;
use crate::proxy::authn::Authn;
use crate::proxy::Gateway;
use crate::reload::watcher::{Watcher, DEFAULT_DEBOUNCE};
use crate::reload::Snapshot;
use crate::upstream::health::{Health, Prober};

/// Interval between upstream reachability probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Refuse configurations this build cannot serve (compile already checks most of it).
pub fn check_servable(rt: &Runtime) -> anyhow::Result<()> {
    if rt.oauth.enabled && rt.oauth.authorization_servers.is_empty() && rt.oauth.jwks_uri.is_none()
    {
        bail!("oauth.enabled needs `authorization_servers` or `jwks_uri`");
    }
    Ok(())
}

/// The listener's application (no listener): the front door ([`Front`]) before Pingora's
/// `HttpProxy` running the [`Gateway`]. Used by `serve` and by in-process tests.
pub fn proxy_app(
    conf: &Arc<ServerConf>,
    snapshot: Arc<Snapshot>,
    health: Arc<Health>,
    authn: Option<Arc<Authn>>,
) -> Front {
    let gateway = Gateway::new(snapshot.clone(), health, authn.clone());
    let mut app = pingora_proxy::http_proxy(conf, gateway);
    let mut opts = HttpServerOptions::default();
    opts.h2c = true; // HTTP/2 with prior knowledge on cleartext listeners.
    app.server_options = Some(opts);
    Front::new(app, snapshot, authn)
}

/// Build the whole server for `config` (already loaded from `path`).
pub fn build(path: &Path, config: Runtime) -> anyhow::Result<Server> {
    check_servable(&config)?;
    for w in &config.warnings {
        tracing::warn!("{}", w.render_as_warning());
    }
    let listen = config.server.listen;
    let config_grace = config.server.grace_period;
    if !config.oauth.enabled {
        tracing::warn!(%listen, "authentication is disabled (oauth.enabled: false); serving on a loopback listener only");
    }
    let authn = Authn::from_config(&config).context("cannot set up token verification")?;
    let mut conf = ServerConf {
        threads: config.server.threads.max(1),
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.grace_period.as_secs().max(1)),
        pid_file: format!("/tmp/portcullis-{}.pid", listen.port()),
        upgrade_sock: format!("/tmp/portcullis-{}-upgrade.sock", listen.port()),
        ..ServerConf::default()
    };
    // One current-thread runtime per thread: fewer cross-thread wakeups on the hot path.
    conf.work_stealing = false;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let snapshot = Snapshot::new(path, config);
    let health = Arc::new(Health::default());
    let app = proxy_app(
        &server.configuration,
        snapshot.clone(),
        health.clone(),
        authn.clone(),
    );
    let mut proxy = Service::new("portcullis proxy".to_string(), app);
    proxy.add_tcp(&listen.to_string());

    let stopper = background_service(
        "upstream processes",
        crate::upstream::registry::Shutdown {
            registry: snapshot.registry().clone(),
            grace: config_grace,
        },
    );
    server.add_service(stopper);
    let watcher = background_service(
        "config watcher",
        Watcher::new(snapshot.clone(), DEFAULT_DEBOUNCE),
    );
    let prober = background_service(
        "upstream health",
        Prober {
            health,
            snapshot,
            interval: PROBE_INTERVAL,
        },
    );
    if let Some(authn) = authn {
        server.add_service(background_service(
            "signing keys",
            JwksRefresher {
                jwks: authn.jwks.clone(),
                interval: Duration::from_secs(300),
                retry: Duration::from_secs(5),
            },
        ));
    }
    server.add_service(proxy);
    server.add_service(watcher);
    server.add_service(prober);
    tracing::info!(%listen, "portcullis listening");
    Ok(server)
}

/// Load `path` and run the gateway until it is told to stop.
pub fn serve(path: &Path) -> anyhow::Result<()> {
    let config = crate::config::load_file(path)
        .map_err(|d| anyhow::anyhow!("{d}"))
        .with_context(|| format!("cannot start with {}", path.display()))?;
    let server = build(path, config)?;
    server.run_forever()
}

/// Serve `app` on an already bound listener until `shutdown` turns true. This is how the
/// gateway is embedded without Pingora's listener (in-process tests bind port 0 this way).
pub async fn serve_listener(
    app: Arc<Front>,
    listener: tokio::net::TcpListener,
    shutdown: pingora_core::server::ShutdownWatch,
) {
    use pingora_core::apps::ServerApp;
    use pingora_core::protocols::l4::stream::Stream;
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut stream: pingora_core::protocols::Stream = Box::new(Stream::from(tcp));
            while let Some(reused) = app.process_new(stream, &shutdown).await {
                stream = reused;
            }
        });
    }
}
