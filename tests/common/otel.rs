//! The real OpenTelemetry SDK and OTLP exporter, pointed at a test stack.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_otlp::{
    Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::Stack;

/// How a provider exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC, gzip-compressed.
    Grpc,
    /// OTLP/HTTP with protobuf bodies, gzip-compressed.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies, uncompressed.
    HttpJson,
}

/// Where exporters send, and how: plain, or TLS trusting `ca_pem` with a token sent as
/// `authorization: Bearer` metadata (gRPC) or header (HTTP), as SDKs configured with
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` and `OTEL_EXPORTER_OTLP_HEADERS` send.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `http(s)://127.0.0.1:4317`.
    pub grpc: String,
    /// `http(s)://127.0.0.1:4318`.
    pub otlp_http: String,
    pub ca_pem: Option<String>,
    pub token: Option<String>,
}

/// A tracer provider for one process (`service.name`, namespace, pod) exporting to `stack`.
pub fn provider(
    stack: &Stack,
    transport: Transport,
    name: &str,
    namespace: &str,
    pod: &str,
) -> SdkTracerProvider {
    let target = Target {
        grpc: stack.grpc.clone(),
        otlp_http: stack.otlp_http.clone(),
        ..Target::default()
    };
    provider_to(&target, transport, name, namespace, pod)
}

/// A tracer provider for one process exporting to `target`.
pub fn provider_to(
    target: &Target,
    transport: Transport,
    name: &str,
    namespace: &str,
    pod: &str,
) -> SdkTracerProvider {
    let timeout = Duration::from_secs(20);
    let headers: std::collections::HashMap<String, String> = target
        .token
        .iter()
        .map(|t| ("authorization".to_string(), format!("Bearer {t}")))
        .collect();
    // The HTTP exporters' blocking client trusting the CA, made on a thread of its own (a
    // blocking client owns a runtime, which an async context may not create or drop).
    let http_client = |builder: opentelemetry_otlp::SpanExporterBuilder<
        opentelemetry_otlp::HttpExporterBuilderSet,
    >| match &target.ca_pem {
        None => builder,
        Some(ca) => {
            let config = super::tls::client_config(ca);
            let client = std::thread::spawn(move || {
                reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .tls_backend_preconfigured(config)
                    .build()
                    .expect("HTTP client")
            })
            .join()
            .expect("client thread");
            builder.with_http_client(client)
        }
    };
    let exporter = match transport {
        Transport::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            if let Some(t) = &target.token {
                metadata.insert(
                    "authorization",
                    format!("Bearer {t}").parse().expect("header value"),
                );
            }
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(target.grpc.clone())
                .with_compression(Compression::Gzip)
                .with_timeout(timeout)
                .with_metadata(metadata);
            if let Some(ca) = &target.ca_pem {
                builder = builder.with_tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                );
            }
            builder.build()
        }
        Transport::HttpProtobuf => http_client(SpanExporter::builder().with_http())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", target.otlp_http))
            .with_headers(headers)
            .with_compression(Compression::Gzip)
            .with_timeout(timeout)
            .build(),
        Transport::HttpJson => http_client(SpanExporter::builder().with_http())
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(format!("{}/v1/traces", target.otlp_http))
            .with_headers(headers)
            .with_timeout(timeout)
            .build(),
    }
    .expect("build the OTLP exporter");
    let resource = Resource::builder_empty()
        .with_service_name(name.to_string())
        .with_attributes([
            KeyValue::new("service.namespace", namespace.to_string()),
            KeyValue::new("k8s.pod.name", pod.to_string()),
        ])
        .build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build()
}

/// Flushes and shuts down every provider (their exporters block, so off the runtime).
pub async fn finish(providers: Vec<SdkTracerProvider>) {
    tokio::task::spawn_blocking(move || {
        for p in providers {
            p.force_flush().expect("force_flush");
            p.shutdown().expect("shutdown");
        }
    })
    .await
    .expect("exporter thread");
}

/// A unix-nanosecond time as `SystemTime`.
pub fn at(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos as u64)
}

/// A span context from a process that exports nowhere (an uninstrumented caller's proxy).
pub fn foreign_parent(seed: u64) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(((u128::from(seed) << 64) | 0xabcdef).to_be_bytes()),
        SpanId::from_bytes((seed | 1 << 63).to_be_bytes()),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}
