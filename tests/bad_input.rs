//! Garbage on the wire and hostile API parameters: clear errors, counted drops, no panics,
//! and the server keeps serving.

mod common;

use bytes::Bytes;
use prost::Message;
use testkit::sim::send_raw;
use testkit::sim::{self, Generator};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_and_unidentified_streams_are_rejected_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.collector.max_message_bytes = 64 * 1024;
    let stack = common::start(config).await;

    // Not protobuf at all (a truncated varint and an invalid wire type).
    let err = send_raw(
        &stack.grpc,
        vec![Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x07])],
    )
    .await
    .expect_err("garbage must be rejected");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // Larger than the configured limit.
    let err = send_raw(&stack.grpc, vec![Bytes::from(vec![0x0a; 200 * 1024])])
        .await
        .expect_err("oversized must be rejected");
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{err}"
    );

    // Valid protobuf, but entries before any identifier.
    let mut g = Generator::new(3);
    let hops = g.user_request(1_700_000_000_000_000_000);
    let mut streams = sim::encode(&g.mesh, &hops);
    let (_, mut messages) = streams.remove(0);
    messages[0].identifier = None;
    let err = send_raw(&stack.grpc, vec![messages[0].encode_to_vec().into()])
        .await
        .expect_err("unidentified stream must be rejected");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let text = stack.metrics().await;
    let rejected = |reason: &str| {
        common::metric_value(
            &text,
            &format!("meshscope_als_messages_rejected_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("malformed"), 1.0, "{text}");
    assert_eq!(rejected("too_large"), 1.0, "{text}");
    assert_eq!(rejected("no_identifier"), 1.0, "{text}");

    // Still serving: a good stream goes through and is counted exactly.
    let now = common::now_nanos();
    let hops = g.user_request(now - 60_000_000_000);
    sim::send_all(&stack.grpc, &g.mesh, &hops)
        .await
        .expect("good traffic");
    stack.flush().await;
    let services = stack.ok("/api/v1/services").await;
    let pp = services["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "productpage.default")
        .cloned()
        .expect("productpage");
    assert_eq!(pp["calls"], 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_the_far_future_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let mut g = Generator::new(9);
    let year_2200 = 7_258_118_400i64 * 1_000_000_000;
    let hops = g.user_request(year_2200);
    let n_calls = hops.len() + 1; // plus the gateway's inbound hop
    sim::send_all(&stack.grpc, &g.mesh, &hops)
        .await
        .expect("accepted");
    stack.flush().await;
    let text = stack.metrics().await;
    let dropped = common::metric_value(&text, "meshscope_dropped_calls_total{reason=\"future\"}");
    // Each hop is reported by one or two proxies; every report is dropped.
    assert!(dropped >= n_calls as f64, "{dropped} < {n_calls}: {text}");
    assert_eq!(
        common::metric_value(&text, "meshscope_aggregated_calls_total"),
        0.0
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_api_parameters_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let mut g = Generator::new(4);
    let now = common::now_nanos();
    sim::send_all(
        &stack.grpc,
        &g.mesh.clone(),
        &g.user_request(now - 60_000_000_000),
    )
    .await
    .expect("send");
    stack.flush().await;

    // Quotes, SQL, regex and unicode are just names that match nothing.
    for name in [
        "x' OR '1'='1",
        "\"; DROP TABLE service; --",
        ".*",
        "reviews.default' --",
        "ü%2F..%2F",
    ] {
        let enc: String = common::enc(name);
        let json = stack.ok(&format!("/api/v1/services/{enc}/endpoints")).await;
        assert_eq!(json["endpoints"], serde_json::json!([]), "{name}");
        let (status, json) = stack.get(&format!("/api/v1/topology?service={enc}")).await;
        assert_eq!(status, 404, "{json}");
        assert!(json["error"].is_string());
    }
    for (query, what) in [
        ("/api/v1/services?start=yesterday", "start"),
        ("/api/v1/services?start=10&end=5", "before"),
        ("/api/v1/services?start=0&end=99999999999", "longer"),
        (
            "/api/v1/timeseries?entity=service&service=a&metric=calls&start=-9000000000000000000&end=9000000000000000000",
            "between",
        ),
        ("/api/v1/services?end=1e300", "unix seconds"),
        ("/api/v1/services?start=NaN", "unix seconds"),
        ("/api/v1/topology?depth=3", "depth needs service"),
        (
            "/api/v1/topology?service=productpage.default&depth=99",
            "depth",
        ),
        (
            "/api/v1/timeseries?entity=service&service=a&metric=nope",
            "unknown metric",
        ),
        ("/api/v1/timeseries?entity=pod&metric=calls", "entity"),
        (
            "/api/v1/timeseries?entity=service&service=a&metric=calls&step=61",
            "multiple of 60",
        ),
        ("/api/v1/services/a%01b/instances", "control"),
        ("/api/v1/services/%FF%FE/endpoints", "malformed"),
    ] {
        let (status, json) = stack.get(query).await;
        assert_eq!(status, 400, "{query}: {json}");
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(msg.contains(what), "{query}: {msg}");
    }
    let (status, _) = stack.get("/api/v1/nope").await;
    assert_eq!(status, 404);
    stack.stop().await;
}
