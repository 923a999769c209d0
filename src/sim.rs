//! A bookinfo-like traffic simulator that speaks real Envoy ALS (encoded with the complete
//! `envoy-types` definitions, not meshscope's own field subset).
//!
//! [`Generator`] produces ground-truth [`Hop`]s (one per request or connection, with the
//! latency each side measured); [`encode`] turns hops into the access-log messages each
//! proxy would stream; [`send`] streams them over real gRPC. Tests compute expected
//! figures from the hops, independently of meshscope's pipeline.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    Address, Node, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, ConnectionProperties, HttpAccessLogEntry, HttpRequestProperties,
    HttpResponseProperties, ResponseFlags, TcpAccessLogEntry, TlsProperties,
    tls_properties::{
        CertificateProperties,
        certificate_properties::{SubjectAltName, subject_alt_name::San},
    },
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries, TcpAccessLogEntries,
};
use envoy_types::pb::google::protobuf::{
    Any, Duration, Struct, Timestamp, UInt32Value, Value, value::Kind,
};
use prost::Message;

/// Entries per ALS message, as Envoy batches them.
pub const ENTRIES_PER_MESSAGE: usize = 100;

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
    /// Error as DESIGN § 5 defines it.
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
    fn find(&self, app: &str, version: &str) -> usize {
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

/// A small deterministic PRNG (splitmix64), so scenarios replay exactly from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Generates user requests through the mesh.
#[derive(Debug, Clone)]
pub struct Generator {
    pub mesh: Mesh,
    rng: Rng,
}

impl Generator {
    /// The bookinfo mesh with a traffic generator seeded with `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator {
            mesh: bookinfo(),
            rng: Rng::new(seed),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hop(
        &mut self,
        t: i64,
        client: Option<usize>,
        server: Target,
        proto: Proto,
        method: &'static str,
        path: String,
        endpoint: String,
        base_ms: u64,
        error_rate: f64,
    ) -> Hop {
        let server_latency = self
            .rng
            .range(base_ms * 1_000_000 / 2, base_ms * 1_000_000 * 3 / 2)
            + self.rng.range(0, 1000);
        let client_latency = server_latency + self.rng.range(200_000, 2_000_000);
        let err = self.rng.chance(error_rate);
        let (status, grpc_status, failed) = match proto {
            Proto::Grpc => (200, Some(if err { 14 } else { 0 }), false),
            Proto::Http => (if err { 503 } else { 200 }, None, false),
            Proto::Tcp => (0, None, err),
        };
        let is_workload = matches!(server, Target::Workload(_));
        Hop {
            start_unix_nanos: t,
            client,
            server,
            proto,
            method,
            path,
            endpoint,
            status,
            grpc_status,
            failed,
            client_latency_nanos: client_latency,
            server_latency_nanos: server_latency,
            request_bytes: self.rng.range(0, 400),
            response_bytes: self.rng.range(100, 5000),
            mtls: is_workload && client.is_some(),
            client_reports: client.is_some(),
            server_reports: is_workload,
            // Some proxies predate Istio 1.24's peer metadata: their peers are resolved by
            // address instead.
            peer_metadata: !self.rng.chance(0.3),
        }
    }

    /// One user request entering at the gateway at `t` (unix nanos) and the calls it fans
    /// out to.
    pub fn user_request(&mut self, t: i64) -> Vec<Hop> {
        let m = &self.mesh;
        let (gw, pp, details, ratings, recs, mongo) = (
            m.find("istio-ingressgateway", ""),
            m.find("productpage", "v1"),
            m.find("details", "v1"),
            m.find("ratings", "v1"),
            m.find("recommendations", "v1"),
            m.find("mongodb", "v1"),
        );
        let reviews = [3, 4, 5, 9][self.rng.range(0, 4) as usize];
        let id = self.rng.range(0, 1000);
        let ms = 1_000_000i64;
        let mut hops = vec![self.hop(
            t,
            Some(gw),
            Target::Workload(pp),
            Proto::Http,
            "GET",
            "/productpage?u=normal".into(),
            "GET /productpage".into(),
            40,
            0.0,
        )];
        hops.push(self.hop(
            t + ms,
            Some(pp),
            Target::Workload(details),
            Proto::Http,
            "GET",
            format!("/details/{id}"),
            "GET /details/{id}".into(),
            5,
            0.01,
        ));
        hops.push(self.hop(
            t + 7 * ms,
            Some(pp),
            Target::Workload(reviews),
            Proto::Http,
            "GET",
            format!("/reviews/{id}"),
            "GET /reviews/{id}".into(),
            20,
            0.02,
        ));
        if self.mesh.workloads[reviews].version != "v1" {
            hops.push(self.hop(
                t + 9 * ms,
                Some(reviews),
                Target::Workload(ratings),
                Proto::Http,
                "GET",
                format!("/ratings/{id}"),
                "GET /ratings/{id}".into(),
                8,
                0.05,
            ));
            if self.rng.chance(0.3) {
                hops.push(self.hop(
                    t + 10 * ms,
                    Some(ratings),
                    Target::Workload(mongo),
                    Proto::Tcp,
                    "",
                    String::new(),
                    String::new(),
                    3,
                    0.02,
                ));
            }
        }
        hops.push(self.hop(
            t + 30 * ms,
            Some(pp),
            Target::Workload(recs),
            Proto::Grpc,
            "POST",
            "/bookinfo.Recommendations/Recommend".into(),
            "/bookinfo.Recommendations/Recommend".into(),
            12,
            0.03,
        ));
        if self.rng.chance(0.2) {
            let quote = self.rng.range(1, 1 << 40);
            hops.push(self.hop(
                t + 32 * ms,
                Some(pp),
                Target::External {
                    host: "api.example.com",
                    port: 443,
                },
                Proto::Http,
                "GET",
                format!("/v1/quotes/{quote}"),
                "GET /v1/quotes/{id}".into(),
                80,
                0.05,
            ));
        }
        if self.rng.chance(0.1) {
            // A prober without a sidecar: seen only by the server, caller unknown.
            hops.push(self.hop(
                t + 2 * ms,
                None,
                Target::Workload(details),
                Proto::Http,
                "GET",
                "/health".into(),
                "GET /health".into(),
                1,
                0.0,
            ));
        }
        hops
    }
}

fn s(v: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(v.to_string())),
    }
}

