//! The ground truth of generated mesh traffic: what meshscope must report for each edge,
//! service and endpoint, computed from the hops alone.

use std::collections::BTreeMap;

use meshscope::sim::{Hop, Mesh, Target};

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
