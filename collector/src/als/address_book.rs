//! Pod addresses → workloads, learned from the identifiers of every stream (each proxy
//! announces its pod IPs in `node.id` and `INSTANCE_IPS`), plus a static list from the
//! configuration (`[collector.addresses]`) for workloads that never open a stream. It
//! names the peer of an entry that carries no peer metadata (Istio < 1.24 without the
//! FlatBuffers peer, plain Envoy) from its socket address, so the server side can still
//! name its caller and a call seen by both sides lands on one edge. Shared by all streams.
//!
//! Bounded for a port anyone may reach: only IP addresses are learned, at most
//! [`MAX_ADDRESSES_PER_PROXY`] per announcement and [`ADDRESS_BOOK_CAP`] in all. A stream
//! that keeps sending re-announces its addresses every [`REANNOUNCE_EVERY`]; when the book
//! is full, addresses not announced for [`ADDRESS_TTL`] make room (swept at most every
//! 10 s), so addresses announced once by a stream long gone (a hostile flood, a deleted
//! pod) cannot lock new pods out until a restart. An address refused while the book is
//! full is learned at its stream's next announcement after room is made.
//! What cannot be learned is counted in `meshscope_als_addresses_refused_total{reason}`.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use proto::Node;
use proto::als::EnvoyNode;

use super::identity::{Reporter, string_field};
use crate::metrics::CollectorMetrics;

/// Most learned addresses the book holds (static ones come on top).
pub const ADDRESS_BOOK_CAP: usize = 200_000;

/// Most addresses one announcement adds (a pod has a few: IPv4, IPv6).
pub const MAX_ADDRESSES_PER_PROXY: usize = 16;

/// A learned address not announced again for this long makes room when the book is full.
pub const ADDRESS_TTL: Duration = Duration::from_secs(3600);

/// How often an open stream announces its proxy's addresses again.
pub const REANNOUNCE_EVERY: Duration = Duration::from_secs(600);

/// How often a full book looks for addresses past their TTL (a sweep visits every entry).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Learned {
    node: Node,
    announced: Instant,
}

#[derive(Debug, Default)]
struct Book {
    learned: HashMap<String, Learned>,
    swept: Option<Instant>,
}

impl Book {
    /// Makes room by dropping addresses past their TTL, at most every `every`.
    fn sweep(&mut self, now: Instant, ttl: Duration, every: Duration) {
        if self.swept.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        self.swept = Some(now);
        self.learned
            .retain(|_, e| now.duration_since(e.announced) < ttl);
    }
}

/// The address book (see the module docs).
#[derive(Debug)]
pub struct AddressBook {
    book: RwLock<Book>,
    fixed: HashMap<String, Node>,
    cap: usize,
    ttl: Duration,
    sweep_every: Duration,
    metrics: CollectorMetrics,
}

impl AddressBook {
    /// A book seeded with configured addresses (`ip` → `service` or `service/pod`), for
    /// peers that never open a stream themselves (workloads without a proxy). Addresses a
    /// proxy announces take precedence while they are in the book.
    pub fn new(
        entries: &std::collections::BTreeMap<String, String>,
        metrics: CollectorMetrics,
    ) -> AddressBook {
        let fixed = entries
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
            .collect();
        AddressBook {
            book: RwLock::new(Book::default()),
            fixed,
            cap: ADDRESS_BOOK_CAP,
            ttl: ADDRESS_TTL,
            sweep_every: SWEEP_EVERY,
            metrics,
        }
    }

    /// The same book with another cap and TTL (tests).
    #[cfg(test)]
    fn bounded(mut self, cap: usize, ttl: Duration) -> AddressBook {
        self.cap = cap;
        self.ttl = ttl;
        self.sweep_every = ttl / 10;
        self
    }