fn node(w: &Workload) -> Node {
    let mut labels = Struct::default();
    labels.fields.insert("app".into(), s(w.app));
    labels
        .fields
        .insert("service.istio.io/canonical-name".into(), s(w.app));
    if !w.version.is_empty() {
        labels.fields.insert("version".into(), s(w.version));
    }
    let mut md = Struct::default();
    md.fields.insert("NAME".into(), s(&w.pod));
    md.fields.insert("NAMESPACE".into(), s(w.namespace));
    md.fields.insert("CLUSTER_ID".into(), s("Kubernetes"));
    md.fields.insert("INSTANCE_IPS".into(), s(&w.ip));
    md.fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(labels)),
        },
    );
    let role = if w.gateway { "router" } else { "sidecar" };
    Node {
        id: format!(
            "{role}~{}~{}.{}~{}.svc.cluster.local",
            w.ip, w.pod, w.namespace, w.namespace
        ),
        cluster: format!("{}.{}", w.app, w.namespace),
        metadata: Some(md),
        ..Default::default()
    }
}

/// Istio ≥ 1.24 peer metadata: a `Struct` in an `Any`.
fn peer(w: &Workload) -> Any {
    let mut st = Struct::default();
    st.fields.insert("name".into(), s(&w.pod));
    st.fields.insert("namespace".into(), s(w.namespace));
    st.fields.insert("service".into(), s(w.app));
    st.fields.insert("app".into(), s(w.app));
    st.fields.insert("version".into(), s(w.version));
    st.fields
        .insert("workload".into(), s(&format!("{}-{}", w.app, w.version)));
    st.fields.insert("cluster".into(), s("Kubernetes"));
    st.fields.insert(
        "identity".into(),
        s(&format!(
            "spiffe://cluster.local/ns/{}/sa/bookinfo-{}",
            w.namespace, w.app
        )),
    );
    Any {
        type_url: "type.googleapis.com/google.protobuf.Struct".into(),
        value: st.encode_to_vec(),
    }
}

