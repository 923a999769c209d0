//! Hops as the access-log messages Envoy writes, encoded with the complete `envoy-types`
//! definitions (not meshscope's own field subset): each side's entry with its peer
//! metadata (Istio ≥ 1.24 `Struct`, or the FlatBuffers `FlatNode` of older proxies), TLS
//! properties, and the stream identifier on a stream's first message only.

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
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries, TcpAccessLogEntries,
};
use envoy_types::pb::google::protobuf::{
    Any, Duration, Struct, Timestamp, UInt32Value, Value, value::Kind,
};
use prost::Message;

use super::mesh::{Hop, Mesh, Proto, Target, Workload};

/// Entries per ALS message, as Envoy batches them.
pub const ENTRIES_PER_MESSAGE: usize = 100;

fn s(v: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(v.to_string())),
    }
}

/// The Envoy node a workload's proxy identifies itself with (`node.id`, metadata, labels).
pub fn node(w: &Workload) -> Node {
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
