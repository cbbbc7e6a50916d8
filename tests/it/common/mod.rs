//! Test fixtures: the gateway in-process on port 0, a scriptable upstream on port 0, clients.
//!
//! Readiness is structural: both listeners are bound before anything connects, so no test
//! waits or sleeps for a server to come up.

pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pingora_core::server::configuration::ServerConf;
use portcullis::reload::Snapshot;
use portcullis::upstream::health::Health;
use tokio::sync::watch;

pub use upstream::Upstream;

/// A gateway serving on 127.0.0.1:0 from a config file in a temp dir.
pub struct Gateway {
    pub addr: SocketAddr,
    pub snapshot: Arc<Snapshot>,
    pub health: Arc<Health>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The listener's application: tells which path served each request.
    pub front: Arc<portcullis::front::Front>,
    stop: watch::Sender<bool>,
}

impl Gateway {
    /// Start a gateway with `yaml` as its config file.
    pub async fn start(yaml: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        Self::start_at(dir, config_path).await
    }

    /// Start a gateway on an existing config path (e.g. a symlink) inside `dir`.
    pub async fn start_at(dir: tempfile::TempDir, config_path: PathBuf) -> Gateway {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let rt = match portcullis::config::load_file(&config_path) {
            Ok(rt) => rt,
            Err(d) => panic!("test config does not load:\n{d}"),
        };
        let snapshot = Snapshot::new(&config_path, rt);
        let health = Arc::new(Health::default());
        let conf = Arc::new(ServerConf::default());
        let authn = portcullis::proxy::authn::Authn::from_config(&snapshot.load().config).unwrap();
        if let Some(a) = &authn {
            // Load the signing keys before serving (tests use file-based key sets).
            a.jwks.refresh().await;
        }
        let app = Arc::new(portcullis::app::proxy_app(
            &conf,
            snapshot.clone(),
            health.clone(),
            authn,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        tokio::spawn(portcullis::app::serve_listener(app.clone(), listener, rx));
        Gateway {
            addr,
            snapshot,
            health,
            dir,
            config_path,
            front: app,
            stop,
        }
    }

    /// Requests served so far (hot path, Pingora's proxy).
    pub fn served(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.front.served();
        (s.hot.load(Relaxed), s.pingora.load(Relaxed))
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A minimal gateway config with one streamable-http upstream named `up`.
pub fn config_for(upstream: SocketAddr, extra_server: &str, extra_upstream: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:8080"
{extra_server}
oauth:
  enabled: false
proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "http://{upstream}/mcp"
{extra_upstream}
"#
    )
}

/// A reqwest client that never pools across tests and never decompresses.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// A JSON-RPC `tools/call` body of exactly `size` bytes (size >= 80).
pub fn body_of_size(size: usize) -> Vec<u8> {
    let head = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"pad":""#;
    let tail = br#""}}}"#;
    assert!(size >= head.len() + tail.len(), "size too small");
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(head);
    v.resize(size - tail.len(), b'x');
    v.extend_from_slice(tail);
    assert_eq!(v.len(), size);
    v
}

/// POST a JSON-RPC body to `/mcp/up` with MCP's Accept header.
pub fn post(gw: &Gateway, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/mcp/up"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
}

/// Hex sha256.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
