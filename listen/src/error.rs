//! The listeners' error type.

/// Errors of TLS and token setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A TLS file cannot be read or used; the message names it.
    #[error("TLS: {0}")]
    Tls(String),
    /// A token file cannot be read; the message names it.
    #[error("{0}")]
    Tokens(String),
}
