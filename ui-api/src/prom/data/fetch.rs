//! [`Fetcher`]: loads the series of a query's selectors through one reader, each
//! table/filter pair read once; for selectors only `rate`/`increase` read, the window in
//! parts cut at the times they read at instead of every minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aggregator::query::{KeyMinutes, Read, Reader};
use aggregator::schema::{Key, Table};
use aggregator::store::Resolution;
use promql_parser::parser::VectorSelector;

use super::matchers::{key_filters, key_labels, matcher_sets};
use super::picks::{Pick, build, new_labels, picked_names};
use super::series::{Labels, MAX_SAMPLES, Series};
use crate::prom::catalog::{FAMILIES, Reports};
use crate::prom::error::PromError;

/// A table read with bound equality filters `(key, value)`.
type Scan = (Table, Vec<(Key, String)>);

/// A table read with its filters, as finely as it asks.
type PartsScan = (Scan, Read);

/// Loads series for selectors over one window, reading each table/filter pair once.
pub struct Fetcher<'a> {
    reader: Reader<'a>,
    cache: HashMap<PartsScan, Arc<Vec<KeyMinutes>>>,
    samples: usize,
}

impl<'a> Fetcher<'a> {
    /// A fetcher reading through `reader` (one window and source choice for the query).
    pub fn new(reader: Reader<'a>) -> Fetcher<'a> {
        Fetcher {
            reader,
            cache: HashMap::new(),
            samples: 0,
        }
    }

    async fn rows(
        &mut self,
        table: Table,
        filters: Vec<(Key, String)>,
        read: Read,
    ) -> Result<Arc<Vec<KeyMinutes>>, PromError> {
        let key = ((table, filters), read);
        if let Some(rows) = self.cache.get(&key) {
            return Ok(rows.clone());
        }
        let rows = Arc::new(self.reader.key_parts(key.0.0, &key.0.1, &key.1).await?);
        self.cache.insert(key, rows.clone());
        Ok(rows)
    }

    /// Every series one of the selector's matcher sets accepts.
    ///
    /// With `cuts` (unix seconds, minute-aligned), the caller promises to read counters
    /// only as [`Series::total_at`] and [`Series::present`] at those times (and between
    /// them): their points are then one per part of the window between two cuts, which a
    /// store with hour rows answers mostly from those. Gauges are loaded per minute.
    pub async fn select(
        &mut self,
        vs: &VectorSelector,
        cuts: Option<&[i64]>,
    ) -> Result<Vec<Series>, PromError> {
        let window = self.reader.window();
        // Counters read in parts, when the caller allows: the cuts sorted once.
        let parts = cuts
            .map(|c| Resolution::parts(window.start_minute, window.end_minute, c.iter().copied()));
        let mut out: BTreeMap<Labels, Series> = BTreeMap::new();
        for set in matcher_sets(vs) {
            for f in FAMILIES {
                let picked = picked_names(f, &set);
                if picked.is_empty() {
                    continue;
                }
                let all_picks = || picked.iter().flat_map(|(_, p)| p.iter().map(|(_, p)| *p));
                let gauge = all_picks().any(|p| matches!(p, Pick::Quantile(_)));
                let read = Read {
                    resolution: match &parts {
                        Some(parts) if !gauge => parts.clone(),
                        _ => Resolution::Minute,
                    },
                    histograms: all_picks().any(Pick::needs_histograms),
                    chosen_side: matches!(f.reports, Reports::Chosen),
                };
                let end = |start: i64| read.resolution.part_end(start, window.end_minute) * 1000;
                let rows = self
                    .rows(f.table, key_filters(f, &set), read.clone())
                    .await?;
                for km in rows.iter() {
                    let minutes = match f.reports {
                        Reports::Chosen => km.chosen(),
                        Reports::Server => &km.server,
                        Reports::Client => &km.client,
                    };
                    if minutes.is_empty() {
                        continue;
                    }
                    for (name, picks) in &picked {
                        let base = key_labels(f, name, &km.keys);
                        for (extra, pick) in picks {
                            let Some(labels) = new_labels(&base, extra, &set, &out) else {
                                continue;
                            };
                            let (kind, points) = build(*pick, minutes, end);
                            if points.is_empty() {
                                continue;
                            }
                            self.samples += points.len();
                            if self.samples > MAX_SAMPLES {
                                return Err(PromError::unsupported(format!(
                                    "the query would load more than {MAX_SAMPLES} samples; narrow its selectors or time range"
                                )));
                            }
                            out.insert(labels.clone(), Series::new(labels, kind, points));
                        }
                    }
                }
            }
        }
        Ok(out.into_values().collect())
    }
}
