//! The vocabulary of meshscope: the typed [`Call`] record every receiver produces and every
//! rollup consumes, plus the slim wire types the receivers decode.
//!
//! In: nothing (this crate has no behaviour beyond naming helpers). Out: [`Call`],
//! [`Node`], [`Side`], [`Protocol`], and [`als`], a field-subset view of Envoy's ALS v3
//! messages that decodes only what meshscope uses and skips the rest on the wire.

pub mod als;
pub mod channel;

use std::sync::Arc;

/// Which proxy reported a call: the caller's (`Client`) or the callee's (`Server`).
///
/// A call seen by both sidecars arrives twice, once per side; the aggregator keeps the two
/// sides apart and picks one per entity so that nothing is counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// The lowercase name used in storage and the API (`client` / `server`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    /// Parses the storage name back; anything else is `None`.
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "client" => Some(Side::Client),
            "server" => Some(Side::Server),
            _ => None,
        }
    }
}

/// Which telemetry a report came from.
///
/// A meshed service that is also instrumented reports each request twice, once through
/// its sidecar and once as spans. Reports keep their source so that queries can count
/// every destination from one source only (see `aggregator::query`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Envoy access logs (the service mesh).
    Mesh,
    /// OpenTelemetry spans.
    Trace,
}

impl Source {
    /// Both sources, in storage order.
    pub const ALL: [Source; 2] = [Source::Mesh, Source::Trace];

    /// The lowercase name used in storage, configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mesh => "mesh",
            Source::Trace => "trace",
        }
    }

    /// Parses the storage name back; anything else is `None`.
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The other source.
    pub fn other(self) -> Source {
        match self {
            Source::Mesh => Source::Trace,
            Source::Trace => Source::Mesh,
        }
    }
}

/// The application protocol of a call (the `connection_type` of an edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
    /// A message handed from a producer to a consumer through a broker.
    Messaging,
    /// A database query (a client span with `db.system`).
    Database,
}

impl Protocol {
    /// Every protocol, in id order.
    pub const ALL: [Protocol; 5] = [
        Protocol::Http,
        Protocol::Grpc,
        Protocol::Tcp,
        Protocol::Messaging,
        Protocol::Database,
    ];

    /// The lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
            Protocol::Messaging => "messaging",
            Protocol::Database => "database",
        }
    }
}

/// One side of a call: a service and, when known, the instance (pod) within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// Service name, `<name>.<namespace>` for mesh workloads, or a virtual node name
    /// (`unknown`, `user`, `api.example.com:443`, …).
    pub service: Arc<str>,
    /// Instance (pod) name when known.
    pub instance: Option<Arc<str>>,
    /// `false` for virtual nodes: unidentified peers, external hosts, databases.
    pub real: bool,
}

/// Name of the virtual node standing for a caller or callee that could not be identified.
pub const UNKNOWN: &str = "unknown";

/// Name of the virtual node standing for the caller of a trace's root span.
pub const USER: &str = "user";

/// Longest service or instance name a node keeps, in bytes: longer names from the wire
/// are cut at a character boundary (every receiver builds its nodes here).
pub const MAX_NAME_LEN: usize = 256;

/// `name` cut to [`MAX_NAME_LEN`] bytes at a character boundary.
pub fn bounded_name(name: Arc<str>) -> Arc<str> {
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let mut cut = MAX_NAME_LEN;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    Arc::from(&name[..cut])
}

impl Node {
    /// A mesh workload; names past [`MAX_NAME_LEN`] are cut.
    pub fn real(service: Arc<str>, instance: Option<Arc<str>>) -> Node {
        Node {
            service: bounded_name(service),
            instance: instance.map(bounded_name),
            real: true,
        }
    }

    /// A virtual node (external host, database, `user`, …) without instances; names past
    /// [`MAX_NAME_LEN`] are cut.
    pub fn virtual_node(service: Arc<str>) -> Node {
        Node {
            service: bounded_name(service),
            instance: None,
            real: false,
        }
    }

    /// The virtual node `unknown`.
    pub fn unknown() -> Node {
        Node::virtual_node(Arc::from(UNKNOWN))
    }
}

/// One request (HTTP, gRPC) or one connection (TCP) as one proxy or span saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Start of the call in nanoseconds since the Unix epoch (UTC); places it in its minute.
    pub start_unix_nanos: i64,
    /// Which side reported it.
    pub side: Side,
    /// Which telemetry reported it.
    pub source: Source,
    /// The caller.
    pub client: Node,
    /// The callee.
    pub server: Node,
    /// Normalised endpoint (`GET /reviews/{id}`, `/pkg.Svc/Method`); `None` for TCP.
    pub endpoint: Option<Arc<str>>,
    pub protocol: Protocol,
    /// Latency in nanoseconds at full precision; `None` when the entry carried none.
    pub latency_nanos: Option<u64>,
    /// HTTP status code; 0 when there was no response.
    pub status_code: u32,
    /// gRPC status when one was logged.
    pub grpc_status: Option<u32>,
    /// Whether the call counts as an error: HTTP ≥ 500, a gRPC status other than 0, or no
    /// response with a failure flag (an upstream connection failure, no route, …).
    pub error: bool,
    /// Whether the connection was mutual TLS (a peer certificate was presented).
    pub mtls: bool,
    /// Bytes from client to server (request body, or TCP bytes received by the server side).
    pub request_bytes: u64,
    /// Bytes from server to client (response body, or TCP bytes sent back).
    pub response_bytes: u64,
}

/// A batch of calls: the unit that flows from a receiver to the aggregator.
pub type CallBatch = Vec<Call>;

#[cfg(test)]
mod tests_support {
    use super::*;

    pub fn call() -> Call {
        Call {
            start_unix_nanos: 0,
            side: Side::Server,
            source: Source::Mesh,
            client: Node::unknown(),
            server: Node::unknown(),
            endpoint: None,
            protocol: Protocol::Tcp,
            latency_nanos: None,
            status_code: 0,
            grpc_status: None,
            error: false,
            mtls: false,
            request_bytes: 0,
            response_bytes: 0,
        }
    }
}

/// The longest latency a call may have: one day. Receivers refuse longer requests (a broken
/// clock) and clamp longer TCP connections to it, the same way for every store.
pub const MAX_LATENCY_NANOS: u64 = 86_400 * 1_000_000_000;

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let long: Arc<str> = Arc::from("é".repeat(200).as_str());
        let node = Node::real(long.clone(), Some(long));
        assert_eq!(node.service.len(), MAX_NAME_LEN);
        assert!(node.instance.is_some_and(|i| i.len() == MAX_NAME_LEN));
        let odd: Arc<str> = Arc::from(format!("a{}", "é".repeat(200)).as_str());
        assert_eq!(Node::virtual_node(odd).service.len(), MAX_NAME_LEN - 1);
        assert_eq!(&*Node::unknown().service, UNKNOWN);
    }
}
