//! Entries into calls, per stream: [`StreamDecoder`] caches the reporter and resolved peers,
//! decides each entry's side, client and server, and turns final HTTP and TCP entries into
//! [`Call`]s (a gateway's entry into two: the hop in and the hop out).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foldhash::HashMap;
use proto::als::{
    AccessLogCommon, EnvoyNode, HTTP_FINAL_LOG_TYPES, HttpAccessLogEntry, NETWORK_LOG_TYPES,
    TCP_FINAL_LOG_TYPES, TcpAccessLogEntry, method_name,
};
use proto::{Call, CallBatch, Node, Protocol, Side, Source, UNKNOWN};

use super::address_book::{AddressBook, REANNOUNCE_EVERY};
use super::cluster::{Cluster, parse_cluster};
use super::flatnode;
use super::identity::{Reporter, Role, decode_flat_peer, decode_peer_struct};
use crate::naming;
use proto::MAX_LATENCY_NANOS as MAX_DURATION_NANOS;

/// Most distinct peers cached per stream before the cache is cleared.
const PEER_CACHE_CAP: usize = 4096;

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
    /// The reporter's addresses, and when they were last announced to the book.
    announced: (Vec<String>, Instant),
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
    /// An HTTP entry whose duration is over a day (a broken clock), refused as OTLP
    /// refuses such spans, so the latency sums of both stores stay meaningful.
    AbsurdDuration,
}

impl Skip {
    /// The counter label (`meshscope_als_entries_skipped_total{reason}`).
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Intermediate => "intermediate",
            Skip::NotHttp => "not_http",
            Skip::HttpOnTcpLogger => "http_on_tcp_logger",
            Skip::AbsurdDuration => "absurd_duration",
        }
    }
}

impl StreamDecoder {
    /// A decoder for one stream, resolving addresses through `book`.
    pub fn new(book: Arc<AddressBook>) -> StreamDecoder {
        StreamDecoder {
            reporter: None,
            book,
            announced: (Vec::new(), Instant::now()),
            peers: HashMap::default(),
            destinations: HashMap::default(),
        }
    }

    /// Identifies the stream's reporter (from the first message) and learns its addresses.
    pub fn identify(&mut self, node: &EnvoyNode) -> &Reporter {
        let reporter = Reporter::from_node(node);
        let addresses = self.book.announced(node);
        self.book.learn(&addresses, &reporter);
        self.announced = (addresses, Instant::now());
        self.reporter.insert(reporter)
    }

    /// Announces the reporter's addresses again when [`REANNOUNCE_EVERY`] has passed, so
    /// the book keeps them while the stream is open (called for every message).
    pub fn keep_announced(&mut self) {
        if self.announced.1.elapsed() < REANNOUNCE_EVERY {
            return;
        }
        if let Some(reporter) = &self.reporter {
            self.book.learn(&self.announced.0, reporter);
        }
        self.announced.1 = Instant::now();
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
                flatnode::unwrap_any(&any.type_url, &any.value).and_then(|b| decode_flat_peer(&b))
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
        let latency_nanos = latency(common);
        if latency_nanos.is_some_and(|l| l > MAX_DURATION_NANOS) {
            return Err(Skip::AbsurdDuration);
        }
        let (side, client, server) = self.endpoints_of(&reporter, common, authority);
        let call = Call {
            start_unix_nanos: start_nanos(common),
            side,
            source: Source::Mesh,
            client,
            server,
            endpoint: endpoint.map(Arc::from),
            protocol,
            latency_nanos,
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
            // A connection may stay open for days: its duration is clamped to a day.
            latency_nanos: latency(common).map(|l| l.min(MAX_DURATION_NANOS)),
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

#[cfg(test)]
mod tests {
    use super::super::identity::test_support::{node, sv};
    use super::*;
    use proto::als::{HttpRequestProperties, HttpResponseProperties};

    fn decoder() -> StreamDecoder {
        let metrics = crate::metrics::CollectorMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
        );
        let mut d = StreamDecoder::new(Arc::new(AddressBook::new(&Default::default(), metrics)));
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
