//! The rollup tables and their column names, shared by every store backend.
//!
//! Every table has the same shape: `minute` (unix seconds of the minute start, UTC),
//! `side` (`client` / `server`: which proxy reported), `source` (`mesh` / `trace`), up to [`MAX_KEYS`] string key
//! columns, `flags`, and the metric columns of [`crate::metrics::Metrics`].

use std::sync::Arc;

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

/// One rollup table per entity kind (DESIGN § 5).
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

    /// The key columns, in order.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Table::Service => &["service"],
            Table::Instance => &["service", "instance"],
            Table::Endpoint => &["service", "endpoint"],
            Table::ServiceRelation => &["client", "server", "protocol"],
            Table::InstanceRelation => &[
                "client",
                "client_instance",
                "server",
                "server_instance",
                "protocol",
            ],
        }
    }
}

/// Key values of a row; slots past the table's key count hold the empty string.
pub type Keys = [Arc<str>; MAX_KEYS];
