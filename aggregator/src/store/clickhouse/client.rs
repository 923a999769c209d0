//! A small client for ClickHouse's HTTP interface: one POST per statement, the SQL in the
//! body, `wait_end_of_query=1` so an error cannot follow a 200 status, and never
//! `compress=1` (ClickHouse 18.16 answers it with an empty 200).

use std::time::Duration;

use bytes::Bytes;

use crate::error::chain;
use crate::store::ClickHouseConfig;
use crate::store::config::pem_roots;
use crate::{Error, Result};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    user: String,
    password: String,
    /// The client's timeout in whole seconds, also sent as `max_execution_time` so the
    /// server stops a statement the client stopped waiting for.
    timeout_secs: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// ClickHouse's error code in an error body (`Code: 57, e.displayText() = …`).
pub fn error_code(body: &str) -> Option<u32> {
    let rest = body.trim_start().strip_prefix("Code: ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

impl Client {
    /// A client as `config` says: its URL, user, password (or password file) and CA file.
    pub fn connect(config: &ClickHouseConfig) -> Result<Client> {
        Client::build(
            &config.url,
            &config.user,
            &config.password()?,
            config.timeout,
            config.ca_roots()?,
        )
    }

    /// `url` like `http://127.0.0.1:8123`; an `https://` URL is checked against the
    /// system's roots.
    pub fn new(url: &str, user: &str, password: &str, timeout: Duration) -> Result<Client> {
        Client::build(url, user, password, timeout, None)
    }

    /// Like [`Client::new`]; `ca_pem`, when given, holds the only CA certificates an
    /// `https://` server's certificate may chain to.
    pub fn with_roots(
        url: &str,
        user: &str,
        password: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Client> {
        let roots = ca_pem
            .map(pem_roots)
            .transpose()
            .map_err(|m| Error::Config(format!("ClickHouse CA certificates: {m}")))?;
        Client::build(url, user, password, timeout, roots)
    }

    fn build(
        url: &str,
        user: &str,
        password: &str,
        timeout: Duration,
        roots: Option<Vec<reqwest::Certificate>>,
    ) -> Result<Client> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("ClickHouse url {url:?}: {e}")))?;
        // reqwest's TLS needs a process-wide crypto provider even for plain http URLs;
        // an installed one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(roots) = roots {
            builder = builder.tls_certs_only(roots);
        }
        let http = builder.build().map_err(|e| Error::ClickHouse {
            code: None,
            message: format!("building the HTTP client: {e}"),
        })?;
        Ok(Client {
            http,
            url,
            user: user.to_string(),
            password: password.to_string(),
            timeout_secs: timeout.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Runs one statement; its output (in the statement's `FORMAT`).
    pub async fn execute(&self, sql: &str) -> Result<Bytes> {
        self.send(Bytes::from(sql.to_string()), None).await
    }

    /// Runs `INSERT … FORMAT …` (`query`) with `data` as the body, as query `id`: while
    /// an earlier attempt with the same id still runs on the server (the client gave up
    /// waiting), ClickHouse refuses this one (code 216) instead of running both.
    pub async fn insert(&self, query: &str, data: Bytes, id: &str) -> Result<()> {
        self.send(data, Some((query, id))).await.map(drop)
    }

    async fn send(&self, body: Bytes, query: Option<(&str, &str)>) -> Result<Bytes> {
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("wait_end_of_query", "1");
        if let Some((q, id)) = query {
            url.query_pairs_mut()
                .append_pair("query", q)
                .append_pair("query_id", id);
        } else {
            url.query_pairs_mut()
                .append_pair("max_execution_time", &self.timeout_secs.to_string());
        }
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.user, Some(&self.password))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let message = format!("{}: {}", self.url, chain(&e));
                if refused_by_tls(&e) {
                    Error::ClickHouseTls(message)
                } else {
                    Error::ClickHouse {
                        code: None,
                        message,
                    }
                }
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::ClickHouse {
            code: None,
            message: format!("reading the answer of {}: {e}", self.url),
        })?;
        if status.is_success() {
            Ok(bytes)
        } else {
            let text = String::from_utf8_lossy(&bytes);
            Err(Error::ClickHouse {
                code: error_code(&text),
                message: format!("{status}: {}", text.trim()),
            })
        }
    }
}

/// Whether rustls ended the connection: an error somewhere in the chain, or wrapped in an
/// `io::Error` of it (whose `source` skips the error it wraps; reqwest nests them).
fn refused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut pending: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    while let Some(err) = pending.pop() {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            pending.push(inner);
        }
        if let Some(next) = err.source() {
            pending.push(next);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_the_body() {
        assert_eq!(
            error_code("Code: 57, e.displayText() = DB::Exception: Table x already exists"),
            Some(57)
        );
        assert_eq!(
            error_code("Code: 81. DB::Exception: Database y doesn't exist"),
            Some(81)
        );
        assert_eq!(error_code("Bad gateway"), None);
    }
}
