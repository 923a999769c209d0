//! The ground truth of generated mesh traffic: what meshscope must report for each edge,
//! service and endpoint, computed from the hops alone.

use std::collections::BTreeMap;

use serde_json::Value;
use testkit::sim::{Generator, Hop, Mesh, Target};

/// What the API must report for one entity, computed from the ground truth.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    pub calls: u64,
    pub errors: u64,
    pub latencies: Vec<u64>,
    pub client_seen: bool,
    pub server_seen: bool,
    pub mtls: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub apdex_points: f64,
}

/// Apdex threshold T (the default, 500 ms).
pub const APDEX_T: u64 = 500_000_000;

impl Expect {
    pub fn add(&mut self, hop: &Hop, latency: u64) {
        self.calls += 1;
        self.errors += u64::from(hop.is_error());
        self.latencies.push(latency);
        self.request_bytes += hop.request_bytes;
        self.response_bytes += hop.response_bytes;
        if !hop.is_error() {
            if latency <= APDEX_T {
                self.apdex_points += 1.0;
            } else if latency <= 4 * APDEX_T {
                self.apdex_points += 0.5;
            }
        }
    }
}

/// One call per hop, counted from the server's report when the server's proxy logged it,
/// else from the client's. A gateway's hop is also the request it received from outside
/// (`unknown` → gateway), measured by the gateway.
pub type EdgeKey = (String, String, String);
pub type Expected = (
    BTreeMap<EdgeKey, Expect>,
    BTreeMap<String, Expect>,
    BTreeMap<(String, String), Expect>,
);

pub fn expected(mesh: &Mesh, hops: &[Hop]) -> Expected {
    let mut edges: BTreeMap<EdgeKey, Expect> = BTreeMap::new();
    let mut services: BTreeMap<String, Expect> = BTreeMap::new();
    let mut endpoints: BTreeMap<(String, String), Expect> = BTreeMap::new();
    for hop in hops {
        let server_side = hop.server_reports && matches!(hop.server, Target::Workload(_));
        let latency = if server_side {
            hop.server_latency_nanos
        } else {
            hop.client_latency_nanos
        };
        let (c, s) = (mesh.client_name(hop), mesh.server_name(hop));
        let e = edges
            .entry((c, s.clone(), hop.proto.as_str().to_string()))
            .or_default();
        e.add(hop, latency);
        e.client_seen |= hop.client_reports && hop.client.is_some();
        e.server_seen |= server_side;
        if server_side && hop.mtls {
            e.mtls += 1;
        }
        services.entry(s.clone()).or_default().add(hop, latency);
        if !hop.endpoint.is_empty() {
            endpoints
                .entry((s, hop.endpoint.clone()))
                .or_default()
                .add(hop, latency);
        }
        if let Some(gw) = hop.client.filter(|c| mesh.workloads[*c].gateway) {
            let gw_name = mesh.workloads[gw].service();
            let e = edges
                .entry(("unknown".into(), gw_name.clone(), hop.proto.as_str().into()))
                .or_default();
            e.add(hop, hop.client_latency_nanos);
            e.server_seen = true;
            services
                .entry(gw_name.clone())
                .or_default()
                .add(hop, hop.client_latency_nanos);
            endpoints
                .entry((gw_name, hop.endpoint.clone()))
                .or_default()
                .add(hop, hop.client_latency_nanos);
        }
    }
    (edges, services, endpoints)
}

/// Generated bookinfo traffic: `requests` user requests over three minutes ending two
/// minutes ago; the mesh, its hops and the first minute.
pub fn scenario(seed: u64, requests: i64) -> (Mesh, Vec<Hop>, i64) {
    let mut g = Generator::new(seed);
    // Three minutes of traffic ending two minutes ago.
    let now = super::now_nanos() / 1_000_000_000;
    let start = (now / 60 - 5) * 60;
    let step = 180_000_000_000 / requests;
    let hops: Vec<Hop> = (0..requests)
        .flat_map(|i| g.user_request(start * 1_000_000_000 + i * step))
        .collect();
    (g.mesh, hops, start)
}

/// An API entity's figures equal the expected ones.
pub fn check_metrics(what: &str, got: &Value, want: &Expect) {
    super::check_calls_and_latency(what, got, want.calls, want.errors, &want.latencies);
    let sr = 1.0 - want.errors as f64 / want.calls as f64;
    assert!(super::rel(got["success_rate"].as_f64().expect("success_rate"), sr) < 1e-12);
    let apdex = want.apdex_points / want.calls as f64;
    assert!(
        super::rel(got["apdex"].as_f64().expect("apdex"), apdex) < 1e-12,
        "{what} apdex"
    );
    assert_eq!(
        got["bytes_received"].as_u64(),
        Some(want.request_bytes),
        "{what} bytes_received"
    );
    assert_eq!(
        got["bytes_sent"].as_u64(),
        Some(want.response_bytes),
        "{what} bytes_sent"
    );
    // The test window is 11 whole minutes (see `window`).
    let cpm = want.calls as f64 / WINDOW_MINUTES;
    assert!(
        super::rel(got["cpm"].as_f64().expect("cpm"), cpm) < 1e-12,
        "{what} cpm"
    );
}

pub const WINDOW_MINUTES: f64 = 11.0;

/// The API window the checks assume: 11 whole minutes around the scenario.
pub fn window(start: i64) -> String {
    format!("start={}&end={}", start - 60, start + 600)
}

/// The stack's topology over the scenario's window (from `start`) has exactly the
/// expected edges; the topology, for further checks.
pub async fn check_topology(
    stack: &super::Stack,
    edges: &BTreeMap<EdgeKey, Expect>,
    start: i64,
) -> Value {
    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    check_all_edges(&topo, edges);
    topo
}

/// Sends a clean generated scenario (`seed`, `requests` user requests), flushes, and
/// checks that every edge is counted exactly: a server that survived hostile input
/// still counts right.
pub async fn send_and_check_scenario(stack: &super::Stack, seed: u64, requests: i64) {
    let (mesh, hops, start) = scenario(seed, requests);
    testkit::sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    let (edges, _, _) = expected(&mesh, &hops);
    check_topology(stack, &edges, start).await;
}

/// The topology's edges match the expected ones exactly: same set, same figures.
pub fn check_all_edges(topo: &Value, edges: &BTreeMap<EdgeKey, Expect>) {
    let got = topo["edges"].as_array().expect("edges");
    assert_eq!(got.len(), edges.len(), "edge set: {topo}");
    for ((c, s, p), want) in edges {
        let e = got
            .iter()
            .find(|e| e["source"] == *c && e["target"] == *s && e["protocol"] == *p)
            .unwrap_or_else(|| panic!("missing edge {c} -> {s} ({p}): {topo}"));
        check_metrics(&format!("edge {c}->{s} ({p})"), e, want);
        let mut points = vec![];
        if want.client_seen {
            points.push("client");
        }
        if want.server_seen {
            points.push("server");
        }
        assert_eq!(
            e["detect_points"],
            serde_json::json!(points),
            "edge {c}->{s}"
        );
        assert_eq!(
            e["mtls_calls"].as_u64(),
            Some(want.mtls),
            "edge {c}->{s} mtls"
        );
    }
}

/// Calls per `(source, target)` edge of a JSON answer's `edges`.
pub fn edge_calls(answer: &Value) -> BTreeMap<(String, String), u64> {
    answer["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                (
                    e["source"].as_str().expect("source").to_string(),
                    e["target"].as_str().expect("target").to_string(),
                ),
                e["calls"].as_u64().expect("calls"),
            )
        })
        .collect()
}