/// Istio < 1.24 peer metadata: a FlatBuffers `FlatNode` in a `BytesValue` in an `Any`.
fn legacy_peer(w: &Workload) -> Any {
    use flatbuffers::{FlatBufferBuilder, TableFinishedWIPOffset, WIPOffset};
    let mut fbb = FlatBufferBuilder::new();
    let mut labels = [("app", w.app), ("version", w.version)];
    labels.sort();
    let kvs: Vec<WIPOffset<TableFinishedWIPOffset>> = labels
        .iter()
        .map(|(k, v)| {
            let k = fbb.create_string(k);
            let v = fbb.create_string(v);
            let t = fbb.start_table();
            fbb.push_slot_always(4, k);
            fbb.push_slot_always(6, v);
            fbb.end_table(t)
        })
        .collect();
    let labels = fbb.create_vector(&kvs);
    let name = fbb.create_string(&w.pod);
    let namespace = fbb.create_string(w.namespace);
    let workload = fbb.create_string(&format!("{}-{}", w.app, w.version));
    let t = fbb.start_table();
    fbb.push_slot_always(4, name); // name
    fbb.push_slot_always(6, namespace); // namespace
    fbb.push_slot_always(8, labels); // labels
    fbb.push_slot_always(12, workload); // workload_name
    let root = fbb.end_table(t);
    fbb.finish_minimal(root);
    Any {
        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
        value: fbb.finished_data().to_vec().encode_to_vec(),
    }
}

/// Peer metadata as the reporting proxy's Istio version writes it.
fn peer_state(reporter: &Workload, peer_of: &Workload, upstream: bool) -> (String, Any) {
    let dir = if upstream {
        "upstream_peer"
    } else {
        "downstream_peer"
    };
    if reporter.legacy_proxy {
        (format!("wasm.{dir}"), legacy_peer(peer_of))
    } else {
        (dir.to_string(), peer(peer_of))
    }
}

fn addr(ip: &str, port: u16) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    })
}

fn dur(nanos: u64) -> Option<Duration> {
    Some(Duration {
        seconds: (nanos / 1_000_000_000) as i64,
        nanos: (nanos % 1_000_000_000) as i32,
    })
}

