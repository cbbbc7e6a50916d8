//! stdio and legacy SSE upstreams end to end: the real `server-everything` run by the gateway
//! as a stdio child, the same server in its legacy HTTP+SSE mode (`type: sse`), and a
//! Streamable HTTP entry pointed at that legacy server with `fallback_sse: true`, each driven
//! through `/mcp/{server}` by the official Python SDK (initialize, list, echo, a progress
//! stream, a sampling round trip, resources, parallel calls, DELETE). Then the bad cases with
//! the real server: SIGKILL mid-call, and a reload that removes the stdio server.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    free_port, gateway_command, run_bounded, start_gateway, wait_tcp, Peers, Proc,
};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/py/client.py");

/// The gateway with three upstreams backed by server-everything: stdio, legacy SSE, fallback.
struct Upstreams {
    peers: Peers,
    client: reqwest::Client,
    base: String,
    config: std::path::PathBuf,
    yaml: String,
    gateway: Proc,
    _sse: Proc,
    dir: tempfile::TempDir,
}

impl Upstreams {
    async fn start() -> Self {
        let peers = Peers::locate();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-up-")
            .tempdir()
            .unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let sse_port = free_port();
        let mut cmd = Command::new(peers.node());
        cmd.arg(peers.everything_js())
            .arg("sse")
            .env("PORT", sse_port.to_string());
        let mut sse = Proc::spawn("server-everything-sse", cmd, dir.path());
        wait_tcp(&mut sse, sse_port).await;

        let port = free_port();
        let yaml = format!(
            r#"server:
  listen: "127.0.0.1:{port}"
  grace_period: 5s
oauth:
  enabled: false
proxy:
  servers:
    - name: stdio
      type: stdio
      connection:
        command: "{node}"
        args: ["{js}", "stdio"]
        timeout: 60s
    - name: legacy
      type: sse
      connection:
        url: "http://127.0.0.1:{sse_port}/sse"
        timeout: 60s
    - name: fallback
      type: streamable-http
      connection:
        url: "http://127.0.0.1:{sse_port}/sse"
        fallback_sse: true
        timeout: 60s
"#,
            node = peers.node().display(),
            js = peers.everything_js().display(),
        );
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, &yaml).unwrap();
        let (gateway, base) =
            start_gateway(gateway_command(&config), port, &client, dir.path()).await;
        Upstreams {
            peers,
            client,
            base,
            config,
            yaml,
            gateway,
            _sse: sse,
            dir,
        }
    }

    async fn python(&self, server: &str) -> Value {
        let mut cmd = Command::new(self.peers.python());
        cmd.arg(CLIENT)
            .arg(format!("{}/mcp/{server}", self.base))
            .args(["--steps", "4", "--duration", "2"])
            .args(["--sampling", "--resources", "--parallel", "8"])
            .env("PYTHONUNBUFFERED", "1");
        let out = run_bounded(
            "python-client",
            cmd,
            self.dir.path(),
            Duration::from_secs(120),
        )
        .await;
        out.assert_success(&format!("python SDK client via /mcp/{server}"));
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {}", out.stdout))
    }

    async fn status(&self) -> Value {
        self.client
            .get(format!("{}/status", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `/status` until `server` is ready; its pid.
    async fn wait_ready(&self, server: &str) -> u64 {
        for _ in 0..600 {
            let p = self.process(server).await;
            if p["phase"] == "ready" {
                return p["pid"].as_u64().unwrap_or(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{server} never became ready: {}", self.status().await);
    }

    async fn process(&self, server: &str) -> Value {
        let st = self.status().await;
        st["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == server)
            .map(|u| u["process"].clone())
            .unwrap_or(Value::Null)
    }
}

/// Everything a real client does, through one upstream kind.
fn assert_full_session(server: &str, r: &Value) {
    let tools: Vec<&str> = r["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "echo",
        "trigger-long-running-operation",
        "trigger-sampling-request",
    ] {
        assert!(tools.contains(&t), "{server}: {t} missing from {tools:?}");
    }
    assert_eq!(r["echo"]["text"][0], "Echo: hi", "{server}: {r}");
    // Progress arrives event by event, spaced in time, before the result (not buffered).
    let progress = r["progress"].as_array().unwrap();
    assert_eq!(progress.len(), 4, "{server}: {r}");
    let times: Vec<f64> = progress.iter().map(|p| p["t"].as_f64().unwrap()).collect();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] > 0.2,
            "{server}: progress not spaced: {times:?}"
        );
    }
    assert!(
        r["long_running"]["t"].as_f64().unwrap() >= times[3],
        "{server}: result before the last progress: {r}"
    );
    // Sampling: the server asked this client, and got its answer back.
    let sampling = &r["sampling"];
    assert_eq!(sampling["is_error"], false, "{server}: {sampling}");
    assert_eq!(
        sampling["requests"].as_array().unwrap().len(),
        1,
        "{server}: {sampling}"
    );
    assert!(
        sampling["result_text"][0]
            .as_str()
            .unwrap()
            .contains("portcullis-e2e"),
        "{server}: {sampling}"
    );
    assert_eq!(r["resources"]["read_ok"], true, "{server}: {r}");
    assert!(r["prompts"].as_array().unwrap().len() >= 3, "{server}: {r}");
    let parallel = r["parallel"].as_array().unwrap();
    assert_eq!(parallel.len(), 8);
    assert!(
        parallel.iter().all(|b| b == true),
        "{server}: crossed answers: {r}"
    );
    assert_eq!(r["closed"], true, "{server}: {r}");
}

#[tokio::test]
async fn python_sdk_through_stdio_legacy_sse_and_fallback() {
    let mut up = Upstreams::start().await;
    for server in ["stdio", "legacy", "fallback"] {
        let r = up.python(server).await;
        assert_full_session(server, &r);
    }
    // The fallback engaged, and every upstream stayed up.
    let status = up.status().await;
    for u in status["upstreams"].as_array().unwrap() {
        assert_eq!(u["process"]["restarts"], 0, "{status}");
    }
    assert_eq!(up.process("fallback").await["phase"], "ready");
    up.gateway.assert_running();
}

#[tokio::test]
async fn stdio_child_killed_mid_call_then_removed_by_reload() {
    let mut up = Upstreams::start().await;
    let url = format!("{}/mcp/stdio", up.base);
    let pid = up.wait_ready("stdio").await;
    let call = serde_json::json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{
        "name":"trigger-long-running-operation","arguments":{"duration":10,"steps":10},
        "_meta":{"progressToken":"k"}}});
    let mut resp = up
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = Vec::new();
    while let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
        .await
        .unwrap()
    {
        rest.extend_from_slice(&c);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("\"id\":42") && rest.contains("-32000") && rest.contains("`stdio`"),
        "{rest}"
    );
    // It comes back, with a new process, and the next call works.
    let mut new_pid = Value::Null;
    for _ in 0..200 {
        let p = up.process("stdio").await;
        if p["phase"] == "ready" && p["pid"] != pid {
            new_pid = p["pid"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_pid = new_pid.as_u64().expect("restarted");
    let r = up.python("stdio").await;
    assert_eq!(r["echo"]["text"][0], "Echo: hi");
    // A reload that removes the server leaves no child process.
    let without = up
        .yaml
        .split("    - name: legacy")
        .next()
        .unwrap()
        .split("    - name: stdio")
        .next()
        .unwrap()
        .to_string()
        + &format!(
            "    - name: legacy{}",
            up.yaml.split("    - name: legacy").nth(1).unwrap()
        );
    std::fs::write(&up.config, without).unwrap();
    let mut gone = false;
    for _ in 0..300 {
        let st = up.status().await;
        let listed = st["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "stdio");
        if !listed && !std::path::Path::new(&format!("/proc/{new_pid}")).exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the removed stdio child {new_pid} is still there");
    let r = up
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    up.gateway.assert_running();
}

/// The README's run command: the repository's own `gateway.yaml` (server-everything over stdio
/// through `npx`, auth off on loopback), only the listen address moved to a free port.
#[tokio::test]
async fn the_default_gateway_yaml_serves_everything_over_stdio() {
    let peers = Peers::locate();
    let dir = tempfile::Builder::new()
        .prefix("portcullis-e2e-default-")
        .tempdir()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let port = free_port();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml");
    let mut cmd = gateway_command(std::path::Path::new(config));
    cmd.env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        // npx from the pinned Node (a fresh machine has its own on PATH).
        .env("PATH", peers.path_env());
    let (mut gateway, base) = start_gateway(cmd, port, &client, dir.path()).await;
    let mut cmd = Command::new(peers.python());
    cmd.arg(CLIENT)
        .arg(format!("{base}/mcp/everything"))
        .args(["--steps", "2", "--duration", "1"])
        .env("PYTHONUNBUFFERED", "1");
    let out = run_bounded("python-client", cmd, dir.path(), Duration::from_secs(120)).await;
    out.assert_success("python SDK client via the default gateway.yaml");
    let r: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["echo"]["text"][0], "Echo: hi", "{r}");
    assert_eq!(r["progress"].as_array().unwrap().len(), 2, "{r}");
    assert!(gateway.log().contains("authentication is disabled"));
    gateway.assert_running();
}

/// The Inspector CLI, a second real client, through the stdio and the legacy SSE upstreams.
#[tokio::test]
async fn inspector_cli_through_stdio_and_legacy_sse() {
    let mut up = Upstreams::start().await;
    let home = up.dir.path().join("inspector-home");
    std::fs::create_dir_all(&home).unwrap();
    for server in ["stdio", "legacy"] {
        let url = format!("{}/mcp/{server}", up.base);
        let run = |name: &str, args: &[&str]| {
            let mut cmd = Command::new(up.peers.inspector());
            cmd.arg("--cli")
                .arg(&url)
                .args(["--transport", "http"])
                .args(args)
                .env("HOME", &home)
                .env("PATH", up.peers.path_env());
            let name = format!("inspector-{server}-{name}");
            let dir = up.dir.path().to_path_buf();
            async move {
                let out = run_bounded(&name, cmd, &dir, Duration::from_secs(60)).await;
                out.assert_success(&name);
                serde_json::from_str::<Value>(&out.stdout)
                    .unwrap_or_else(|e| panic!("{name} output is not JSON ({e}): {}", out.stdout))
            }
        };
        let listed = run("list", &["--method", "tools/list"]).await;
        let names: Vec<&str> = listed["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{server}: no tools: {listed}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"echo"), "{server}: {names:?}");
        let called = run(
            "call",
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "get-sum",
                "--tool-arg",
                "a=2",
                "--tool-arg",
                "b=3",
            ],
        )
        .await;
        assert_ne!(called["isError"], true, "{server}: {called}");
        let text = called["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains('5'), "{server}: {called}");
    }
    up.gateway.assert_running();
}
