//! Rollup rows: what the aggregator writes and the stores read back.
//!
//! A row is one minute (or, merged, one window) of one key of one table, under the side and
//! source that reported it. Rows are deltas: any number of rows with one [`RowKey`] sum to
//! the figure of that key ([`RowMerger`] is the reference merge every backend agrees with).

use std::sync::Arc;

use foldhash::HashMap;
use proto::{Side, Source};

use crate::metrics::Metrics;
use crate::schema::{Key, MAX_KEYS, Table};
use crate::{Error, Result};

/// The key values of a row of one table, addressed by [`Key`].
///
/// An empty value is stored as nothing (no allocation, no reference count): rows are built
/// by the million on reads, and most tables leave most slots empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Keys {
    table: Table,
    /// In the table's key order; `None` is the empty string, and so is every slot past the
    /// table's keys.
    values: [Option<Arc<str>>; MAX_KEYS],
}

/// `None` for the empty string, so that one value has one representation.
fn slot(v: impl Into<Option<Arc<str>>>) -> Option<Arc<str>> {
    v.into().filter(|v| !v.is_empty())
}

impl Keys {
    /// Keys of `table` from `(key, value)` pairs; keys not given are empty. A key the table
    /// does not have is an error.
    pub fn new(table: Table, pairs: impl IntoIterator<Item = (Key, Arc<str>)>) -> Result<Keys> {
        let mut keys = Keys::empty(table);
        for (key, value) in pairs {
            let i = table
                .position(key)
                .ok_or_else(|| Error::Request(no_key(table, key)))?;
            keys.values[i] = slot(value);
        }
        Ok(keys)
    }

    /// Every key of `table` empty.
    pub fn empty(table: Table) -> Keys {
        Keys {
            table,
            values: Default::default(),
        }
    }

    /// Keys from values in the table's column order, for storage codecs and the rollup's
    /// id arrays (`None` or `""` is empty): values past the table's keys are ignored,
    /// missing ones are empty.
    pub fn from_columns<V: Into<Option<Arc<str>>>>(
        table: Table,
        columns: impl IntoIterator<Item = V>,
    ) -> Keys {
        let mut keys = Keys::empty(table);
        for (s, v) in keys.values.iter_mut().zip(columns).take(table.keys().len()) {
            *s = slot(v);
        }
        keys
    }

    /// The values in the table's column order, for storage codecs.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.slots().iter().map(|v| v.as_deref().unwrap_or(""))
    }

    /// The values in the table's column order, empty ones `None`: for the rollup's ids.
    pub fn slots(&self) -> &[Option<Arc<str>>] {
        &self.values[..self.table.keys().len()]
    }

    /// The table the keys belong to.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The value of `key`; empty when it is empty or the table has no such key.
    pub fn get(&self, key: Key) -> &str {
        self.shared(key).map_or("", |v| v)
    }

    /// The value of `key` as the shared string it is stored as; `None` when it is empty or
    /// the table has no such key.
    pub fn shared(&self, key: Key) -> Option<&Arc<str>> {
        self.table
            .position(key)
            .and_then(|i| self.values[i].as_ref())
    }
}

/// The message of an error for a key a table lacks.
pub(crate) fn no_key(table: Table, key: Key) -> String {
    format!("table {} has no key column {}", table.name(), key.column())
}

/// Identity of a partial row; ordered by minute, side, source, keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// Unix seconds of the minute start.
    pub minute: i64,
    pub side: Side,
    pub source: Source,
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

/// Merges rows with equal keys (sum of metrics, OR of flags) as they arrive: the
/// reference merge every backend must agree with.
#[derive(Debug, Default)]
pub struct RowMerger {
    rows: HashMap<RowKey, (u8, Metrics)>,
}

impl RowMerger {
    /// Adds one partial row.
    pub fn add(&mut self, row: Row) {
        let e = self
            .rows
            .entry(row.key)
            .or_insert_with(|| (0, Metrics::default()));
        e.0 |= row.flags;
        e.1.merge(&row.metrics);
    }

    /// The merged rows, one per key.
    pub fn finish(self) -> Vec<Row> {
        self.rows
            .into_iter()
            .map(|(key, (flags, metrics))| Row {
                key,
                flags,
                metrics,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_by_name() {
        let a = |s: &str| Arc::<str>::from(s);
        let k = Keys::new(
            Table::ServiceRelation,
            [(Key::Server, a("b.ns")), (Key::Client, a("a.ns"))],
        )
        .expect("keys");
        assert_eq!(k.get(Key::Client), "a.ns");
        assert_eq!(k.get(Key::Server), "b.ns");
        assert_eq!(k.get(Key::Protocol), "");
        // A key the table lacks reads empty and cannot be set.
        assert_eq!(k.get(Key::Instance), "");
        assert!(Keys::new(Table::Service, [(Key::Client, a("x"))]).is_err());
        // Codecs see the table's column order.
        let cols: Vec<&str> = k.columns().collect();
        assert_eq!(cols, ["a.ns", "b.ns", ""]);
        assert_eq!(
            Keys::from_columns(Table::ServiceRelation, cols.iter().map(|c| a(c))),
            k
        );
    }
}
