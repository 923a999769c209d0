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

/// A tracer provider for one process (`service.name`, namespace, pod) exporting to `stack`.
pub fn provider(
    stack: &Stack,
    transport: Transport,
    name: &str,
    namespace: &str,
    pod: &str,
) -> SdkTracerProvider {
    let timeout = Duration::from_secs(20);
    let exporter = match transport {
        Transport::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(stack.grpc.clone())
            .with_compression(Compression::Gzip)
            .with_timeout(timeout)
            .build(),
        Transport::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", stack.otlp_http))
            .with_compression(Compression::Gzip)
            .with_timeout(timeout)
            .build(),
        Transport::HttpJson => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(format!("{}/v1/traces", stack.otlp_http))
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
