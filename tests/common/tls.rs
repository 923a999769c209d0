//! Certificates made for a test: a CA, a server certificate for `localhost` and
//! `127.0.0.1` signed by it, a client certificate it signed, and a client certificate a
//! stranger's CA signed; written as PEM files in a temp dir, plus clients that trust
//! the CA.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};

/// A test PKI.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate and key the CA signed.
    pub client: (String, String),
    /// A client certificate and key another CA signed.
    pub stranger: (String, String),
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    testkit::bench::secured::ca(name).expect("CA")
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    testkit::bench::secured::leaf(issuer, names).expect("certificate")
}

/// A rustls client configuration trusting the CA certificates in `ca_pem`.
pub fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A fresh PKI in a temp dir.
pub fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let (issuer, ca_pem) = ca("meshscope test CA");
    let (cert_pem, key_pem) = leaf(&issuer, &["localhost", "127.0.0.1"]);
    let client = leaf(&issuer, &["envoy.client"]);
    let (stranger_issuer, _) = ca("someone else's CA");
    let stranger = leaf(&stranger_issuer, &["envoy.client"]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    Pki {
        ca: write("ca.pem", &ca_pem),
        cert: write("tls.crt", &cert_pem),
        key: write("tls.key", &key_pem),
        ca_pem,
        client,
        stranger,
        dir,
    }
}

impl Pki {
    /// A server certificate from a new CA, written over the served files (rotation).
    pub fn rotate(&self) -> String {
        let (issuer, ca_pem) = ca("meshscope rotated CA");
        let (cert_pem, key_pem) = leaf(&issuer, &["localhost", "127.0.0.1"]);
        std::fs::write(&self.key, key_pem).expect("write");
        std::fs::write(&self.cert, cert_pem).expect("write");
        ca_pem
    }

    /// A reqwest client trusting `ca_pem`.
    pub fn reqwest(ca_pem: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(client_config(ca_pem))
            .build()
            .expect("client")
    }

    /// A gRPC peer at `endpoint` (`https://127.0.0.1:…`) trusting this CA.
    pub fn peer(&self, endpoint: &str, token: Option<&str>) -> testkit::sim::Peer {
        testkit::sim::Peer {
            endpoint: endpoint.to_string(),
            ca_pem: Some(self.ca_pem.clone().into_bytes()),
            token: token.map(str::to_string),
            ..Default::default()
        }
    }
}
