//! In-memory per-minute rollups: calls in, partial rows out.
//!
//! One call touches five rows, one per [`Table`], all under the side that reported it.
//! Rows are deltas: [`Rollups::take`] hands the accumulated rows to the store and starts
//! afresh, and the store sums deltas on read, so late data and successive flushes merge
//! exactly. Rows accumulate under interned name ids ([`names`]), keyed by fixed arrays in
//! the tables' key order.

mod admitted;
mod names;

// foldhash: these maps are hit several times per call; SipHash showed in profiles.
use foldhash::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{Call, Side, Source};

use crate::metrics::{Metrics, Observation};
use crate::row::{Keys, Row, RowBatch, RowKey};
use crate::schema::{FLAG_CLIENT_REAL, FLAG_SERVER_REAL, Key, MAX_KEYS, Table};

use admitted::Admitted;
use names::{ID_EMPTY, ID_OVERFLOW, Names};

/// The endpoint that stands for every endpoint past a service's cap.
pub const OVERFLOW_ENDPOINT: &str = names::OVERFLOW;

/// The node that stands for every service name past the service cap.
pub const OVERFLOW_SERVICE: &str = names::OVERFLOW;

/// Settings that shape rollups.
#[derive(Debug, Clone)]
pub struct RollupSettings {
    pub apdex_t_nanos: u64,
    pub max_endpoints_per_service: usize,
    /// Distinct service names (real and virtual) kept; further names count under
    /// `(overflow)`, so a flood of external hosts cannot grow memory without bound.
    pub max_services: usize,
    /// A service or endpoint name not seen for between one and two of these leaves its
    /// cap, freeing its place.
    pub cap_forget_after: Duration,
}

/// Where `key` sits in `table`'s id array; evaluated at compile time only (a table
/// without the key fails the build).
const fn slot(table: Table, key: Key) -> usize {
    match table.position(key) {
        Some(i) => i,
        None => panic!("the table has no such key"),
    }
}

/// An id array with the given `(slot, id)`s set and the rest empty.
fn ids<const N: usize>(set: [(usize, u32); N]) -> [u32; MAX_KEYS] {
    let mut a = [ID_EMPTY; MAX_KEYS];
    for (i, id) in set {
        a[i] = id;
    }
    a
}

/// Identity of an accumulating row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IdKey {
    minute: i64,
    side: Side,
    source: Source,
    ids: [u32; MAX_KEYS],
}

/// Accumulating rollups for all tables.
#[derive(Debug)]
pub struct Rollups {
    settings: RollupSettings,
    names: Names,
    tables: [HashMap<IdKey, (u8, Metrics)>; 5],
    /// Endpoints holding a place per service, for the cap.
    endpoints: HashMap<Arc<str>, Admitted<Arc<str>>>,
    /// Service names holding a place, for the cap.
    services: Admitted<Arc<str>>,
    /// When the caps last started a new generation.
    rotated: Instant,
}

/// What applying a call did beyond the rollups, for self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub endpoint_overflowed: bool,
    pub service_overflowed: bool,
}

impl Rollups {
    /// Empty rollups with the given caps and apdex threshold.
    pub fn new(settings: RollupSettings) -> Rollups {
        Rollups {
            settings,
            names: Names::new(),
            tables: Default::default(),
            endpoints: HashMap::default(),
            services: Admitted::default(),
            rotated: Instant::now(),
        }
    }

    /// Whether a service name is past the service cap.
    fn service_overflows(&mut self, name: &Arc<str>) -> bool {
        !self.services.admit(name, self.settings.max_services)
    }

    /// Whether an endpoint of `service` is past the per-service cap.
    fn endpoint_overflows(&mut self, service: &Arc<str>, endpoint: &Arc<str>) -> bool {
        let cap = self.settings.max_endpoints_per_service;
        let known = match self.endpoints.get_mut(service) {
            Some(k) => k,
            None => self.endpoints.entry(service.clone()).or_default(),
        };
        !known.admit(endpoint, cap)
    }

    /// Starts a new generation of the caps: names not seen for a whole period leave
    /// them, and services without an endpoint left lose their endpoint set.
    fn forget_idle_names(&mut self) {
        self.services.rotate();
        self.endpoints.retain(|_, known| {
            known.rotate();
            !known.is_empty()
        });
        self.rotated = Instant::now();
    }

    /// Names holding a place under the caps: services, and endpoints of all services.
    pub fn admitted(&self) -> (usize, usize) {
        let endpoints = self.endpoints.values().map(Admitted::len).sum();
        (self.services.len(), endpoints)
    }

