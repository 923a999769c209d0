//! In-memory per-minute rollups: calls in, partial rows out.
//!
//! One call touches five rows, one per [`Table`], all under the side that reported it.
//! Rows are deltas: [`Rollups::take`] hands the accumulated rows to the store and starts
//! afresh, and the store sums deltas on read, so late data and successive flushes merge
//! exactly.

// foldhash: these maps are hit several times per call; SipHash showed in profiles.
use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use proto::{Call, Side};

use crate::metrics::{Metrics, Observation};
use crate::schema::{FLAG_CLIENT_REAL, FLAG_SERVER_REAL, Keys, MAX_KEYS, Table};

/// Identity of a partial row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    /// Unix seconds of the minute start.
    pub minute: i64,
    pub side: Side,
    pub keys: Keys,
}

/// A partial row: its identity, node flags and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: RowKey,
    pub flags: u8,
    pub metrics: Metrics,
}

/// Rows of one flush, per table.
#[derive(Debug, Default)]
pub struct RowBatch {
    pub tables: Vec<(Table, Vec<Row>)>,
}

impl RowBatch {
    /// Total number of rows.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|(_, r)| r.len()).sum()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls in the batch, counted once (from the service table, which every call touches
    /// exactly once).
    pub fn calls(&self) -> u64 {
        self.tables
            .iter()
            .filter(|(t, _)| *t == Table::Service)
            .flat_map(|(_, rows)| rows.iter().map(|r| r.metrics.calls))
            .sum()
    }
}

/// The endpoint that stands for every endpoint past a service's cap.
pub const OVERFLOW_ENDPOINT: &str = "(overflow)";

/// The node that stands for every service name past the service cap.
pub const OVERFLOW_SERVICE: &str = "(overflow)";

/// Settings that shape rollups.
#[derive(Debug, Clone)]
pub struct RollupSettings {
    pub apdex_t_nanos: u64,
    pub max_endpoints_per_service: usize,
    /// Distinct service names (real and virtual) kept; further names count under
    /// `(overflow)`, so a flood of external hosts cannot grow memory without bound.
    pub max_services: usize,
}

/// Accumulating rollups for all tables.
#[derive(Debug)]
pub struct Rollups {
    settings: RollupSettings,
    empty: Arc<str>,
    protocols: [Arc<str>; 3],
    overflow: Arc<str>,
    tables: [HashMap<RowKey, (u8, Metrics)>; 5],
    /// Endpoints admitted so far per service, for the cap.
    endpoints: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// Service names admitted so far, for the cap.
    services: HashSet<Arc<str>>,
}

/// What applying a call did beyond the rollups, for self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub endpoint_overflowed: bool,
    pub service_overflowed: bool,
}

impl Rollups {
    pub fn new(settings: RollupSettings) -> Rollups {
        Rollups {
            settings,
            empty: Arc::from(""),
            protocols: [Arc::from("http"), Arc::from("grpc"), Arc::from("tcp")],
            overflow: Arc::from(OVERFLOW_ENDPOINT),
            tables: Default::default(),
            endpoints: HashMap::default(),
            services: HashSet::default(),
        }
    }

    /// The name to record for a service, applying the service cap.
    fn admit_service(&mut self, name: &Arc<str>) -> Option<Arc<str>> {
        if self.services.contains(name) {
            return None;
        }
        if self.services.len() < self.settings.max_services {
            self.services.insert(name.clone());
            return None;
        }
        Some(self.overflow.clone())
    }

    fn keys<const N: usize>(&self, values: [&Arc<str>; N]) -> Keys {
        let mut keys: Keys = std::array::from_fn(|_| self.empty.clone());
        for (slot, v) in keys.iter_mut().zip(values).take(MAX_KEYS) {
            *slot = v.clone();
        }
        keys
    }

    fn bump(&mut self, table: Table, key: RowKey, flags: u8, o: &Observation) {
        let entry = self.tables[table as usize]
            .entry(key)
            .or_insert_with(|| (0, Metrics::default()));
        entry.0 |= flags;
        entry.1.observe(o);
    }

    /// The endpoint to record for `service`, applying the per-service cap.
    fn admit_endpoint(&mut self, service: &Arc<str>, endpoint: &Arc<str>) -> (Arc<str>, bool) {
        let cap = self.settings.max_endpoints_per_service;
        let known = self.endpoints.entry(service.clone()).or_default();
        if known.contains(endpoint) {
            return (endpoint.clone(), false);
        }
        if known.len() < cap {
            known.insert(endpoint.clone());
            return (endpoint.clone(), false);
        }
        (self.overflow.clone(), true)
    }

