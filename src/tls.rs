//! TLS material from PEM files: the listener's certificate (`server.tls`), which follows its
//! files without a restart, and what upstream connections trust and present
//! (`connection.tls`: a CA bundle, a client certificate).
//!
//! Files are read and checked when the config is compiled (so `portcullis check` names a bad
//! file by its field) and again when they change; the request path only loads an `Arc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Read every certificate of the PEM file at `path` (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certs_from(&read(path)?, path)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certs_from(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    for (i, c) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(c.as_ref()).is_err() {
            return Err(format!(
                "{}: certificate {} is not a valid X.509 certificate",
                path.display(),
                i + 1
            ));
        }
    }
    Ok(certs)
}

fn key_from(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // The parser's error may quote the offending line, which in a key file is key material:
    // never shown.
    PrivateKeyDer::from_pem_slice(bytes).map_err(|_| {
        format!(
            "{}: no usable private key in it (expected one PEM block: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            path.display()
        )
    })
}

/// A certificate chain and its key, each file read once and checked to belong together; the
/// key as read too. An error names the field at fault (`cert_file` or `key_file`).
fn pair_from(
    cert: (&[u8], &Path),
    key: (&[u8], &Path),
) -> Result<(Arc<CertifiedKey>, PrivateKeyDer<'static>), (&'static str, String)> {
    let chain = certs_from(cert.0, cert.1).map_err(|e| ("cert_file", e))?;
    let der = key_from(key.0, key.1).map_err(|e| ("key_file", e))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
        (
            "key_file",
            format!("{}: unsupported private key ({e})", key.1.display()),
        )
    })?;
    let ck = CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        Ok(()) => Ok((Arc::new(ck), der)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err((
            "key_file",
            format!(
                "{} does not match the certificate in {}",
                key.1.display(),
                cert.1.display()
            ),
        )),
        Err(e) => Err((
            "cert_file",
            format!(
                "{}: the certificate's public key cannot be read ({e})",
                cert.1.display()
            ),
        )),
    }
}

/// A certificate chain and its key, checked to belong together. An error names the field at
/// fault (`cert_file` or `key_file`).
pub fn certified_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<CertifiedKey>, (&'static str, String)> {
    let cert = read(cert_file).map_err(|e| ("cert_file", e))?;
    let key = read(key_file).map_err(|e| ("key_file", e))?;
    pair_from((&cert, cert_file), (&key, key_file)).map(|(ck, _)| ck)
}

/// Seconds since the epoch at which the first certificate of `chain` expires.
pub fn not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// What an HTTPS upstream's connections trust and present (`connection.tls`), read at config
/// load. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `ca_file`: the certificates (DER) that replace the system roots for this upstream.
    pub ca: Option<Vec<Vec<u8>>>,
    /// `cert_file` + `key_file`: the client certificate, for mutual TLS.
    pub client: Option<ClientCert>,
    /// The files, for display.
    pub files: Vec<PathBuf>,
}

/// A client certificate chain and its key (DER). No `Debug`: the key is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The private key.
    pub key: Vec<u8>,
    /// The key's PEM label (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
    pub key_label: &'static str,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("client", &self.client.is_some())
            .field("files", &self.files)
            .finish()
    }
}

impl UpstreamTls {
    /// Read and check the files: every CA certificate parses and can anchor a chain; the
    /// client key matches its certificate and is one rustls signs with. An error names the
    /// field at fault (`ca_file`, `cert_file`, `key_file`).
    pub fn load(
        ca_file: Option<&Path>,
        client: Option<(&Path, &Path)>,
    ) -> Result<UpstreamTls, (&'static str, String)> {
        let mut files = Vec::new();
        let ca = match ca_file {
            Some(p) => {
                files.push(p.to_path_buf());
                let certs = read_certs(p).map_err(|e| ("ca_file", e))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in &certs {
                    roots.add(c.clone()).map_err(|e| {
                        (
                            "ca_file",
                            format!("{}: not a usable CA certificate ({e})", p.display()),
                        )
                    })?;
                }
                Some(certs.into_iter().map(|c| c.to_vec()).collect())
            }
            None => None,
        };
        let client = match client {
            Some((cert, key_file)) => {
                files.push(cert.to_path_buf());
                files.push(key_file.to_path_buf());
                let cert_bytes = read(cert).map_err(|e| ("cert_file", e))?;
                let key_bytes = read(key_file).map_err(|e| ("key_file", e))?;
                let (ck, key) = pair_from((&cert_bytes, cert), (&key_bytes, key_file))?;
                // pingora's connector rebuilds the key from these bytes with this conversion.
                let key_der = key.secret_der().to_vec();
                PrivateKeyDer::try_from(key_der.clone())
                    .map_err(|e| ("key_file", format!("{}: {e}", key_file.display())))?;
                let key_label = match key {
                    PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
                    PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
                    _ => "PRIVATE KEY",
                };
                Some(ClientCert {
                    chain: ck.cert.iter().map(|c| c.to_vec()).collect(),
                    key: key_der,
                    key_label,
                })
            }
            None => None,
        };
        Ok(UpstreamTls { ca, client, files })
    }
}