fn common(hop: &Hop, mesh: &Mesh, client_side: bool) -> AccessLogCommon {
    let mut c = AccessLogCommon {
        start_time: Some(Timestamp {
            seconds: hop.start_unix_nanos.div_euclid(1_000_000_000),
            nanos: hop.start_unix_nanos.rem_euclid(1_000_000_000) as i32,
        }),
        ..Default::default()
    };
    // Modern Envoy marks the final entry of a request (DownstreamEnd) or connection
    // (TcpConnectionEnd).
    c.access_log_type = if hop.proto == Proto::Tcp { 3 } else { 6 };
    let latency = if client_side {
        hop.client_latency_nanos
    } else {
        hop.server_latency_nanos
    };
    c.time_to_last_downstream_tx_byte = dur(latency);
    c.time_to_last_upstream_rx_byte = dur(latency.saturating_sub(50_000));
    c.duration = dur(latency + 10_000);
    if hop.failed {
        c.response_flags = Some(ResponseFlags {
            upstream_connection_failure: true,
            ..Default::default()
        });
    }
    match (&hop.server, client_side) {
        (Target::Workload(sv), true) => {
            let w = &mesh.workloads[*sv];
            c.upstream_cluster = format!(
                "outbound|{}|{}|{}.{}.svc.cluster.local",
                w.port, w.version, w.app, w.namespace
            );
            c.upstream_remote_address = addr(&w.ip, w.port);
            if let (true, Some(cl)) = (hop.peer_metadata, hop.client) {
                let (k, v) = peer_state(&mesh.workloads[cl], w, true);
                c.filter_state_objects.insert(k, v);
            }
        }
        (Target::External { host, port }, true) => {
            c.upstream_cluster = format!("outbound|{port}||{host}");
            c.upstream_remote_address = addr("93.184.216.34", *port);
        }
        (Target::Workload(sv), false) => {
            let w = &mesh.workloads[*sv];
            c.upstream_cluster = format!("inbound|{}||", w.port);
            c.upstream_remote_address = addr("127.0.0.6", w.port);
            c.downstream_local_address = addr(&w.ip, w.port);
            match hop.client {
                Some(cl) => {
                    c.downstream_remote_address = addr(&mesh.workloads[cl].ip, 40_000);
                    if hop.peer_metadata {
                        let (k, v) = peer_state(w, &mesh.workloads[cl], false);
                        c.filter_state_objects.insert(k, v);
                    }
                }
                None => c.downstream_remote_address = addr("10.44.9.9", 51_000),
            }
            if hop.mtls {
                c.tls_properties = Some(TlsProperties {
                    tls_version: 4,
                    peer_certificate_properties: Some(CertificateProperties {
                        subject_alt_name: vec![SubjectAltName {
                            san: Some(San::Uri(format!(
                                "spiffe://cluster.local/ns/default/sa/bookinfo-{}",
                                mesh.client_name(hop)
                            ))),
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        (Target::External { .. }, false) => {}
    }
    c
}

fn method_number(m: &str) -> i32 {
    match m {
        "GET" => 1,
        "HEAD" => 2,
        "POST" => 3,
        "PUT" => 4,
        "DELETE" => 5,
        "PATCH" => 9,
        _ => 0,
    }
}

fn http_entry(hop: &Hop, mesh: &Mesh, client_side: bool) -> HttpAccessLogEntry {
    let mut request = HttpRequestProperties {
        request_method: method_number(hop.method),
        scheme: "http".into(),
        authority: mesh.server_name(hop),
        path: hop.path.clone(),
        request_body_bytes: hop.request_bytes,
        request_id: format!("{:016x}", hop.start_unix_nanos),
        ..Default::default()
    };
    let mut response = HttpResponseProperties {
        response_code: (hop.status != 0).then_some(UInt32Value { value: hop.status }),
        response_body_bytes: hop.response_bytes,
        ..Default::default()
    };
    if hop.proto == Proto::Grpc {
        request
            .request_headers
            .insert("content-type".into(), "application/grpc".into());
        if let Some(g) = hop.grpc_status {
            response
                .response_trailers
                .insert("grpc-status".into(), g.to_string());
        }
    }
    HttpAccessLogEntry {
        common_properties: Some(common(hop, mesh, client_side)),
        protocol_version: if hop.proto == Proto::Grpc { 3 } else { 2 },
        request: Some(request),
        response: Some(response),
    }
}

fn tcp_entry(hop: &Hop, mesh: &Mesh, client_side: bool) -> TcpAccessLogEntry {
    TcpAccessLogEntry {
        common_properties: Some(common(hop, mesh, client_side)),
        connection_properties: Some(ConnectionProperties {
            received_bytes: hop.request_bytes,
            sent_bytes: hop.response_bytes,
        }),
    }
}

/// Entries of one proxy, split by logger.
#[derive(Debug, Default, Clone)]
pub struct ProxyLog {
    pub http: Vec<HttpAccessLogEntry>,
    pub tcp: Vec<TcpAccessLogEntry>,
}

/// Every proxy's entries for `hops`, keyed by workload index.
pub fn entries(mesh: &Mesh, hops: &[Hop]) -> BTreeMap<usize, ProxyLog> {
    let mut logs: BTreeMap<usize, ProxyLog> = BTreeMap::new();
    for hop in hops {
        let mut sides = Vec::new();
        if let (Some(c), true) = (hop.client, hop.client_reports) {
            sides.push((c, true));
        }
        if let (Target::Workload(sv), true) = (&hop.server, hop.server_reports) {
            sides.push((*sv, false));
        }
        for (proxy, client_side) in sides {
            let log = logs.entry(proxy).or_default();
            match hop.proto {
                Proto::Tcp => log.tcp.push(tcp_entry(hop, mesh, client_side)),
                _ => log.http.push(http_entry(hop, mesh, client_side)),
            }
        }
    }
    logs
}

/// The message sequence of one stream: the identifier rides on the first message only.
pub fn stream_messages(w: &Workload, log: ProxyLog, tcp: bool) -> Vec<StreamAccessLogsMessage> {
    let mut out = Vec::new();
    let mut first = true;
    let mut ident = || {
        let id = first.then(|| Identifier {
            node: Some(node(w)),
            log_name: if tcp {
                "tcp_envoy_accesslog"
            } else {
                "http_envoy_accesslog"
            }
            .into(),
        });
        first = false;
        id
    };
    if tcp {
        for chunk in log.tcp.chunks(ENTRIES_PER_MESSAGE) {
            out.push(StreamAccessLogsMessage {
                identifier: ident(),
                log_entries: Some(LogEntries::TcpLogs(TcpAccessLogEntries {
                    log_entry: chunk.to_vec(),
                })),
            });
        }
    } else {
        for chunk in log.http.chunks(ENTRIES_PER_MESSAGE) {
            out.push(StreamAccessLogsMessage {
                identifier: ident(),
                log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                    log_entry: chunk.to_vec(),
                })),
            });
        }
    }
    out
}

/// All streams for `hops`: `(workload index, messages)`, one per proxy and logger.
pub fn encode(mesh: &Mesh, hops: &[Hop]) -> Vec<(usize, Vec<StreamAccessLogsMessage>)> {
    let mut streams = Vec::new();
    for (proxy, log) in entries(mesh, hops) {
        let w = &mesh.workloads[proxy];
        let (http, tcp) = (!log.http.is_empty(), !log.tcp.is_empty());
        if http {
            streams.push((proxy, stream_messages(w, log.clone(), false)));
        }
        if tcp {
            streams.push((proxy, stream_messages(w, log, true)));
        }
    }
    streams
}

/// Streams `messages` as one ALS stream to `endpoint` (`http://127.0.0.1:4317`) and waits
/// for the server's answer.
pub async fn send(
    endpoint: &str,
    messages: Vec<StreamAccessLogsMessage>,
) -> Result<(), tonic::Status> {
    let mut client = AccessLogServiceClient::connect(endpoint.to_string())
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect {endpoint}: {e}")))?;
    client
        .stream_access_logs(futures::stream::iter(messages))
        .await
        .map(|_| ())
}

/// A raw gRPC client connected to `endpoint` (`http://127.0.0.1:4317`), for load
/// generators and tests that send hand-encoded messages.
pub async fn connect(
    endpoint: &str,
) -> Result<tonic::client::Grpc<tonic::transport::Channel>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect {endpoint}: {e}")))?;
    Ok(tonic::client::Grpc::new(channel))
}

/// Opens and closes one stream per proxy carrying only its identifier, as Envoy does at
/// start-up, so the server knows every proxy's addresses before any entry arrives.
pub async fn announce(
    endpoint: &str,
    mesh: &Mesh,
    proxies: impl IntoIterator<Item = usize>,
) -> Result<(), tonic::Status> {
    for p in proxies {
        let hello = StreamAccessLogsMessage {
            identifier: Some(Identifier {
                node: Some(node(&mesh.workloads[p])),
                log_name: "http_envoy_accesslog".into(),
            }),
            log_entries: None,
        };
        send(endpoint, vec![hello]).await?;
    }
    Ok(())
}

/// Announces every proxy, then streams every stream of `hops` concurrently.
pub async fn send_all(endpoint: &str, mesh: &Mesh, hops: &[Hop]) -> Result<(), tonic::Status> {
    let streams = encode(mesh, hops);
    let mut proxies: Vec<usize> = streams.iter().map(|(p, _)| *p).collect();
    proxies.dedup();
    announce(endpoint, mesh, proxies).await?;
    let futures = streams
        .into_iter()
        .map(|(_, messages)| send(endpoint, messages));
    for r in futures::future::join_all(futures).await {
        r?;
    }
    Ok(())
}

/// Now, in unix nanoseconds.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Streams live traffic at `rate` user requests per second over long-lived ALS streams,
/// one per proxy and logger, as Envoy does; a stream that fails is reopened on the next
/// tick. Alongside, the traced shop of [`crate::traces`] exports OTLP spans over gRPC at
/// half the rate, and `ratings` exports spans for the mesh's calls into it. Runs until
/// aborted.
pub async fn run_traffic(endpoint: String, rate: u32) {
    use std::collections::HashMap;
    use tokio::sync::mpsc;

    let mut generator = Generator::new(now_nanos() as u64);
    // Proxies open their streams when they start, before traffic flows.
    let all = 0..generator.mesh.workloads.len();
    if let Err(e) = announce(&endpoint, &generator.mesh, all).await {
        tracing::warn!(error = %e, "demo traffic could not announce its proxies");
    }
    let mut streams: HashMap<(usize, bool), mpsc::Sender<StreamAccessLogsMessage>> = HashMap::new();
    let ticks_per_second = 5u32;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        1000 / u64::from(ticks_per_second),
    ));
    let per_tick = (rate / ticks_per_second).max(1);
    let mut shop = crate::traces::Shop::new(now_nanos() as u64 ^ 0x5eed);
    let mut exporter: Option<crate::traces::Exporter> = None;
    loop {
        tick.tick().await;
        let now = now_nanos();
        let spread = 200_000_000 / i64::from(per_tick);
        let hops: Vec<Hop> = (0..per_tick)
            .flat_map(|i| generator.user_request(now - 200_000_000 + i64::from(i) * spread))
            .collect();
        let mut spans = crate::traces::Spans::default();
        shop.mesh_server_spans(&generator.mesh, &hops, &mut spans);
        for i in 0..per_tick.div_ceil(2) {
            shop.request(now - 200_000_000 + 2 * i64::from(i) * spread, &mut spans);
        }
        if exporter.is_none() {
            match crate::traces::Exporter::connect(&endpoint).await {
                Ok(e) => exporter = Some(e),
                Err(e) => tracing::warn!(error = %e, "demo traces could not connect"),
            }
        }
        if let Some(e) = exporter.as_mut() {
            for request in spans.requests(512) {
                if let Err(err) = e.export(request).await {
                    tracing::warn!(error = %err, "demo trace export failed; reconnecting");
                    exporter = None;
                    break;
                }
            }
        }
        for (proxy, log) in entries(&generator.mesh, &hops) {
            for tcp in [false, true] {
                if (tcp && log.tcp.is_empty()) || (!tcp && log.http.is_empty()) {
                    continue;
                }
                let key = (proxy, tcp);
                let fresh = streams.get(&key).is_none_or(|tx| tx.is_closed());
                if fresh {
                    let (tx, rx) = mpsc::channel(64);
                    let endpoint = endpoint.clone();
                    tokio::spawn(async move {
                        match AccessLogServiceClient::connect(endpoint).await {
                            Ok(mut client) => {
                                if let Err(e) = client
                                    .stream_access_logs(
                                        tokio_stream::wrappers::ReceiverStream::new(rx),
                                    )
                                    .await
                                {
                                    tracing::debug!(error = %e, "demo stream ended");
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "demo traffic could not connect"),
                        }
                    });
                    streams.insert(key, tx);
                }
                let mut messages =
                    stream_messages(&generator.mesh.workloads[proxy], log.clone(), tcp);
                if !fresh {
                    for m in &mut messages {
                        m.identifier = None;
                    }
                }
                if let Some(tx) = streams.get(&key) {
                    for m in messages {
                        if tx.send(m).await.is_err() {
                            streams.remove(&key);
                            break;
                        }
                    }
                }
            }
        }
    }
}