    /// Adds one call to the five rows it touches. `minute` is the call's minute start.
    pub fn apply(&mut self, call: &Call, minute: i64) -> Applied {
        let o = Observation::of(call, self.settings.apdex_t_nanos);
        let side = call.side;
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
        let protocol = self.protocols[call.protocol as usize].clone();
        let mut applied = Applied::default();
        let server_capped = self.admit_service(&call.server.service);
        let client_capped = self.admit_service(&call.client.service);
        applied.service_overflowed = server_capped.is_some() || client_capped.is_some();
        let server = server_capped.as_ref().unwrap_or(&call.server.service);
        let client = client_capped.as_ref().unwrap_or(&call.client.service);

        let key = |keys| RowKey { minute, side, keys };
        self.bump(Table::Service, key(self.keys([server])), server_flag, &o);
        if let Some(inst) = &call.server.instance {
            self.bump(
                Table::Instance,
                key(self.keys([server, inst])),
                server_flag,
                &o,
            );
        }
        if let Some(ep) = &call.endpoint {
            let (ep, overflowed) = self.admit_endpoint(server, ep);
            applied.endpoint_overflowed = overflowed;
            self.bump(
                Table::Endpoint,
                key(self.keys([server, &ep])),
                server_flag,
                &o,
            );
        }
        self.bump(
            Table::ServiceRelation,
            key(self.keys([client, server, &protocol])),
            flags,
            &o,
        );
        let empty = self.empty.clone();
        let ci = call.client.instance.as_ref().unwrap_or(&empty);
        let si = call.server.instance.as_ref().unwrap_or(&empty);
        self.bump(
            Table::InstanceRelation,
            key(self.keys([client, ci, server, si, &protocol])),
            flags,
            &o,
        );
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

    /// Takes every accumulated row, leaving the rollups empty (the endpoint cap state stays).
    pub fn take(&mut self) -> RowBatch {
        let mut batch = RowBatch::default();
        for table in Table::ALL {
            let rows: Vec<Row> = self.tables[table as usize]
                .drain()
                .map(|(key, (flags, metrics))| Row {
                    key,
                    flags,
                    metrics,
                })
                .collect();
            if !rows.is_empty() {
                batch.tables.push((table, rows));
            }
        }
        batch
    }
}

impl Rollups {
    /// Puts rows taken by [`Rollups::take`] back (after a failed write), merging them with
    /// anything accumulated since.
    pub fn restore(&mut self, tables: Vec<(Table, Vec<Row>)>) {
        for (table, rows) in tables {
            let map = &mut self.tables[table as usize];
            for row in rows {
                let e = map
                    .entry(row.key)
                    .or_insert_with(|| (0, Metrics::default()));
                e.0 |= row.flags;
                e.1.merge(&row.metrics);
            }
        }
    }
}

/// Merges rows with equal keys (sum of metrics, OR of flags): the reference merge every
/// backend must agree with.
pub fn merge_rows(rows: impl IntoIterator<Item = Row>) -> Vec<Row> {
    let mut merged: HashMap<RowKey, (u8, Metrics)> = HashMap::default();
    for row in rows {
        let e = merged
            .entry(row.key)
            .or_insert_with(|| (0, Metrics::default()));
        e.0 |= row.flags;
        e.1.merge(&row.metrics);
    }
    merged
        .into_iter()
        .map(|(key, (flags, metrics))| Row {
            key,
            flags,
            metrics,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::{Node, Protocol};

    fn settings() -> RollupSettings {
        RollupSettings {
            apdex_t_nanos: 500_000_000,
            max_endpoints_per_service: 3,
            max_services: 100,
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
        rows.sort_by(|a, b| {
            (a.key.minute, a.key.side, &a.key.keys).cmp(&(b.key.minute, b.key.side, &b.key.keys))
        });
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
            .find(|row| &*row.key.keys[1] == OVERFLOW_ENDPOINT)
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
            .map(|row| row.key.keys[0].to_string())
            .collect();
        assert_eq!(services.len(), 2);
        assert!(services.contains(&OVERFLOW_SERVICE.to_string()));
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
