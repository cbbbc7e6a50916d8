//! Config goldens and API tests.
//!
//! `tests/fixtures/config/valid/*.yaml` must load; their `summary()` is compared with `*.summary`.
//! `tests/fixtures/config/invalid/*.yaml` must fail; the rendered diagnostics are compared with
//! `*.stderr`. `BLESS=1 cargo test --test it config` rewrites the expected files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::config::{self, load_file, load_str, Config, Transport};

/// The environment every fixture is loaded with.
fn fixture_env(name: &str) -> Option<String> {
    let v = match name {
        "OKTA_ISSUER" => "https://example.okta.com/oauth2/default",
        "N8N_URL" => "http://127.0.0.1:5678/mcp/abc",
        "N8N_PROXY_KEY" => "s3cr$t{x}",
        "GITHUB_TOKEN" => "ghp_example_token",
        "PORTCULLIS_SESSION_KEY" => "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "PORT" => "9090",
        "EMPTY" => "",
        _ => return None,
    };
    Some(v.to_owned())
}

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load_fixture(path: &Path) -> Result<Config, config::Diagnostics> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    load_str(&text, &name, &fixture_env)
}

/// Compares (or, with `BLESS=1`, writes) `expected_ext` files next to every yaml file of `kind`.
fn check_goldens(kind: &str, expected_ext: &str, render: impl Fn(&Path) -> String) -> usize {
    let bless = std::env::var_os("BLESS").is_some();
    let files = yaml_files(&fixtures(kind));
    let mut failures = Vec::new();
    for yaml in &files {
        let actual = render(yaml);
        let expected_path = yaml.with_extension(expected_ext);
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\n--- expected:\n{expected}\n--- actual:\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es) (BLESS=1 to update):\n{}",
        failures.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn valid_configs_match_their_summaries() {
    let n = check_goldens("valid", "summary", |yaml| match load_fixture(yaml) {
        Ok(rt) => rt.summary(),
        Err(d) => panic!("{} should load:\n{d}", yaml.display()),
    });
    assert!(n >= 4, "expected at least 4 valid fixtures, found {n}");
}

#[test]
fn invalid_configs_match_their_diagnostics() {
    let n = check_goldens("invalid", "stderr", |yaml| match load_fixture(yaml) {
        Ok(_) => panic!("{} should not load", yaml.display()),
        Err(d) => format!("{d}\n"),
    });
    assert!(n >= 16, "expected at least 16 invalid fixtures, found {n}");
}

#[test]
fn several_errors_are_reported_together() {
    let err = load_fixture(&fixtures("invalid").join("several_errors.yaml")).unwrap_err();
    assert!(err.len() >= 3, "{err}");
}

#[test]
fn seed_config_means_the_same_thing() {
    let rt = load_fixture(&fixtures("valid").join("seed004_full.yaml")).unwrap();
    assert!(rt.oauth.enabled);
    assert_eq!(rt.oauth.provider, config::Provider::Okta);
    assert_eq!(
        rt.oauth.authorization_servers[0].as_str(),
        "https://example.okta.com/oauth2/default"
    );
    assert_eq!(rt.auth.claims, vec!["groups"]);
    assert_eq!(
        rt.auth.mappings[0],
        ("groups:Admin".to_string(), vec!["scope:admin".to_string()])
    );
    let p = &rt.auth.permissions[0];
    assert_eq!(
        (p.server.as_str(), p.name.as_str(), p.source.as_str()),
        ("n8n", "*", "n8n:*")
    );
    assert_eq!(rt.auth.scope_mode, config::ScopeMode::Any);
    assert_eq!(rt.auth.default_scope, None);
    let n8n = rt.proxy.server("n8n").unwrap();
    assert_eq!(n8n.timeout, Duration::from_secs(30));
    let Transport::StreamableHttp(t) = &n8n.transport else {
        panic!("transport")
    };
    assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 5678, false));
    assert_eq!(t.address, "127.0.0.1:5678");
    assert_eq!(t.path_and_query, "/mcp/abc");
    assert_eq!(t.host_header, "127.0.0.1:5678");
    // The secret contains `$`, `{` and `}` and survives intact.
    let (name, value) = &n8n.inject_headers[0];
    assert_eq!(name.as_str(), "x-n8n-key");
    assert_eq!(value.to_str().unwrap(), "s3cr$t{x}");
    assert!(value.is_sensitive());
    assert!(rt.proxy.server("missing").is_none());
    assert_eq!(rt.server.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn substitution_keeps_special_characters_and_dollars() {
    let rt = load_fixture(&fixtures("valid").join("env_defaults.yaml")).unwrap();
    let Transport::Stdio(c) = &rt.proxy.server("tools").unwrap().transport else {
        panic!("transport")
    };
    assert_eq!(
        c.args,
        [
            "--price",
            "$5",
            "--empty=fallback",
            "--key=s3cr$t{x}",
            "--keep=$HOME"
        ]
    );
    assert_eq!(rt.server.grace_period, Duration::from_secs(45));
    assert_eq!(c.command, "/usr/local/bin/tools");
}

#[test]
fn list_indices_survive_removed_entries() {
    // The first entry is reported and removed; the second keeps its index in the error path.
    let text = "oauth:\n  authorization_servers: [\"${NOPE}\", \"http://idp.example.com\"]\nproxy:\n  servers: []\n";
    let err = load_str(text, "l.yaml", &fixture_env).unwrap_err();
    let paths: Vec<&str> = err.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "oauth.authorization_servers[0]",
            "oauth.authorization_servers[1]"
        ]
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let rt = load_fixture(&fixtures("valid").join("full.yaml")).unwrap();
    let debug = format!("{rt:?}");
    for secret in [
        "s3cr$t{x}",
        "ghp_example_token",
        "AAECAwQF",
        "stdio-secret-value",
        "query-token",
    ] {
        assert!(!debug.contains(secret), "`{secret}` leaked in Debug output");
    }
    assert!(rt.proxy.session_key.is_some());
    assert!(!rt.summary().contains("s3cr$t"));
}

