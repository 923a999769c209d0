//! A traced shop for the demo and `bench otlp`: OTLP spans as
//! instrumented services export them.
//!
//! `storefront.shop` serves users (root SERVER spans: the `user` edge), calls
//! `catalog.shop` (CLIENT → SERVER pairs), which queries PostgreSQL (a `postgresql/catalog`
//! database node); some requests pay through an external API (an unpaired CLIENT span:
//! `api.payments.example:443`) and publish an order event that `mailer.shop` consumes
//! (PRODUCER → CONSUMER: a messaging edge). Separately, [`mesh_server_spans`] makes the
//! meshed `ratings.default` an instrumented service too, so the demo shows the mesh and
//! traces reporting the same calls and meshscope counting them once.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::sim::{Hop, Mesh, Rng, Target};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn i(v: i64) -> Value {
    Value::IntValue(v)
}

/// A process exporting spans: service name, namespace and pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Process {
    pub name: &'static str,
    pub namespace: &'static str,
    pub pod: String,
}

impl Process {
    fn resource(&self) -> Resource {
        Resource {
            attributes: vec![
                kv("service.name", s(self.name)),
                kv("service.namespace", s(self.namespace)),
                kv("service.instance.id", s(&self.pod)),
                kv("k8s.pod.name", s(&self.pod)),
                kv("telemetry.sdk.language", s("rust")),
                kv("telemetry.sdk.name", s("opentelemetry")),
            ],
            ..Default::default()
        }
    }
}

/// Spans of one or more requests, per exporting process.
#[derive(Debug, Default)]
pub struct Spans {
    pub by_process: BTreeMap<Process, Vec<Span>>,
}

impl Spans {
    fn push(&mut self, p: &Process, span: Span) {
        self.by_process.entry(p.clone()).or_default().push(span);
    }

    /// Export requests as each process's SDK would send them: one per process, at most
    /// `max_spans` spans each.
    pub fn requests(self, max_spans: usize) -> Vec<ExportTraceServiceRequest> {
        let mut out = Vec::new();
        for (process, spans) in self.by_process {
            for chunk in spans.chunks(max_spans.max(1)) {
                out.push(ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        resource: Some(process.resource()),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "meshscope-demo".into(),
                                ..Default::default()
                            }),
                            spans: chunk.to_vec(),
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    }],
                });
            }
        }
        out
    }
}

/// Generates the shop's traces.
pub struct Shop {
    rng: Rng,
    storefront: Vec<Process>,
    catalog: Vec<Process>,
    mailer: Process,
}

struct SpanArgs<'a> {
    trace: [u8; 16],
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    name: &'a str,
    start: i64,
    nanos: u64,
    error: bool,
    attributes: Vec<KeyValue>,
}

impl Shop {
    /// A shop with a fixed seed.
    pub fn new(seed: u64) -> Shop {
        let pods = |name: &'static str, namespace: &'static str, n: usize| -> Vec<Process> {
            (0..n)
                .map(|k| Process {
                    name,
                    namespace,
                    pod: format!("{name}-{}", 7000 + k),
                })
                .collect()
        };
        Shop {
            rng: Rng::new(seed),
            storefront: pods("storefront", "shop", 2),
            catalog: pods("catalog", "shop", 2),
            mailer: Process {
                name: "mailer",
                namespace: "shop",
                pod: "mailer-0".into(),
            },
        }
    }

