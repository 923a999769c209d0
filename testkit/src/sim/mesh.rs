//! The simulated mesh: workloads (pods with their proxies) and hops, the ground truth of
//! one request or connection as both proxies saw it.

/// Application protocol of a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Http,
    Grpc,
    Tcp,
}

impl Proto {
    /// The name meshscope reports for the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Grpc => "grpc",
            Proto::Tcp => "tcp",
        }
    }
}

/// A simulated pod with its proxy.
#[derive(Debug, Clone)]
pub struct Workload {
    pub app: &'static str,
    pub version: &'static str,
    pub namespace: &'static str,
    pub pod: String,
    pub ip: String,
    /// A gateway (`router~`) rather than a sidecar.
    pub gateway: bool,
    pub port: u16,
    /// An Istio < 1.24 proxy: it logs peers as FlatBuffers under `wasm.*_peer`.
    pub legacy_proxy: bool,
}

impl Workload {
    /// meshscope's service name for it.
    pub fn service(&self) -> String {
        format!("{}.{}", self.app, self.namespace)
    }
}

/// The callee of a hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Workload(usize),
    /// A ServiceEntry host outside the mesh, reached through `outbound|port||host`.
    External {
        host: &'static str,
        port: u16,
    },
}

/// One request (or TCP connection) as both proxies saw it: the ground truth.
#[derive(Debug, Clone)]
pub struct Hop {
    pub start_unix_nanos: i64,
    /// `None`: a caller without a proxy (appears as `unknown`).
    pub client: Option<usize>,
    pub server: Target,
    pub proto: Proto,
    pub method: &'static str,
    pub path: String,
    /// The endpoint meshscope should report (normalised).
    pub endpoint: String,
    pub status: u32,
    pub grpc_status: Option<u32>,
    /// No response and a failure flag (upstream connection failure).
    pub failed: bool,
    pub client_latency_nanos: u64,
    pub server_latency_nanos: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub mtls: bool,
    /// Whether each side's proxy logs it, and whether peer metadata is attached.
    pub client_reports: bool,
    pub server_reports: bool,
    pub peer_metadata: bool,
}

impl Hop {
    /// Whether meshscope counts the hop as an error: HTTP 5xx, a non-zero gRPC status, or
    /// no response with a failure flag.
    pub fn is_error(&self) -> bool {
        self.status >= 500
            || self.grpc_status.is_some_and(|g| g != 0)
            || (self.status == 0 && self.failed)
    }
}

/// The simulated mesh.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub workloads: Vec<Workload>,
}

impl Mesh {
    /// The index of the workload of `app` at `version` (the first workload when none is).
    pub(crate) fn find(&self, app: &str, version: &str) -> usize {
        self.workloads
            .iter()
            .position(|w| w.app == app && w.version == version)
            .unwrap_or(0)
    }

    /// Service name of a hop's client.
    pub fn client_name(&self, hop: &Hop) -> String {
        hop.client
            .map_or_else(|| "unknown".to_string(), |c| self.workloads[c].service())
    }

    /// Service name of a hop's server.
    pub fn server_name(&self, hop: &Hop) -> String {
        match &hop.server {
            Target::Workload(s) => self.workloads[*s].service(),
            Target::External { host, port } => format!("{host}:{port}"),
        }
    }
}

/// bookinfo, plus a gRPC recommendations service, a MongoDB over TCP, and an external API.
pub fn bookinfo() -> Mesh {
    let specs: [(&str, &str, &str, bool, u16, &str); 10] = [
        (
            "istio-ingressgateway",
            "",
            "istio-system",
            true,
            8080,
            "10.44.0.10",
        ),
        ("productpage", "v1", "default", false, 9080, "10.44.1.11"),
        ("details", "v1", "default", false, 9080, "10.44.1.12"),
        ("reviews", "v1", "default", false, 9080, "10.44.1.13"),
        ("reviews", "v2", "default", false, 9080, "10.44.1.14"),
        ("reviews", "v3", "default", false, 9080, "10.44.1.15"),
        ("ratings", "v1", "default", false, 9080, "10.44.1.16"),
        (
            "recommendations",
            "v1",
            "default",
            false,
            50051,
            "10.44.1.17",
        ),
        ("mongodb", "v1", "default", false, 27017, "10.44.1.18"),
        ("reviews", "v2", "default", false, 9080, "10.44.1.19"),
    ];
    let workloads = specs
        .iter()
        .enumerate()
        .map(|(i, (app, version, ns, gateway, port, ip))| {
            let rs = format!("{:x}", 0x5d8c_9e61_u32.wrapping_mul(i as u32 + 7));
            let pod = if version.is_empty() {
                format!("{app}-{rs}-x{i}k2p")
            } else {
                format!("{app}-{version}-{rs}-x{i}k2p")
            };
            Workload {
                app,
                version,
                namespace: ns,
                pod,
                ip: ip.to_string(),
                gateway: *gateway,
                port: *port,
                legacy_proxy: (*app == "details") || (*app == "reviews" && *version == "v1"),
            }
        })
        .collect();
    Mesh { workloads }
}