    fn bump(&mut self, table: Table, key: IdKey, flags: u8, o: &Observation) {
        let entry = self.tables[table as usize]
            .entry(key)
            .or_insert_with(|| (0, Metrics::default()));
        entry.0 |= flags;
        entry.1.observe(o);
    }

    /// Adds one call to the five rows it touches. `minute` is the call's minute start.
    pub fn apply(&mut self, call: &Call, minute: i64) -> Applied {
        let o = Observation::of(call, self.settings.apdex_t_nanos);
        let client_flag = if call.client.real {
            FLAG_CLIENT_REAL
        } else {
            0
        };
        let server_flag = if call.server.real {
            FLAG_SERVER_REAL
        } else {
            0
        };
        let flags = client_flag | server_flag;
        let protocol = Names::protocol(call.protocol);
        let mut applied = Applied::default();
        let server_over = self.service_overflows(&call.server.service);
        let client_over = self.service_overflows(&call.client.service);
        applied.service_overflowed = server_over || client_over;
        let s = if server_over {
            ID_OVERFLOW
        } else {
            self.names.id(&call.server.service)
        };
        let c = if client_over {
            ID_OVERFLOW
        } else {
            self.names.id(&call.client.service)
        };
        let key = |ids| IdKey {
            minute,
            side: call.side,
            source: call.source,
            ids,
        };
        const SERVICE: usize = slot(Table::Service, Key::Service);
        const INSTANCE_SERVICE: usize = slot(Table::Instance, Key::Service);
        const INSTANCE: usize = slot(Table::Instance, Key::Instance);
        const ENDPOINT_SERVICE: usize = slot(Table::Endpoint, Key::Service);
        const ENDPOINT: usize = slot(Table::Endpoint, Key::Endpoint);
        const EDGE_CLIENT: usize = slot(Table::ServiceRelation, Key::Client);
        const EDGE_SERVER: usize = slot(Table::ServiceRelation, Key::Server);
        const EDGE_PROTOCOL: usize = slot(Table::ServiceRelation, Key::Protocol);
        const PODS_CLIENT: usize = slot(Table::InstanceRelation, Key::Client);
        const PODS_CLIENT_INSTANCE: usize = slot(Table::InstanceRelation, Key::ClientInstance);
        const PODS_SERVER: usize = slot(Table::InstanceRelation, Key::Server);
        const PODS_SERVER_INSTANCE: usize = slot(Table::InstanceRelation, Key::ServerInstance);
        const PODS_PROTOCOL: usize = slot(Table::InstanceRelation, Key::Protocol);
        self.bump(Table::Service, key(ids([(SERVICE, s)])), server_flag, &o);
        let si = match &call.server.instance {
            Some(inst) => {
                let si = self.names.id(inst);
                let k = key(ids([(INSTANCE_SERVICE, s), (INSTANCE, si)]));
                self.bump(Table::Instance, k, server_flag, &o);
                si
            }
            None => ID_EMPTY,
        };
        if let Some(ep) = &call.endpoint {
            // An overflowed service's endpoints all go to the overflow endpoint: its name
            // is not remembered (one-off names would otherwise each keep a set).
            let over = server_over || self.endpoint_overflows(&call.server.service, ep);
            applied.endpoint_overflowed = over && !server_over;
            let e = if over { ID_OVERFLOW } else { self.names.id(ep) };
            let k = key(ids([(ENDPOINT_SERVICE, s), (ENDPOINT, e)]));
            self.bump(Table::Endpoint, k, server_flag, &o);
        }
        let edge = ids([
            (EDGE_CLIENT, c),
            (EDGE_SERVER, s),
            (EDGE_PROTOCOL, protocol),
        ]);
        self.bump(Table::ServiceRelation, key(edge), flags, &o);
        let ci = match &call.client.instance {
            Some(inst) => self.names.id(inst),
            None => ID_EMPTY,
        };
        let pods = ids([
            (PODS_CLIENT, c),
            (PODS_CLIENT_INSTANCE, ci),
            (PODS_SERVER, s),
            (PODS_SERVER_INSTANCE, si),
            (PODS_PROTOCOL, protocol),
        ]);
        self.bump(Table::InstanceRelation, key(pods), flags, &o);
        applied
    }

    /// Number of rows held.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a new generation of the caps once `cap_forget_after` has passed since the
    /// last (called at every flush tick).
    pub fn age_caps(&mut self) {
        if self.rotated.elapsed() >= self.settings.cap_forget_after {
            self.forget_idle_names();
        }
    }

