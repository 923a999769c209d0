//! Where the simulated proxies and exporters send: an endpoint, and optionally TLS (the
//! CA that signed the server's certificate, a client certificate for mTLS) and a token
//! sent as `authorization: Bearer <token>`, as Envoy's `initial_metadata` and OTLP
//! exporters' `headers` send it.

use tonic::Status;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A gRPC server to send to.
#[derive(Clone, Default)]
pub struct Peer {
    /// `http://127.0.0.1:4317`, or `https://…` with TLS.
    pub endpoint: String,
    /// PEM CA certificates to trust (TLS when set).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and key presented to the server (mTLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server's certificate must hold (default: the endpoint's host).
    pub server_name: Option<String>,
    /// Sent as `authorization: Bearer <token>` with every call.
    pub token: Option<String>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the client key.
        f.debug_struct("Peer")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl From<&str> for Peer {
    fn from(endpoint: &str) -> Peer {
        Peer {
            endpoint: endpoint.to_string(),
            ..Peer::default()
        }
    }
}

impl From<&String> for Peer {
    fn from(endpoint: &String) -> Peer {
        Peer::from(endpoint.as_str())
    }
}

impl From<String> for Peer {
    fn from(endpoint: String) -> Peer {
        Peer::from(endpoint.as_str())
    }
}

impl From<&Peer> for Peer {
    fn from(peer: &Peer) -> Peer {
        peer.clone()
    }
}

impl Peer {
    /// A connected channel.
    pub async fn channel(&self) -> Result<tonic::transport::Channel, Status> {
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(ca) = &self.ca_pem {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &self.server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Status::invalid_argument(format!("TLS settings: {e}")))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("connect {}: {e}", self.endpoint)))
    }

    /// `request` with the token, if any.
    pub fn authorize<T>(
        &self,
        mut request: tonic::Request<T>,
    ) -> Result<tonic::Request<T>, Status> {
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// The first DNS name a PEM certificate chain's leaf holds (`localhost`, …), wildcards
/// (`*.example.com`) skipped: they name no host to connect to.
pub fn first_dns_name(chain_pem: &[u8]) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem)
        .next()?
        .ok()?;
    let cert = webpki::EndEntityCert::try_from(&leaf).ok()?;
    cert.valid_dns_names()
        .find(|n| !n.starts_with('*'))
        .map(str::to_string)
}
