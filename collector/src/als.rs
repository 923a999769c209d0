//! Envoy access-log service v3: long-lived client streams of HTTP and TCP entries, each
//! entry turned into one [`Call`].
//!
//! The reporter (the proxy that wrote the entry) comes from the stream's first message and
//! is cached for the stream. Peer identities are resolved through the chain of DESIGN § 2
//! and cached per stream by the raw bytes of the peer metadata, so repeated peers cost a
//! hash lookup, not a decode.

use foldhash::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use prost_types::value::Kind;
use proto::als::{
    AccessLogCommon, EnvoyNode, HTTP_FINAL_LOG_TYPES, HttpAccessLogEntry, NETWORK_LOG_TYPES,
    StreamAccessLogsMessage, TCP_FINAL_LOG_TYPES, TcpAccessLogEntry, method_name,
};
use proto::channel::CallSender;
use proto::{Call, CallBatch, Node, Protocol, Side, Source, UNKNOWN};
use tokio::sync::watch;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::{Code, Status};
use tracing::{debug, trace, warn};

use crate::metrics::CollectorMetrics;
use crate::naming;

/// gRPC service name of the access-log service.
pub const SERVICE_NAME: &str = "envoy.service.accesslog.v3.AccessLogService";
const METHOD_PATH: &str = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

/// Most distinct peers cached per stream before the cache is cleared.
const PEER_CACHE_CAP: usize = 4096;

/// `envoy.service.accesslog.v3.StreamAccessLogsResponse` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAccessLogsResponse {}

/// The role of the reporting proxy, from the `node.id` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sidecar,
    /// An ingress or egress gateway (`router~`).
    Router,
    Waypoint,
    Other,
}

/// The proxy that wrote a stream's entries.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub node: Node,
    pub role: Role,
}

fn field<'a>(s: &'a prost_types::Struct, key: &str) -> Option<&'a Kind> {
    s.fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.kind.as_ref())
}

fn string_field<'a>(s: &'a prost_types::Struct, key: &str) -> Option<&'a str> {
    match field(s, key) {
        Some(Kind::StringValue(v)) if !v.is_empty() => Some(v),
        _ => None,
    }
}

fn struct_field<'a>(s: &'a prost_types::Struct, key: &str) -> Option<&'a prost_types::Struct> {
    match field(s, key) {
        Some(Kind::StructValue(v)) => Some(v),
        _ => None,
    }
}

