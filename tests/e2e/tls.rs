//! A real `portcullis serve` with `server.tls` (Pingora's TLS listener, rustls) in front of
//! server-everything: the official Python SDK and an HTTP/2 client over HTTPS, and the
//! certificate rotated on disk while it runs (picked up without a restart).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;
use tokio_rustls::rustls;

use crate::harness::{
    free_port, gateway_command, run_bounded, start_peer, wait_http_ok, Peers, Proc, Upstream,
};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/py/client.py");

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn leaf(ca: &rcgen::Certificate, ca_key: &KeyPair, cn: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.signed_by(&key, ca, ca_key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// The certificate a new handshake with `127.0.0.1:port` gets.
async fn presented(port: u16, ca_der: &[u8]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn https_listener_with_http2_the_python_sdk_and_a_rotated_certificate() {
    let peers = Peers::locate();
    let dir = tempfile::Builder::new()
        .prefix("portcullis-e2e-tls-")
        .tempdir()
        .unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "e2e CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let a = leaf(&ca, &ca_key, "gateway-a");
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    std::fs::write(&cert_file, &a.cert_pem).unwrap();
    std::fs::write(&key_file, &a.key_pem).unwrap();

    let (_upstream, upstream_url) = start_peer(Upstream::Everything, &peers, dir.path()).await;
    let port = free_port();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"server:
  listen: "127.0.0.1:{port}"
  tls:
    cert_file: tls.crt
    key_file: tls.key
    reload_interval: 200ms
oauth:
  enabled: false
proxy:
  servers:
    - name: everything
      type: streamable-http
      connection: {{ url: "{upstream_url}" }}
"#
        ),
    )
    .unwrap();
    let mut gateway = Proc::spawn("portcullis", gateway_command(&config), dir.path());
    let ca_cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca_cert.clone())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    wait_http_ok(&mut gateway, &h2, &format!("{base}/ready")).await;

    // HTTP/2 by ALPN, through Pingora's TLS listener: a session opens.
    let r = h2
        .post(format!("{base}/mcp/everything"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"h2","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("mcp-session-id"));
    let text = r.text().await.unwrap();
    assert!(text.contains("serverInfo"), "{text}");

    // The official Python SDK (httpx, HTTP/1.1) trusting the CA through SSL_CERT_FILE.
    let mut cmd = Command::new(peers.python());
    cmd.arg(CLIENT)
        .arg(format!("{base}/mcp/everything"))
        .args(["--steps", "2", "--duration", "1"])
        .env("SSL_CERT_FILE", &ca_file)
        .env("PYTHONUNBUFFERED", "1");
    let out = run_bounded("python-client", cmd, dir.path(), Duration::from_secs(90)).await;
    out.assert_success("python SDK client over HTTPS");
    let report: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {}", out.stdout));
    assert_eq!(report["echo"]["is_error"], false, "{report}");
    assert!(
        report["progress"].as_array().is_some_and(|p| p.len() >= 2),
        "{report}"
    );

    // Rotation on disk: the running gateway serves the new certificate to new handshakes.
    assert_eq!(presented(port, ca.der()).await, a.der);
    let b = leaf(&ca, &ca_key, "gateway-b");
    std::fs::write(&key_file, &b.key_pem).unwrap();
    std::fs::write(&cert_file, &b.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(port, ca.der()).await != b.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still answering, with cert B.
    let r = h2.get(format!("{base}/live")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let log = gateway.log();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    gateway.assert_running();
}
