//! The binary's conveniences: `--version` with the commit, `check --format json`, shell
//! completions, and `probe` (the image's health check) against a live gateway.

use std::process::Command;

use serde_json::Value;

use crate::common::{config_for, Gateway, Upstream};

fn portcullis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap()
}

fn fixture(path: &str) -> String {
    format!(
        "{}/tests/fixtures/config/{path}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn version_names_the_commit() {
    let out = portcullis(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = text
        .trim()
        .strip_prefix(concat!(
            "portcullis ",
            env!("CARGO_PKG_VERSION"),
            " (commit "
        ))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    // A checkout builds with its commit; an image build passes PORTCULLIS_COMMIT.
    assert!(
        commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
}

#[test]
fn check_speaks_json_for_good_and_bad_files() {
    let out = portcullis(&[
        "check",
        "--format",
        "json",
        "-c",
        &fixture("valid/full.yaml"),
    ]);
    // full.yaml needs OKTA_ISSUER; without it the report lists that error.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], Value::Bool(out.status.success()));
    let out = portcullis(&[
        "check",
        "--format",
        "json",
        "-c",
        &fixture("invalid/bad_admin.yaml"),
    ]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{v}");
    assert_eq!(errors[0]["path"], "server.admin_listen");
    assert_eq!(errors[0]["line"], 3);
    assert_eq!(errors[0]["column"], 17);
    assert!(errors[0]["hint"]
        .as_str()
        .unwrap()
        .contains("port of its own"));
    let out = portcullis(&[
        "check",
        "--format",
        "json",
        "-c",
        concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml"),
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["errors"].as_array().unwrap().len()),
        (Value::Bool(true), 0)
    );
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = portcullis(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("portcullis") && text.contains("explain"),
            "{shell}"
        );
    }
}

#[tokio::test]
async fn probe_is_0_on_2xx_and_1_otherwise() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config_for(up.addr, "", "")).await;
    let probe = |url: String| async move {
        tokio::task::spawn_blocking(move || portcullis(&["probe", &url, "--timeout", "2s"]))
            .await
            .unwrap()
    };
    let ok = probe(gw.url("/live")).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("200"));
    let missing = probe(gw.url("/nothing")).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        probe(format!("http://{addr}/live")).await
    };
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        probe("https://127.0.0.1/live".into()).await.status.code(),
        Some(1)
    );
}

#[test]
fn the_committed_schema_is_what_the_binary_prints() {
    let out = portcullis(&["schema"]);
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gateway.schema.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        printed, committed,
        "docs/gateway.schema.json is stale: run `portcullis schema > docs/gateway.schema.json`"
    );
    // Unknown keys are refused, as the loader refuses them; the sections are the loader's.
    assert_eq!(printed["additionalProperties"], false);
    let sections: Vec<&str> = printed["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        sections,
        [
            "server",
            "oauth",
            "auth",
            "proxy",
            "rate_limits",
            "telemetry"
        ]
    );
    let server = &printed["$defs"]["RawServer"]["properties"];
    for key in [
        "admin_listen",
        "admin_scope",
        "metrics_auth",
        "fast_path",
        "grace_period",
    ] {
        assert!(server.get(key).is_some(), "{key}");
    }
}

/// A listen address already in use is a startup error naming the address and the key, and the
/// process exits (it never half-starts without its listener).
#[test]
fn serve_names_a_listen_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        format!("server:\n  listen: \"{addr}\"\noauth:\n  enabled: false\nproxy:\n  servers: []\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway kept running without its listener");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!("cannot listen on {addr} (server.listen)")),
        "{text}"
    );
    drop(taken);
}

/// A soft open-file limit too low for `server.max_connections` is raised at startup (up to the
/// hard limit), so accepts do not fail with "too many open files" long before the cap.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_a_low_open_file_limit() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\n  max_connections: 1000\n  grace_period: 1s\noauth:\n  enabled: false\nproxy:\n  servers: []\n"
        ),
    )
    .unwrap();
    // The hard limit stays; the soft one starts at 256.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {} serve --config {}",
            env!("CARGO_BIN_EXE_portcullis"),
            path.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let soft = |pid: u32| -> Option<u64> {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    };
    let hard: u64 = {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        line.split_whitespace().nth(4).unwrap().parse().unwrap()
    };
    // 2 x 1000 + 1024, or the hard limit when that is lower.
    let want = 3024.min(hard);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        seen = soft(pid);
        if seen == Some(want) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, Some(want), "the soft open-file limit was not raised");
}
