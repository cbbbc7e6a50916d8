//! TLS both ways: the listener (`server.tls`: HTTPS with HTTP/2 and HTTP/1.1 by ALPN, the
//! certificate swapped when its files change, a bad new pair refused) and HTTPS upstreams
//! (`connection.tls`: own CA, client certificate) behind a real rustls server. Certificates
//! are made per run (rcgen): a CA, server certificates, a client certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio_rustls::rustls;

use crate::common::{config_for, Gateway, Upstream};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#;

/// A CA that signs certificates for the tests.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate (PEM), its key (PEM) and the DER the peer sees.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    fn server(&self, cn: &str, names: &[&str]) -> Leaf {
        self.leaf(cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Ca) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    roots
}

fn https_client(ca: &Ca) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
}

/// The certificate the listener at `addr` presents to a new handshake (verified against `ca`
/// for `127.0.0.1`).
async fn presented(addr: SocketAddr, ca: &Ca) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A gateway whose listener serves HTTPS with `leaf`, in front of a plain upstream.
async fn tls_gateway(dir: &Path, leaf: &Leaf) -> (Gateway, Upstream) {
    let up = Upstream::start().await;
    let cert = write(dir, "tls.crt", &leaf.cert_pem);
    let key = write(dir, "tls.key", &leaf.key_pem);
    let server = format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    reload_interval: 1h",
        cert.display(),
        key.display()
    );
    let gw = Gateway::start(&config_for(up.addr, &server, "")).await;
    (gw, up)
}

async fn call_over(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(CALL)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_listener_serves_https_over_http2_and_http1() {
    let ca = Ca::new("listener CA");
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.server("gateway", &["127.0.0.1", "localhost"]);
    let (gw, up) = tls_gateway(dir.path(), &leaf).await;
    let url = format!("https://127.0.0.1:{}/mcp/up", gw.addr.port());

    // HTTP/2 by ALPN (Pingora's proxy serves it).
    let h2 = https_client(&ca).build().unwrap();
    let r = call_over(&h2, &url).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"sha256\""));

    // HTTP/1.1 (the front door serves it, over TLS).
    let (hot_before, _) = gw.served();
    let h1 = https_client(&ca).http1_only().build().unwrap();
    for _ in 0..3 {
        let r = call_over(&h1, &url).await;
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("\"sha256\""));
    }
    assert_eq!(
        gw.served().0 - hot_before,
        3,
        "HTTP/1.1 over TLS on the front door"
    );
    assert_eq!(up.posts(), 4);

    // A client that does not trust the CA gets no answer; plain HTTP on the TLS port neither.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting.post(&url).body(CALL).send().await.is_err());
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/mcp/up", gw.addr.port()))
        .body(CALL)
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert_eq!(up.posts(), 4, "nothing else reached the upstream");
}

#[tokio::test]
async fn a_new_certificate_is_picked_up_and_a_bad_one_refused() {
    let ca = Ca::new("rotation CA");
    let dir = tempfile::tempdir().unwrap();
    let a = ca.server("cert-a", &["127.0.0.1"]);
    let (gw, _up) = tls_gateway(dir.path(), &a).await;
    let certs = gw.embedded.parts.tls.clone().expect("a TLS listener");
    assert_eq!(presented(gw.addr, &ca).await, a.der);

    // Unchanged files: nothing to do.
    assert_eq!(certs.reload_if_changed(), Ok(false));

    // Rotation as cert-manager does it: both files replaced.
    let b = ca.server("cert-b", &["127.0.0.1"]);
    write(dir.path(), "tls.crt", &b.cert_pem);
    write(dir.path(), "tls.key", &b.key_pem);
    assert_eq!(certs.reload_if_changed(), Ok(true));
    assert_eq!(
        presented(gw.addr, &ca).await,
        b.der,
        "new handshakes get cert B"
    );

    // Half a rotation (a new certificate, the old key): refused, B stays in use.
    let c = ca.server("cert-c", &["127.0.0.1"]);
    write(dir.path(), "tls.crt", &c.cert_pem);
    let err = certs.reload_if_changed().unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(presented(gw.addr, &ca).await, b.der);
    // Garbage: refused too.
    write(dir.path(), "tls.crt", "not a certificate");
    assert!(certs.reload_if_changed().is_err());
    assert_eq!(presented(gw.addr, &ca).await, b.der);
    // A config reload meanwhile is not held up by the listener's files (they are the
    // certificate watcher's; `server.tls` itself is unchanged).
    let yaml = std::fs::read_to_string(&gw.config_path).unwrap();
    gw.apply(&format!("{yaml}\n# edited\n")).await;
    // A key file with garbage never shows its content in the error.
    write(
        dir.path(),
        "tls.key",
        "-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET",
    );
    let err = certs.reload_if_changed().unwrap_err();
    assert!(!err.contains("SECRET"), "{err}");
    write(dir.path(), "tls.key", &b.key_pem);
    // The rotation completes: C is served.
    write(dir.path(), "tls.crt", &c.cert_pem);
    write(dir.path(), "tls.key", &c.key_pem);
    assert_eq!(certs.reload_if_changed(), Ok(true));
    assert_eq!(presented(gw.addr, &ca).await, c.der);
}

