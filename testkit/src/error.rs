//! The test kit's error type: what stops a simulation, a benchmark or a check.

/// Errors of the simulator, the demo traffic and the benchmark drivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("gRPC: {0}")]
    Grpc(#[from] tonic::Status),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("store: {0}")]
    Store(#[from] aggregator::Error),
    #[error("decoding: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The server under test misbehaved, or a benchmark's own check failed.
    #[error("{0}")]
    Check(String),
    /// One of the above, with what was being done.
    #[error("{what}: {source}")]
    During { what: String, source: Box<Error> },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Says what was being done when an error happened (`.during("streaming")`).
pub(crate) trait During<T> {
    fn during(self, what: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<Error>> During<T> for std::result::Result<T, E> {
    fn during(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::During {
            what: what.into(),
            source: Box::new(e.into()),
        })
    }
}

/// An I/O error with what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
