//! Messages that amplify when decoded (a million empty ALS entries or OTLP spans in 2 MB)
//! are refused from their wire shape before they are decoded, several at once, and the
//! process stays within its memory; a clean scenario sent afterwards is counted exactly.

mod common;

use bytes::Bytes;
use common::truth::send_and_check_scenario;
use prost::Message;
use testkit::sim::{self, send_raw};
use tonic::Code;

/// A protobuf length-delimited field.
fn field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// `n` empty submessages of field `number`, each two bytes on the wire.
fn empties(number: u32, n: usize) -> Vec<u8> {
    field(number, &[]).repeat(n)
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_messages_are_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;

    // An identified stream whose first message holds a million empty HTTP entries.
    let mut g = sim::Generator::new(1);
    let hops = g.user_request(common::now_nanos());
    let mut identified = sim::encode(&g.mesh, &hops)
        .into_iter()
        .next()
        .and_then(|(_, messages)| messages.into_iter().next())
        .expect("a first message");
    identified.log_entries = None;
    assert!(identified.identifier.is_some());
    let mut als = identified.encode_to_vec();
    als.extend(field(2, &empties(1, 1_000_000)));
    assert!(als.len() < 2_100_000);
    let als = Bytes::from(als);

    // An OTLP export request of a million empty spans, protobuf and JSON.
    let spans = field(1, &field(2, &empties(2, 1_000_000)));
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}{{}}]}}]}}]}}"#,
        "{},".repeat(999_999)
    );

    let before = peak_rss_mib();
    // Four of each kind at once.
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, content_type: &'static str| {
        let client = client.clone();
        let url = format!("{}/v1/traces", stack.otlp_http);
        async move {
            client
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    let mut als_sends = Vec::new();
    let mut http_sends = Vec::new();
    for _ in 0..4 {
        als_sends.push(send_raw(&stack.grpc, vec![als.clone()]));
        http_sends.push(post(spans.clone(), "application/x-protobuf"));
        http_sends.push(post(json.clone().into_bytes(), "application/json"));
    }
    let (als_results, http_results) = tokio::join!(
        futures::future::join_all(als_sends),
        futures::future::join_all(http_sends)
    );
    for r in als_results {
        let err = r.expect_err("refused");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        assert!(err.message().contains("collector.max_"), "{err}");
    }
    for status in http_results {
        assert_eq!(status, 413);
    }
    let after = peak_rss_mib();
    assert!(
        after <= 256,
        "peak RSS {after} MiB (before the messages: {before} MiB)"
    );

    let text = stack.metrics().await;
    assert_eq!(
        common::metric_value(
            &text,
            "meshscope_als_messages_rejected_total{reason=\"too_large\"}"
        ),
        4.0,
        "{text}"
    );
    assert_eq!(
        common::metric_value(&text, "meshscope_decoding_bytes"),
        0.0,
        "{text}"
    );

    // The server goes on and counts exactly.
    send_and_check_scenario(&stack, 4, 100).await;
    stack.stop().await;
}

/// Under the entry limit but over the byte budget: refused by the estimate of what its
/// entries become.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_decoding_budget_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.collector.max_decoding_bytes = 256 * 1024;
    let stack = common::start(config).await;
    // 2 000 empty entries: 4 KB on the wire, about a megabyte decoded.
    let als = field(2, &empties(1, 2_000));
    let err = send_raw(&stack.grpc, vec![Bytes::from(als)])
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("max_decoding_bytes"), "{err}");
    // So is an OTLP request of 2 000 empty spans, on both transports.
    let spans = field(1, &field(2, &empties(2, 2_000)));
    let status = reqwest::Client::new()
        .post(format!("{}/v1/traces", stack.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(spans.clone())
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status.as_u16(), 413);
    let mut exporter = testkit::traces::Exporter::connect(&stack.grpc)
        .await
        .expect("connect");
    let request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            spans.as_slice(),
        )
        .expect("decodes");
    let err = exporter.export(request).await.expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_entry_limit_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.collector.max_items_per_message = 10;
    let stack = common::start(config).await;
    let mut als = Vec::new();
    als.extend(field(2, &empties(1, 11)));
    let err = send_raw(&stack.grpc, vec![Bytes::from(als)])
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("max_items_per_message"), "{err}");
    stack.stop().await;
}
