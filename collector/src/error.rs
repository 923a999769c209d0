//! The collector's error type.

/// Errors of the receivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Config(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
