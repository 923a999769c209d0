//! Truth under stress: an exporter's retry counts once, and absurd durations are refused
//! (or, for TCP connections, clamped) before any store sees them. What shutdown writes is
//! tested in `scenario.rs` (a restart without a flush loses nothing).

mod common;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::data::accesslog::v3::AccessLogCommon;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;
use testkit::sim;
use testkit::traces::{Exporter, Shop, Spans};

/// `/api/v1/services` over ten minutes from a minute before `t0` (unix nanoseconds).
async fn services_around(stack: &common::Stack, t0: i64) -> Value {
    let start = t0 / 1_000_000_000 - 60;
    stack
        .ok(&format!(
            "/api/v1/services?start={start}&end={}",
            start + 600
        ))
        .await
}

/// Every export sent three times, as an exporter that times out and retries does: each
/// call counts once. The truth: one call into a service per SERVER or CONSUMER span its
/// processes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_export_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let mut shop = Shop::new(3);
    let mut spans = Spans::default();
    let t0 = (common::now_nanos() / 60_000_000_000 - 3) * 60_000_000_000;
    for i in 0..40 {
        shop.request(t0 + i * 1_000_000_000, &mut spans);
    }
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (process, list) in &spans.by_process {
        let served = list
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32 || s.kind == SpanKind::Consumer as i32)
            .count() as u64;
        if served > 0 {
            *want
                .entry(format!("{}.{}", process.name, process.namespace))
                .or_default() += served;
        }
    }
    let mut exporter = Exporter::connect(&stack.grpc).await.expect("connect");
    let requests = spans.requests(50);
    for _ in 0..3 {
        for r in &requests {
            exporter.export(r.clone()).await.expect("export");
        }
    }
    stack.flush().await;
    let list = services_around(&stack, t0).await;
    assert_eq!(common::service_calls(&list), want, "{list}");
    let text = stack.metrics().await;
    let sent: u64 = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum();
    assert_eq!(
        common::metric_value(&text, "meshscope_otlp_spans_duplicate_total"),
        (2 * sent) as f64,
        "{text}"
    );
    stack.stop().await;
}

/// Entries lasting three hundred years are refused before either store sees them, and
/// counted; the same stream's sane entries count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let (mesh, hops, start) = common::truth::scenario(6, 40);
    let years_300 = PbDuration {
        seconds: 300 * 365 * 86_400,
        nanos: 0,
    };
    let streams = sim::encode(&mesh, &hops);
    let (mut absurd, mut tcp) = (0u64, 0u64);
    let mut proxies = Vec::new();
    let mut sends = Vec::new();
    for (proxy, mut messages) in streams {
        proxies.push(proxy);
        for m in &mut messages {
            // Every duration an entry can carry, three hundred years long.
            let last_forever = |c: &mut Option<AccessLogCommon>| match c {
                Some(c) => {
                    c.duration = Some(years_300);
                    c.time_to_last_downstream_tx_byte = Some(years_300);
                    c.time_to_last_upstream_rx_byte = Some(years_300);
                    1
                }
                None => 0,
            };
            match &mut m.log_entries {
                Some(LogEntries::HttpLogs(http)) => {
                    for e in &mut http.log_entry {
                        absurd += last_forever(&mut e.common_properties);
                    }
                }
                Some(LogEntries::TcpLogs(conns)) => {
                    for e in &mut conns.log_entry {
                        tcp += last_forever(&mut e.common_properties);
                    }
                }
                None => {}
            }
        }
        sends.push(sim::send(&stack.grpc, messages));
    }
    proxies.dedup();
    sim::announce(&stack.grpc, &mesh, proxies)
        .await
        .expect("announce");
    for r in futures::future::join_all(sends).await {
        r.expect("accepted");
    }
    stack.flush().await;
    let text = stack.metrics().await;
    assert!(absurd > 0);
    assert_eq!(
        common::metric_value(
            &text,
            "meshscope_als_entries_skipped_total{reason=\"absurd_duration\"}"
        ),
        absurd as f64,
        "{text}"
    );
    // The TCP connections are clamped rather than refused: they count, at a day each
    // (within the histogram's error), and nothing but them is left.
    assert!(tcp > 0);
    let topo = stack
        .ok(&format!(
            "/api/v1/topology?{}",
            common::truth::window(start)
        ))
        .await;
    let edges = topo["edges"].as_array().expect("edges");
    assert!(!edges.is_empty(), "{topo}");
    for e in edges {
        assert_eq!(e["protocol"], "tcp", "{e}");
        let p99 = e["p99_ms"].as_f64().expect("p99");
        assert!(
            (86_400_000.0 * 0.95..=86_400_000.0 * 1.05).contains(&p99),
            "{e}"
        );
    }
    stack.stop().await;
}

/// `n` root SERVER spans of `web.shop` (each one call from `user`), ids unique to
/// `(sender, round)`.
fn root_spans(
    sender: u64,
    round: u64,
    n: u64,
    t0: i64,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let attr = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let spans = (0..n)
        .map(|j| {
            let id = (sender << 48) | (round << 16) | j;
            let start = (t0 + (j as i64) * 1_000_000) as u64;
            Span {
                trace_id: (u128::from(id) << 8 | 1).to_be_bytes().to_vec(),
                span_id: (id | 1 << 63).to_be_bytes().to_vec(),
                name: "GET /".into(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 2_000_000,
                ..Default::default()
            }
        })
        .collect();
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", "web"),
                    attr("service.namespace", "shop"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Exporters keep sending while the server shuts down. Every span of an export answered
/// OK is written by the shutdown (the flush interval is an hour, so nothing else writes);
/// at most the one export per exporter whose answer was cut off may count without an OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_keeps_every_accepted_export() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const SENDERS: u64 = 4;
    const PER_REQUEST: u64 = 25;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.aggregator.flush_interval = std::time::Duration::from_secs(3600);
    let stack = common::start(config).await;
    let t0 = (common::now_nanos() / 60_000_000_000 - 2) * 60_000_000_000;
    let accepted = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|k| {
            let (endpoint, accepted) = (stack.grpc.clone(), accepted.clone());
            tokio::spawn(async move {
                let Ok(mut exporter) = Exporter::connect(&endpoint).await else {
                    return;
                };
                for round in 0.. {
                    match exporter.export(root_spans(k, round, PER_REQUEST, t0)).await {
                        Ok(answer) => {
                            let rejected = answer.partial_success.map_or(0, |p| p.rejected_spans);
                            assert_eq!(rejected, 0);
                            accepted.fetch_add(PER_REQUEST, Ordering::SeqCst);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while accepted.load(Ordering::SeqCst) < 2_000 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Shut down while every exporter is still sending.
    stack.stop().await;
    for s in senders {
        s.await.expect("sender");
    }
    let accepted = accepted.load(Ordering::SeqCst);

    let stack = common::start(common::config(dir.path())).await;
    let list = services_around(&stack, t0).await;
    let stored = common::service_calls(&list)
        .get("web.shop")
        .copied()
        .unwrap_or(0);
    assert!(
        (accepted..=accepted + SENDERS * PER_REQUEST).contains(&stored),
        "{stored} calls stored, {accepted} accepted: {list}"
    );
    stack.stop().await;
}
