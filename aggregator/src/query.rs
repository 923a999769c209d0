//! Reading rollups back: time windows, the one-call-once side rule, entity lists and
//! time series. Backend-independent: everything here goes through [`Store::scan`].
//!
//! The side rule (DESIGN § 5): a call seen by both sidecars is stored once per side. For
//! each entity, if any server-side row exists in the window the server side is used,
//! otherwise the client side. The choice is made over the whole window, never per minute,
//! so a call whose two reports straddle a minute boundary is still counted once.
//!
//! The source rule: a meshed service that is also instrumented reports each request twice,
//! through Envoy ALS (`mesh`) and as spans (`trace`). Every figure about calls *into* a
//! destination service — its service, instance and endpoint metrics and all its inbound
//! edges — comes from one source, chosen per destination over the whole window:
//! 1. the preferred source (default `mesh`, configurable per service) if it has
//!    server-side reports for the destination (the destination reports itself there);
//! 2. else the other source if it has server-side reports;
//! 3. else (only callers report it: databases, external hosts, uninstrumented unmeshed
//!    services) the preferred source if it has any report, else the other.
//!
//! A source that hears the destination itself sees every inbound call it reports (all of
//! them for a sidecar; for spans, all that were sampled and exported: sample before
//! meshscope and trace figures shrink with the rate); the side rule then applies within
//! the chosen source. Callers the chosen source cannot name stay `unknown` / `user`.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap;
use serde::Deserialize;

use proto::{Side, Source};

use crate::Result;
use crate::metrics::Metrics;
use crate::rollup::Row;
use crate::schema::{Keys, Table};
use crate::store::{ScanRequest, Store};

/// A half-open window of whole minutes, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start_minute: i64,
    pub end_minute: i64,
}

impl Window {
    /// The minutes whose start lies in `[start, end)`, for times in unix seconds.
    pub fn from_seconds(start: i64, end: i64) -> Window {
        let up = |t: i64| t.div_euclid(60) * 60 + if t.rem_euclid(60) == 0 { 0 } else { 60 };
        let start_minute = up(start);
        let end_minute = up(end).max(start_minute);
        Window {
            start_minute,
            end_minute,
        }
    }

    /// Number of minutes in the window.
    pub fn minutes(&self) -> i64 {
        (self.end_minute - self.start_minute) / 60
    }
}

/// Which source counts when the mesh and traces both report calls into a service
/// (`[dedup]` in the config file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dedup {
    /// The source preferred for every destination: `mesh` (default) or `trace`.
    pub prefer: Source,
    /// Per-service exceptions: `"checkout.shop" = "trace"`.
    pub services: BTreeMap<String, Source>,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            prefer: Source::Mesh,
            services: BTreeMap::new(),
        }
    }
}

impl Dedup {
    /// The preferred source for `service`.
    pub fn preferred(&self, service: &str) -> Source {
        self.services.get(service).copied().unwrap_or(self.prefer)
    }
}

/// What the store holds for one destination: per source, whether it has server-side
/// reports and whether it has any.
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    server: [bool; 2],
    any: [bool; 2],
}

impl Heard {
    fn choose(self, preferred: Source) -> Source {
        let other = preferred.other();
        let (p, o) = (preferred as usize, other as usize);
        if self.server[p] {
            preferred
        } else if self.server[o] {
            other
        } else if self.any[p] || !self.any[o] {
            preferred
        } else {
            other
        }
    }
}

/// The source chosen per destination service for one window (see the module docs).
#[derive(Debug, Clone)]
pub struct SourceChoice {
    chosen: HashMap<Arc<str>, Source>,
    dedup: Dedup,
}

impl SourceChoice {
    /// The source counted for calls into `service`.
    pub fn of(&self, service: &str) -> Source {
        match self.chosen.get(service) {
            Some(s) => *s,
            // The service table lacks it (every flush writes all tables at once, so only
            // a retention cut between the two reads can do this): the preferred source.
            None => self.dedup.preferred(service),
        }
    }

