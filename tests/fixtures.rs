//! The real captured Istio messages in `../shared/fixtures/skywalking/` (proto3 JSON),
//! read through Envoy's descriptors with prost-reflect, encoded, and streamed over gRPC.
//! Expected figures are read from the same JSON with serde_json, independently of
//! meshscope's decoder.

mod common;

use common::envoy_fixtures::{encode, envoy_descriptors, fixture_json};

fn seconds_to_nanos(s: &str) -> u64 {
    let s = s.trim_end_matches('s');
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<9}");
    whole.parse::<u64>().expect("seconds") * 1_000_000_000
        + frac[..9].parse::<u64>().expect("nanos")
}

const FIXTURES: [&str; 4] = [
    "envoy-ingress.msg",
    "envoy-ingress2sidecar.msg",
    "envoy-mesh-client-sidecar.msg",
    "envoy-mesh-server-sidecar.msg",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skywalking_fixtures_give_the_expected_edges() {
    let pool = envoy_descriptors();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.store.retention_days = 0; // the captures are from 2019
    let stack = common::start(config).await;

    // Expected: (source, target) → latency in nanoseconds, from the JSON itself.
    let mut expected: Vec<(String, String, u64, &str)> = Vec::new();
    // Pod addresses each proxy announced so far (node id and INSTANCE_IPS), in send order:
    // an inbound entry without peer metadata names its caller by address.
    let mut addresses: std::collections::HashMap<String, String> = Default::default();
    for name in FIXTURES {
        let json = fixture_json(name);
        let bytes = encode(&pool, &json);
        testkit::sim::send_raw(&stack.grpc, vec![bytes.into()])
            .await
            .expect("stream accepted");

        let node = &json["identifier"]["node"];
        let md = &node["metadata"];
        let entry = &json["httpLogs"]["logEntry"][0];
        let cp = &entry["commonProperties"];
        let latency = seconds_to_nanos(cp["timeToLastDownstreamTxByte"].as_str().expect("latency"));
        let ns = md["CONFIG_NAMESPACE"].as_str().expect("namespace");
        let reporter = match md["app"].as_str() {
            Some(app) => format!("{app}.{ns}"),
            // The gateway has no app label: its workload name comes from the pod name.
            None => format!("{}.{ns}", node["cluster"].as_str().expect("cluster")),
        };
        let node_ip = node["id"]
            .as_str()
            .expect("id")
            .split('~')
            .nth(1)
            .expect("ip");
        let listed = md["ISTIO_META_INSTANCE_IPS"].as_str().unwrap_or("");
        for ip in listed.split(',').chain([node_ip]) {
            addresses.insert(ip.to_string(), reporter.clone());
        }
        let caller_ip = cp["downstreamRemoteAddress"]["socketAddress"]["address"]
            .as_str()
            .expect("downstream address");
        let caller = addresses
            .get(caller_ip)
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        let cluster = cp["upstreamCluster"].as_str().expect("cluster");
        if let Some(fqdn) = cluster
            .strip_prefix("outbound|")
            .and_then(|c| c.rsplit('|').next())
        {
            let mut parts = fqdn.split('.');
            let target = format!(
                "{}.{}",
                parts.next().expect("name"),
                parts.next().expect("ns")
            );
            expected.push((reporter.clone(), target, latency, "client"));
            if node["id"].as_str().expect("id").starts_with("router~") {
                expected.push((caller, reporter, latency, "server"));
            }
        } else {
            assert!(cluster.starts_with("inbound|"));
            expected.push((caller, reporter, latency, "server"));
        }
    }
    stack.flush().await;

    let topo = stack
        .ok("/api/v1/topology?start=2019-04-13T03:00:00Z&end=2019-04-13T05:00:00Z")
        .await;
    let edges = topo["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), expected.len(), "{topo}");
    for (source, target, latency, side) in &expected {
        let e = edges
            .iter()
            .find(|e| e["source"] == *source && e["target"] == *target)
            .unwrap_or_else(|| panic!("missing edge {source} -> {target}: {topo}"));
        assert_eq!(e["calls"], 1, "{e}");
        assert_eq!(e["errors"], 0, "{e}");
        assert_eq!(e["protocol"], "http");
        assert_eq!(e["detect_points"], serde_json::json!([side]), "{e}");
        let avg = e["avg_ms"].as_f64().expect("avg_ms");
        assert!(
            (avg - *latency as f64 / 1e6).abs() < 1e-9,
            "{source}->{target}: {avg} vs {latency} ns"
        );
        let p99 = e["p99_ms"].as_f64().expect("p99");
        assert!(common::rel(p99, *latency as f64 / 1e6) <= 0.02, "{p99}");
    }
    let names: Vec<&str> = topo["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    for n in [
        "istio-ingressgateway.istio-system",
        "productpage.default",
        "details.default",
        "reviews.default",
        "unknown",
    ] {
        assert!(names.contains(&n), "node {n} missing: {names:?}");
    }
    let text = stack.metrics().await;
    assert_eq!(
        common::metric_value(&text, "meshscope_als_entries_received_total"),
        4.0,
        "{text}"
    );
    assert_eq!(
        common::metric_value(&text, "meshscope_als_entries_decoded_total"),
        4.0
    );
    stack.stop().await;
}

/// The degenerate entries of SkyWalking's LAL test data: no node metadata, no timestamps,
/// no request. Nothing panics; each becomes a call with what it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_with_missing_fields_degrade_sensibly() {
    let pool = envoy_descriptors();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let json = serde_json::json!({
        "identifier": {"node": {"id": "sidecar~10.0.0.1~test-mesh-svc-0.default~default.svc.cluster.local"}, "logName": "als"},
        "httpLogs": {"logEntry": [
            {"response": {"responseCode": 500}, "commonProperties": {"upstreamCluster": "outbound|80||backend.default.svc"}},
            {"response": {"responseCode": 200}, "commonProperties": {"upstreamCluster": "outbound|80||backend.default.svc", "responseFlags": {"upstreamConnectionFailure": true}}},
            {"commonProperties": {"responseFlags": {"upstreamConnectionFailure": true}}, "request": {"path": "/x"}},
            {}
        ]}
    });
    testkit::sim::send_raw(&stack.grpc, vec![encode(&pool, &json).into()])
        .await
        .expect("accepted");
    stack.flush().await;
    let topo = stack.ok("/api/v1/topology").await;
    let edges = topo["edges"].as_array().expect("edges");
    let backend = edges
        .iter()
        .find(|e| e["target"] == "backend.default")
        .expect("backend edge");
    assert_eq!(backend["calls"], 2);
    assert_eq!(
        backend["errors"], 1,
        "500 is an error; 200 with a flag is not"
    );
    assert!(backend["avg_ms"].is_null(), "no latency was logged");
    let unknown = edges
        .iter()
        .find(|e| e["target"] == "unknown")
        .expect("edge to unknown");
    assert_eq!(
        unknown["calls"], 1,
        "no response + failure flag: one failed call"
    );
    assert_eq!(unknown["errors"], 1);
    let text = stack.metrics().await;
    assert_eq!(
        common::metric_value(&text, "meshscope_als_entries_skipped_total"),
        1.0,
        "the empty entry is a TCP connection on the HTTP logger: {text}"
    );
    stack.stop().await;
}
