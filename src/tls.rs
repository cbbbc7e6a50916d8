//! TLS material from PEM files: the listener's certificate (`server.tls`), which follows its
//! files without a restart, and what upstream connections trust and present
//! (`connection.tls`: a CA bundle, a client certificate).
//!
//! Files are read and checked when the config is compiled (so `portcullis check` names a bad
//! file by its field) and again when they change; the request path only loads an `Arc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Read every certificate of the PEM file at `path` (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
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

/// Read the (first) private key of the PEM file at `path`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: no usable private key in it ({e})", path.display()))
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unsupported private key ({e})", key_file.display()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        format!(
            "{} does not match the certificate in {} ({e})",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok(Arc::new(ck))
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
                read_certs(cert).map_err(|e| ("cert_file", e))?;
                let key = read_key(key_file).map_err(|e| ("key_file", e))?;
                let ck = certified_key(cert, key_file).map_err(|e| ("key_file", e))?;
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
    /// The files' modification times and sizes when last read.
    seen: ArcSwap<Stamp>,
}

/// What says a file changed: modification and status-change times, size, inode.
type Stamp = [Option<(SystemTime, u64, i64, u64)>; 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((
            m.modified().ok()?,
            m.len(),
            m.ctime_nsec() ^ m.ctime(),
            m.ino(),
        ))
    };
    [one(cert), one(key)]
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
        let seen = stamp(cert_file, key_file);
        let ck = certified_key(cert_file, key_file)?;
        crate::telemetry::metrics::metrics().tls_cert_loaded(not_after(&ck.cert));
        Ok(Arc::new(ServerCerts {
            current: ArcSwap::new(ck),
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            seen: ArcSwap::from_pointee(seen),
        }))
    }

    /// Read the pair again if either file changed since it was last read (modification time
    /// or size; Kubernetes' secret volumes swap a symlink, which changes both). `Ok(true)`:
    /// new handshakes get the new certificate; `Err`: the files are bad and the old pair stays
    /// (tried again at the next change).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        // One caller (the watcher, or a test) at a time: no lock needed.
        let now = stamp(&self.cert_file, &self.key_file);
        if **self.seen.load() == now {
            return Ok(false);
        }
        self.seen.store(Arc::new(now));
        let ck = certified_key(&self.cert_file, &self.key_file)?;
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
    pub async fn run(&self, stop: tokio::sync::watch::Receiver<bool>) {
        self.watch(stop).await;
    }

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