/// The app name from labels, in the order of DESIGN § 4.
fn app_from_labels(labels: &prost_types::Struct) -> Option<&str> {
    [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .into_iter()
    .find_map(|k| string_field(labels, k))
}

impl Reporter {
    /// Identifies the reporter from the stream identifier's node.
    pub fn from_node(node: &EnvoyNode) -> Reporter {
        let mut id = node.id.split('~');
        let role = match id.next() {
            Some("sidecar") => Role::Sidecar,
            Some("router") => Role::Router,
            Some("waypoint") => Role::Waypoint,
            _ => Role::Other,
        };
        let _ip = id.next();
        let (id_pod, id_ns) = match id.next().and_then(|s| s.rsplit_once('.')) {
            Some((pod, ns)) => (Some(pod), Some(ns)),
            None => (None, None),
        };
        let empty = prost_types::Struct::default();
        let md = node.metadata.as_ref().unwrap_or(&empty);
        let labels = struct_field(md, "LABELS");
        let pod = string_field(md, "NAME")
            .or_else(|| string_field(md, "POD_NAME"))
            .or(id_pod)
            .filter(|s| !s.is_empty());
        let namespace = string_field(md, "NAMESPACE")
            .or_else(|| string_field(md, "CONFIG_NAMESPACE"))
            .or(id_ns)
            .filter(|s| !s.is_empty());
        let app = labels
            .and_then(app_from_labels)
            .or_else(|| app_from_labels(md))
            .or_else(|| string_field(md, "WORKLOAD_NAME"))
            .or_else(|| pod.map(naming::workload_from_pod))
            .or_else(|| {
                let c = node.cluster.as_str();
                let c = namespace
                    .and_then(|ns| c.strip_suffix(&format!(".{ns}")))
                    .unwrap_or(c);
                (!c.is_empty()).then_some(c)
            });
        let node = match app {
            Some(app) => Node::real(
                Arc::from(naming::service_name(app, namespace)),
                pod.map(Arc::from),
            ),
            None => Node::unknown(),
        };
        Reporter { node, role }
    }
}

/// Most addresses the [`AddressBook`] holds; past it, new addresses are not learned.
pub const ADDRESS_BOOK_CAP: usize = 200_000;

/// Pod addresses → workloads, learned from the identifiers of every stream (each proxy
/// announces its pod IPs in `node.id` and `INSTANCE_IPS`). Resolves the peer of an entry
/// that carries no peer metadata (Istio < 1.24 without the FlatBuffers peer, plain Envoy)
/// from its socket address, so the server side can still name its caller and a call seen
/// by both sides lands on one edge. Shared by all streams.
#[derive(Debug, Default)]
pub struct AddressBook {
    map: std::sync::RwLock<HashMap<String, Node>>,
}

impl AddressBook {
    /// Records the addresses of a reporting proxy.
    pub fn learn(&self, node: &EnvoyNode, reporter: &Reporter) {
        if !reporter.node.real {
            return;
        }
        let empty = prost_types::Struct::default();
        let md = node.metadata.as_ref().unwrap_or(&empty);
        let listed = string_field(md, "INSTANCE_IPS")
            .or_else(|| string_field(md, "ISTIO_META_INSTANCE_IPS"))
            .unwrap_or("");
        let from_id = node.id.split('~').nth(1).unwrap_or("");
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        for ip in listed.split(',').chain([from_id]).map(str::trim) {
            if ip.is_empty() || ip.starts_with("fe80:") {
                continue;
            }
            if map.len() >= ADDRESS_BOOK_CAP && !map.contains_key(ip) {
                return;
            }
            map.insert(ip.to_string(), reporter.node.clone());
        }
    }

    /// A book seeded with configured addresses (`ip` → `service` or `service/pod`), for
    /// peers that never open a stream themselves (workloads without a proxy). Addresses a
    /// proxy announces later take precedence.
    pub fn with_static(entries: &std::collections::BTreeMap<String, String>) -> AddressBook {
        let map = entries
            .iter()
            .filter(|(ip, name)| !ip.is_empty() && !name.is_empty())
            .map(|(ip, name)| {
                let node = match name.split_once('/') {
                    Some((service, pod)) if !pod.is_empty() => {
                        Node::real(Arc::from(service), Some(Arc::from(pod)))
                    }
                    _ => Node::real(Arc::from(name.trim_end_matches('/')), None),
                };
                (ip.trim().to_string(), node)
            })
            .take(ADDRESS_BOOK_CAP)
            .collect();
        AddressBook {
            map: std::sync::RwLock::new(map),
        }
    }

    /// The workload last seen at `ip`.
    pub fn lookup(&self, ip: &str) -> Option<Node> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ip)
            .cloned()
    }
}

/// Direction and destination encoded in `upstream_cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cluster<'a> {
    Inbound,
    Outbound { port: &'a str, fqdn: &'a str },
    Passthrough,
    BlackHole,
    Missing,
}

fn parse_cluster(c: &str) -> Cluster<'_> {
    if c.is_empty() {
        return Cluster::Missing;
    }
    let mut parts = c.split('|');
    match parts.next() {
        Some("inbound") => Cluster::Inbound,
        Some("outbound") => {
            let port = parts.next().unwrap_or("");
            let _subset = parts.next();
            let fqdn = parts.next().unwrap_or("");
            Cluster::Outbound { port, fqdn }
        }
        Some("PassthroughCluster") => Cluster::Passthrough,
        Some("BlackHoleCluster") => Cluster::BlackHole,
        Some(s) if s.starts_with("InboundPassthroughCluster") => Cluster::Inbound,
        // `direction|port|subset|fqdn` forms of ambient waypoints (`inbound-vip|…`) and
        // others: a call to the named service.
        Some(_) if c.contains('|') => {
            let port = parts.next().unwrap_or("");
            let fqdn = c.rsplit('|').next().unwrap_or("");
            Cluster::Outbound { port, fqdn }
        }
        // A static cluster name (plain Envoy): the destination is that cluster.
        Some(_) => Cluster::Outbound { port: "", fqdn: c },
        None => Cluster::Missing,
    }
}

