//! OTLP/HTTP: `POST /v1/traces` with `application/x-protobuf` or `application/json`
//! (optionally gzip, bounded after decompression), answered in the request's encoding;
//! errors carry a `google.rpc.Status`.

use super::cost::{json_cost, request_cost};
use crate::budget::DecodeBudget;
use std::io::Read;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;
use tracing::warn;

use super::OtlpReceiver;
use crate::reject::Rejection;

impl OtlpReceiver {
    /// The OTLP/HTTP router: `POST /v1/traces`.
    pub fn http_router(&self) -> Router {
        Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .fallback(http_not_found)
            .with_state(self.clone())
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

fn encoded(encoding: Encoding, status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

/// `google.rpc.Status` in OTLP/JSON.
#[derive(Serialize)]
struct JsonStatus<'a> {
    code: i32,
    message: &'a str,
}

/// The `google.rpc.Status` code of an HTTP error status (the OTLP/HTTP mapping).
fn rpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        s if s.is_server_error() => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    }
}

/// An error answer in the request's encoding (JSON when it is unknown), with the
/// `google.rpc.Status` code that goes with `status`.
fn http_error(encoding: Encoding, status: StatusCode, message: String) -> Response {
    let code = rpc_code(status);
    let body = match encoding {
        Encoding::Protobuf => RpcStatus {
            code: code as i32,
            message,
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&JsonStatus {
            code: code as i32,
            message: &message,
        })
        .unwrap_or_default(),
    };
    encoded(encoding, status, body)
}

async fn http_not_found() -> Response {
    http_error(
        Encoding::Json,
        StatusCode::NOT_FOUND,
        "not found: OTLP/HTTP traces are accepted at POST /v1/traces".into(),
    )
}

/// Reads at most `limit` bytes of the body; `None` when it is longer.
async fn read_limited(body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(Some(b)),
        Err(e) => {
            // `to_bytes` reports an exceeded limit as a `LengthLimitError` source.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Ok(None);
                }
                source = s.source();
            }
            Err(e)
        }
    }
}

enum Gunzip {
    Done(Vec<u8>),
    TooLarge,
    Corrupt(std::io::Error),
}

fn gunzip(bytes: &[u8], limit: usize) -> Gunzip {
    let mut out = Vec::new();
    let reader = flate2::read::MultiGzDecoder::new(bytes);
    match reader.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Gunzip::TooLarge,
        Ok(_) => Gunzip::Done(out),
        Err(e) => Gunzip::Corrupt(e),
    }
}

async fn http_export(
    State(receiver): State<OtlpReceiver>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &receiver.inner.metrics;
    let limit = receiver.inner.max_message_bytes;
    let reject = |encoding, rejection: Rejection| {
        let reason = rejection.reason();
        metrics.request_rejected("http", reason);
        warn!(reason, message = %rejection, "OTLP/HTTP export request rejected");
        http_error(encoding, rejection.http_status(), rejection.to_string())
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return reject(
                Encoding::Json,
                Rejection::UnsupportedMediaType(format!(
                    "Content-Type {content_type:?} is not supported: send application/x-protobuf or application/json"
                )),
            );
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return reject(
                encoding,
                Rejection::BadEncoding(format!(
                    "Content-Encoding {other:?} is not supported: send gzip or no encoding"
                )),
            );
        }
    };
    let too_large = |what: &str| {
        reject(
            encoding,
            Rejection::TooLarge(format!(
                "{what} is larger than the limit of {limit} bytes (collector.max_message_bytes)"
            )),
        )
    };
    let raw = match read_limited(body, limit).await {
        Ok(Some(b)) => b,
        Ok(None) => return too_large("the request body"),
        Err(e) => {
            return reject(
                encoding,
                Rejection::ReadError(format!("reading the request body failed: {e}")),
            );
        }
    };
    let raw = if gzip {
        match gunzip(&raw, limit) {
            Gunzip::Done(v) => Bytes::from(v),
            Gunzip::TooLarge => return too_large("the decompressed request body"),
            Gunzip::Corrupt(e) => {
                return reject(
                    encoding,
                    Rejection::Malformed(format!("the gzip body does not decompress: {e}")),
                );
            }
        }
    } else {
        raw
    };
    let cost = match encoding {
        Encoding::Protobuf => match request_cost(&raw) {
            Ok(c) => c,
            Err(_) => {
                return reject(
                    encoding,
                    Rejection::Malformed(format!(
                        "the body is not an OTLP ExportTraceServiceRequest ({}): not a protobuf message",
                        encoding.content_type()
                    )),
                );
            }
        },
        Encoding::Json => json_cost(&raw),
    };
    let charge = match receiver
        .inner
        .budget
        .charge(cost, "the OTLP/HTTP export request")
    {
        Ok(c) => c,
        Err(r) => return reject(encoding, r),
    };
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(raw).map_err(|e| e.to_string()),
        Encoding::Json => {
            serde_json::from_slice::<ExportTraceServiceRequest>(&raw).map_err(|e| e.to_string())
        }
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return reject(
                encoding,
                Rejection::Malformed(format!(
                    "the body is not an OTLP ExportTraceServiceRequest ({}): {e}",
                    encoding.content_type()
                )),
            );
        }
    };
    match receiver.export(DecodeBudget::attach(request, charge)).await {
        Ok(done) => {
            let response = done.response();
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => match serde_json::to_vec(&response) {
                    Ok(b) => b,
                    Err(e) => {
                        return http_error(
                            encoding,
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("encoding the response failed: {e}"),
                        );
                    }
                },
            };
            encoded(encoding, StatusCode::OK, body)
        }
        Err(rejection) => http_error(encoding, rejection.http_status(), rejection.to_string()),
    }
}
