//! [`Fold`]: a scan's result rows summed straight from the Arrow columns as record batches
//! stream in. Each stored row is put in its part of the window ([`Resolution::place`]) and
//! added to its entity's sums there (side, source, keys); names are interned once per read
//! and an entity is a few integers, so no [`Row`] is built per stored row and memory
//! follows the number of result rows (bounded by the request's `max_rows`), not of rows
//! scanned.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use foldhash::HashMap;
use proto::{Side, Source};

use super::codec::{BatchColumns, BatchHistograms};
use crate::histogram::Histogram;
use crate::metrics::Metrics;
use crate::row::{Keys, Row, RowKey};
use crate::schema::{self, COUNTER_COLUMNS, MAX_KEYS, Table};
use crate::store::{Resolution, ScanRequest};
use crate::{Error, Result};

/// The columns a fold reads: all but the histograms unless they are needed.
pub(super) fn columns(table: Table, histograms: bool) -> Vec<&'static str> {
    let mut names = vec![schema::MINUTE, schema::SIDE, schema::SOURCE];
    names.extend(table.keys().iter().map(|k| k.column()));
    names.push(schema::FLAGS);
    names.extend(COUNTER_COLUMNS);
    if histograms {
        names.extend([schema::HIST_INDEX, schema::HIST_COUNT]);
    }
    names
}

/// What a result row is about besides its part: side, source and interned key values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Entity {
    side: Side,
    source: Source,
    keys: [u32; MAX_KEYS],
}

/// One result row's sums.
#[derive(Debug, Default)]
struct Sums {
    flags: u8,
    counters: [u64; COUNTER_COLUMNS.len()],
    histogram: Histogram,
}

/// The sums of one part of the window, per entity.
#[derive(Debug)]
struct Part {
    start: i64,
    sums: HashMap<u32, Sums>,
}

/// Distinct names of one read; id 0 is the empty value.
#[derive(Debug)]
struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Option<Arc<str>>>,
}

impl Names {
    fn new() -> Names {
        Names {
            ids: HashMap::default(),
            names: vec![None],
        }
    }

    /// The id of `v`; `last` is the id this column gave the previous row (rows of one key
    /// often follow one another), checked first.
    fn id(&mut self, v: &str, last: &mut u32) -> Result<u32> {
        if v.is_empty() {
            return Ok(0);
        }
        if let Some(Some(name)) = self.names.get(*last as usize)
            && **name == *v
        {
            return Ok(*last);
        }
        let id = match self.ids.get(v) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.names.len())
                    .map_err(|_| Error::Schema("more than 2³² names in one read".into()))?;
                let name: Arc<str> = Arc::from(v);
                self.names.push(Some(name.clone()));
                self.ids.insert(name, id);
                id
            }
        };
        *last = id;
        Ok(id)
    }
}

/// The result rows of one scan, summed as batches arrive.
///
/// Stored rows come sorted by minute, so consecutive rows fall in one part: the sums are
/// kept per part (a small map from entity to sums that stays in the CPU's caches while its
/// rows stream by), and entities are numbered once per read.
#[derive(Debug)]
pub(super) struct Fold {
    table: Table,
    /// The window, `[start, end)`.
    start: i64,
    end: i64,
    resolution: Resolution,
    histograms: bool,
    /// Most result rows; past it [`Fold::add`] fails.
    max_rows: Option<usize>,
    rows: usize,
    names: Names,
    /// Each entity's number, and the entities by number.
    entity_ids: HashMap<Entity, u32>,
    entities: Vec<Entity>,
    parts: Vec<Part>,
    part_of: HashMap<i64, usize>,
    /// The minutes `[from, to)` of the part the last row went to, and its index.
    last: Option<(i64, i64, usize)>,
}