    /// Reads the service table once and chooses a source per destination; with `service`,
    /// only for that one.
    pub async fn load(
        store: &dyn Store,
        dedup: &Dedup,
        window: Window,
        service: Option<&str>,
    ) -> Result<SourceChoice> {
        let rows = store
            .scan(&ScanRequest {
                table: Table::Service,
                start_minute: window.start_minute,
                end_minute: window.end_minute,
                filters: service.map(|s| (0, s.to_string())).into_iter().collect(),
                by_minute: false,
            })
            .await?;
        Ok(SourceChoice::from_service_rows(&rows, dedup))
    }

    /// Chooses from rows of the service table already read (any minute split).
    fn from_service_rows(rows: &[Row], dedup: &Dedup) -> SourceChoice {
        let mut heard: HashMap<Arc<str>, Heard> = HashMap::default();
        for r in rows {
            let h = heard.entry(r.key.keys[0].clone()).or_default();
            let i = r.key.source as usize;
            h.any[i] = true;
            h.server[i] |= r.key.side == Side::Server;
        }
        let chosen = heard
            .into_iter()
            .map(|(name, h)| {
                let pick = h.choose(dedup.preferred(&name));
                (name, pick)
            })
            .collect();
        SourceChoice {
            chosen,
            dedup: dedup.clone(),
        }
    }
}

/// The key column naming the destination service of a table's rows.
fn destination_key(table: Table) -> usize {
    match table {
        Table::Service | Table::Instance | Table::Endpoint => 0,
        Table::ServiceRelation => 1,
        Table::InstanceRelation => 2,
    }
}

/// Chooses sources for a query on `table` with `filters` whose rows are `rows`: only for
/// the filtered destination when the filters name one. A service-table query already
/// holds every row the choice needs (its only key is the destination), so it reads
/// nothing more.
async fn choice_for(
    store: &dyn Store,
    dedup: &Dedup,
    table: Table,
    window: Window,
    filters: &[(usize, String)],
    rows: &[Row],
) -> Result<SourceChoice> {
    if table == Table::Service {
        return Ok(SourceChoice::from_service_rows(rows, dedup));
    }
    let dest = destination_key(table);
    let service = filters
        .iter()
        .find(|(k, _)| *k == dest)
        .map(|(_, v)| v.as_str());
    SourceChoice::load(store, dedup, window, service).await
}

/// Reads `table`, chooses sources for its destinations and keeps only the rows of the
/// chosen source. The choice is read after the data, so a destination that appears in
/// between is in the choice, not missed.
async fn scan_choosing(
    store: &dyn Store,
    dedup: &Dedup,
    table: Table,
    window: Window,
    filters: Vec<(usize, String)>,
    by_minute: bool,
) -> Result<(Vec<Row>, SourceChoice)> {
    let rows = store
        .scan(&ScanRequest {
            table,
            start_minute: window.start_minute,
            end_minute: window.end_minute,
            filters: filters.clone(),
            by_minute,
        })
        .await?;
    let choice = choice_for(store, dedup, table, window, &filters, &rows).await?;
    let dest = destination_key(table);
    let mut rows = rows;
    rows.retain(|r| r.key.source == choice.of(&r.key.keys[dest]));
    Ok((rows, choice))
}

/// One entity's merged metrics over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub keys: Keys,
    /// OR of the node flags of its rows (see [`crate::schema::FLAGS`]).
    pub flags: u8,
    /// Which sides reported it (`detect_points`).
    pub client_seen: bool,
    pub server_seen: bool,
    /// The source the figures come from (see the source rule).
    pub source: Source,
    /// Metrics from the chosen side.
    pub metrics: Metrics,
}

#[derive(Default)]
struct Sides {
    flags: u8,
    client: Option<Metrics>,
    server: Option<Metrics>,
}

fn fold_sides(rows: Vec<Row>) -> HashMap<Keys, Sides> {
    let mut by_key: HashMap<Keys, Sides> = HashMap::default();
    for row in rows {
        let e = by_key.entry(row.key.keys).or_default();
        e.flags |= row.flags;
        let slot = match row.key.side {
            Side::Client => &mut e.client,
            Side::Server => &mut e.server,
        };
        slot.get_or_insert_with(Metrics::default)
            .merge(&row.metrics);
    }
    by_key
}