    fn id<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.rng.next_u64() | 1;
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        out
    }

    fn span(&mut self, a: SpanArgs<'_>) -> ([u8; 8], Span) {
        let span_id: [u8; 8] = self.id();
        let span = Span {
            trace_id: a.trace.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: a.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: a.name.into(),
            kind: a.kind as i32,
            start_time_unix_nano: a.start as u64,
            end_time_unix_nano: a.start as u64 + a.nanos,
            attributes: a.attributes,
            status: a.error.then(|| Status {
                code: StatusCode::Error as i32,
                message: "failed".into(),
            }),
            ..Default::default()
        };
        (span_id, span)
    }

    /// A random index into a list of `len` processes.
    fn pick(&mut self, len: usize) -> usize {
        self.rng.range(0, len as u64) as usize
    }

    /// One user request at `t` (unix nanoseconds) and everything it causes.
    pub fn request(&mut self, t: i64, out: &mut Spans) {
        let trace: [u8; 16] = self.id();
        let front = self.pick(self.storefront.len());
        let front = self.storefront[front].clone();
        let catalog = self.pick(self.catalog.len());
        let catalog = self.catalog[catalog].clone();
        let item = self.rng.range(1, 5000);
        let front_error = self.rng.chance(0.02);
        let total = self.rng.range(20, 120) * 1_000_000;
        let (root, span) = self.span(SpanArgs {
            trace,
            parent: None,
            kind: SpanKind::Server,
            name: "GET /products/{id}",
            start: t,
            nanos: total,
            error: front_error,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/products/{id}")),
                kv("url.path", s(&format!("/products/{item}"))),
                kv(
                    "http.response.status_code",
                    i(if front_error { 500 } else { 200 }),
                ),
                kv("server.address", s("shop.example.com")),
            ],
        });
        out.push(&front, span);

        // storefront → catalog, and catalog → PostgreSQL.
        let c_start = t + 2_000_000;
        let c_nanos = total / 2;
        let catalog_error = self.rng.chance(0.03);
        let (client, span) = self.span(SpanArgs {
            trace,
            parent: Some(root),
            kind: SpanKind::Client,
            name: "GET",
            start: c_start,
            nanos: c_nanos,
            error: catalog_error,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("server.address", s("catalog")),
                kv("server.port", i(8080)),
                kv("url.full", s(&format!("http://catalog:8080/items/{item}"))),
                kv(
                    "http.response.status_code",
                    i(if catalog_error { 503 } else { 200 }),
                ),
            ],
        });
        out.push(&front, span);
        let (served, span) = self.span(SpanArgs {
            trace,
            parent: Some(client),
            kind: SpanKind::Server,
            name: "GET /items/{id}",
            start: c_start + 500_000,
            nanos: c_nanos - 1_000_000,
            error: catalog_error,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/items/{id}")),
                kv(
                    "http.response.status_code",
                    i(if catalog_error { 503 } else { 200 }),
                ),
            ],
        });
        out.push(&catalog, span);
        let queries = self.rng.range(1, 3);
        for q in 0..queries {
            let nanos = self.rng.range(1, 8) * 1_000_000;
            let (_, span) = self.span(SpanArgs {
                trace,
                parent: Some(served),
                kind: SpanKind::Client,
                name: "SELECT catalog.items",
                start: c_start + 1_000_000 + q as i64 * 3_000_000,
                nanos,
                error: false,
                attributes: vec![
                    kv("db.system", s("postgresql")),
                    kv("db.namespace", s("catalog")),
                    kv("db.operation.name", s("SELECT")),
                    kv("server.address", s("pg.shop.svc")),
                    kv("server.port", i(5432)),
                ],
            });
            out.push(&catalog, span);
        }

        // Some requests pay through an external API nobody traces.
        if self.rng.chance(0.3) {
            let (_, span) = self.span(SpanArgs {
                trace,
                parent: Some(root),
                kind: SpanKind::Client,
                name: "POST",
                start: t + c_nanos as i64,
                nanos: total / 3,
                error: false,
                attributes: vec![
                    kv("http.request.method", s("POST")),
                    kv("server.address", s("api.payments.example")),
                    kv("server.port", i(443)),
                    kv("http.response.status_code", i(200)),
                ],
            });
            out.push(&front, span);
        }

        // Some publish an order event for the mailer.
        if self.rng.chance(0.2) {
            let (producer, span) = self.span(SpanArgs {
                trace,
                parent: Some(root),
                kind: SpanKind::Producer,
                name: "orders publish",
                start: t + total as i64 - 5_000_000,
                nanos: 1_000_000,
                error: false,
                attributes: vec![
                    kv("messaging.system", s("kafka")),
                    kv("messaging.destination.name", s("orders")),
                ],
            });
            out.push(&front, span);
            let mailer = self.mailer.clone();
            let nanos = self.rng.range(5, 30) * 1_000_000;
            let (_, span) = self.span(SpanArgs {
                trace,
                parent: Some(producer),
                kind: SpanKind::Consumer,
                name: "orders process",
                start: t + total as i64 + 10_000_000,
                nanos,
                error: false,
                attributes: vec![
                    kv("messaging.system", s("kafka")),
                    kv("messaging.destination.name", s("orders")),
                ],
            });
            out.push(&mailer, span);
        }
    }

    /// The spans an instrumented `ratings.default` exports for the mesh's hops into it:
    /// a SERVER span per call (its caller, `reviews`, is not instrumented) and a MongoDB
    /// query under it. The mesh reports the same calls; meshscope counts them once.
    pub fn mesh_server_spans(&mut self, mesh: &Mesh, hops: &[Hop], out: &mut Spans) {
        for hop in hops {
            let Target::Workload(w) = hop.server else {
                continue;
            };
            let w = &mesh.workloads[w];
            if w.app != "ratings" {
                continue;
            }
            let process = Process {
                name: "ratings",
                namespace: "default",
                pod: w.pod.clone(),
            };
            let trace: [u8; 16] = self.id();
            // The caller's span lives in Envoy's or reviews' tracer, which is not exported here.
            let upstream: [u8; 8] = self.id();
            let error = hop.is_error();
            let (served, span) = self.span(SpanArgs {
                trace,
                parent: Some(upstream),
                kind: SpanKind::Server,
                name: "GET /ratings/{id}",
                start: hop.start_unix_nanos,
                nanos: hop.server_latency_nanos,
                error,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/ratings/{id}")),
                    kv("http.response.status_code", i(i64::from(hop.status))),
                ],
            });
            out.push(&process, span);
            let (_, span) = self.span(SpanArgs {
                trace,
                parent: Some(served),
                kind: SpanKind::Client,
                name: "find ratings",
                start: hop.start_unix_nanos + 100_000,
                nanos: hop.server_latency_nanos / 2,
                error: false,
                attributes: vec![
                    kv("db.system", s("mongodb")),
                    kv("db.namespace", s("ratings")),
                    kv("db.operation.name", s("find")),
                ],
            });
            out.push(&process, span);
        }
    }
}