    /// The addresses a proxy announces: its `INSTANCE_IPS` (or `ISTIO_META_INSTANCE_IPS`)
    /// and the IP in its `node.id`, without link-local IPv6 ones. Anything that is not an
    /// IP address, and addresses past [`MAX_ADDRESSES_PER_PROXY`], are refused and counted.
    pub fn announced(&self, node: &EnvoyNode) -> Vec<String> {
        let empty = prost_types::Struct::default();
        let md = node.metadata.as_ref().unwrap_or(&empty);
        let listed = string_field(md, "INSTANCE_IPS")
            .or_else(|| string_field(md, "ISTIO_META_INSTANCE_IPS"))
            .unwrap_or("");
        let from_id = node.id.split('~').nth(1).unwrap_or("");
        let mut out: Vec<String> = Vec::new();
        for ip in listed.split(',').chain([from_id]).map(str::trim) {
            if ip.is_empty() || out.iter().any(|a| a == ip) {
                continue;
            }
            match ip.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) if v6.is_unicast_link_local() => continue,
                Ok(_) if out.len() < MAX_ADDRESSES_PER_PROXY => out.push(ip.to_string()),
                Ok(_) => self.metrics.addresses_refused("too_many", 1),
                Err(_) => self.metrics.addresses_refused("not_an_ip", 1),
            }
        }
        out
    }

    /// Records (or refreshes) `addresses` as belonging to `reporter`. Only real workloads
    /// are recorded.
    pub fn learn(&self, addresses: &[String], reporter: &Reporter) {
        if !reporter.node.real || addresses.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        for ip in addresses {
            if let Some(e) = book.learned.get_mut(ip) {
                e.node = reporter.node.clone();
                e.announced = now;
                continue;
            }
            if book.learned.len() >= self.cap {
                book.sweep(now, self.ttl, self.sweep_every);
                if book.learned.len() >= self.cap {
                    self.metrics.addresses_refused("full", 1);
                    continue;
                }
            }
            let node = reporter.node.clone();
            book.learned.insert(
                ip.clone(),
                Learned {
                    node,
                    announced: now,
                },
            );
        }
        self.metrics
            .address_book_size
            .set(book.learned.len() as i64);
    }

    /// The workload last announced at `ip`, else the configured one.
    pub fn lookup(&self, ip: &str) -> Option<Node> {
        let book = self.book.read().unwrap_or_else(|e| e.into_inner());
        match book.learned.get(ip) {
            Some(e) => Some(e.node.clone()),
            None => self.fixed.get(ip).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::als::identity::test_support::{node, sv};

    fn metrics() -> CollectorMetrics {
        CollectorMetrics::register(&mut Registry::default())
    }

    fn service(book: &AddressBook, ip: &str) -> Option<String> {
        book.lookup(ip).map(|n| n.service.to_string())
    }

    fn announce(book: &AddressBook, id: &str, app: &str, ips: &str) {
        let n = node(
            id,
            &[
                ("app", sv(app)),
                ("NAMESPACE", sv("ns")),
                ("INSTANCE_IPS", sv(ips)),
            ],
        );
        let addresses = book.announced(&n);
        book.learn(&addresses, &Reporter::from_node(&n));
    }

    #[test]
    fn static_addresses_name_peers_until_a_proxy_announces_itself() {
        let entries = [
            ("10.9.0.1".to_string(), "legacy-db.data".to_string()),
            ("10.9.0.2".to_string(), "batch.jobs/batch-7f9c".to_string()),
        ]
        .into_iter()
        .collect();
        let book = AddressBook::new(&entries, metrics());
        assert_eq!(
            service(&book, "10.9.0.1").as_deref(),
            Some("legacy-db.data")
        );
        let batch = book.lookup("10.9.0.2").expect("batch");
        assert_eq!(batch.instance.as_deref(), Some("batch-7f9c"));
        let announced = node(
            "sidecar~10.9.0.1~db-0.data~data.svc.cluster.local",
            &[("app", sv("db")), ("NAMESPACE", sv("data"))],
        );
        book.learn(
            &book.announced(&announced),
            &Reporter::from_node(&announced),
        );
        assert_eq!(service(&book, "10.9.0.1").as_deref(), Some("db.data"));
    }

    #[test]
    fn only_a_few_ip_addresses_per_announcement_are_learned() {
        let m = metrics();
        let book = AddressBook::new(&Default::default(), m.clone());
        let many: Vec<String> = (0..40).map(|i| format!("10.1.0.{i}")).collect();
        let listed = format!(
            "{},not-an-ip,{},fe80::1",
            many.join(","),
            "x".repeat(10_000)
        );
        announce(&book, "sidecar~10.0.0.9~a-0.ns~ns.svc", "a", &listed);
        // The first 16 listed addresses; the node id's address comes last and is cut too.
        assert_eq!(service(&book, "10.1.0.15").as_deref(), Some("a.ns"));
        assert_eq!(service(&book, "10.1.0.16"), None);
        assert_eq!(service(&book, "10.0.0.9"), None);
        assert_eq!(service(&book, "not-an-ip"), None);
        assert_eq!(m.addresses_refused_count("too_many"), 25);
        assert_eq!(m.addresses_refused_count("not_an_ip"), 2);
        assert_eq!(m.address_book_size.get(), 16);
    }

    #[test]
    fn a_full_book_makes_room_from_addresses_not_announced_again() {
        let m = metrics();
        let ttl = Duration::from_secs(1);
        let book = AddressBook::new(&Default::default(), m.clone()).bounded(4, ttl);
        announce(&book, "sidecar~10.0.0.1~a-0.ns~ns.svc", "a", "");
        for i in 0..3 {
            announce(
                &book,
                &format!("sidecar~10.6.6.{i}~x-{i}.ns~ns.svc"),
                "x",
                "",
            );
        }
        announce(&book, "sidecar~10.0.0.2~b-0.ns~ns.svc", "b", "");
        assert_eq!(service(&book, "10.0.0.2"), None, "the book is full");
        assert_eq!(m.addresses_refused_count("full"), 1);
        std::thread::sleep(ttl / 2);
        // a's stream is still open: it announces again; the flood's streams are gone.
        announce(&book, "sidecar~10.0.0.1~a-0.ns~ns.svc", "a", "");
        std::thread::sleep(ttl / 2 + Duration::from_millis(100));
        announce(&book, "sidecar~10.0.0.2~b-0.ns~ns.svc", "b", "");
        assert_eq!(service(&book, "10.0.0.2").as_deref(), Some("b.ns"));
        assert_eq!(service(&book, "10.0.0.1").as_deref(), Some("a.ns"));
        assert_eq!(service(&book, "10.6.6.0"), None);
        assert_eq!(m.address_book_size.get(), 2);
    }
}