impl Fold {
    /// An empty fold of `table` rows of the window `[start, end)`.
    pub fn new(table: Table, (start, end): (i64, i64), request: &ScanRequest) -> Fold {
        Fold {
            table,
            start,
            end,
            resolution: request.resolution.clone(),
            histograms: request.histograms,
            max_rows: request.max_rows,
            rows: 0,
            names: Names::new(),
            entity_ids: HashMap::default(),
            entities: Vec::new(),
            parts: Vec::new(),
            part_of: HashMap::default(),
            last: None,
        }
    }

    /// Whether the fold reads histograms.
    pub fn histograms(&self) -> bool {
        self.histograms
    }

    /// The index of the part holding `minute`.
    fn part(&mut self, minute: i64) -> usize {
        if let Some((from, to, i)) = self.last
            && minute >= from
            && minute < to
        {
            return i;
        }
        let start = self.resolution.place(self.start, minute);
        let end = self.resolution.part_end(start, self.end);
        let i = match self.part_of.entry(start) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                self.parts.push(Part {
                    start,
                    sums: HashMap::default(),
                });
                *e.insert(self.parts.len() - 1)
            }
        };
        self.last = Some((start, end, i));
        i
    }

    /// Adds a record batch holding (at least) [`columns`] of a `table` file.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let columns = BatchColumns::of(self.table, batch)?;
        let (minute, flags) = (columns.minute(), columns.flags());
        let keys = columns.keys();
        let counters = columns.counters();
        let histograms = if self.histograms {
            Some(BatchHistograms::of(batch)?)
        } else {
            None
        };
        let mut last = [0u32; MAX_KEYS];
        let mut ids = [0u32; MAX_KEYS];
        for i in 0..batch.num_rows() {
            let (side, source) = (columns.side(i)?, columns.source(i)?);
            for (k, values) in keys.iter().enumerate() {
                ids[k] = self.names.id(values.value(i), &mut last[k])?;
            }
            let entity = Entity {
                side,
                source,
                keys: ids,
            };
            let entity = match self.entity_ids.entry(entity) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    let id = u32::try_from(self.entities.len())
                        .map_err(|_| Error::Schema("more than 2³² entities in one read".into()))?;
                    self.entities.push(*e.key());
                    *e.insert(id)
                }
            };
            let part = self.part(minute.value(i));
            let sums = match self.parts[part].sums.entry(entity) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    self.rows += 1;
                    if let Some(max) = self.max_rows
                        && self.rows > max
                    {
                        return Err(Error::TooManyRows(max));
                    }
                    e.insert(Sums::default())
                }
            };
            sums.flags |= flags.value(i);
            for (sum, values) in sums.counters.iter_mut().zip(&counters) {
                *sum = sum.saturating_add(values.value(i));
            }
            if let Some(h) = &histograms {
                h.add_to(i, &mut sums.histogram);
            }
        }
        Ok(())
    }

    /// The result rows: each entity's rows together, in part order.
    pub fn finish(self) -> Vec<Row> {
        let Fold {
            table,
            names,
            entities,
            mut parts,
            rows,
            ..
        } = self;
        let mut by_entity: Vec<Vec<(i64, Sums)>> = Vec::new();
        by_entity.resize_with(entities.len(), Vec::new);
        parts.sort_unstable_by_key(|p| p.start);
        for part in parts {
            for (entity, sums) in part.sums {
                if let Some(list) = by_entity.get_mut(entity as usize) {
                    list.push((part.start, sums));
                }
            }
        }
        let nkeys = table.keys().len();
        let mut out = Vec::with_capacity(rows);
        for (entity, list) in entities.into_iter().zip(by_entity) {
            let keys = Keys::from_columns(
                table,
                entity.keys[..nkeys]
                    .iter()
                    .map(|id| names.names.get(*id as usize).cloned().flatten()),
            );
            for (minute, s) in list {
                out.push(Row {
                    key: RowKey {
                        minute,
                        side: entity.side,
                        source: entity.source,
                        keys: keys.clone(),
                    },
                    flags: s.flags,
                    metrics: Metrics {
                        histogram: s.histogram,
                        ..Metrics::from_counters(s.counters)
                    },
                });
            }
        }
        out
    }
}
