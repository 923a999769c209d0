//! TLS for every listener: rustls (TLS 1.2 and 1.3, the `ring` provider) with a
//! certificate chain and key from PEM files, and optionally a CA whose client
//! certificates are then required (mTLS). The files are read again every
//! `tls.reload_interval`; when their bytes changed, new handshakes use the new files and
//! open connections keep theirs (cert-manager rotates certificates under running pods).
//! A reload that fails (a half-written file) keeps the previous files and is logged and
//! counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tracing::{info, warn};

use crate::Error;
use crate::security_metrics::SecurityMetrics;

/// The files one listener's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
}

/// The bytes of the files, as last loaded.
#[derive(PartialEq, Eq)]
struct Loaded {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// One listener's TLS: the server configuration new handshakes use, reloaded from its
/// files. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    listener: &'static str,
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: RwLock<(Arc<ServerConfig>, Loaded)>,
    /// What the last failed reload met (the files' bytes, or the read error), so that a
    /// rotation that stays broken is counted and logged once, not at every re-read.
    failed: std::sync::Mutex<Option<Vec<u8>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("listener", &self.inner.listener)
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))
}

fn load(files: &TlsFiles) -> Result<Loaded, Error> {
    Ok(Loaded {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
        client_ca: files.client_ca.as_deref().map(read).transpose()?,
    })
}

/// Makes [`provider`] the process's default, for the TLS clients that take the default
/// (reqwest's, which panics without one). Idempotent; call it before building a client.
pub fn install_default_provider() {
    // Err only when a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The crypto provider every TLS configuration of meshscope uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates in a PEM file's bytes; an error names the file when there are none.
pub fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn build(files: &TlsFiles, loaded: &Loaded, alpn: &[Vec<u8>]) -> Result<ServerConfig, Error> {
    let certs = certificates(&loaded.cert, &files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&loaded.key).map_err(|e| {
        Error::Tls(format!(
            "{}: no usable private key: {e}",
            files.key.display()
        ))
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match (&files.client_ca, &loaded.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(pem, path)? {
                roots
                    .add(ca)
                    .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        Error::Tls(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

impl ServerTls {
    /// Loads `files` for `listener`, offering the ALPN protocols `alpn` (`h2` for gRPC,
    /// `http/1.1` for the HTTP listeners). Fails, naming the file, when one cannot be
    /// read or used.
    pub fn load(
        listener: &'static str,
        files: TlsFiles,
        alpn: &[&[u8]],
    ) -> Result<ServerTls, Error> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let loaded = load(&files)?;
        let config = build(&files, &loaded, &alpn)?;
        Ok(ServerTls {
            inner: Arc::new(Inner {
                listener,
                files,
                alpn,
                current: RwLock::new((Arc::new(config), loaded)),
                failed: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.inner.files.client_ca.is_some()
    }

    /// An acceptor for the next handshake, with the files as last loaded.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.inner.current.read().unwrap_or_else(|e| e.into_inner());
        tokio_rustls::TlsAcceptor::from(current.0.clone())
    }

    /// Reads the files again; true when they changed and were taken.
    /// Reads the files again: `Ok(true)` when they changed and were taken, `Ok(false)`
    /// when nothing changed or they fail as they failed last time, `Err` for a new
    /// failure (the previous files stay in use).
    fn reload(&self) -> Result<bool, Error> {
        let (error, seen) = match load(&self.inner.files) {
            Err(e) => {
                let seen = e.to_string().into_bytes();
                (e, seen)
            }
            Ok(loaded) => {
                if self.inner.current.read().is_ok_and(|c| c.1 == loaded) {
                    return Ok(false);
                }
                match build(&self.inner.files, &loaded, &self.inner.alpn) {
                    Ok(config) => {
                        *self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        *self
                            .inner
                            .current
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = (Arc::new(config), loaded);
                        return Ok(true);
                    }
                    Err(e) => {
                        let seen = [
                            loaded.cert,
                            loaded.key,
                            loaded.client_ca.unwrap_or_default(),
                        ]
                        .concat();
                        (e, seen)
                    }
                }
            }
        };
        let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.as_ref() == Some(&seen) {
            return Ok(false);
        }
        *failed = Some(seen);
        Err(error)
    }

    /// Re-reads the files every `interval` for as long as this `ServerTls` (or a clone)
    /// lives, on the current runtime.
    pub fn watch(&self, interval: Duration, metrics: SecurityMetrics) {
        crate::reread::every(&self.inner, interval, move |inner| {
            let tls = ServerTls {
                inner: inner.clone(),
            };
            let listener = inner.listener;
            match tls.reload() {
                Ok(false) => {}
                Ok(true) => {
                    metrics.tls_reloaded(listener, "ok");
                    info!(
                        listener,
                        "TLS certificate files changed: new handshakes use them"
                    );
                }
                Err(e) => {
                    metrics.tls_reloaded(listener, "failed");
                    warn!(listener, error = %e, "TLS files changed but cannot be used; keeping the previous ones");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> TlsFiles {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
        };
        std::fs::write(&files.cert, cert.pem()).expect("write");
        std::fs::write(&files.key, key.serialize_pem()).expect("write");
        files
    }

    #[test]
    fn a_broken_rotation_keeps_the_old_files_and_is_reported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path());
        let tls = ServerTls::load("test", files.clone(), &[b"h2"]).expect("load");
        assert!(!tls.reload().expect("unchanged"));
        // Half-written: the certificate is cut short.
        std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nMIIB").expect("write");
        assert!(tls.reload().is_err(), "a broken file is an error");
        assert!(!tls.reload().expect("the same failure again is not news"));
        // The rotation completes: taken.
        write_pair(dir.path());
        assert!(tls.reload().expect("new files"));
        assert!(!tls.reload().expect("unchanged"));
    }
}
