//! Who is who on an access-log stream: the reporting proxy (from the stream's identifier),
//! peers from their metadata (Istio ≥ 1.24 `Struct`, or the FlatBuffers `FlatNode` of older
//! Istio), and the process-wide address book that names peers by their pod IPs.

use std::sync::Arc;

use foldhash::HashMap;
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
}
