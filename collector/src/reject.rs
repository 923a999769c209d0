//! [`Rejection`]: why a receiver refused a message or a request. One type for both
//! receivers and both transports: it gives the gRPC code, the HTTP status and the bounded
//! counter reason, so a refusal looks the same wherever it happens.

use http::StatusCode;
use tonic::{Code, Status};

/// A refused ALS message, OTLP export request or stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// It does not decode (protobuf, JSON, gzip, gRPC framing).
    #[error("{0}")]
    Malformed(String),
    /// Larger than `collector.max_message_bytes`, before or after decompression.
    #[error("{0}")]
    TooLarge(String),
    /// A compression the receiver does not take.
    #[error("{0}")]
    BadEncoding(String),
    /// A `Content-Type` the receiver does not take (OTLP/HTTP).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body could not be read (OTLP/HTTP).
    #[error("{0}")]
    ReadError(String),
    /// An access-log stream sent entries before its identifier.
    #[error("the first message of an access-log stream must carry an identifier")]
    NoIdentifier,
    /// The client cancelled the stream.
    #[error("{0}")]
    Cancelled(String),
    /// Any other stream error, with the code the transport gave it.
    #[error("{1}")]
    Stream(Code, String),
    /// The aggregator has stopped: nothing more can be accepted.
    #[error("meshscope is shutting down")]
    ShuttingDown,
    /// A shared bound is spent for now (the decoding budget): retry later.
    #[error("{0}")]
    Busy(String),
}

impl Rejection {
    /// The counter label (`reason`): a fixed, bounded set.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::TooLarge(_) => "too_large",
            Rejection::BadEncoding(_) => "bad_encoding",
            Rejection::UnsupportedMediaType(_) => "unsupported_media_type",
            Rejection::ReadError(_) => "read_error",
            Rejection::NoIdentifier => "no_identifier",
            Rejection::Cancelled(_) => "cancelled",
            Rejection::Stream(..) => "stream_error",
            Rejection::ShuttingDown => "aggregator_stopped",
            Rejection::Busy(_) => "busy",
        }
    }

    /// The gRPC code: what a client may do about it (`RESOURCE_EXHAUSTED` is not retried
    /// by OTLP exporters, `UNAVAILABLE` is).
    pub fn code(&self) -> Code {
        match self {
            Rejection::Malformed(_)
            | Rejection::UnsupportedMediaType(_)
            | Rejection::ReadError(_)
            | Rejection::NoIdentifier => Code::InvalidArgument,
            Rejection::TooLarge(_) => Code::ResourceExhausted,
            Rejection::BadEncoding(_) => Code::Unimplemented,
            Rejection::Cancelled(_) => Code::Cancelled,
            Rejection::Stream(code, _) => *code,
            Rejection::ShuttingDown | Rejection::Busy(_) => Code::Unavailable,
        }
    }

    /// The HTTP status (OTLP/HTTP's mapping: 400, 413, 415, 503).
    pub fn http_status(&self) -> StatusCode {
        match self {
            Rejection::Malformed(_) | Rejection::ReadError(_) | Rejection::NoIdentifier => {
                StatusCode::BAD_REQUEST
            }
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BadEncoding(_) | Rejection::UnsupportedMediaType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Rejection::Cancelled(_) => StatusCode::REQUEST_TIMEOUT,
            Rejection::Stream(..) => StatusCode::INTERNAL_SERVER_ERROR,
            Rejection::ShuttingDown | Rejection::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status carrying the message.
    pub fn status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }

    /// The gRPC status with what was refused and why in front: `{what} ({reason}): …`.
    pub fn status_of(&self, what: &str) -> Status {
        Status::new(self.code(), format!("{what} ({}): {self}", self.reason()))
    }

    /// What an error reading a client stream means. tonic reports a message over the limit
    /// as `OUT_OF_RANGE` (or `RESOURCE_EXHAUSTED`) and an undecodable one as `INTERNAL`
    /// mentioning the decode; any other `INTERNAL` is the stream's own failure.
    pub fn of_stream_error(status: &Status) -> Rejection {
        let message = status.message().to_string();
        match status.code() {
            Code::OutOfRange | Code::ResourceExhausted => Rejection::TooLarge(message),
            Code::Internal if message.contains("decode") => Rejection::Malformed(message),
            Code::InvalidArgument => Rejection::Malformed(message),
            Code::Cancelled => Rejection::Cancelled(message),
            code => Rejection::Stream(code, message),
        }
    }

    /// What a failure before a unary service ran means, from its gRPC code: tonic fails
    /// there only on what the client sent — a bad frame or compression (`INTERNAL`), an
    /// undecodable message (`INVALID_ARGUMENT` from meshscope's codecs), a message over the
    /// limit (`OUT_OF_RANGE`), an unsupported encoding (`UNIMPLEMENTED`). `None` for any
    /// other code (not a refusal of the input).
    pub fn before_service(code: Code, message: &str) -> Option<Rejection> {
        let message = message.to_string();
        match code {
            Code::InvalidArgument | Code::Internal => Some(Rejection::Malformed(message)),
            Code::OutOfRange | Code::ResourceExhausted => Some(Rejection::TooLarge(message)),
            Code::Unimplemented => Some(Rejection::BadEncoding(message)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_errors_are_classified_once() {
        let r = Rejection::of_stream_error(&Status::out_of_range("too big"));
        assert_eq!(
            (r.reason(), r.code()),
            ("too_large", Code::ResourceExhausted)
        );
        assert_eq!(r.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = Rejection::of_stream_error(&Status::internal("failed to decode Protobuf"));
        assert_eq!((r.reason(), r.code()), ("malformed", Code::InvalidArgument));
        let r = Rejection::of_stream_error(&Status::internal("h2 protocol error"));
        assert_eq!((r.reason(), r.code()), ("stream_error", Code::Internal));
        assert_eq!(
            r.status_of("access-log message rejected").message(),
            "access-log message rejected (stream_error): h2 protocol error"
        );
        assert_eq!(
            Rejection::before_service(Code::Unimplemented, "zstd").map(|r| r.code()),
            Some(Code::Unimplemented)
        );
        assert_eq!(Rejection::before_service(Code::Unavailable, ""), None);
        assert_eq!(Rejection::ShuttingDown.status().code(), Code::Unavailable);
    }
}
