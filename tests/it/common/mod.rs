//! Test fixtures: the gateway in-process on port 0, a scriptable upstream on port 0, clients.
//!
//! Readiness is structural: both listeners are bound before anything connects, so no test
//! waits or sleeps for a server to come up.

pub mod jwt;
pub mod raw;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis::app::{Embedded, Options};
use portcullis::state::probe::Health;
use portcullis::state::Store;

pub use upstream::Upstream;

/// A gateway serving on 127.0.0.1:0 from a config file in a temp dir, assembled by the same
/// builder as production (`app::assemble`: watcher, prober, key refresher, registry included).
pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener (`server.admin_listen`), if configured.
    pub admin: Option<SocketAddr>,
    pub store: Arc<Store>,
    pub health: Arc<Health>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The running gateway (its front door tells which path served each request).
    pub embedded: Embedded,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Reloads follow file changes quickly in tests (production debounces 250 ms).
        let options = Options {
            watch_debounce: Duration::from_millis(10),
        };
        let embedded = match Embedded::start(&config_path, listener, options).await {
            Ok(e) => e,
            Err(e) => panic!("test gateway does not start:\n{e:#}"),
        };
        if let Some(authn) = &embedded.parts.gateway.authn {
            // The key refresher loads the signing keys at start; wait for it (bounded).
            tokio::time::timeout(Duration::from_secs(10), authn.jwks.wait_ready())
                .await
                .expect("signing keys load");
        }
        Gateway {
            addr: embedded.addr,
            admin: embedded.admin_addr,
            store: embedded.parts.store.clone(),
            health: embedded.parts.gateway.health.clone(),
            dir,
            config_path,
            embedded,
        }
    }

    /// Requests served so far (front door, Pingora's proxy).
    pub fn served(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.embedded.parts.front.served();
        (s.hot.load(Relaxed), s.pingora.load(Relaxed))
    }

    /// Write `content` as the config file and wait (bounded) until the gateway's watcher has
    /// applied it.
    pub async fn apply(&self, content: &str) {
        let mut rx = self.store.subscribe();
        std::fs::write(&self.config_path, content).unwrap();
        let want = sha256(content.as_bytes());
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.store.load().config.source.hash != want {
                rx.changed().await.unwrap();
            }
        })
        .await
        .expect("the watcher did not apply the new config in time");
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `path` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("an admin listener"), path)
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