#[tokio::test]
async fn the_certificate_watcher_swaps_changed_files_by_itself() {
    let ca = Ca::new("watcher CA");
    let dir = tempfile::tempdir().unwrap();
    let a = ca.server("cert-a", &["127.0.0.1"]);
    let up = Upstream::start().await;
    let cert = write(dir.path(), "tls.crt", &a.cert_pem);
    let key = write(dir.path(), "tls.key", &a.key_pem);
    let server = format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    reload_interval: 100ms",
        cert.display(),
        key.display()
    );
    let gw = Gateway::start(&config_for(up.addr, &server, "")).await;
    assert_eq!(presented(gw.addr, &ca).await, a.der);
    let b = ca.server("cert-b", &["127.0.0.1"]);
    write(dir.path(), "tls.crt", &b.cert_pem);
    write(dir.path(), "tls.key", &b.key_pem);
    // The watcher looks every 100 ms; bounded wait for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while presented(gw.addr, &ca).await != b.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cert B never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn bad_listener_files_are_config_errors_naming_the_field() {
    let ca = Ca::new("config CA");
    let dir = tempfile::tempdir().unwrap();
    let a = ca.server("a", &["127.0.0.1"]);
    let b = ca.server("b", &["127.0.0.1"]);
    let cert = write(dir.path(), "a.crt", &a.cert_pem);
    let key_b = write(dir.path(), "b.key", &b.key_pem);
    let junk = write(dir.path(), "junk.pem", "hello");
    let load = |server: String| {
        let yaml = config_for("127.0.0.1:9".parse().unwrap(), &server, "");
        portcullis::config::load_str(&yaml, "gateway.yaml", &|_| None)
            .err()
            .map(|d| d.to_string())
            .unwrap_or_default()
    };
    let tls = |c: &Path, k: &Path| {
        format!(
            "  tls:\n    cert_file: {}\n    key_file: {}",
            c.display(),
            k.display()
        )
    };

    let missing = load(tls(&dir.path().join("nope.crt"), &key_b));
    assert!(
        missing.contains("server.tls.cert_file") && missing.contains("cannot read"),
        "{missing}"
    );
    let not_pem = load(tls(&junk, &key_b));
    assert!(
        not_pem.contains("server.tls.cert_file") && not_pem.contains("no certificate"),
        "{not_pem}"
    );
    let no_key = load(tls(&cert, &junk));
    assert!(no_key.contains("server.tls.key_file"), "{no_key}");
    let mismatch = load(tls(&cert, &key_b));
    assert!(
        mismatch.contains("server.tls.key_file") && mismatch.contains("does not match"),
        "{mismatch}"
    );
    let half = load("  tls:\n    cert_file: a.crt".into());
    assert!(half.contains("server.tls.key_file"), "{half}");
}

/// A real rustls server in front of a plain upstream: HTTPS for the gateway's upstream side.
/// With `clients`, a client certificate signed by that CA is required.
struct TlsUpstream {
    addr: SocketAddr,
    /// Completed handshakes (the health prober's bare TCP connects are not).
    accepted: Arc<AtomicUsize>,
}

