//! What a benchmark server needs to run secured: a CA and a `localhost` certificate it
//! signed (made with rcgen), and one ingest and one admin token, written as files into the
//! server's data dir; plus the clients that trust the CA and send the tokens.

use std::ffi::OsString;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::error::{Error, Result, io};
use crate::sim::Peer;

/// Which servers a throughput benchmark measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain text, no tokens.
    Plain,
    /// TLS on every listener and tokens on every request.
    Tls,
    /// Both, one after the other in this run, printed side by side.
    Both,
}

impl Security {
    /// The runs to make: `false` plain, `true` secured.
    pub fn runs(self) -> &'static [bool] {
        match self {
            Security::Plain => &[false],
            Security::Tls => &[true],
            Security::Both => &[false, true],
        }
    }
}

/// A run's name in reports.
pub fn label(secured: bool) -> &'static str {
    if secured {
        "TLS + tokens"
    } else {
        "plain text"
    }
}

/// The files of a secured server and what its clients need.
pub struct Secured {
    /// The CA that signed the server's certificate (PEM).
    pub ca_pem: String,
    /// Sent by the simulated proxies and exporters.
    pub ingest_token: String,
    /// Sent on the API (flush, `/metrics`).
    pub admin_token: String,
    args: Vec<OsString>,
}

/// A self-signed CA named `name`: its issuer (to sign leaves) and its PEM certificate.
pub fn ca(name: &str) -> std::result::Result<(Issuer<'static, KeyPair>, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key)?.pem();
    Ok((Issuer::new(params, key), pem))
}

/// A certificate for `names` signed by `issuer`: its PEM and its key's PEM.
pub fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
) -> std::result::Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    Ok((params.signed_by(&key, issuer)?.pem(), key.serialize_pem()))
}

/// The bench's CA and a `localhost` certificate it signed: CA, certificate and key PEM.
fn certificates() -> std::result::Result<(String, String, String), rcgen::Error> {
    let (issuer, ca_pem) = ca("meshscope bench CA")?;
    let (cert, key) = leaf(&issuer, &["localhost"])?;
    Ok((ca_pem, cert, key))
}

/// A token of 128 random bits.
fn token(kind: &str) -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bits = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bits)
        .map_err(|_| Error::Check("the system's randomness is unavailable".into()))?;
    let hex: String = bits.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("bench-{kind}-{hex}"))
}

impl Secured {
    /// Writes the certificate, key and token files into `dir`.
    pub fn create(dir: &Path) -> Result<Secured> {
        let (ca_pem, cert_pem, key_pem) =
            certificates().map_err(|e| Error::Check(format!("making certificates: {e}")))?;
        let (ingest_token, admin_token) = (token("ingest")?, token("admin")?);
        let read_token = token("read")?;
        let mut args = Vec::new();
        for (flag, name, text) in [
            ("--tls-cert", "tls.crt", cert_pem.as_str()),
            ("--tls-key", "tls.key", key_pem.as_str()),
            (
                "--ingest-tokens-file",
                "ingest-tokens",
                ingest_token.as_str(),
            ),
            ("--admin-tokens-file", "admin-tokens", admin_token.as_str()),
            // Read tokens guard the API; the benches read with the admin token.
            ("--read-tokens-file", "read-tokens", read_token.as_str()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, format!("{text}\n"))
                .map_err(io(format!("writing {}", path.display())))?;
            args.push(OsString::from(flag));
            args.push(path.into_os_string());
        }
        Ok(Secured {
            ca_pem,
            ingest_token,
            admin_token,
            args,
        })
    }

    /// The `meshscope serve` flags that use the files.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// A gRPC peer for `endpoint` (`https://localhost:…`) with the CA and the ingest token.
    pub fn peer(&self, endpoint: &str) -> Peer {
        Peer {
            endpoint: endpoint.to_string(),
            ca_pem: Some(self.ca_pem.clone().into_bytes()),
            token: Some(self.ingest_token.clone()),
            ..Peer::default()
        }
    }

    /// An HTTP client trusting the CA and sending the admin token.
    pub fn http_client(&self) -> Result<reqwest::Client> {
        let roots = reqwest::Certificate::from_pem_bundle(self.ca_pem.as_bytes())?;
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = format!("Bearer {}", self.admin_token)
            .parse()
            .map_err(|_| Error::Check("the admin token is not a header value".into()))?;
        headers.insert(reqwest::header::AUTHORIZATION, bearer);
        Ok(reqwest::Client::builder()
            .tls_certs_only(roots)
            .default_headers(headers)
            .build()?)
    }
}
