//! OTLP traces end to end with the real OpenTelemetry SDK and `opentelemetry-otlp`
//! exporter, over gRPC (gzip), HTTP protobuf (gzip) and HTTP JSON: spans become calls,
//! edges and virtual nodes; every figure is checked against values computed here from
//! the spans the test made. Also: partial success, garbage and oversized bodies.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::otel::{self, Transport};
use common::{Stack, metric_value};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde_json::{Value, json};

/// What the API must report for one entity.
#[derive(Debug, Default, Clone)]
struct Expect {
    calls: u64,
    errors: u64,
    latencies: Vec<u64>,
    detect: Vec<&'static str>,
}

impl Expect {
    fn add(&mut self, error: bool, latency: u64) {
        self.calls += 1;
        self.errors += u64::from(error);
        self.latencies.push(latency);
    }
}

fn check(what: &str, got: &Value, want: &Expect) {
    common::check_calls_and_latency(what, got, want.calls, want.errors, &want.latencies);
}

type EdgeKey = (&'static str, &'static str, &'static str);

#[derive(Default)]
struct Truth {
    edges: BTreeMap<EdgeKey, Expect>,
    services: BTreeMap<&'static str, Expect>,
    endpoints: BTreeMap<(&'static str, &'static str), Expect>,
    spans: u64,
}

const MS: u64 = 1_000_000;

fn kv(k: &'static str, v: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(k, v)
}

/// The traced shop, made with the SDK: `n` user requests starting at `t0`.
fn shop(front: &SdkTracer, catalog: &SdkTracer, mailer: &SdkTracer, n: u64, t0: i64) -> Truth {
    let mut truth = Truth::default();
    let ms = MS as i64;
    for k in 0..n {
        let t = t0 + k as i64 * 7 * ms;
        // storefront: the root SERVER span; `user` calls it.
        let root_latency = (20 + k % 50) * MS;
        let root_error = k % 10 == 0;
        let mut root = front
            .span_builder("GET /products/{id}")
            .with_kind(SpanKind::Server)
            .with_start_time(otel::at(t))
            .with_attributes(vec![
                kv("http.request.method", "GET"),
                kv("http.route", "/products/{id}"),
                kv(
                    "http.response.status_code",
                    if root_error { 500i64 } else { 200 },
                ),
            ])
            .start_with_context(front, &Context::new());
        if root_error {
            root.set_status(Status::error("boom"));
        }
        let root_cx = Context::new().with_remote_span_context(root.span_context().clone());

        // storefront → catalog: a CLIENT/SERVER pair; catalog's 503s are errors (status
        // unset, HTTP ≥ 500).
        let c_latency = (10 + k % 7) * MS;
        let catalog_error = k % 15 == 0;
        let code = if catalog_error { 503i64 } else { 200 };
        let mut client = front
            .span_builder("GET")
            .with_kind(SpanKind::Client)
            .with_start_time(otel::at(t + ms))
            .with_attributes(vec![
                kv("http.request.method", "GET"),
                kv("server.address", "catalog"),
                kv("server.port", 8080i64),
                kv("http.response.status_code", code),
            ])
            .start_with_context(front, &root_cx);
        let client_cx = Context::new().with_remote_span_context(client.span_context().clone());
        let s_latency = c_latency - MS / 2;
        let mut server = catalog
            .span_builder("GET /items/{id}")
            .with_kind(SpanKind::Server)
            .with_start_time(otel::at(t + ms + 100_000))
            .with_attributes(vec![
                kv("http.request.method", "GET"),
                kv("http.route", "/items/{id}"),
                kv("http.response.status_code", code),
            ])
            .start_with_context(catalog, &client_cx);
        let server_cx = Context::new().with_remote_span_context(server.span_context().clone());

        // catalog → PostgreSQL: a database node, recorded at once.
        let db_latency = (1 + k % 3) * MS;
        let mut db = catalog
            .span_builder("SELECT catalog.items")
            .with_kind(SpanKind::Client)
            .with_start_time(otel::at(t + 2 * ms))
            .with_attributes(vec![
                kv("db.system", "postgresql"),
                kv("db.namespace", "catalog"),
                kv("server.address", "pg.internal"),
            ])
            .start_with_context(catalog, &server_cx);
        db.end_with_timestamp(otel::at(t + 2 * ms + db_latency as i64));
        server.end_with_timestamp(otel::at(t + ms + 100_000 + s_latency as i64));
        client.end_with_timestamp(otel::at(t + ms + c_latency as i64));
        truth.spans += 4;

        // Every 4th request calls an external API nobody traces: unpaired CLIENT span.
        if k % 4 == 0 {
            let mut pay = front
                .span_builder("POST")
                .with_kind(SpanKind::Client)
                .with_start_time(otel::at(t + 3 * ms))
                .with_attributes(vec![
                    kv("http.request.method", "POST"),
                    kv("server.address", "api.payments.example"),
                    kv("server.port", 443i64),
                ])
                .start_with_context(front, &root_cx);
            pay.end_with_timestamp(otel::at(t + 12 * ms));
            truth.spans += 1;
            truth
                .edges
                .entry(("storefront.shop", "api.payments.example:443", "http"))
                .or_default()
                .add(false, 9 * MS);
            truth
                .services
                .entry("api.payments.example:443")
                .or_default()
                .add(false, 9 * MS);
        }
        // Every 5th publishes an event the mailer consumes: a messaging edge.
        if k % 5 == 0 {
            let mut publish = front
                .span_builder("orders publish")
                .with_kind(SpanKind::Producer)
                .with_start_time(otel::at(t + 4 * ms))
                .with_attributes(vec![kv("messaging.system", "kafka")])
                .start_with_context(front, &root_cx);
            let publish_cx =
                Context::new().with_remote_span_context(publish.span_context().clone());
            let consume_latency = (3 + k % 4) * MS;
            let mut consume = mailer
                .span_builder("orders process")
                .with_kind(SpanKind::Consumer)
                .with_start_time(otel::at(t + 6 * ms))
                .with_attributes(vec![kv("messaging.system", "kafka")])
                .start_with_context(mailer, &publish_cx);
            consume.end_with_timestamp(otel::at(t + 6 * ms + consume_latency as i64));
            publish.end_with_timestamp(otel::at(t + 5 * ms));
            truth.spans += 2;
            truth
                .edges
                .entry(("storefront.shop", "mailer.shop", "messaging"))
                .or_default()
                .add(false, consume_latency);
            truth
                .services
                .entry("mailer.shop")
                .or_default()
                .add(false, consume_latency);
            truth
                .endpoints
                .entry(("mailer.shop", "orders process"))
                .or_default()
                .add(false, consume_latency);
        }
        root.end_with_timestamp(otel::at(t + root_latency as i64));

        for (key, err, lat) in [
            (
                ("user", "storefront.shop", "http"),
                root_error,
                root_latency,
            ),
            (
                ("storefront.shop", "catalog.shop", "http"),
                catalog_error,
                s_latency,
            ),
            (
                ("catalog.shop", "postgresql/catalog", "database"),
                false,
                db_latency,
            ),
        ] {
            truth.edges.entry(key).or_default().add(err, lat);
            truth.services.entry(key.1).or_default().add(err, lat);
        }
        truth
            .endpoints
            .entry(("storefront.shop", "GET /products/{id}"))
            .or_default()
            .add(root_error, root_latency);
        truth
            .endpoints
            .entry(("catalog.shop", "GET /items/{id}"))
            .or_default()
            .add(catalog_error, s_latency);
    }
    for (key, e) in truth.edges.iter_mut() {
        e.detect = match key.2 {
            _ if key.0 == "user" => vec!["server"],
            "database" => vec!["client"],
            _ if key.1 == "api.payments.example:443" => vec!["client"],
            _ => vec!["client", "server"],
        };
    }
    truth
}

fn window(t0: i64) -> String {
    let s = t0 / 1_000_000_000;
    format!("start={}&end={}", s - 120, s + 600)
}

async fn check_shop(stack: &Stack, truth: &Truth, t0: i64) {
    let topo = stack.ok(&format!("/api/v1/topology?{}", window(t0))).await;
    let edges = topo["edges"].as_array().expect("edges");
    let got: BTreeMap<(String, String, String), &Value> = edges
        .iter()
        .map(|e| {
            let k = |f: &str| e[f].as_str().expect("edge key").to_string();
            ((k("source"), k("target"), k("protocol")), e)
        })
        .collect();
    let want: Vec<(String, String, String)> = truth
        .edges
        .keys()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        want,
        "edge set: {topo}"
    );
    for ((c, s, p), want) in &truth.edges {
        let e = got[&(c.to_string(), s.to_string(), p.to_string())];
        check(&format!("edge {c}->{s}"), e, want);
        assert_eq!(e["detect_points"], json!(want.detect), "{c}->{s}: {e}");
        assert_eq!(e["telemetry"], "trace", "{e}");
    }
    for n in topo["nodes"].as_array().expect("nodes") {
        let name = n["name"].as_str().expect("name");
        let virtual_node = matches!(
            name,
            "user" | "postgresql/catalog" | "api.payments.example:443"
        );
        assert_eq!(n["real"].as_bool(), Some(!virtual_node), "{n}");
    }

    // The same graph in Grafana Node Graph fields.
    let graph = stack
        .ok(&format!("/api/v1/topology?format=nodegraph&{}", window(t0)))
        .await;
    let gnodes = graph["nodes"].as_array().expect("graph nodes");
    assert_eq!(gnodes.len(), topo["nodes"].as_array().expect("nodes").len());
    for n in topo["nodes"].as_array().expect("nodes") {
        let g = gnodes
            .iter()
            .find(|g| g["id"] == n["id"])
            .unwrap_or_else(|| panic!("graph node for {n}: {graph}"));
        assert_eq!(g["title"], n["name"]);
        assert_eq!(g["mainstat"], n["cpm"]);
        assert_eq!(g["secondarystat"], n["p99_ms"]);
        assert_eq!(g["detail__calls"], n["calls"]);
        let calls = n["calls"].as_u64().expect("calls");
        let (ok, err) = (
            g["arc__success"].as_f64().expect("arc"),
            g["arc__errors"].as_f64().expect("arc"),
        );
        if calls > 0 {
            let want = n["errors"].as_u64().expect("errors") as f64 / calls as f64;
            assert!(
                (err - want).abs() < 1e-12 && (ok + err - 1.0).abs() < 1e-12,
                "{g}"
            );
        } else {
            assert_eq!((ok, err), (0.0, 0.0), "{g}");
        }
        let virtual_node = !n["real"].as_bool().expect("real");
        assert_eq!(g["subtitle"] == "virtual", virtual_node, "{g}");
    }
    let gedges = graph["edges"].as_array().expect("graph edges");
    assert_eq!(gedges.len(), edges.len());
    for e in edges {
        let g = gedges
            .iter()
            .find(|g| g["id"] == e["id"])
            .unwrap_or_else(|| panic!("graph edge for {e}: {graph}"));
        for (gf, f) in [
            ("source", "source"),
            ("target", "target"),
            ("mainstat", "cpm"),
            ("secondarystat", "p99_ms"),
            ("detail__protocol", "protocol"),
            ("detail__telemetry", "telemetry"),
            ("detail__calls", "calls"),
            ("detail__errors", "errors"),
        ] {
            assert_eq!(g[gf], e[f], "{gf}: {g} vs {e}");
        }
    }
    let (status, err) = stack.get("/api/v1/topology?format=xml").await;
    assert_eq!(status, 400, "{err}");

    let services = stack.ok(&format!("/api/v1/services?{}", window(t0))).await;
    for (name, want) in &truth.services {
        let s = services["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("service {name} missing: {services}"));
        check(&format!("service {name}"), s, want);
    }
    let mut by_service: BTreeMap<&str, Vec<(&str, &Expect)>> = BTreeMap::new();
    for ((svc, ep), want) in &truth.endpoints {
        by_service.entry(svc).or_default().push((ep, want));
    }
    for (svc, eps) in by_service {
        let got = stack
            .ok(&format!("/api/v1/services/{svc}/endpoints?{}", window(t0)))
            .await;
        let list = got["endpoints"].as_array().expect("endpoints");
        assert_eq!(list.len(), eps.len(), "{svc}: {got}");
        for (ep, want) in eps {
            let e = list
                .iter()
                .find(|e| e["name"] == *ep)
                .unwrap_or_else(|| panic!("{svc} endpoint {ep} missing: {got}"));
            check(&format!("{svc} {ep}"), e, want);
        }
    }
}

/// Runs the shop with each process exporting over its own transport, then checks it all.
async fn run(transports: [Transport; 3]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let providers: Vec<SdkTracerProvider> = [
        ("storefront", "storefront-5d9f-abcde"),
        ("catalog", "catalog-7c4b-fghij"),
        ("mailer", "mailer-0"),
    ]
    .iter()
    .zip(transports)
    .map(|((name, pod), t)| otel::provider(&stack, t, name, "shop", pod))
    .collect();
    let tracers: Vec<SdkTracer> = providers.iter().map(|p| p.tracer("otlp-test")).collect();
    // Two to four minutes ago: whole minutes, none in the future.
    let t0 = (common::now_nanos() / 60_000_000_000 - 3) * 60_000_000_000;
    let truth = shop(&tracers[0], &tracers[1], &tracers[2], 240, t0);
    drop(tracers);
    otel::finish(providers).await;
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_spans_received_total"),
        truth.spans as f64
    );
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_spans_rejected_total"),
        0.0
    );
    // The external API's spans wait for a partner until the flush records them.
    stack.flush().await;
    let metrics = stack.metrics().await;
    let external = truth.edges[&("storefront.shop", "api.payments.example:443", "http")].calls;
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_spans_unpaired_total"),
        external as f64
    );
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_pairing_waiting"),
        0.0
    );
    check_shop(&stack, &truth, t0).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_spans_give_exact_edges_services_and_endpoints() {
    run([Transport::Grpc; 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_and_json_give_the_same_exact_figures() {
    run([
        Transport::HttpProtobuf,
        Transport::HttpJson,
        Transport::Grpc,
    ])
    .await;
}

// ---- bad input -------------------------------------------------------------------

async fn post(
    stack: &Stack,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{}/v1/traces", stack.otlp_http))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.expect("post");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn json_span(trace: &str, span: &str, kind: i64, start: i64) -> Value {
    json!({
        "traceId": trace, "spanId": span, "name": "GET /x", "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + 5_000_000).to_string(),
        "attributes": [{"key": "http.route", "value": {"stringValue": "/x"}},
                       {"key": "http.request.method", "value": {"stringValue": "GET"}}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spans_get_partial_success_and_bad_bodies_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.collector.max_message_bytes = 64 * 1024;
    let stack = common::start(config).await;
    let t = (common::now_nanos() / 60_000_000_000 - 2) * 60_000_000_000;
    let good = "5b8efff798038103d269b633813fc60c";

    // One good root span, one with a short trace id, one ending before it starts, and a
    // resource without service.name (its one span is rejected too).
    let mut backwards = json_span(good, "eee19b7ec3c1b175", 2, t);
    backwards["endTimeUnixNano"] = json!((t - 1).to_string());
    let body = json!({"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
         "scopeSpans": [{"spans": [
             json_span(good, "eee19b7ec3c1b174", 2, t),
             json_span("5b8efff7", "eee19b7ec3c1b173", 2, t),
             backwards,
         ]}]},
        {"resource": {"attributes": []},
         "scopeSpans": [{"spans": [json_span(good, "eee19b7ec3c1b172", 2, t)]}]}
    ]});
    let (status, text) = post(
        &stack,
        "application/json",
        None,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json answer");
    let partial = &answer["partialSuccess"];
    assert_eq!(
        partial["rejectedSpans"]
            .as_i64()
            .or_else(|| partial["rejectedSpans"]
                .as_str()
                .and_then(|s| s.parse().ok())),
        Some(3),
        "{answer}"
    );
    assert!(
        partial["errorMessage"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{answer}"
    );

    // Garbage, in each encoding, and a body over the limit, plain and decompressed.
    for (ct, body) in [
        ("application/x-protobuf", vec![0xff, 0xff, 0xff, 0x0f, 0x01]),
        ("application/json", b"{\"resourceSpans\": [".to_vec()),
        (
            "application/json",
            b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}".to_vec(),
        ),
    ] {
        let (status, text) = post(&stack, ct, None, body).await;
        assert_eq!(status, 400, "{ct}: {text}");
    }
    let (status, text) = post(
        &stack,
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    let err: Value = serde_json::from_str(&text).expect("json error");
    assert_eq!(err["code"], 3, "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("ExportTraceServiceRequest")),
        "{status} {err}"
    );
    let (status, text) = post(
        &stack,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let big = vec![b' '; 200 * 1024];
    let (status, text) = post(&stack, "application/json", None, big.clone()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("65536"), "{text}");
    let (status, text) = post(&stack, "application/json", Some("gzip"), gzip(&big)).await;
    assert_eq!(status, 413, "{text}");
    let (status, _) = post(&stack, "text/plain", None, b"{}".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _) = post(&stack, "application/json", Some("br"), b"{}".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _) = post(&stack, "application/json", None, b"{}".to_vec()).await;
    assert_eq!(status, 200, "an empty request is fine");

    // gRPC: garbage is InvalidArgument, too large is ResourceExhausted.
    let status = raw_grpc(&stack.grpc, vec![0xff, 0xff, 0xff, 0x0f, 0x01]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = raw_grpc(&stack.grpc, vec![0x0a; 100 * 1024]).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // The good span still counts, and every rejection is counted.
    stack.flush().await;
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_spans_rejected_total"),
        3.0
    );
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_requests_rejected_total"),
        11.0,
        "{metrics}"
    );
    let topo = stack.ok(&format!("/api/v1/topology?{}", window(t))).await;
    let edges = topo["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{topo}");
    assert_eq!(
        (
            edges[0]["source"].as_str(),
            edges[0]["target"].as_str(),
            edges[0]["calls"].as_u64()
        ),
        (Some("user"), Some("web"), Some(1))
    );
    stack.stop().await;
}

/// Sends raw bytes as one OTLP/gRPC export request and returns the status.
async fn raw_grpc(endpoint: &str, bytes: Vec<u8>) -> tonic::Status {
    let mut grpc = testkit::sim::connect(endpoint).await.expect("connect");
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(collector::otlp::METHOD_PATH);
    grpc.unary::<bytes::Bytes, (), _>(
        tonic::Request::new(bytes::Bytes::from(bytes)),
        path,
        testkit::sim::RawCodec,
    )
    .await
    .expect_err("rejected")
}

/// A plain admin flush leaves a CLIENT span waiting for its SERVER half (a loop of
/// flushes cannot split pairs); `waiting_spans=record` records what still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_admin_flush_keeps_halves_waiting_for_their_partner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.api.enable_admin_api = true;
    config.api.admin_flush_interval = std::time::Duration::from_millis(10);
    let stack = common::start(config).await;
    let admin_flush = |query: &'static str| {
        let url = format!("{}/api/v1/admin/flush{query}", stack.http);
        async move {
            let resp = reqwest::Client::new().post(url).send().await.expect("post");
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.expect("json")
        }
    };
    let t0 = (common::now_nanos() / 60_000_000_000 - 2) * 60_000_000_000;
    let ms = 1_000_000i64;
    let (front, catalog) = (
        otel::provider(
            &stack,
            Transport::HttpProtobuf,
            "storefront",
            "shop",
            "sf-0",
        ),
        otel::provider(&stack, Transport::HttpProtobuf, "catalog", "shop", "cat-0"),
    );
    let tracer = front.tracer("flush-test");
    let mut client = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_start_time(otel::at(t0))
        .with_attributes(vec![KeyValue::new("server.address", "catalog")])
        .start_with_context(
            &tracer,
            &Context::new().with_remote_span_context(otel::foreign_parent(7)),
        );
    let client_cx = Context::new().with_remote_span_context(client.span_context().clone());
    client.end_with_timestamp(otel::at(t0 + 10 * ms));
    // A second CLIENT span whose partner never comes.
    let mut lonely = tracer
        .span_builder("POST")
        .with_kind(SpanKind::Client)
        .with_start_time(otel::at(t0 + ms))
        .with_attributes(vec![KeyValue::new("server.address", "mailer")])
        .start_with_context(
            &tracer,
            &Context::new().with_remote_span_context(otel::foreign_parent(8)),
        );
    lonely.end_with_timestamp(otel::at(t0 + 5 * ms));
    drop(tracer);
    otel::finish(vec![front]).await;

    for _ in 0..5 {
        assert_eq!(admin_flush("").await["waiting_spans"], "kept");
    }
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_pairing_waiting"),
        2.0
    );
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_spans_unpaired_total"),
        0.0
    );

    // The partner arrives after the flushes and still pairs.
    let tracer = catalog.tracer("flush-test");
    let mut server = tracer
        .span_builder("GET /items")
        .with_kind(SpanKind::Server)
        .with_start_time(otel::at(t0 + ms))
        .start_with_context(&tracer, &client_cx);
    server.end_with_timestamp(otel::at(t0 + 9 * ms));
    drop(tracer);
    otel::finish(vec![catalog]).await;
    let answer = admin_flush("?waiting_spans=record").await;
    assert_eq!(answer["waiting_spans"], "recorded");
    let metrics = stack.metrics().await;
    assert_eq!(
        metric_value(&metrics, "meshscope_otlp_pairing_waiting"),
        0.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "meshscope_otlp_spans_unpaired_total{kind=\"client\",reason=\"flushed\"}"
        ),
        1.0,
        "{metrics}"
    );
    let topo = stack.ok(&format!("/api/v1/topology?{}", window(t0))).await;
    let calls = |source: &str, target: &str| {
        topo["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter(|e| e["source"] == source && e["target"] == target)
            .map(|e| e["calls"].as_u64().expect("calls"))
            .sum::<u64>()
    };
    assert_eq!(calls("storefront.shop", "catalog.shop"), 1, "{topo}");
    assert_eq!(calls("storefront.shop", "mailer"), 1, "{topo}");
    let bad = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/admin/flush?waiting_spans=maybe",
            stack.http
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 400);
    stack.stop().await;
}
