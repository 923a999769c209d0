//! `[http]`: the bounds of every HTTP listener.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[http]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Most connections open at once on one listener; further ones are closed at once
    /// and counted.
    pub max_connections: usize,
    /// A client must send a request's headers within this time of the connection opening
    /// or of its previous answer; past it the connection is closed. This is also the idle
    /// timeout of keep-alive connections.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest one request may take, its body and the answer included: past it the
    /// answer is `408` and the connection closes. Keep it above `api.query_timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
        }
    }
}

impl HttpConfig {
    /// Checks the settings; the message names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err("http.max_connections must be between 1 and 1000000".into());
        }
        let sane = |d: Duration| !d.is_zero() && d <= Duration::from_secs(3600);
        if !sane(self.header_read_timeout) || !sane(self.request_timeout) {
            return Err(
                "http.header_read_timeout and http.request_timeout must be between 1ms and 1h"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The three listeners, for their TLS files and their counters' `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// gRPC: ALS and OTLP (4317).
    Grpc,
    /// OTLP/HTTP (4318).
    OtlpHttp,
    /// The HTTP API (8080).
    Api,
}

impl Listener {
    /// The `listener` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::OtlpHttp => "otlp_http",
            Listener::Api => "api",
        }
    }
}

/// One listener's TLS files in `[tls.grpc]`, `[tls.otlp_http]` or `[tls.api]`; what is
/// not set comes from `[tls]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// This listener's certificate chain (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// This listener's private key (with `cert_file`).
    pub key_file: Option<PathBuf>,
    /// CA whose client certificates this listener requires.
    pub client_ca_file: Option<PathBuf>,
}

/// `[tls]`: PEM files for every listener (`--tls-cert`, `--tls-key`,
/// `--tls-client-ca`), each listener may override them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first. With `key_file`, every listener serves TLS.
    pub cert_file: Option<PathBuf>,
    /// Private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates: the ingest listeners (gRPC, OTLP/HTTP) then require a client
    /// certificate it signed. The API takes it only from `[tls.api]`.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are read again (rotation without a restart).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// `[tls.grpc]`.
    pub grpc: ListenerTlsConfig,
    /// `[tls.otlp_http]`.
    pub otlp_http: ListenerTlsConfig,
    /// `[tls.api]`.
    pub api: ListenerTlsConfig,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval: Duration::from_secs(10),
            grpc: ListenerTlsConfig::default(),
            otlp_http: ListenerTlsConfig::default(),
            api: ListenerTlsConfig::default(),
        }
    }
}

impl TlsConfig {
    /// `listener`'s own section (`[tls.grpc]`, `[tls.otlp_http]`, `[tls.api]`).
    fn own(&self, listener: Listener) -> &ListenerTlsConfig {
        match listener {
            Listener::Grpc => &self.grpc,
            Listener::OtlpHttp => &self.otlp_http,
            Listener::Api => &self.api,
        }
    }

    /// The files `listener` serves TLS with, or `None` for plain text.
    pub fn files(&self, listener: Listener) -> Option<crate::tls::TlsFiles> {
        let own = self.own(listener);
        let cert = own.cert_file.clone().or_else(|| self.cert_file.clone())?;
        let key = own.key_file.clone().or_else(|| self.key_file.clone())?;
        let inherited_ca = match listener {
            Listener::Grpc | Listener::OtlpHttp => self.client_ca_file.clone(),
            Listener::Api => None,
        };
        Some(crate::tls::TlsFiles {
            cert,
            key,
            client_ca: own.client_ca_file.clone().or(inherited_ca),
        })
    }

    /// Checks the settings; the message names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(
                "tls.cert_file (--tls-cert) and tls.key_file (--tls-key) go together".into(),
            );
        }
        let listeners = [Listener::Grpc, Listener::OtlpHttp, Listener::Api];
        for listener in listeners {
            let own = self.own(listener);
            if own.cert_file.is_some() != own.key_file.is_some() {
                return Err(format!(
                    "tls.{0}.cert_file and tls.{0}.key_file go together",
                    listener.as_str()
                ));
            }
            let set =
                own.cert_file.is_some() || own.key_file.is_some() || own.client_ca_file.is_some();
            if set && self.files(listener).is_none() {
                return Err(format!(
                    "tls.{} needs a certificate and a key, its own or from [tls]",
                    listener.as_str()
                ));
            }
        }
        if self.client_ca_file.is_some()
            && self.files(Listener::Grpc).is_none()
            && self.files(Listener::OtlpHttp).is_none()
        {
            return Err(
                "tls.client_ca_file (--tls-client-ca) needs a certificate and a key (--tls-cert, --tls-key)"
                    .into(),
            );
        }
        if self.reload_interval < Duration::from_millis(100)
            || self.reload_interval > Duration::from_secs(3600)
        {
            return Err("tls.reload_interval must be between 100ms and 1h".into());
        }
        Ok(())
    }
}

/// `[auth]`: token files (`--ingest-tokens-file`, `--read-tokens-file`,
/// `--admin-tokens-file`), see [`crate::tokens`].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens the gRPC and OTLP/HTTP listeners require.
    pub ingest_tokens_file: Option<PathBuf>,
    /// Tokens the JSON API, the Prometheus API and `/metrics` require.
    pub read_tokens_file: Option<PathBuf>,
    /// Tokens the admin endpoints require; they also read.
    pub admin_tokens_file: Option<PathBuf>,
    /// How often the files are read again; a changed token counts within this time.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            ingest_tokens_file: None,
            read_tokens_file: None,
            admin_tokens_file: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

impl AuthConfig {
    /// Checks the settings; the message names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.reload_interval < Duration::from_millis(100)
            || self.reload_interval > Duration::from_secs(10)
        {
            return Err("auth.reload_interval must be between 100ms and 10s".into());
        }
        Ok(())
    }
}