fn duration_nanos(d: &prost_types::Duration) -> Option<u64> {
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    u64::try_from(d.seconds)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(d.nanos).ok()?)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Per-stream conversion state.
pub struct StreamDecoder {
    reporter: Option<Reporter>,
    book: Arc<AddressBook>,
    peers: HashMap<Bytes, Node>,
    destinations: HashMap<String, Node>,
}

/// Why an entry produced no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An intermediate entry; the final one carries the cumulative figures.
    Intermediate,
    /// An HTTP-logger entry written by a network filter (or with neither request nor
    /// response): a TCP connection that the TCP logger reports too.
    NotHttp,
    /// A TCP-logger entry written by the HTTP connection manager: an HTTP request that the
    /// HTTP logger reports too (Istio attaches both loggers everywhere).
    HttpOnTcpLogger,
}

impl StreamDecoder {
    /// A decoder for one stream, resolving addresses through `book`.
    pub fn new(book: Arc<AddressBook>) -> StreamDecoder {
        StreamDecoder {
            reporter: None,
            book,
            peers: HashMap::default(),
            destinations: HashMap::default(),
        }
    }

    /// Identifies the stream's reporter (from the first message) and learns its addresses.
    pub fn identify(&mut self, node: &EnvoyNode) -> &Reporter {
        let reporter = Reporter::from_node(node);
        self.book.learn(node, &reporter);
        self.reporter.insert(reporter)
    }

    /// Who called the reporter: peer metadata, else the announced address, else `unknown`.
    fn downstream(&mut self, common: &AccessLogCommon) -> Node {
        match self.peer(common, false) {
            Some(n) => n,
            None => self
                .by_address(&common.downstream_remote_address)
                .unwrap_or_else(Node::unknown),
        }
    }

    /// The upstream pod, when its address is known and belongs to the cluster's service.
    fn outbound_by_address(&self, common: &AccessLogCommon, fqdn: &str) -> Option<Node> {
        let n = self.by_address(&common.upstream_remote_address)?;
        let service = naming::service_from_fqdn(fqdn)?;
        (*n.service == *service).then_some(n)
    }

    fn by_address(&self, address: &Option<proto::als::Address>) -> Option<Node> {
        let ip = address.as_ref()?.socket_address.as_ref()?.address.as_str();
        self.book.lookup(ip)
    }

    /// The cached reporter, if the stream has identified itself.
    pub fn reporter(&self) -> Option<&Reporter> {
        self.reporter.as_ref()
    }

    fn peer(&mut self, common: &AccessLogCommon, upstream: bool) -> Option<Node> {
        let keys: [&str; 2] = if upstream {
            ["upstream_peer", "wasm.upstream_peer"]
        } else {
            ["downstream_peer", "wasm.downstream_peer"]
        };
        for key in keys {
            let Some(any) = common.filter_state_objects.get(key) else {
                continue;
            };
            if let Some(n) = self.peers.get(&any.value) {
                return Some(n.clone());
            }
            let node = if key.starts_with("wasm.") {
                crate::flatnode::unwrap_any(&any.type_url, &any.value)
                    .and_then(|b| decode_flat_peer(&b))
            } else {
                decode_peer_struct(&any.value)
            };
            if let Some(node) = node {
                if self.peers.len() >= PEER_CACHE_CAP {
                    self.peers.clear();
                }
                // Copied so the cache does not pin the whole receive buffer.
                self.peers
                    .insert(Bytes::copy_from_slice(&any.value), node.clone());
                return Some(node);
            }
        }
        None
    }

    fn destination(&mut self, key: &str, make: impl FnOnce() -> Node) -> Node {
        if let Some(n) = self.destinations.get(key) {
            return n.clone();
        }
        let n = make();
        if self.destinations.len() >= PEER_CACHE_CAP {
            self.destinations.clear();
        }
        self.destinations.insert(key.to_string(), n.clone());
        n
    }