    /// Takes every accumulated row, leaving the rollups empty (the caps keep their names).
    pub fn take(&mut self) -> RowBatch {
        let mut batch = RowBatch::default();
        for table in Table::ALL {
            let names = &self.names;
            let rows: Vec<Row> = self.tables[table as usize]
                .drain()
                .map(|(key, (flags, metrics))| Row {
                    key: RowKey {
                        minute: key.minute,
                        side: key.side,
                        source: key.source,
                        keys: Keys::from_columns(
                            table,
                            key.ids.map(|id| (id != ID_EMPTY).then(|| names.name(id))),
                        ),
                    },
                    flags,
                    metrics,
                })
                .collect();
            if !rows.is_empty() {
                batch.tables.push((table, rows));
            }
        }
        if self.names.too_large() {
            self.names = Names::new();
        }
        batch
    }

    /// Puts rows taken by [`Rollups::take`] back (after a failed write), merging them with
    /// anything accumulated since.
    pub fn restore(&mut self, tables: Vec<(Table, Vec<Row>)>) {
        for (table, rows) in tables {
            for row in rows {
                let key = IdKey {
                    minute: row.key.minute,
                    side: row.key.side,
                    source: row.key.source,
                    ids: std::array::from_fn(|i| match row.key.keys.slots().get(i) {
                        Some(Some(k)) => self.names.id(k),
                        _ => ID_EMPTY,
                    }),
                };
                let e = self.tables[table as usize]
                    .entry(key)
                    .or_insert_with(|| (0, Metrics::default()));
                e.0 |= row.flags;
                e.1.merge(&row.metrics);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::RowMerger;

    fn merge_rows(rows: impl IntoIterator<Item = Row>) -> Vec<Row> {
        let mut merger = RowMerger::default();
        rows.into_iter().for_each(|r| merger.add(r));
        merger.finish()
    }
    use proptest::prelude::*;
    use proto::{Node, Protocol};

    fn settings() -> RollupSettings {
        RollupSettings {
            apdex_t_nanos: 500_000_000,
            max_endpoints_per_service: 3,
            max_services: 100,
            cap_forget_after: Duration::from_secs(3600),
        }
    }

    fn call(i: u64) -> (Call, i64) {
        let names = ["a.ns", "b.ns", "c.ns"];
        let call = Call {
            start_unix_nanos: 0,
            side: if i.is_multiple_of(3) {
                Side::Client
            } else {
                Side::Server
            },
            source: if i.is_multiple_of(5) {
                Source::Trace
            } else {
                Source::Mesh
            },
            client: Node::real(Arc::from(names[(i % 3) as usize]), None),
            server: Node::real(
                Arc::from(names[((i / 3) % 3) as usize]),
                Some(Arc::from(format!("pod-{}", i % 2))),
            ),
            endpoint: Some(Arc::from(format!("GET /e{}", i % 5))),
            protocol: if i.is_multiple_of(4) {
                Protocol::Grpc
            } else {
                Protocol::Http
            },
            latency_nanos: (!i.is_multiple_of(7))
                .then_some(i.wrapping_mul(7_919_993) % 3_000_000_000),
            status_code: 200,
            grpc_status: None,
            error: i.is_multiple_of(11),
            mtls: i.is_multiple_of(2),
            request_bytes: i,
            response_bytes: 2 * i,
        };
        (call, 60 * (i % 4) as i64)
    }

    fn sorted(mut rows: Vec<Row>) -> Vec<(RowKey, u8, Metrics)> {
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows.into_iter()
            .map(|r| (r.key, r.flags, r.metrics))
            .collect()
    }

    #[test]
    fn endpoint_cap_sends_the_rest_to_overflow() {
        let mut r = Rollups::new(settings());
        let mut overflowed = 0;
        for i in 0..10 {
            let (mut c, m) = call(0);
            c.endpoint = Some(Arc::from(format!("GET /x{i}")));
            overflowed += u32::from(r.apply(&c, m).endpoint_overflowed);
        }
        assert_eq!(overflowed, 7);
        let batch = r.take();
        let endpoints = &batch
            .tables
            .iter()
            .find(|(t, _)| *t == Table::Endpoint)
            .expect("endpoint rows")
            .1;
        assert_eq!(endpoints.len(), 4);
        let overflow = endpoints
            .iter()
            .find(|row| row.key.keys.get(Key::Endpoint) == OVERFLOW_ENDPOINT)
            .expect("overflow row");
        assert_eq!(overflow.metrics.calls, 7);
    }

    #[test]
    fn service_cap_sends_new_names_to_overflow() {
        let mut r = Rollups::new(RollupSettings {
            max_services: 2,
            ..settings()
        });
        let mut overflowed = 0;
        for i in 0..5 {
            let (mut c, m) = call(0);
            c.client.service = Arc::from("a.ns");
            c.server.service = Arc::from(format!("host-{i}:443"));
            overflowed += u32::from(r.apply(&c, m).service_overflowed);
        }
        assert_eq!(overflowed, 4);
        let batch = r.take();
        let services: Vec<String> = batch
            .tables
            .iter()
            .find(|(t, _)| *t == Table::Service)
            .expect("rows")
            .1
            .iter()
            .map(|row| row.key.keys.get(Key::Service).to_string())
            .collect();
        assert_eq!(services.len(), 2);
        assert!(services.contains(&OVERFLOW_SERVICE.to_string()));
        // The overflowed names' endpoints went to the overflow endpoint, and no set of
        // endpoints is kept per overflowed name.
        let kept: Vec<&str> = r.endpoints.keys().map(|s| &**s).collect();
        assert_eq!(kept, vec!["host-0:443"]);
    }

    /// One-off names that filled the caps leave them once idle, and real names that keep
    /// coming keep their places: a flood does not lock services out until a restart.
    #[test]
    fn idle_names_leave_the_caps_and_real_ones_stay() {
        let mut r = Rollups::new(RollupSettings {
            max_services: 4,
            ..settings()
        });
        let send = |r: &mut Rollups, client: &str, server: &str, endpoint: &str| {
            let (mut c, m) = call(0);
            c.client.service = Arc::from(client);
            c.server.service = Arc::from(server);
            c.endpoint = Some(Arc::from(endpoint));
            r.apply(&c, m)
        };
        assert!(!send(&mut r, "a.ns", "b.ns", "GET /").service_overflowed);
        for i in 0..2 {
            send(&mut r, "a.ns", &format!("scan-{i}:443"), "GET /");
        }
        for i in 0..3 {
            send(&mut r, "a.ns", "b.ns", &format!("GET /one-off/{i}"));
        }
        assert_eq!(r.admitted(), (4, 5));
        assert!(send(&mut r, "a.ns", "c.ns", "GET /").service_overflowed);
        assert!(send(&mut r, "a.ns", "b.ns", "GET /later").endpoint_overflowed);
        r.forget_idle_names();
        // a and b keep coming; the scan does not.
        send(&mut r, "a.ns", "b.ns", "GET /");
        assert!(send(&mut r, "a.ns", "c.ns", "GET /").service_overflowed);
        r.forget_idle_names();
        assert_eq!(r.admitted(), (2, 1), "only a, b and b's GET / are left");
        let applied = send(&mut r, "a.ns", "c.ns", "GET /");
        assert!(!applied.service_overflowed && !applied.endpoint_overflowed);
        assert!(!send(&mut r, "a.ns", "b.ns", "GET /later").endpoint_overflowed);
        // Rows already taken are not touched by forgetting: only the caps' places.
        r.take();
        assert_eq!(r.admitted(), (3, 3));
    }

    proptest! {
        /// Applying calls in chunks, flushing between chunks, in any order of chunks, then
        /// merging all partial rows equals one pass over all calls.
        #[test]
        fn partial_rollups_merge_to_one_pass(
            n in 1u64..200,
            cuts in proptest::collection::vec(0u64..200, 0..5),
            reverse in any::<bool>(),
        ) {
            let calls: Vec<(Call, i64)> = (0..n).map(call).collect();
            let uncapped = || Rollups::new(RollupSettings { max_endpoints_per_service: 1000, ..settings() });
            let mut one = uncapped();
            for (c, m) in &calls { one.apply(c, *m); }
            let whole = one.take().tables;

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| (c.min(n)) as usize).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[(Call, i64)]> = Vec::new();
            let mut start = 0;
            for c in cuts.into_iter().chain([calls.len()]) {
                chunks.push(&calls[start..c.max(start)]);
                start = c.max(start);
            }
            if reverse { chunks.reverse(); }
            let mut r = uncapped();
            let mut parts: Vec<(Table, Row)> = Vec::new();
            for chunk in chunks {
                for (c, m) in chunk { r.apply(c, *m); }
                parts.extend(r.take().tables.into_iter().flat_map(|(t, rows)| rows.into_iter().map(move |row| (t, row))));
            }
            // Per table: merging the partial rows gives exactly the one-pass rows (which
            // never went through a merge, so a field `merge` forgot would show here).
            for (table, one_pass) in whole {
                let merged = merge_rows(parts.iter().filter(|(t, _)| *t == table).map(|(_, r)| r.clone()));
                prop_assert_eq!(sorted(merged), sorted(one_pass));
            }
        }
    }
}
