//! Who is who on an access-log stream: the reporting proxy (from the stream's identifier),
//! peers from their metadata (Istio ≥ 1.24 `Struct`, or the FlatBuffers `FlatNode` of older
//! Istio). The address book that names peers by their pod IPs is [`super::address_book`].

use std::sync::Arc;

use prost::Message;
use prost_types::value::Kind;
use proto::Node;
use proto::als::EnvoyNode;

use super::flatnode;
use crate::naming;

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

pub(super) fn string_field<'a>(s: &'a prost_types::Struct, key: &str) -> Option<&'a str> {
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

/// The app name from labels: the first of `service.istio.io/canonical-name`,
/// `app.kubernetes.io/name`, `app` (see [`crate::naming`]).
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

/// Decodes Istio ≥ 1.24 peer metadata: an `Any` holding a `google.protobuf.Struct` with
/// `name`, `namespace`, `service`, `app`, `workload`, `labels`.
pub(super) fn decode_peer_struct(bytes: &[u8]) -> Option<Node> {
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
pub(super) fn decode_flat_peer(bytes: &[u8]) -> Option<Node> {
    let n = flatnode::parse(bytes)?;
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

#[cfg(test)]
pub(super) mod test_support {
    //! Envoy nodes the ALS tests share.

    use super::*;

    pub fn sv(v: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::StringValue(v.into())),
        }
    }

    pub fn node(id: &str, md: &[(&str, prost_types::Value)]) -> EnvoyNode {
        EnvoyNode {
            id: id.into(),
            cluster: String::new(),
            metadata: Some(prost_types::Struct {
                fields: md.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{node, sv};
    use super::*;
    use proto::UNKNOWN;

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
}