    /// Resolves side, client and server for an entry.
    fn endpoints_of(
        &mut self,
        reporter: &Reporter,
        common: &AccessLogCommon,
        authority: Option<&str>,
    ) -> (Side, Node, Node) {
        let me = reporter.node.clone();
        match parse_cluster(&common.upstream_cluster) {
            Cluster::Inbound => (Side::Server, self.downstream(common), me),
            Cluster::Outbound { port, fqdn } => {
                let peer = match self.peer(common, true) {
                    Some(n) => Some(n),
                    None => self.outbound_by_address(common, fqdn),
                };
                let server = match peer {
                    Some(n) => n,
                    None => {
                        let key = format!("{fqdn}:{port}");
                        self.destination(&key, || match naming::service_from_fqdn(fqdn) {
                            Some(s) => Node::real(Arc::from(s), None),
                            None if fqdn.is_empty() => Node::unknown(),
                            None if port.is_empty() => Node::virtual_node(Arc::from(fqdn)),
                            None => Node::virtual_node(Arc::from(key.as_str())),
                        })
                    }
                };
                (Side::Client, me, server)
            }
            Cluster::Passthrough => {
                let addr = common
                    .upstream_remote_address
                    .as_ref()
                    .and_then(|a| a.socket_address.as_ref());
                let name = match (authority.filter(|a| !a.is_empty()), addr) {
                    (Some(auth), Some(a)) if !auth.contains(':') && a.port_value != 0 => {
                        format!("{auth}:{}", a.port_value)
                    }
                    (Some(auth), _) => auth.to_string(),
                    (None, Some(a)) if !a.address.is_empty() => {
                        format!("{}:{}", a.address, a.port_value)
                    }
                    _ => UNKNOWN.to_string(),
                };
                let server =
                    self.destination(&name, || Node::virtual_node(Arc::from(name.as_str())));
                (Side::Client, me, server)
            }
            Cluster::BlackHole => (
                Side::Client,
                me,
                self.destination("BlackHoleCluster", || {
                    Node::virtual_node(Arc::from("blackhole"))
                }),
            ),
            Cluster::Missing => {
                // No cluster was chosen (no route, early reset): the reporter was calling
                // out to something it could not reach.
                let server = self.peer(common, true).unwrap_or_else(Node::unknown);
                (Side::Client, me, server)
            }
        }
    }

