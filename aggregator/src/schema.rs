//! The rollup tables, their key columns and their column names, shared by every store
//! backend.
//!
//! Every table has the same shape: `minute` (unix seconds of the minute start, UTC),
//! `side` (`client` / `server`: which proxy reported), `source` (`mesh` / `trace`), the
//! table's [`Key`] columns, `flags`, and the metric columns of [`crate::metrics::Metrics`].
//! Code addresses key columns by [`Key`]; only the storage codecs see their positions.

/// Most key columns any table has.
pub const MAX_KEYS: usize = 5;

/// Column: unix seconds of the minute start (UTC).
pub const MINUTE: &str = "minute";
/// Column: `client` or `server`, the side that reported.
pub const SIDE: &str = "side";
/// Column: `mesh` or `trace`, the telemetry that reported (null in older files: `mesh`).
pub const SOURCE: &str = "source";
/// Bit 0: the client node is real; bit 1: the server node (the service itself) is real.
pub const FLAGS: &str = "flags";
// Metric columns: the fields of `Metrics` of the same names.
pub const CALLS: &str = "calls";
pub const ERRORS: &str = "errors";
pub const LATENCY_COUNT: &str = "latency_count";
pub const LATENCY_SUM_NANOS: &str = "latency_sum_nanos";
pub const APDEX_SATISFIED: &str = "apdex_satisfied";
pub const APDEX_TOLERATING: &str = "apdex_tolerating";
pub const MTLS_CALLS: &str = "mtls_calls";
pub const BYTES_SENT: &str = "bytes_sent";
pub const BYTES_RECEIVED: &str = "bytes_received";
/// Column: non-empty histogram bucket indexes (a list).
pub const HIST_INDEX: &str = "hist_index";
/// Column: the counts of those buckets (a list, same length).
pub const HIST_COUNT: &str = "hist_count";

/// The scalar `u64` metric columns, in storage order.
pub const COUNTER_COLUMNS: [&str; 9] = [
    CALLS,
    ERRORS,
    LATENCY_COUNT,
    LATENCY_SUM_NANOS,
    APDEX_SATISFIED,
    APDEX_TOLERATING,
    MTLS_CALLS,
    BYTES_SENT,
    BYTES_RECEIVED,
];

/// Flag bit: the client node is real.
pub const FLAG_CLIENT_REAL: u8 = 1;
/// Flag bit: the server node is real.
pub const FLAG_SERVER_REAL: u8 = 2;

/// A key column: what one of a row's names means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// The service the row is about (service, instance and endpoint tables).
    Service,
    /// A pod of [`Key::Service`].
    Instance,
    /// A normalised endpoint of [`Key::Service`] (`GET /reviews/{id}`).
    Endpoint,
    /// The caller of an edge.
    Client,
    /// The caller's pod (empty when unknown).
    ClientInstance,
    /// The callee of an edge.
    Server,
    /// The callee's pod (empty when unknown).
    ServerInstance,
    /// The edge's protocol (`http`, `grpc`, `tcp`, `messaging`, `database`).
    Protocol,
}

impl Key {
    /// The column name in storage (Parquet and ClickHouse).
    pub const fn column(self) -> &'static str {
        match self {
            Key::Service => "service",
            Key::Instance => "instance",
            Key::Endpoint => "endpoint",
            Key::Client => "client",
            Key::ClientInstance => "client_instance",
            Key::Server => "server",
            Key::ServerInstance => "server_instance",
            Key::Protocol => "protocol",
        }
    }
}

/// One rollup table per entity kind: services, instances, endpoints, service relations
/// (edges) and instance relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Service,
    Instance,
    Endpoint,
    ServiceRelation,
    InstanceRelation,
}

impl Table {
    /// Every table, in storage order.
    pub const ALL: [Table; 5] = [
        Table::Service,
        Table::Instance,
        Table::Endpoint,
        Table::ServiceRelation,
        Table::InstanceRelation,
    ];

    /// Storage name of the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Service => "service",
            Table::Instance => "instance",
            Table::Endpoint => "endpoint",
            Table::ServiceRelation => "service_relation",
            Table::InstanceRelation => "instance_relation",
        }
    }

    /// Parses a storage name.
    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The key columns, in storage order.
    pub const fn keys(self) -> &'static [Key] {
        match self {
            Table::Service => &[Key::Service],
            Table::Instance => &[Key::Service, Key::Instance],
            Table::Endpoint => &[Key::Service, Key::Endpoint],
            Table::ServiceRelation => &[Key::Client, Key::Server, Key::Protocol],
            Table::InstanceRelation => &[
                Key::Client,
                Key::ClientInstance,
                Key::Server,
                Key::ServerInstance,
                Key::Protocol,
            ],
        }
    }

    /// Whether the table has `key`.
    pub const fn has(self, key: Key) -> bool {
        self.position(key).is_some()
    }

    /// Where `key` is among the table's key columns: for the storage codecs and the
    /// rollup's id arrays, nothing else.
    pub const fn position(self, key: Key) -> Option<usize> {
        let keys = self.keys();
        let mut i = 0;
        while i < keys.len() {
            if keys[i] as u8 == key as u8 {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The key naming the service a row's calls go *into*: the service of the service,
    /// instance and endpoint tables, the server of an edge. The source rule is decided
    /// per destination (see [`crate::query`]).
    pub const fn destination(self) -> Key {
        match self {
            Table::Service | Table::Instance | Table::Endpoint => Key::Service,
            Table::ServiceRelation | Table::InstanceRelation => Key::Server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_destination_and_distinct_keys() {
        for t in Table::ALL {
            assert!(t.has(t.destination()), "{t:?}");
            assert!(t.keys().len() <= MAX_KEYS);
            for (i, k) in t.keys().iter().enumerate() {
                assert_eq!(t.position(*k), Some(i), "{t:?} {k:?}");
            }
        }
        assert!(!Table::Service.has(Key::Client));
        assert_eq!(
            Table::InstanceRelation.position(Key::ServerInstance),
            Some(3)
        );
    }
}
