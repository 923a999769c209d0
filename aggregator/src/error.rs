//! The aggregator's error type, and the one classification of it that the APIs map to
//! their wire statuses.

use std::path::PathBuf;

/// Errors of the aggregator and its stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store i/o at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("manifest {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("stored data does not match the schema: {0}")]
    Schema(String),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the aggregator has stopped")]
    Stopped,
    #[error("data dir {0} is in use by another meshscope process")]
    Locked(PathBuf),
    #[error("ClickHouse: {message}")]
    ClickHouse { code: Option<u32>, message: String },
    /// The TLS handshake with an `https://` ClickHouse failed (its certificate does not
    /// chain to the trusted CAs, names another host, has expired, …).
    #[error("ClickHouse TLS: {0}")]
    ClickHouseTls(String),
    #[error("{0}")]
    Config(String),
    #[error("write backlog full: {0}")]
    Backlog(String),
    /// A read asked for something the tables cannot answer (a key a table lacks).
    #[error("bad request: {0}")]
    Request(String),
    /// A scan whose answer would hold more rows than its request's `max_rows`.
    #[error("the read would return more than {0} rows")]
    TooManyRows(usize),
    /// A read stopped by one of its bounds (rows, deadline); the message names the
    /// setting.
    #[error("{message}")]
    Bounded { kind: ErrorKind, message: String },
}

/// An error and its sources, `a: b: c` (reqwest's own text hides a TLS failure's reason).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an error means to whoever asked: the JSON API and the Prometheus API turn it into
/// their status codes from this, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be answered as asked (HTTP 400).
    BadRequest,
    /// Something the answer needs is down or overloaded for now; retrying later can work
    /// (HTTP 503).
    Unavailable,
    /// A fault of meshscope or its data (HTTP 500).
    Internal,
    /// The request is well-formed but would cost more than a bound allows (HTTP 422).
    TooLarge,
}

/// ClickHouse error codes that pass: timeouts, too many queries, the network, memory
/// limits, a table or database not there yet (the shipper re-creates them).
const CLICKHOUSE_TRANSIENT: [u32; 8] = [60, 81, 159, 202, 209, 210, 241, 242];

impl Error {
    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Request(_) => ErrorKind::BadRequest,
            Error::Bounded { kind, .. } => *kind,
            Error::TooManyRows(_) => ErrorKind::TooLarge,
            Error::Stopped | Error::Backlog(_) => ErrorKind::Unavailable,
            // No code: ClickHouse did not answer (connection refused, reset, timed out).
            Error::ClickHouse { code: None, .. } | Error::ClickHouseTls(_) => {
                ErrorKind::Unavailable
            }
            Error::ClickHouse {
                code: Some(code), ..
            } if CLICKHOUSE_TRANSIENT.contains(code) => ErrorKind::Unavailable,
            Error::Io { .. }
            | Error::DataFusion(_)
            | Error::Parquet(_)
            | Error::Arrow(_)
            | Error::Manifest { .. }
            | Error::Schema(_)
            | Error::Join(_)
            | Error::Locked(_)
            | Error::ClickHouse { .. }
            | Error::Config(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_or_stopped_is_unavailable_and_broken_data_internal() {
        let ch = |code| Error::ClickHouse {
            code,
            message: String::new(),
        };
        assert_eq!(Error::Stopped.kind(), ErrorKind::Unavailable);
        assert_eq!(ch(None).kind(), ErrorKind::Unavailable);
        assert_eq!(ch(Some(202)).kind(), ErrorKind::Unavailable);
        assert_eq!(ch(Some(62)).kind(), ErrorKind::Internal);
        assert_eq!(Error::Schema("x".into()).kind(), ErrorKind::Internal);
        assert_eq!(Error::Request("x".into()).kind(), ErrorKind::BadRequest);
    }
}