    /// Converts one HTTP entry; `out` receives one call (two for a gateway: the hop in
    /// and the hop out).
    pub fn http_entry(&mut self, e: &HttpAccessLogEntry, out: &mut CallBatch) -> Result<(), Skip> {
        let Some(reporter) = self.reporter.clone() else {
            return Ok(());
        };
        let empty = AccessLogCommon::default();
        let common = e.common_properties.as_ref().unwrap_or(&empty);
        if NETWORK_LOG_TYPES.contains(&common.access_log_type)
            || (e.request.is_none() && e.response.is_none() && e.protocol_version == 0)
        {
            return Err(Skip::NotHttp);
        }
        if common.intermediate_log_entry || !HTTP_FINAL_LOG_TYPES.contains(&common.access_log_type)
        {
            return Err(Skip::Intermediate);
        }
        let req = e.request.as_ref();
        let resp = e.response.as_ref();
        let status_code = resp.and_then(|r| r.response_code).unwrap_or(0);
        let grpc_status = resp.and_then(|r| {
            r.response_trailers
                .get("grpc-status")
                .or_else(|| r.response_headers.get("grpc-status"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        });
        let is_grpc = grpc_status.is_some()
            || req.is_some_and(|r| {
                r.request_headers
                    .get("content-type")
                    .is_some_and(|ct| ct.starts_with("application/grpc"))
            });
        let protocol = if is_grpc {
            Protocol::Grpc
        } else {
            Protocol::Http
        };
        let endpoint = req.and_then(|r| {
            if is_grpc {
                (!r.path.is_empty()).then(|| naming::grpc_endpoint(&r.path))
            } else {
                let method = method_name(r.request_method);
                match (method, r.path.is_empty()) {
                    (None, true) => None,
                    (m, _) => Some(naming::http_endpoint(m.unwrap_or("HTTP"), &r.path)),
                }
            }
        });
        let failed = common
            .response_flags
            .as_ref()
            .is_some_and(|f| f.any_failure());
        let error = status_code >= 500
            || grpc_status.is_some_and(|g| g != 0)
            || (status_code == 0 && failed);
        let authority = req.map(|r| r.authority.as_str());
        let (side, client, server) = self.endpoints_of(&reporter, common, authority);
        let call = Call {
            start_unix_nanos: start_nanos(common),
            side,
            source: Source::Mesh,
            client,
            server,
            endpoint: endpoint.map(Arc::from),
            protocol,
            latency_nanos: latency(common),
            status_code,
            grpc_status,
            error,
            mtls: mtls(common),
            request_bytes: req.map_or(0, |r| r.request_body_bytes),
            response_bytes: resp.map_or(0, |r| r.response_body_bytes),
        };
        if reporter.role == Role::Router && side == Side::Client {
            // A gateway's entry is also the request it received: record that hop too, so
            // the gateway has its own service metrics and an inbound edge.
            let mut inbound = call.clone();
            inbound.side = Side::Server;
            inbound.client = self.downstream(common);
            inbound.server = reporter.node.clone();
            out.push(inbound);
        }
        out.push(call);
        Ok(())
    }

    /// Converts one TCP entry (one connection).
    pub fn tcp_entry(&mut self, e: &TcpAccessLogEntry, out: &mut CallBatch) -> Result<(), Skip> {
        let Some(reporter) = self.reporter.clone() else {
            return Ok(());
        };
        let empty = AccessLogCommon::default();
        let common = e.common_properties.as_ref().unwrap_or(&empty);
        if (4..=10).contains(&common.access_log_type) {
            return Err(Skip::HttpOnTcpLogger);
        }
        if common.intermediate_log_entry || !TCP_FINAL_LOG_TYPES.contains(&common.access_log_type) {
            return Err(Skip::Intermediate);
        }
        let failed = common
            .response_flags
            .as_ref()
            .is_some_and(|f| f.any_failure());
        let (side, client, server) = self.endpoints_of(&reporter, common, None);
        let conn = e.connection_properties.clone().unwrap_or_default();
        out.push(Call {
            start_unix_nanos: start_nanos(common),
            side,
            source: Source::Mesh,
            client,
            server,
            endpoint: None,
            protocol: Protocol::Tcp,
            latency_nanos: latency(common),
            status_code: 0,
            grpc_status: None,
            error: failed,
            mtls: mtls(common),
            request_bytes: conn.received_bytes,
            response_bytes: conn.sent_bytes,
        });
        Ok(())
    }
}

/// The entry's start in unix nanoseconds; arrival time when absent. Times beyond what
/// nanoseconds can hold saturate, so the aggregator drops them as too far ahead or expired
/// instead of mistaking them for now.
fn start_nanos(common: &AccessLogCommon) -> i64 {
    match &common.start_time {
        Some(t) => t
            .seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos)),
        None => now_nanos(),
    }
}

fn latency(common: &AccessLogCommon) -> Option<u64> {
    [
        &common.time_to_last_downstream_tx_byte,
        &common.duration,
        &common.time_to_last_upstream_rx_byte,
    ]
    .into_iter()
    .find_map(|d| d.as_ref().and_then(duration_nanos))
}

fn mtls(common: &AccessLogCommon) -> bool {
    common
        .tls_properties
        .as_ref()
        .and_then(|t| t.peer_certificate_properties.as_ref())
        .is_some_and(|p| {
            !p.subject.is_empty()
                || p.subject_alt_name
                    .iter()
                    .any(|s| !s.uri.is_empty() || !s.dns.is_empty())
        })
}

/// Decodes Istio ≥ 1.24 peer metadata: an `Any` holding a `google.protobuf.Struct` with
/// `name`, `namespace`, `service`, `app`, `workload`, `labels`.
fn decode_peer_struct(bytes: &[u8]) -> Option<Node> {
    let s = prost_types::Struct::decode(bytes).ok()?;
    let namespace = string_field(&s, "namespace");
    let labels = struct_field(&s, "labels");
    let app = string_field(&s, "service")
        .or_else(|| string_field(&s, "app"))
        .or_else(|| labels.and_then(app_from_labels))
        .or_else(|| string_field(&s, "workload"))?;
    let pod = string_field(&s, "name");
    Some(Node::real(
        Arc::from(naming::service_name(app, namespace)),
        pod.map(Arc::from),
    ))
}