/// The listener's certificate: the one every new handshake gets, swapped when its files
/// change ([`ServerCerts::reload_if_changed`]). A bad new pair is refused and the one in use
/// stays.
pub struct ServerCerts {
    current: ArcSwap<CertifiedKey>,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// What the files held when last read.
    seen: ArcSwap<Stamp>,
}

/// What the two files held when last read: their SHA-256 digests (none when unreadable). A
/// content digest sees every change (a rewrite in place of the same size within one timestamp
/// tick too); the files are small and read every `reload_interval`.
type Stamp = [Option<[u8; 32]>; 2];

fn digest(bytes: Option<&[u8]>) -> Option<[u8; 32]> {
    use sha2::Digest;
    bytes.map(|b| sha2::Sha256::digest(b).into())
}

impl std::fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCerts")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl ServerCerts {
    /// Read the pair.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerCerts>, String> {
        let cert = read(cert_file)?;
        let key = read(key_file)?;
        let (ck, _) = pair_from((&cert, cert_file), (&key, key_file)).map_err(|(_, e)| e)?;
        crate::telemetry::metrics::metrics().tls_cert_loaded(not_after(&ck.cert));
        Ok(Arc::new(ServerCerts {
            current: ArcSwap::new(ck),
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            seen: ArcSwap::from_pointee([digest(Some(&cert)), digest(Some(&key))]),
        }))
    }

    /// Read the pair again and swap it in if either file's content changed since it was last
    /// read. `Ok(true)`: new handshakes get the new certificate; `Err`: the files are bad (half
    /// rotated, say) and the pair in use stays (tried again at the next change).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        // One caller (the watcher, or a test) at a time: no lock needed.
        let cert = std::fs::read(&self.cert_file).ok();
        let key = std::fs::read(&self.key_file).ok();
        let now = [digest(cert.as_deref()), digest(key.as_deref())];
        if **self.seen.load() == now {
            return Ok(false);
        }
        self.seen.store(Arc::new(now));
        let (Some(cert), Some(key)) = (cert, key) else {
            // Name the unreadable one.
            read(&self.cert_file)?;
            read(&self.key_file)?;
            return Err("the certificate files changed while being read".into());
        };
        let (ck, _) =
            pair_from((&cert, &self.cert_file), (&key, &self.key_file)).map_err(|(_, e)| e)?;
        crate::telemetry::metrics::metrics().tls_cert_loaded(not_after(&ck.cert));
        self.current.store(ck);
        Ok(true)
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// A rustls server config presenting this certificate, offering HTTP/2 and HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map(|b| b.with_no_client_auth().with_cert_resolver(self.clone()))
        .unwrap_or_else(|_| {
            // The ring provider supports both versions: unreachable, but never a panic.
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_cert_resolver(self.clone())
        });
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

impl ResolvesServerCert for ServerCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Checks the listener's certificate files every `interval` and swaps in a changed pair.
pub struct CertWatcher {
    /// The listener's certificate.
    pub certs: Arc<ServerCerts>,
    /// How often the files are looked at (`server.tls.reload_interval`).
    pub interval: Duration,
}

impl CertWatcher {
    /// Look once; log and count what happened.
    pub fn check(&self) {
        let m = crate::telemetry::metrics::metrics();
        match self.certs.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                m.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(cert_file = %self.certs.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                m.tls_reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "TLS certificate not reloaded; the one in use stays");
            }
        }
    }

    /// Look every `interval` until `stop` turns true.
    async fn watch(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.check(),
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
    }
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for CertWatcher {
    async fn start(&self, shutdown: pingora_core::server::ShutdownWatch) {
        self.watch(shutdown).await;
    }
}
