//! SIP over TLS (RFC 3261 §26.2, RFC 5630): rustls with the aws-lc-rs provider, TLS 1.2 and
//! 1.3, a certificate chain and key from PEM files, and optionally client certificates
//! verified against a CA (`tls_client_ca`; `tls` listeners only, read once at start).
//!
//! The certificate lives behind a resolver ([`Certificates`]) rather than in the
//! `rustls::ServerConfig`, so [`Certificates::reload`] (SIGHUP) swaps it for new handshakes
//! while established connections keep the session they negotiated. A decrypted TLS stream is
//! served exactly like a TCP one ([`crate::transport::serve_stream`]): the same framing, the
//! same connection table, bindings tied to the connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_model::Transport;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::service::SipService;
use crate::tracker::Tracker;
use crate::transport::{Peer, serve_stream};

/// How long a client may take to complete the TLS handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate chain and its private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates on `tls` listeners must chain to; `None`:
    /// no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the TLS private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the TLS certificate {cert} and key {key} do not belong together: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot read the TLS client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The current certificate, swapped on reload. Every handshake reads it once.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Read once at start from `files.client_ca`.
    client_roots: Option<Arc<rustls::RootCertStore>>,
}

impl Certificates {
    /// Reads the certificate and key; fails when either is unreadable or they do not match.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = read_certified_key(&files, &provider)?;
        let client_roots = match &files.client_ca {
            Some(path) => Some(Arc::new(read_roots(path)?)),
            None => None,
        };
        Ok(Arc::new(Certificates {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            client_roots,
        }))
    }

    /// Reads the files again and serves the new certificate to new handshakes. On failure the
    /// old certificate stays in use. Connections already established are not touched.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A server configuration using this resolver: TLS 1.2 and 1.3, `alpn` protocols to offer
    /// (none for SIP over TLS; `http/1.1` for WSS), and, with `verify_clients` and a client
    /// CA configured, a client certificate chaining to that CA required.
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        verify_clients: bool,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsError::Config(error.to_string()))?;
        let builder = match (&self.client_roots, verify_clients) {
            (Some(roots), true) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    self.provider.clone(),
                )
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: files.cert.clone(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|error| cert_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| cert_error(error.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block in the file".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| TlsError::Key {
        path: files.key.clone(),
        reason: error.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: error.to_string(),
    })
}

fn read_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, TlsError> {
    let error = |reason: String| TlsError::ClientCa {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))? {
        roots
            .add(certificate.map_err(|e| error(e.to_string()))?)
            .map_err(|e| error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(error("no CERTIFICATE block in the file".to_owned()));
    }
    Ok(roots)
}

/// Accepts TLS connections until `shutdown` flips; each is served like TCP once its handshake
/// completes (within [`HANDSHAKE_TIMEOUT`]).
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    service: Arc<SipService>,
    tracker: Tracker,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, source) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "tls accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A banned address, or one over its connection cap, is closed at once (as on TCP).
        let Some(slot) = service.admit_connection(source.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_tls_connection(
            stream,
            source,
            acceptor.clone(),
            service.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
}

async fn serve_tls_connection(
    stream: TcpStream,
    source: SocketAddr,
    acceptor: TlsAcceptor,
    service: Arc<SipService>,
    tracker: Tracker,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let Some(tls) = handshake(&acceptor, stream, source).await else {
        return;
    };
    let (reader, writer) = tokio::io::split(tls);
    let peer = Peer {
        source,
        local,
        transport: Transport::Tls,
    };
    serve_stream(reader, writer, peer, service, tracker, shutdown).await;
}

/// The server side of a TLS handshake, bounded by [`HANDSHAKE_TIMEOUT`]; `None` (logged at
/// debug) when it fails or times out.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    source: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            debug!(%source, %error, "tls handshake failed");
            None
        }
        Err(_) => {
            debug!(%source, "tls handshake timed out");
            None
        }
    }
}

/// Logs what was loaded (subject of the leaf is not parsed: the file names say enough).
pub(crate) fn log_loaded(certificates: &Certificates, what: &str) {
    info!(
        cert = %certificates.files().cert.display(),
        key = %certificates.files().key.display(),
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write_pair(dir: &Path, name: &str, host: &str) -> TlsFiles {
        let certified = rcgen::generate_simple_self_signed(vec![host.to_owned()]).expect("rcgen");
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
        TlsFiles {
            cert,
            key,
            client_ca: None,
        }
    }

    fn leaf(certificates: &Certificates) -> Vec<u8> {
        certificates
            .current
            .read()
            .expect("lock")
            .cert
            .first()
            .expect("leaf")
            .to_vec()
    }

    #[test]
    fn loads_a_pair_and_reload_swaps_it_keeping_the_old_one_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "a", "first.test");
        let certificates = Certificates::load(files.clone()).expect("loads");
        let first = leaf(&certificates);

        // New files at the same paths: reload serves them.
        let other = write_pair(dir.path(), "b", "second.test");
        std::fs::copy(&other.cert, &files.cert).expect("copy");
        std::fs::copy(&other.key, &files.key).expect("copy");
        certificates.reload().expect("reloads");
        let second = leaf(&certificates);
        assert_ne!(first, second);

        // A broken file: the error names it and the current certificate stays.
        std::fs::write(&files.key, "not a key").expect("write");
        let error = certificates.reload().expect_err("broken key");
        assert!(error.to_string().contains("a.key"), "{error}");
        assert_eq!(leaf(&certificates), second);
    }

    #[test]
    fn mismatched_or_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write_pair(dir.path(), "a", "a.test");
        let b = write_pair(dir.path(), "b", "b.test");
        let error = Certificates::load(TlsFiles {
            cert: a.cert.clone(),
            key: b.key,
            client_ca: None,
        })
        .expect_err("mismatch");
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
        let error = Certificates::load(TlsFiles {
            cert: dir.path().join("missing.crt"),
            key: a.key.clone(),
            client_ca: None,
        })
        .expect_err("missing");
        assert!(error.to_string().contains("missing.crt"), "{error}");
        std::fs::write(dir.path().join("empty.crt"), "").expect("write");
        let error = Certificates::load(TlsFiles {
            cert: dir.path().join("empty.crt"),
            key: a.key.clone(),
            client_ca: None,
        })
        .expect_err("empty");
        assert!(error.to_string().contains("no CERTIFICATE"), "{error}");
        let error = Certificates::load(TlsFiles {
            cert: a.cert,
            key: a.key,
            client_ca: Some(dir.path().join("empty.crt")),
        })
        .expect_err("empty client CA");
        assert!(error.to_string().contains("client CA"), "{error}");
    }
}