/// Decodes Istio < 1.24 peer metadata (a FlatBuffers `FlatNode`).
fn decode_flat_peer(bytes: &[u8]) -> Option<Node> {
    let n = crate::flatnode::parse(bytes)?;
    let app = [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .into_iter()
    .find_map(|k| n.label(k))
    .or(n.workload_name)?;
    Some(Node::real(
        Arc::from(naming::service_name(app, n.namespace)),
        n.name.map(Arc::from),
    ))
}

/// The ALS gRPC service: a `tower::Service` answering the one client-streaming method.
#[derive(Clone)]
pub struct AlsServer {
    inner: Arc<AlsInner>,
}

struct AlsInner {
    calls: CallSender,
    book: Arc<AddressBook>,
    metrics: CollectorMetrics,
    shutdown: watch::Receiver<bool>,
    max_message_bytes: usize,
}

impl AlsServer {
    /// A server sending call batches into `calls`; open streams end when `shutdown` turns
    /// true.
    pub fn new(
        calls: CallSender,
        book: Arc<AddressBook>,
        metrics: CollectorMetrics,
        shutdown: watch::Receiver<bool>,
        max_message_bytes: usize,
    ) -> AlsServer {
        AlsServer {
            inner: Arc::new(AlsInner {
                calls,
                book,
                metrics,
                shutdown,
                max_message_bytes,
            }),
        }
    }
}

impl tonic::server::NamedService for AlsServer {
    const NAME: &'static str = SERVICE_NAME;
}

struct StreamSvc(Arc<AlsInner>);

impl tonic::server::ClientStreamingService<StreamAccessLogsMessage> for StreamSvc {
    type Response = StreamAccessLogsResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<StreamAccessLogsMessage>>,
    ) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.stream(request.into_inner()).await })
    }
}

impl<B> tower::Service<http::Request<B>> for AlsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != METHOD_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented(
                    "unknown method of envoy.service.accesslog.v3.AccessLogService",
                )
                .into_http())
            });
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let limit = inner.max_message_bytes;
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.client_streaming(StreamSvc(inner), req).await)
        })
    }
}

struct StreamGuard(CollectorMetrics);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams_open.dec();
    }
}

impl AlsInner {
    /// Classifies a stream error for the drop counters and the status sent back.
    fn reject(&self, status: Status) -> Status {
        let (reason, code) = match status.code() {
            Code::OutOfRange | Code::ResourceExhausted => ("too_large", Code::ResourceExhausted),
            Code::Internal if status.message().contains("decode") => {
                ("malformed", Code::InvalidArgument)
            }
            Code::Cancelled => ("cancelled", Code::Cancelled),
            _ => ("stream_error", status.code()),
        };
        self.metrics.messages_rejected(reason);
        if reason == "cancelled" {
            debug!(%status, "access-log stream cancelled by the client");
        } else {
            warn!(reason, %status, "access-log message rejected");
        }
        Status::new(
            code,
            format!(
                "access-log message rejected ({reason}): {}",
                status.message()
            ),
        )
    }