impl TlsUpstream {
    async fn start(leaf: &Leaf, inner: SocketAddr, clients: Option<&Ca>) -> TlsUpstream {
        let chain = vec![rustls::pki_types::CertificateDer::from(leaf.der.clone())];
        let key = <rustls::pki_types::PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)),
                    provider(),
                )
                .build()
                .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let a = a.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        a.fetch_add(1, Ordering::SeqCst);
                        let mut back = tokio::net::TcpStream::connect(inner).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                    }
                });
            }
        });
        TlsUpstream { addr, accepted }
    }
}

/// A gateway (plain listener) whose upstream `up` is `url` with `tls` lines under
/// `connection`.
async fn gateway_to(url: &str, tls: &str) -> Gateway {
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
proxy:
  servers:
    - name: up
      type: streamable-http
      connection:
        url: "{url}"
        connect_timeout: 3s
{tls}
"#
    );
    Gateway::start(&yaml).await
}

async fn call(gw: &Gateway) -> (u16, String) {
    let r = crate::common::post(gw, CALL).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn https_upstreams_are_verified_against_their_own_ca() {
    let ca = Ca::new("upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let inner = Upstream::start().await;
    let leaf = ca.server("upstream", &["localhost"]);
    let tls_up = TlsUpstream::start(&leaf, inner.addr, None).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let url = format!("https://localhost:{}/mcp", tls_up.addr.port());

    // Trusting the CA: answered through the TLS server, connections pooled.
    let gw = gateway_to(
        &url,
        &format!("        tls:\n          ca_file: {}", ca_file.display()),
    )
    .await;
    for _ in 0..3 {
        let (status, body) = call(&gw).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"sha256\""), "{body}");
    }
    assert_eq!(inner.posts(), 3);
    assert_eq!(
        tls_up.accepted.load(Ordering::SeqCst),
        1,
        "one TLS connection, reused"
    );

    // The system roots (no ca_file) do not know this CA: 502, nothing reaches the upstream.
    let gw = gateway_to(&url, "").await;
    let (status, body) = call(&gw).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(inner.posts(), 3);

    // Another CA: refused too.
    let other = write(dir.path(), "other.pem", &Ca::new("other CA").pem());
    let gw = gateway_to(
        &url,
        &format!("        tls:\n          ca_file: {}", other.display()),
    )
    .await;
    assert_eq!(call(&gw).await.0, 502);

    // A name the certificate does not carry (127.0.0.1 instead of localhost): refused.
    let by_ip = format!("https://127.0.0.1:{}/mcp", tls_up.addr.port());
    let gw = gateway_to(
        &by_ip,
        &format!("        tls:\n          ca_file: {}", ca_file.display()),
    )
    .await;
    assert_eq!(call(&gw).await.0, 502);
    assert_eq!(
        inner.posts(),
        3,
        "no refused handshake let a request through"
    );
}

