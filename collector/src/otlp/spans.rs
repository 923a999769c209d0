//! One span → one half of a call.
//!
//! SERVER and CONSUMER spans are the callee's half: they name the service, instance and
//! endpoint. CLIENT and PRODUCER spans are the caller's half: they name who called and,
//! when the callee never reports, the virtual node it called. [`super::pairing`] joins the
//! halves into calls. INTERNAL and unspecified spans carry no call and are ignored.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use proto::{Node, Protocol, UNKNOWN};

use crate::naming;

/// Why a span (or a whole resource's spans) cannot be used; reported back as partial
/// success and counted under [`Reject::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    NoServiceName,
    BadTraceId,
    BadSpanId,
    BadParentSpanId,
    NoStartTime,
    EndBeforeStart,
    AbsurdDuration,
}

/// Longest span duration taken as a call's latency (one day); longer is a broken clock.
pub const MAX_DURATION_NANOS: u64 = proto::MAX_LATENCY_NANOS;

impl Reject {
    /// The counter label.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::NoServiceName => "no_service_name",
            Reject::BadTraceId => "bad_trace_id",
            Reject::BadSpanId => "bad_span_id",
            Reject::BadParentSpanId => "bad_parent_span_id",
            Reject::NoStartTime => "no_start_time",
            Reject::EndBeforeStart => "end_before_start",
            Reject::AbsurdDuration => "absurd_duration",
        }
    }

    /// The sentence sent back to the exporter.
    pub fn message(self) -> &'static str {
        match self {
            Reject::NoServiceName => "the resource has no service.name attribute",
            Reject::BadTraceId => "trace_id must be 16 bytes and not all zero",
            Reject::BadSpanId => "span_id must be 8 bytes and not all zero",
            Reject::BadParentSpanId => "parent_span_id must be empty or 8 bytes",
            Reject::NoStartTime => "start_time_unix_nano is missing",
            Reject::EndBeforeStart => "end_time_unix_nano is before start_time_unix_nano",
            Reject::AbsurdDuration => "the span lasts longer than a day",
        }
    }
}

/// Trace id + span id: the key CLIENT `span_id` and SERVER `parent_span_id` share.
pub type PairKey = ([u8; 16], [u8; 8]);

/// What both kinds of half know about their own view of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The reporting service (resource).
    pub node: Node,
    pub start_unix_nanos: i64,
    pub latency_nanos: Option<u64>,
    pub error: bool,
    pub status_code: u32,
    pub grpc_status: Option<u32>,
    pub protocol: Protocol,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The callee's half (SERVER / CONSUMER span).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerHalf {
    pub view: View,
    pub endpoint: Arc<str>,
    /// `(trace, parent_span_id)`; `None` for a root span.
    pub parent: Option<PairKey>,
    /// `(trace, span_id)`: the span's own id.
    pub id: PairKey,
    /// CONSUMER rather than SERVER.
    pub consumer: bool,
}

/// The caller's half (CLIENT / PRODUCER span).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientHalf {
    pub view: View,
    /// `(trace, span_id)`.
    pub key: PairKey,
    /// The virtual node called when no server half ever answers.
    pub peer: Node,
    /// A database call: no server half will come.
    pub database: bool,
    /// PRODUCER rather than CLIENT.
    pub producer: bool,
}

/// A usable span.
#[derive(Debug, Clone, PartialEq)]
pub enum Half {
    Server(ServerHalf),
    Client(ClientHalf),
}

