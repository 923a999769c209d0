//! The direction and destination an entry's `upstream_cluster` encodes: `inbound|…` (the
//! reporter is the server), `outbound|port|subset|fqdn` (the reporter calls `fqdn`),
//! Istio's passthrough and black-hole clusters, and plain Envoy's static cluster names.

/// Direction and destination encoded in `upstream_cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cluster<'a> {
    Inbound,
    Outbound { port: &'a str, fqdn: &'a str },
    Passthrough,
    BlackHole,
    Missing,
}

pub(super) fn parse_cluster(c: &str) -> Cluster<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