/// Entities of `table` in `window` matching `filters`, one per key, source and side
/// rules applied.
pub async fn entities(
    store: &dyn Store,
    dedup: &Dedup,
    table: Table,
    window: Window,
    filters: Vec<(usize, String)>,
) -> Result<Vec<Entity>> {
    let (rows, choice) = scan_choosing(store, dedup, table, window, filters, false).await?;
    let dest = destination_key(table);
    let mut out: Vec<Entity> = fold_sides(rows)
        .into_iter()
        .map(|(keys, s)| Entity {
            source: choice.of(&keys[dest]),
            keys,
            flags: s.flags,
            client_seen: s.client.is_some(),
            server_seen: s.server.is_some(),
            metrics: s.server.or(s.client).unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| a.keys.cmp(&b.keys));
    Ok(out)
}

/// Per-minute metrics of the rows of `table` matching `filters`, summed over all matching
/// keys, with the source and side rules decided per key over the whole window. Minutes
/// without data are absent.
pub async fn series(
    store: &dyn Store,
    dedup: &Dedup,
    table: Table,
    window: Window,
    filters: Vec<(usize, String)>,
) -> Result<Vec<(i64, Metrics)>> {
    let mut by_minute: std::collections::BTreeMap<i64, Metrics> = Default::default();
    for k in key_minutes(store, dedup, table, window, filters).await? {
        for (minute, m) in k.chosen() {
            by_minute.entry(*minute).or_default().merge(m);
        }
    }
    Ok(by_minute.into_iter().collect())
}

/// One key's per-minute metrics, each side apart, from the source chosen for it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMinutes {
    /// The key column values.
    pub keys: Keys,
    /// The source the rows come from (see the source rule).
    pub source: Source,
    /// `(minute start, metrics)` of the caller's reports, in minute order.
    pub client: Vec<(i64, Metrics)>,
    /// `(minute start, metrics)` of the callee's reports, in minute order.
    pub server: Vec<(i64, Metrics)>,
}

impl KeyMinutes {
    /// The side the side rule counts: the server's when it reported in the window.
    pub fn chosen(&self) -> &[(i64, Metrics)] {
        if self.server.is_empty() {
            &self.client
        } else {
            &self.server
        }
    }
}

/// Per-key, per-side, per-minute metrics of `table` in `window` matching `filters`, with
/// the source rule applied over the whole window (the side rule is left to the caller:
/// [`KeyMinutes::chosen`]). Sorted by key.
pub async fn key_minutes(
    store: &dyn Store,
    dedup: &Dedup,
    table: Table,
    window: Window,
    filters: Vec<(usize, String)>,
) -> Result<Vec<KeyMinutes>> {
    let (rows, choice) = scan_choosing(store, dedup, table, window, filters, true).await?;
    let dest = destination_key(table);
    let mut by_key: HashMap<Keys, KeyMinutes> = HashMap::default();
    for r in rows {
        let k = by_key
            .entry(r.key.keys.clone())
            .or_insert_with(|| KeyMinutes {
                source: choice.of(&r.key.keys[dest]),
                keys: r.key.keys,
                client: Vec::new(),
                server: Vec::new(),
            });
        let side = match r.key.side {
            Side::Client => &mut k.client,
            Side::Server => &mut k.server,
        };
        side.push((r.key.minute, r.metrics));
    }
    let mut out: Vec<KeyMinutes> = by_key.into_values().collect();
    for k in &mut out {
        for side in [&mut k.client, &mut k.server] {
            side.sort_by_key(|(m, _)| *m);
            // A store may return one minute in several partial rows: merge them.
            side.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    kept.1.merge(&later.1);
                    true
                } else {
                    false
                }
            });
        }
    }
    out.sort_by(|a, b| a.keys.cmp(&b.keys));
    Ok(out)
}

/// One key's metrics summed over a part of a window (see [`key_totals`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyTotal {
    /// The key column values.
    pub keys: Keys,
    /// The counted side's metrics over the part.
    pub metrics: Metrics,
}