/// An OTLP/gRPC trace exporter connection (what an SDK's exporter does, minus batching).
pub struct Exporter {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    peer: crate::sim::Peer,
}

impl Exporter {
    /// Connects to `peer` (`http://127.0.0.1:4317`, or a [`crate::sim::Peer`] with TLS
    /// and a token).
    pub async fn connect(peer: impl Into<crate::sim::Peer>) -> Result<Exporter, tonic::Status> {
        let peer = peer.into();
        Ok(Exporter {
            grpc: crate::sim::connect(&peer).await?,
            peer,
        })
    }

    /// Sends one export request and returns the answer.
    pub async fn export(
        &mut self,
        request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<ExportTraceServiceRequest, ExportTraceServiceResponse>::default();
        self.grpc
            .unary(
                self.peer.authorize(tonic::Request::new(request))?,
                tonic::codegen::http::uri::PathAndQuery::from_static(collector::otlp::METHOD_PATH),
                codec,
            )
            .await
            .map(tonic::Response::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_yields_a_root_a_pair_and_a_query() {
        let mut shop = Shop::new(1);
        let mut spans = Spans::default();
        for k in 0..50 {
            shop.request(1_700_000_000_000_000_000 + k, &mut spans);
        }
        let all: Vec<&Span> = spans.by_process.values().flatten().collect();
        let roots = all.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert_eq!(roots, 50);
        let servers = all
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        assert_eq!(servers, 100);
        let requests = spans.requests(10);
        assert!(
            requests
                .iter()
                .all(|r| r.resource_spans[0].scope_spans[0].spans.len() <= 10)
        );
    }
}