#[test]
fn startup_only_changes_are_named() {
    let base = "proxy:\n  servers:\n    - {name: a, type: stdio, connection: {command: cat}}\n";
    let a = load_str(base, "a.yaml", &fixture_env).unwrap();
    let b = load_str(
        &format!("{base}server:\n  listen: 127.0.0.1:9999\n  threads: 4\n  max_body_bytes: 1MiB\n"),
        "b.yaml",
        &fixture_env,
    )
    .unwrap();
    assert_eq!(
        a.startup_only_changes(&b),
        vec!["server.listen", "server.threads"]
    );
    assert!(a.startup_only_changes(&a).is_empty());
    assert_eq!(b.server.max_body_bytes, 1 << 20);
}

#[test]
fn source_info_hashes_the_text_before_substitution() {
    let text =
        "proxy:\n  servers:\n    - {name: a, type: stdio, connection: {command: \"${PORT}\"}}\n";
    let rt = load_str(text, "h.yaml", &fixture_env).unwrap();
    assert_eq!(rt.source.file, "h.yaml");
    assert_eq!(rt.source.hash.len(), 64);
    let other = load_str(text, "h.yaml", &|_| Some("other".into())).unwrap();
    assert_eq!(rt.source.hash, other.source.hash);
}

#[test]
fn scalars_are_typed_by_their_field() {
    let text = "server:\n  listen: \"127.0.0.1:${PORT}\"\n  threads: ${THREADS:-3}\n  max_body_bytes: \"65536\"\n  grace_period: 90\nproxy:\n  servers: []\n";
    let rt = load_str(text, "t.yaml", &fixture_env).unwrap();
    assert_eq!(rt.server.listen.port(), 9090);
    assert_eq!(rt.server.threads, 3);
    assert_eq!(rt.server.max_body_bytes, 65536);
    assert_eq!(rt.server.grace_period, Duration::from_secs(90));
}

#[test]
fn unreadable_file_is_one_diagnostic_without_position() {
    let err = load_file(Path::new("/nonexistent/portcullis/gateway.yaml")).unwrap_err();
    assert_eq!(err.len(), 1);
    let d = &err.0[0];
    assert_eq!((d.line, d.column), (0, 0));
    assert!(err
        .to_string()
        .starts_with("error: cannot read the config file"));
}

#[test]
fn load_file_reads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        "proxy:\n  servers:\n    - {name: a, type: stdio, connection: {command: cat}}\n",
    )
    .unwrap();
    let rt = load_file(&path).unwrap();
    assert_eq!(rt.source.file, path.display().to_string());
    assert_eq!(rt.proxy.servers.len(), 1);
}