fn str_value(v: &AnyValue) -> Option<&str> {
    match &v.value {
        Some(Value::StringValue(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn int_value(v: &AnyValue) -> Option<i64> {
    match &v.value {
        Some(Value::IntValue(i)) => Some(*i),
        Some(Value::StringValue(s)) => s.parse().ok(),
        Some(Value::DoubleValue(d)) if d.is_finite() => Some(*d as i64),
        _ => None,
    }
}

/// The reporting node of every span under `resource`.
pub fn resource_node(resource: Option<&Resource>) -> Result<Node, Reject> {
    let mut name = None;
    let mut namespace = None;
    let mut instance = None;
    let mut pod = None;
    let mut host = None;
    for kv in resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]) {
        let Some(v) = kv.value.as_ref() else { continue };
        match kv.key.as_str() {
            "service.name" => name = str_value(v),
            "service.namespace" => namespace = str_value(v),
            "service.instance.id" => instance = str_value(v),
            "k8s.pod.name" => pod = str_value(v),
            "host.name" => host = str_value(v),
            _ => {}
        }
    }
    let name = name.ok_or(Reject::NoServiceName)?;
    // `service.namespace` joins only names without a dot, so `reviews.default` from a
    // mesh-aware resource detector is not doubled.
    let service = match namespace {
        Some(ns) if !name.contains('.') => naming::service_name(name, Some(ns)),
        _ => name.to_string(),
    };
    let service = naming::truncate(service);
    let instance = instance
        .or(pod)
        .or(host)
        .map(|i| Arc::from(naming::truncate(i.to_string())));
    Ok(Node::real(Arc::from(service), instance))
}

/// The span attributes meshscope reads, found in one pass.
#[derive(Default)]
struct Attrs<'a> {
    method: Option<&'a str>,
    route: Option<&'a str>,
    target: Option<&'a str>,
    http_status: Option<i64>,
    rpc_system: Option<&'a str>,
    rpc_service: Option<&'a str>,
    rpc_method: Option<&'a str>,
    grpc_status: Option<i64>,
    peer_service: Option<&'a str>,
    db_system: Option<&'a str>,
    db_name: Option<&'a str>,
    server_address: Option<&'a str>,
    server_port: Option<i64>,
    messaging_system: Option<&'a str>,
    request_size: Option<i64>,
    response_size: Option<i64>,
}

impl<'a> Attrs<'a> {
    fn of(attributes: &'a [KeyValue]) -> Attrs<'a> {
        let mut a = Attrs::default();
        for kv in attributes {
            let Some(v) = kv.value.as_ref() else { continue };
            match kv.key.as_str() {
                "http.request.method" => a.method = str_value(v),
                "http.method" => a.method = a.method.or(str_value(v)),
                "http.route" => a.route = str_value(v),
                "http.target" | "url.path" => a.target = a.target.or(str_value(v)),
                "http.response.status_code" => a.http_status = int_value(v),
                "http.status_code" => a.http_status = a.http_status.or(int_value(v)),
                "rpc.system" => a.rpc_system = str_value(v),
                "rpc.service" => a.rpc_service = str_value(v),
                "rpc.method" => a.rpc_method = str_value(v),
                "rpc.grpc.status_code" => a.grpc_status = int_value(v),
                "peer.service" => a.peer_service = str_value(v),
                "db.system" | "db.system.name" => a.db_system = a.db_system.or(str_value(v)),
                "db.namespace" => a.db_name = str_value(v),
                "db.name" => a.db_name = a.db_name.or(str_value(v)),
                "server.address" => a.server_address = str_value(v),
                "net.peer.name" => a.server_address = a.server_address.or(str_value(v)),
                "server.port" => a.server_port = int_value(v),
                "net.peer.port" => a.server_port = a.server_port.or(int_value(v)),
                "messaging.system" => a.messaging_system = str_value(v),
                "http.request.body.size" | "http.request_content_length" => {
                    a.request_size = int_value(v)
                }
                "http.response.body.size" | "http.response_content_length" => {
                    a.response_size = int_value(v)
                }
                _ => {}
            }
        }
        a
    }

    fn protocol(&self, messaging: bool) -> Protocol {
        if messaging || self.messaging_system.is_some() {
            Protocol::Messaging
        } else if self.db_system.is_some() {
            Protocol::Database
        } else if self.rpc_system == Some("grpc") {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }

    /// The callee's endpoint: `http.route` + method, `rpc.service`/`rpc.method`, or the
    /// span name.
    fn endpoint(&self, span_name: &str) -> String {
        if let (Some(service), Some(method)) = (self.rpc_service, self.rpc_method) {
            return naming::grpc_endpoint(&format!("/{service}/{method}"));
        }
        match (self.method, self.route, self.target) {
            // A route is a template already (`/reviews/:id`); keep it as written.
            (Some(m), Some(route), _) => naming::truncate(format!("{m} {route}")),
            (Some(m), None, Some(target)) => naming::http_endpoint(m, target),
            _ if !span_name.is_empty() => naming::truncate(span_name.to_string()),
            _ => naming::truncate("(unnamed)".to_string()),
        }
    }

    /// The node a CLIENT span called, when no SERVER span answers.
    fn peer(&self) -> Node {
        let name = if let Some(p) = self.peer_service {
            p.to_string()
        } else if let Some(system) = self.db_system {
            match self.db_name {
                Some(db) => format!("{system}/{db}"),
                None => system.to_string(),
            }
        } else if let Some(host) = self.server_address {
            match self.server_port {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            }
        } else {
            UNKNOWN.to_string()
        };
        Node::virtual_node(Arc::from(naming::truncate(name)))
    }
}

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = bytes.try_into().ok()?;
    (id != [0; N]).then_some(id)
}

/// Converts one span reported by `node`. `Ok(None)`: a span that carries no call
/// (INTERNAL, unspecified kind).
pub fn half(node: &Node, span: &Span) -> Result<Option<Half>, Reject> {
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    if matches!(kind, SpanKind::Internal | SpanKind::Unspecified) {
        return Ok(None);
    }
    let trace: [u8; 16] = id(&span.trace_id).ok_or(Reject::BadTraceId)?;
    let span_id: [u8; 8] = id(&span.span_id).ok_or(Reject::BadSpanId)?;
    let parent: Option<[u8; 8]> = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(id(&span.parent_span_id).ok_or(Reject::BadParentSpanId)?)
    };
    if span.start_time_unix_nano == 0 {
        return Err(Reject::NoStartTime);
    }
    let latency_nanos = match span.end_time_unix_nano {
        0 => None,
        end if end < span.start_time_unix_nano => return Err(Reject::EndBeforeStart),
        end if end - span.start_time_unix_nano > MAX_DURATION_NANOS => {
            return Err(Reject::AbsurdDuration);
        }
        end => Some(end - span.start_time_unix_nano),
    };
    let a = Attrs::of(&span.attributes);
    let status = span.status.as_ref().map_or(StatusCode::Unset, |s| {
        StatusCode::try_from(s.code).unwrap_or(StatusCode::Unset)
    });
    let http_status = a
        .http_status
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(0);
    let grpc_status = a.grpc_status.and_then(|s| u32::try_from(s).ok());
    let error = match status {
        StatusCode::Error => true,
        StatusCode::Ok => false,
        StatusCode::Unset => http_status >= 500 || grpc_status.is_some_and(|g| g != 0),
    };
    let messaging = matches!(kind, SpanKind::Producer | SpanKind::Consumer);
    let size = |v: Option<i64>| v.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
    let view = View {
        node: node.clone(),
        start_unix_nanos: i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX),
        latency_nanos,
        error,
        status_code: http_status,
        grpc_status,
        protocol: a.protocol(messaging),
        request_bytes: size(a.request_size),
        response_bytes: size(a.response_size),
    };
    Ok(Some(match kind {
        SpanKind::Server | SpanKind::Consumer => Half::Server(ServerHalf {
            endpoint: Arc::from(a.endpoint(&span.name)),
            view,
            parent: parent.map(|p| (trace, p)),
            id: (trace, span_id),
            consumer: kind == SpanKind::Consumer,
        }),
        _ => Half::Client(ClientHalf {
            peer: a.peer(),
            database: a.db_system.is_some() && kind == SpanKind::Client,
            view,
            key: (trace, span_id),
            producer: kind == SpanKind::Producer,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn span(kind: SpanKind, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "GET".into(),
            kind: kind as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_250_000_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn node() -> Node {
        Node::real(Arc::from("shop.web"), Some(Arc::from("shop-1")))
    }

    #[test]
    fn resources_name_service_and_instance() {
        let r = |attrs: Vec<KeyValue>| Resource {
            attributes: attrs,
            ..Default::default()
        };
        let n = resource_node(Some(&r(vec![
            kv("service.name", s("shop")),
            kv("service.namespace", s("web")),
            kv("host.name", s("h1")),
            kv("k8s.pod.name", s("shop-abc")),
        ])))
        .expect("named");
        assert_eq!(
            (&*n.service, n.instance.as_deref()),
            ("shop.web", Some("shop-abc"))
        );
        let n = resource_node(Some(&r(vec![
            kv("service.name", s("reviews.default")),
            kv("service.namespace", s("default")),
        ])))
        .expect("named");
        assert_eq!(&*n.service, "reviews.default");
        assert_eq!(n.instance, None);
        assert_eq!(
            resource_node(Some(&r(vec![kv("host.name", s("h1"))]))),
            Err(Reject::NoServiceName)
        );
        assert_eq!(resource_node(None), Err(Reject::NoServiceName));
    }

    #[test]
    fn server_spans_name_endpoints() {
        let ep = |attrs| match half(&node(), &span(SpanKind::Server, attrs)) {
            Ok(Some(Half::Server(h))) => h.endpoint.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ep(vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/items/:id"))
            ]),
            "GET /items/:id"
        );
        assert_eq!(
            ep(vec![
                kv("http.method", s("POST")),
                kv("http.target", s("/items/12345?x=1"))
            ]),
            "POST /items/{id}"
        );
        assert_eq!(
            ep(vec![
                kv("rpc.system", s("grpc")),
                kv("rpc.service", s("shop.Cart")),
                kv("rpc.method", s("Add"))
            ]),
            "/shop.Cart/Add"
        );
        assert_eq!(ep(vec![]), "GET");
    }

    #[test]
    fn errors_follow_status_then_http_and_grpc_codes() {
        let err = |status: Option<StatusCode>, attrs| {
            let mut sp = span(SpanKind::Server, attrs);
            sp.status = status.map(|c| Status {
                code: c as i32,
                message: String::new(),
            });
            match half(&node(), &sp) {
                Ok(Some(Half::Server(h))) => h.view.error,
                other => panic!("{other:?}"),
            }
        };
        assert!(err(Some(StatusCode::Error), vec![]));
        assert!(!err(
            Some(StatusCode::Ok),
            vec![kv("http.response.status_code", Value::IntValue(503))]
        ));
        assert!(err(
            None,
            vec![kv("http.response.status_code", Value::IntValue(503))]
        ));
        assert!(!err(
            None,
            vec![kv("http.response.status_code", Value::IntValue(404))]
        ));
        assert!(err(
            None,
            vec![kv("rpc.grpc.status_code", Value::IntValue(14))]
        ));
    }

    #[test]
    fn client_spans_name_their_virtual_peer() {
        let peer = |attrs| match half(&node(), &span(SpanKind::Client, attrs)) {
            Ok(Some(Half::Client(h))) => (h.peer.service.to_string(), h.database, h.view.protocol),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            peer(vec![
                kv("peer.service", s("payments")),
                kv("db.system", s("redis"))
            ]),
            ("payments".into(), true, Protocol::Database)
        );
        assert_eq!(
            peer(vec![
                kv("db.system", s("postgresql")),
                kv("db.namespace", s("orders"))
            ]),
            ("postgresql/orders".into(), true, Protocol::Database)
        );
        assert_eq!(
            peer(vec![
                kv("db.system", s("postgresql")),
                kv("db.name", s("legacy"))
            ]),
            ("postgresql/legacy".into(), true, Protocol::Database)
        );
        assert_eq!(
            peer(vec![
                kv("server.address", s("api.example.com")),
                kv("server.port", Value::IntValue(443))
            ]),
            ("api.example.com:443".into(), false, Protocol::Http)
        );
        assert_eq!(peer(vec![]), ("unknown".into(), false, Protocol::Http));
    }

    #[test]
    fn bad_ids_and_times_are_rejected_and_internal_spans_ignored() {
        let n = node();
        let mut sp = span(SpanKind::Server, vec![]);
        sp.trace_id = vec![0; 16];
        assert_eq!(half(&n, &sp), Err(Reject::BadTraceId));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.span_id = vec![1; 7];
        assert_eq!(half(&n, &sp), Err(Reject::BadSpanId));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.parent_span_id = vec![1; 9];
        assert_eq!(half(&n, &sp), Err(Reject::BadParentSpanId));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.start_time_unix_nano = 0;
        assert_eq!(half(&n, &sp), Err(Reject::NoStartTime));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.end_time_unix_nano = sp.start_time_unix_nano - 1;
        assert_eq!(half(&n, &sp), Err(Reject::EndBeforeStart));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.end_time_unix_nano = u64::MAX;
        assert_eq!(half(&n, &sp), Err(Reject::AbsurdDuration));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.start_time_unix_nano = u64::MAX - 1;
        sp.end_time_unix_nano = u64::MAX;
        assert!(
            matches!(half(&n, &sp), Ok(Some(Half::Server(h))) if h.view.start_unix_nanos == i64::MAX)
        );
        assert_eq!(half(&n, &span(SpanKind::Internal, vec![])), Ok(None));
        let mut sp = span(SpanKind::Server, vec![]);
        sp.kind = 99;
        assert_eq!(half(&n, &sp), Ok(None));
    }
}