/// Per key, what summing [`key_minutes`]`(window)` over the minutes of `part` gives — on
/// `side`, or with `None` on the side [`KeyMinutes::chosen`] takes — read as merged scans
/// (a store with hour and day tiers answers a long `part` mostly from them). The source
/// and side rules are decided over `window`, exactly as there; keys whose counted side
/// has no row in `part` are left out. `part` lies inside `window`. Sorted by key.
pub async fn key_totals(
    store: &dyn Store,
    dedup: &Dedup,
    table: Table,
    window: Window,
    part: Window,
    filters: Vec<(usize, String)>,
    side: Option<Side>,
) -> Result<Vec<KeyTotal>> {
    let scan = |w: Window| ScanRequest {
        table,
        start_minute: w.start_minute,
        end_minute: w.end_minute,
        filters: filters.clone(),
        by_minute: false,
    };
    // The part and the rest of the window (before and after it), read at once, then the
    // choice: a destination written in between is in the choice, never counted without
    // its rules. The rules need the whole window, which is the part plus the rest.
    let rests: Vec<Window> = [
        Window {
            start_minute: window.start_minute,
            end_minute: part.start_minute.min(window.end_minute),
        },
        Window {
            start_minute: part.end_minute.max(window.start_minute),
            end_minute: window.end_minute,
        },
    ]
    .into_iter()
    .filter(|w| w.end_minute > w.start_minute)
    .collect();
    let part_request = scan(part);
    let (part_rows, rest_rows) = tokio::try_join!(store.scan(&part_request), async {
        let mut rows = Vec::new();
        for w in &rests {
            rows.extend(store.scan(&scan(*w)).await?);
        }
        Ok(rows)
    })?;
    // The window's rows, the part's first.
    let in_part = part_rows.len();
    let mut window_rows = part_rows;
    window_rows.extend(rest_rows);
    let choice = choice_for(store, dedup, table, window, &filters, &window_rows).await?;
    let dest = destination_key(table);
    let chosen_source = |r: &Row| r.key.source == choice.of(&r.key.keys[dest]);
    // The side rule over the window: the server's side wherever it reported.
    let server_reported: foldhash::HashSet<&Keys> = window_rows
        .iter()
        .filter(|r| r.key.side == Side::Server && chosen_source(r))
        .map(|r| &r.key.keys)
        .collect();
    let mut by_key: HashMap<Keys, Metrics> = HashMap::default();
    for r in window_rows[..in_part].iter().filter(|r| chosen_source(r)) {
        let counted = side.unwrap_or(if server_reported.contains(&r.key.keys) {
            Side::Server
        } else {
            Side::Client
        });
        if r.key.side == counted {
            by_key
                .entry(r.key.keys.clone())
                .or_default()
                .merge(&r.metrics);
        }
    }
    let mut out: Vec<KeyTotal> = by_key
        .into_iter()
        .map(|(keys, metrics)| KeyTotal { keys, metrics })
        .collect();
    out.sort_by(|a, b| a.keys.cmp(&b.keys));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_that_hears_the_destination_itself_wins() {
        let heard = |server: [bool; 2], any: [bool; 2]| Heard { server, any };
        use Source::{Mesh, Trace};
        // Both hear it as a server: the preference decides.
        let both = heard([true, true], [true, true]);
        assert_eq!(both.choose(Mesh), Mesh);
        assert_eq!(both.choose(Trace), Trace);
        // Only the traces hear it as a server (an instrumented service outside the mesh
        // that meshed callers reach): traces, whatever the preference.
        let traced = heard([false, true], [true, true]);
        assert_eq!(traced.choose(Mesh), Trace);
        // Only callers report it: the preferred source when it has anything.
        let callers = heard([false, false], [true, true]);
        assert_eq!(callers.choose(Mesh), Mesh);
        assert_eq!(callers.choose(Trace), Trace);
        let trace_callers = heard([false, false], [false, true]);
        assert_eq!(trace_callers.choose(Mesh), Trace);
    }

    /// `key_totals` over a part equals `key_minutes` over the window summed inside the
    /// part, with the rules decided over the whole window: edges whose server side
    /// reported only before the part count nothing in it (the server's side is chosen), a
    /// trace-only destination's edges come from traces, a client-only edge from its client.
    #[tokio::test]
    async fn key_totals_are_key_minutes_summed_over_the_part() {
        use crate::rollup::{RowBatch, RowKey};
        use crate::store::parquet::{ParquetSettings, ParquetStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("open");
        let keys = |c: &str, s: &str| -> Keys {
            let empty: Arc<str> = Arc::from("");
            let mut k: Keys = std::array::from_fn(|_| empty.clone());
            k[0] = Arc::from(c);
            if !s.is_empty() {
                k[1] = Arc::from(s);
                k[2] = Arc::from("http");
            }
            k
        };
        let row = |minute: i64, side: Side, source: Source, k: Keys, calls: u64| Row {
            key: RowKey {
                minute,
                side,
                source,
                keys: k,
            },
            flags: 0,
            metrics: Metrics {
                calls,
                ..Default::default()
            },
        };
        let (a, b, c) = (keys("a", "b"), keys("a", "c"), keys("x", "t"));
        let rows = vec![
            // a→b: the server reported only in the lookback; the client in the part.
            row(600, Side::Server, Source::Mesh, a.clone(), 5),
            row(900, Side::Client, Source::Mesh, a.clone(), 7),
            // a→c: only its client reports, before and in the part.
            row(600, Side::Client, Source::Mesh, b.clone(), 1),
            row(960, Side::Client, Source::Mesh, b.clone(), 2),
            row(1020, Side::Client, Source::Mesh, b.clone(), 3),
            // x→t: mesh sees only the client, traces see the server: traces count.
            row(960, Side::Client, Source::Mesh, c.clone(), 11),
            row(960, Side::Server, Source::Trace, c.clone(), 13),
        ];
        // The destinations' own rows, which the source rule reads.
        let service = |name: &str| keys(name, "");
        let services = vec![
            row(600, Side::Server, Source::Mesh, service("b"), 5),
            row(600, Side::Client, Source::Mesh, service("c"), 1),
            row(960, Side::Client, Source::Mesh, service("t"), 11),
            row(960, Side::Server, Source::Trace, service("t"), 13),
        ];
        store
            .write(Arc::new(RowBatch {
                tables: vec![(Table::ServiceRelation, rows), (Table::Service, services)],
            }))
            .await
            .expect("write");
        let dedup = Dedup::default();
        let window = Window {
            start_minute: 540,
            end_minute: 1080,
        };
        let part = Window {
            start_minute: 900,
            end_minute: 1080,
        };
        let minutes = key_minutes(&store, &dedup, Table::ServiceRelation, window, vec![])
            .await
            .expect("key_minutes");
        let want: Vec<(Keys, u64)> = minutes
            .iter()
            .filter_map(|k| {
                let inside: Vec<&(i64, Metrics)> = k
                    .chosen()
                    .iter()
                    .filter(|(m, _)| *m >= part.start_minute && *m < part.end_minute)
                    .collect();
                (!inside.is_empty())
                    .then(|| (k.keys.clone(), inside.iter().map(|(_, m)| m.calls).sum()))
            })
            .collect();
        let totals = |side: Option<Side>| {
            let store = &store;
            let dedup = &dedup;
            async move {
                key_totals(
                    store,
                    dedup,
                    Table::ServiceRelation,
                    window,
                    part,
                    vec![],
                    side,
                )
                .await
                .expect("key_totals")
            }
        };
        let got: Vec<(Keys, u64)> = totals(None)
            .await
            .into_iter()
            .map(|t| (t.keys, t.metrics.calls))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got, vec![(b.clone(), 5), (c.clone(), 13)]);
        // A fixed side ignores the side rule: a→b's client calls in the part.
        let clients = totals(Some(Side::Client)).await;
        assert_eq!(clients[0].keys, a);
        assert_eq!(clients[0].metrics.calls, 7);
    }

    #[test]
    fn window_rounds_to_minutes_starting_inside() {
        let w = Window::from_seconds(90, 300);
        assert_eq!((w.start_minute, w.end_minute, w.minutes()), (120, 300, 3));
        let w = Window::from_seconds(120, 301);
        assert_eq!((w.start_minute, w.end_minute, w.minutes()), (120, 360, 4));
        let w = Window::from_seconds(500, 100);
        assert_eq!(w.minutes(), 0);
    }
}
