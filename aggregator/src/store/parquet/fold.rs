//! [`Fold`]: a scan's result rows summed straight from the Arrow columns as record batches
//! stream in. Each stored row is put in its part of the window ([`Resolution::place`]) and
//! added to its entity's sums there (side, source, keys); names are interned once per read
//! and an entity is a few integers, so no [`Row`] is built per stored row and memory
//! follows the number of result rows (bounded by the request's `max_rows`), not of rows
//! scanned.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use foldhash::{HashMap, HashSet};
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

/// The sums of one part of the window: entities and their sums, in the order met.
#[derive(Debug)]
struct Part {
    start: i64,
    sums: Vec<(u32, Sums)>,
}

/// No slot: the entity has no sums in the current part.
const NO_SLOT: u32 = u32::MAX;

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
/// kept per part, found through a table from entity number to slot that describes the
/// current part (an array index per row rather than a hash lookup, rebuilt when the rows
/// move to another part: at most about once per batch, as batches of DataFusion's
/// partitions interleave), and entities are numbered once per read.
#[derive(Debug)]
pub(super) struct Fold {
    table: Table,
    /// The window, `[start, end)`.
    start: i64,
    end: i64,
    resolution: Resolution,
    histograms: bool,
    /// Leave out the client rows of a key and source with server rows.
    chosen_side: bool,
    /// Most result rows; past it [`Fold::add`] fails.
    max_rows: Option<usize>,
    rows: usize,
    names: Names,
    /// Per key column, the name ids of the views met in the current batch (a batch's
    /// repeated values are looked up by their 16-byte view, not hashed as strings).
    views: Vec<HashMap<u128, u32>>,
    /// Each entity's number, and the entities by number.
    entity_ids: HashMap<Entity, u32>,
    entities: Vec<Entity>,
    parts: Vec<Part>,
    part_of: HashMap<i64, usize>,
    /// For each entity, its slot in the sums of part `current` (or [`NO_SLOT`]).
    slots: Vec<u32>,
    current: Option<usize>,
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
            chosen_side: request.chosen_side,
            max_rows: request.max_rows,
            rows: 0,
            names: Names::new(),
            views: table.keys().iter().map(|_| HashMap::default()).collect(),
            entity_ids: HashMap::default(),
            entities: Vec::new(),
            parts: Vec::new(),
            part_of: HashMap::default(),
            slots: Vec::new(),
            current: None,
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
                // A part usually holds about as many entities as the one before it.
                let like = self.parts.last().map_or(0, |p| p.sums.len());
                self.parts.push(Part {
                    start,
                    sums: Vec::with_capacity(like),
                });
                *e.insert(self.parts.len() - 1)
            }
        };
        self.last = Some((start, end, i));
        self.switch_to(i);
        i
    }

    /// Makes `slots` describe part `i`.
    fn switch_to(&mut self, i: usize) {
        if self.current == Some(i) {
            return;
        }
        if let Some(old) = self.current.and_then(|c| self.parts.get(c)) {
            for (entity, _) in &old.sums {
                if let Some(s) = self.slots.get_mut(*entity as usize) {
                    *s = NO_SLOT;
                }
            }
        }
        if let Some(new) = self.parts.get(i) {
            for (slot, (entity, _)) in new.sums.iter().enumerate() {
                if let Some(s) = self.slots.get_mut(*entity as usize) {
                    // A part's sums are fewer than its read's entities (< 2³²).
                    *s = slot as u32;
                }
            }
        }
        self.current = Some(i);
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
        // Views identify values within one batch only.
        for cache in &mut self.views {
            cache.clear();
        }
        for i in 0..batch.num_rows() {
            let (side, source) = (columns.side(i)?, columns.source(i)?);
            for (k, (values, cache)) in keys.iter().zip(&mut self.views).enumerate() {
                ids[k] = match values.view(i) {
                    Some(view) => match cache.entry(view) {
                        Entry::Occupied(e) => *e.get(),
                        Entry::Vacant(e) => {
                            *e.insert(self.names.id(values.value(i), &mut last[k])?)
                        }
                    },
                    None => self.names.id(values.value(i), &mut last[k])?,
                };
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
                    self.slots.push(NO_SLOT);
                    *e.insert(id)
                }
            };
            let p = self.part(minute.value(i));
            let part = &mut self.parts[p];
            let slot = &mut self.slots[entity as usize];
            if *slot == NO_SLOT {
                self.rows += 1;
                if let Some(max) = self.max_rows
                    && self.rows > max
                {
                    return Err(Error::TooManyRows(max));
                }
                *slot = part.sums.len() as u32;
                part.sums.push((entity, Sums::default()));
            }
            let sums = &mut part.sums[*slot as usize].1;
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
            chosen_side,
            ..
        } = self;
        // With `chosen_side`, a client entity whose key and source also have a server
        // entity is left out (its sums dropped as they are met).
        let served: HashSet<(Source, [u32; MAX_KEYS])> = if chosen_side {
            entities
                .iter()
                .filter(|e| e.side == Side::Server)
                .map(|e| (e.source, e.keys))
                .collect()
        } else {
            HashSet::default()
        };
        let kept: Vec<bool> = entities
            .iter()
            .map(|e| e.side == Side::Server || !served.contains(&(e.source, e.keys)))
            .collect();
        drop(served);
        let mut by_entity: Vec<Vec<(i64, Sums)>> = Vec::new();
        by_entity.resize_with(entities.len(), Vec::new);
        let mut rows = 0;
        parts.sort_unstable_by_key(|p| p.start);
        for part in parts {
            for (entity, sums) in part.sums {
                if let Some(list) = by_entity.get_mut(entity as usize)
                    && kept.get(entity as usize) == Some(&true)
                {
                    list.push((part.start, sums));
                    rows += 1;
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