#[tokio::test]
async fn https_upstreams_can_require_a_client_certificate() {
    let ca = Ca::new("mtls CA");
    let clients = Ca::new("client CA");
    let dir = tempfile::tempdir().unwrap();
    let inner = Upstream::start().await;
    let leaf = ca.server("upstream", &["localhost"]);
    let tls_up = TlsUpstream::start(&leaf, inner.addr, Some(&clients)).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let url = format!("https://localhost:{}/mcp", tls_up.addr.port());

    // No client certificate: the upstream refuses the handshake; 502.
    let gw = gateway_to(
        &url,
        &format!("        tls:\n          ca_file: {}", ca_file.display()),
    )
    .await;
    assert_eq!(call(&gw).await.0, 502);
    assert_eq!(inner.posts(), 0);

    // One signed by another CA: refused.
    let stranger = Ca::new("stranger").client("gateway");
    let sc = write(dir.path(), "stranger.crt", &stranger.cert_pem);
    let sk = write(dir.path(), "stranger.key", &stranger.key_pem);
    let gw = gateway_to(
        &url,
        &format!(
            "        tls:\n          ca_file: {}\n          cert_file: {}\n          key_file: {}",
            ca_file.display(),
            sc.display(),
            sk.display()
        ),
    )
    .await;
    assert_eq!(call(&gw).await.0, 502);
    assert_eq!(inner.posts(), 0);

    // The right one: answered.
    let me = clients.client("gateway");
    let cc = write(dir.path(), "client.crt", &me.cert_pem);
    let ck = write(dir.path(), "client.key", &me.key_pem);
    let gw = gateway_to(
        &url,
        &format!(
            "        tls:\n          ca_file: {}\n          cert_file: {}\n          key_file: {}",
            ca_file.display(),
            cc.display(),
            ck.display()
        ),
    )
    .await;
    let (status, body) = call(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(inner.posts(), 1);
}

#[test]
fn upstream_tls_options_are_checked_at_load() {
    let ca = Ca::new("load CA");
    let dir = tempfile::tempdir().unwrap();
    let a = ca.client("a");
    let b = ca.client("b");
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let cert = write(dir.path(), "a.crt", &a.cert_pem);
    let key_b = write(dir.path(), "b.key", &b.key_pem);
    let junk = write(dir.path(), "junk.pem", "junk");
    let load = |url: &str, tls: String| {
        let yaml = format!(
            "oauth:\n  enabled: false\nproxy:\n  servers:\n    - name: up\n      type: streamable-http\n      connection:\n        url: \"{url}\"\n        tls:\n{tls}\n"
        );
        portcullis::config::load_str(&yaml, "gateway.yaml", &|_| None)
            .err()
            .map(|d| d.to_string())
            .unwrap_or_default()
    };
    let https = "https://up.example:8443/mcp";
    assert_eq!(
        load(https, format!("          ca_file: {}", ca_file.display())),
        ""
    );
    let plain = load(
        "http://127.0.0.1:9/mcp",
        format!("          ca_file: {}", ca_file.display()),
    );
    assert!(
        plain.contains("connection.tls") && plain.contains("https://"),
        "{plain}"
    );
    let bad_ca = load(https, format!("          ca_file: {}", junk.display()));
    assert!(bad_ca.contains("connection.tls.ca_file"), "{bad_ca}");
    let half = load(https, format!("          cert_file: {}", cert.display()));
    assert!(half.contains("connection.tls.key_file"), "{half}");
    let mismatch = load(
        https,
        format!(
            "          cert_file: {}\n          key_file: {}",
            cert.display(),
            key_b.display()
        ),
    );
    assert!(
        mismatch.contains("connection.tls.key_file") && mismatch.contains("does not match"),
        "{mismatch}"
    );
    let stdio = portcullis::config::load_str(
        &format!("oauth:\n  enabled: false\nproxy:\n  servers:\n    - name: s\n      type: stdio\n      connection:\n        command: cat\n        tls:\n          ca_file: {}\n", ca_file.display()),
        "gateway.yaml",
        &|_| None,
    )
    .err()
    .map(|d| d.to_string())
    .unwrap_or_default();
    assert!(stdio.contains("connection.tls"), "{stdio}");
}

#[tokio::test]
async fn a_tls_client_that_sends_nothing_is_closed_after_the_head_timeout() {
    let ca = Ca::new("silent CA");
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.server("gateway", &["127.0.0.1"]);
    let up = Upstream::start().await;
    let cert = write(dir.path(), "tls.crt", &leaf.cert_pem);
    let key = write(dir.path(), "tls.key", &leaf.key_pem);
    let server = format!(
        "  header_timeout: 300ms\n  tls:\n    cert_file: {}\n    key_file: {}",
        cert.display(),
        key.display()
    );
    let gw = Gateway::start(&config_for(up.addr, &server, "")).await;
    for alpn in [b"h2".to_vec(), b"http/1.1".to_vec()] {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(&ca))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.clone()];
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&alpn[..]));
        // Handshake done, then silence: the gateway hangs up (within the head timeout, not
        // never; an HTTP/2 server may send its SETTINGS first, which is read and ignored).
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            use tokio::io::AsyncReadExt;
            match tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!(
                    "{} connection still open after 5 s",
                    String::from_utf8_lossy(&alpn)
                ),
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