    async fn stream(
        &self,
        mut stream: tonic::Streaming<StreamAccessLogsMessage>,
    ) -> Result<tonic::Response<StreamAccessLogsResponse>, Status> {
        self.metrics.streams_open.inc();
        self.metrics.streams_total.inc();
        let _guard = StreamGuard(self.metrics.clone());
        let mut shutdown = self.shutdown.clone();
        let mut decoder = StreamDecoder::new(self.book.clone());
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = shutdown.wait_for(|s| *s) => {
                    debug!("ending access-log stream for shutdown");
                    return Ok(tonic::Response::new(StreamAccessLogsResponse {}));
                }
            };
            let message = match message {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(tonic::Response::new(StreamAccessLogsResponse {})),
                Err(status) => return Err(self.reject(status)),
            };
            if let Some(id) = &message.identifier {
                let node = id.node.clone().unwrap_or_default();
                let reporter = decoder.identify(&node);
                debug!(reporter = %reporter.node.service, role = ?reporter.role,
                    log_name = %id.log_name, "access-log stream identified");
            }
            if decoder.reporter().is_none() {
                let n = message.http_logs.as_ref().map_or(0, |h| h.log_entry.len())
                    + message.tcp_logs.as_ref().map_or(0, |t| t.log_entry.len());
                self.metrics.entries_dropped("no_identifier", n as u64);
                self.metrics.messages_rejected("no_identifier");
                warn!(
                    entries = n,
                    "access-log stream sent entries before its identifier"
                );
                return Err(Status::invalid_argument(
                    "the first message of an access-log stream must carry an identifier",
                ));
            }
            let mut batch = CallBatch::new();
            if let Some(http) = &message.http_logs {
                self.metrics
                    .entries_received("http", http.log_entry.len() as u64);
                for e in &http.log_entry {
                    match decoder.http_entry(e, &mut batch) {
                        Ok(()) => {
                            self.metrics.entries_decoded.inc();
                        }
                        Err(skip) => self.metrics.entries_skipped(skip),
                    };
                }
            }
            if let Some(tcp) = &message.tcp_logs {
                self.metrics
                    .entries_received("tcp", tcp.log_entry.len() as u64);
                for e in &tcp.log_entry {
                    match decoder.tcp_entry(e, &mut batch) {
                        Ok(()) => {
                            self.metrics.entries_decoded.inc();
                        }
                        Err(skip) => self.metrics.entries_skipped(skip),
                    };
                }
            }
            if batch.is_empty() {
                continue;
            }
            trace!(calls = batch.len(), "access-log batch decoded");
            if crate::deliver(&self.calls, &self.metrics, batch)
                .await
                .is_err()
            {
                return Err(Status::unavailable("meshscope is shutting down"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::als::{HttpRequestProperties, HttpResponseProperties};

    fn sv(v: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::StringValue(v.into())),
        }
    }

    fn node(id: &str, md: &[(&str, prost_types::Value)]) -> EnvoyNode {
        EnvoyNode {
            id: id.into(),
            cluster: String::new(),
            metadata: Some(prost_types::Struct {
                fields: md.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            }),
        }
    }

    #[test]
    fn reporters_follow_the_naming_chain() {
        let labels = prost_types::Value {
            kind: Some(Kind::StructValue(prost_types::Struct {
                fields: [
                    ("app".to_string(), sv("reviews-app")),
                    ("service.istio.io/canonical-name".to_string(), sv("reviews")),
                ]
                .into(),
            })),
        };
        let modern = Reporter::from_node(&node(
            "sidecar~10.0.0.1~reviews-v2-7bf8c9648f-xk2lp.default~default.svc.cluster.local",
            &[
                ("NAME", sv("reviews-v2-7bf8c9648f-xk2lp")),
                ("NAMESPACE", sv("default")),
                ("LABELS", labels),
            ],
        ));
        assert_eq!(&*modern.node.service, "reviews.default");
        assert_eq!(
            modern.node.instance.as_deref(),
            Some("reviews-v2-7bf8c9648f-xk2lp")
        );
        assert_eq!(modern.role, Role::Sidecar);

        let legacy = Reporter::from_node(&node(
            "router~10.44.2.56~istio-ingressgateway-699c7dc774-hjxq5.istio-system~istio-system.svc.cluster.local",
            &[
                ("POD_NAME", sv("istio-ingressgateway-699c7dc774-hjxq5")),
                ("config_namespace", sv("istio-system")),
            ],
        ));
        assert_eq!(&*legacy.node.service, "istio-ingressgateway.istio-system");
        assert_eq!(legacy.role, Role::Router);

        let bare = Reporter::from_node(&EnvoyNode::default());
        assert_eq!(&*bare.node.service, UNKNOWN);
    }

    #[test]
    fn static_addresses_name_peers_until_a_proxy_announces_itself() {
        let entries = [
            ("10.9.0.1".to_string(), "legacy-db.data".to_string()),
            ("10.9.0.2".to_string(), "batch.jobs/batch-7f9c".to_string()),
        ]
        .into_iter()
        .collect();
        let book = AddressBook::with_static(&entries);
        assert_eq!(
            book.lookup("10.9.0.1")
                .map(|n| n.service.to_string())
                .as_deref(),
            Some("legacy-db.data")
        );
        let batch = book.lookup("10.9.0.2").expect("batch");
        assert_eq!(batch.instance.as_deref(), Some("batch-7f9c"));
        let announced = node(
            "sidecar~10.9.0.1~db-0.data~data.svc.cluster.local",
            &[("app", sv("db")), ("NAMESPACE", sv("data"))],
        );
        book.learn(&announced, &Reporter::from_node(&announced));
        assert_eq!(
            book.lookup("10.9.0.1")
                .map(|n| n.service.to_string())
                .as_deref(),
            Some("db.data")
        );
    }

    #[test]
    fn clusters_give_direction() {
        assert_eq!(parse_cluster("inbound|9080||"), Cluster::Inbound);
        assert_eq!(
            parse_cluster("inbound|9080|http|reviews.default.svc.cluster.local"),
            Cluster::Inbound
        );
        assert_eq!(
            parse_cluster("outbound|9080|v1|reviews.default.svc.cluster.local"),
            Cluster::Outbound {
                port: "9080",
                fqdn: "reviews.default.svc.cluster.local"
            }
        );
        assert_eq!(parse_cluster("PassthroughCluster"), Cluster::Passthrough);
        assert_eq!(parse_cluster("BlackHoleCluster"), Cluster::BlackHole);
        assert_eq!(
            parse_cluster("InboundPassthroughClusterIpv4"),
            Cluster::Inbound
        );
        assert_eq!(parse_cluster(""), Cluster::Missing);
        assert_eq!(
            parse_cluster("inbound-vip|9080|http|reviews.default.svc.cluster.local"),
            Cluster::Outbound {
                port: "9080",
                fqdn: "reviews.default.svc.cluster.local"
            }
        );
    }

    fn decoder() -> StreamDecoder {
        let mut d = StreamDecoder::new(Arc::default());
        d.identify(&node(
            "sidecar~10.0.0.1~productpage-v1-6b746f74dc-9stvs.default~default.svc.cluster.local",
            &[
                ("NAMESPACE", sv("default")),
                ("NAME", sv("productpage-v1-6b746f74dc-9stvs")),
                ("app", sv("productpage")),
            ],
        ));
        d
    }

    fn http(log_type: i32, intermediate: bool) -> HttpAccessLogEntry {
        HttpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                upstream_cluster: "outbound|9080||details.default.svc.cluster.local".into(),
                access_log_type: log_type,
                intermediate_log_entry: intermediate,
                time_to_last_downstream_tx_byte: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 5,
                }),
                ..Default::default()
            }),
            protocol_version: 2,
            request: Some(HttpRequestProperties {
                request_method: 1,
                path: "/details/42?x=1".into(),
                ..Default::default()
            }),
            response: Some(HttpResponseProperties {
                response_code: Some(200),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_final_entries_of_the_right_logger_count() {
        let mut d = decoder();
        let mut out = Vec::new();
        assert_eq!(d.http_entry(&http(6, false), &mut out), Ok(()));
        assert_eq!(d.http_entry(&http(0, false), &mut out), Ok(()));
        assert_eq!(
            d.http_entry(&http(5, false), &mut out),
            Err(Skip::Intermediate)
        );
        assert_eq!(
            d.http_entry(&http(0, true), &mut out),
            Err(Skip::Intermediate)
        );
        assert_eq!(d.http_entry(&http(3, false), &mut out), Err(Skip::NotHttp));
        let tcp = |t: i32| TcpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                access_log_type: t,
                ..Default::default()
            }),
            connection_properties: None,
        };
        assert_eq!(d.tcp_entry(&tcp(3), &mut out), Ok(()));
        assert_eq!(d.tcp_entry(&tcp(6), &mut out), Err(Skip::HttpOnTcpLogger));
        assert_eq!(d.tcp_entry(&tcp(2), &mut out), Err(Skip::Intermediate));
        assert_eq!(out.len(), 3);
        let call = &out[0];
        assert_eq!(call.side, Side::Client);
        assert_eq!(&*call.server.service, "details.default");
        assert_eq!(call.endpoint.as_deref(), Some("GET /details/{id}"));
        assert_eq!(call.latency_nanos, Some(1_000_000_005));
        assert!(!call.error);
    }

    #[test]
    fn absurd_timestamps_saturate_instead_of_becoming_now() {
        let far = AccessLogCommon {
            start_time: Some(prost_types::Timestamp {
                seconds: i64::MAX / 10,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert_eq!(start_nanos(&far), i64::MAX);
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(duration_nanos(&negative), None);
    }
}
