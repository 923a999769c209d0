//! [`Reader`]: one request's reads of one window. It holds the store, the `[dedup]` rules
//! and the window, and makes the source choice once: the window's service table is read
//! once per request, for the choice and for the service entities both (again only when a
//! later read meets a destination written after the choice).
//!
//! A [`RowMeter`] given with [`Reader::metered`] is told the rows of every scan as it
//! returns, and can stop the request there (the JSON API's row budget).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use proto::{Side, Source};
use tokio::sync::OnceCell;

use super::source::{Dedup, SourceChoice};
use super::window::Window;
use crate::metrics::Metrics;
use crate::row::{Keys, Row};
use crate::schema::{Key, Table};
use crate::store::{Resolution, ScanRequest, Store};
use crate::{Error, Result};

/// Counts the rows a request reads; an `Err` from it ends the request with that error.
pub trait RowMeter: Send + Sync {
    /// `rows` more rows were read.
    fn spend(&self, rows: usize) -> Result<()>;

    /// How many more rows may be read: a scan stops reading past it.
    fn remaining(&self) -> usize;
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

    /// The reports of `side`, or, with `None`, of the side the side rule counts.
    pub fn reports(&self, side: Option<Side>) -> &[(i64, Metrics)] {
        match side {
            None => self.chosen(),
            Some(Side::Client) => &self.client,
            Some(Side::Server) => &self.server,
        }
    }
}

/// How finely a read keeps minutes apart, and whether it needs latency histograms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Read {
    /// Which minutes each returned row sums.
    pub resolution: Resolution,
    /// Without, histograms may come back empty (and the store reads less).
    pub histograms: bool,
    /// Only the side [`KeyMinutes::chosen`] gives is read (the other may come back
    /// empty, and the store returns fewer rows).
    pub chosen_side: bool,
}

impl Read {
    /// The whole window merged.
    pub fn merged(histograms: bool) -> Read {
        Read {
            resolution: Resolution::Window,
            histograms,
            chosen_side: false,
        }
    }

    /// Every minute apart, histograms included.
    pub fn minutes() -> Read {
        Read {
            resolution: Resolution::Minute,
            histograms: true,
            chosen_side: false,
        }
    }
}

/// Reads one window for one request (a JSON view, a PromQL query): every read shares the
/// window and one source choice.
///
/// The choice is made after the first data read that needs it (a destination that
/// appears in between is in it, not missed), from one read of the window's service table,
/// which also answers the service entities. A read filtered to one destination chooses
/// from that destination's rows only, until the whole table has been read. Data written
/// between two reads of one request can meet a choice made before it: a read whose rows
/// hold a destination the choice does not know reads the service table again and chooses
/// from it.
pub struct Reader<'a> {
    store: &'a dyn Store,
    dedup: &'a Dedup,
    window: Window,
    /// The window's service rows (merged, every service) and the choice from them.
    services: OnceCell<(Vec<Row>, Arc<SourceChoice>)>,
    /// Choices for single destinations, from their own service rows.
    destinations: Mutex<HashMap<String, Arc<SourceChoice>>>,
    meter: Option<&'a dyn RowMeter>,
}

/// Per key: OR of the flags and each side's merged metrics.
#[derive(Default)]
struct Sides {
    flags: u8,
    client: Option<Metrics>,
    server: Option<Metrics>,
}

impl<'a> Reader<'a> {
    /// A reader of `window` in `store` under the `dedup` rules.
    pub fn new(store: &'a dyn Store, dedup: &'a Dedup, window: Window) -> Reader<'a> {
        Reader {
            store,
            dedup,
            window,
            services: OnceCell::new(),
            destinations: Mutex::new(HashMap::default()),
            meter: None,
        }
    }

    /// The same reader, telling `meter` the rows of every scan.
    pub fn metered(mut self, meter: &'a dyn RowMeter) -> Reader<'a> {
        self.meter = Some(meter);
        self
    }

    /// One scan of the store, metered: it may return only the rows left in the meter, and
    /// stops reading past them (with the meter's error).
    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
        let Some(meter) = self.meter else {
            return self.store.scan(request).await;
        };
        let left = meter.remaining();
        let request = ScanRequest {
            max_rows: Some(left),
            ..request.clone()
        };
        let rows = match self.store.scan(&request).await {
            Err(Error::TooManyRows(_)) => {
                // The meter names the bound and its setting.
                meter.spend(left.saturating_add(1))?;
                return Err(Error::TooManyRows(left));
            }
            rows => rows?,
        };
        meter.spend(rows.len())?;
        Ok(rows)
    }

    /// The window every read covers.
    pub fn window(&self) -> Window {
        self.window
    }

    fn request(&self, table: Table, filters: &[(Key, String)], read: &Read) -> ScanRequest {
        ScanRequest {
            table,
            start_minute: self.window.start_minute,
            end_minute: self.window.end_minute,
            filters: filters.to_vec(),
            resolution: read.resolution.clone(),
            histograms: read.histograms,
            max_rows: None,
            chosen_side: read.chosen_side,
        }
    }

    /// The window's service rows and the choice over every destination, read once.
    async fn services(&self) -> Result<&(Vec<Row>, Arc<SourceChoice>)> {
        self.services
            .get_or_try_init(|| async {
                let rows = self
                    .scan(&self.request(Table::Service, &[], &Read::merged(true)))
                    .await?;
                let choice = Arc::new(SourceChoice::from_service_rows(&rows, self.dedup));
                Ok((rows, choice))
            })
            .await
    }

    /// The choice for a read of `table` with `filters` whose rows are `rows`.
    async fn choice(
        &self,
        table: Table,
        filters: &[(Key, String)],
        rows: &[Row],
    ) -> Result<Arc<SourceChoice>> {
        if table == Table::Service {
            // The rows hold all the choice needs: the table's only key is the destination.
            return Ok(Arc::new(SourceChoice::from_service_rows(rows, self.dedup)));
        }
        if let Some((_, all)) = self.services.get() {
            let destination = table.destination();
            if rows.iter().all(|r| all.knows(r.key.keys.get(destination))) {
                return Ok(all.clone());
            }
            // A destination written after the choice was made: choose again from the
            // table as it is now, so that its calls count from the source that heard it.
            let rows = self
                .scan(&self.request(Table::Service, &[], &Read::merged(false)))
                .await?;
            return Ok(Arc::new(SourceChoice::from_service_rows(&rows, self.dedup)));
        }
        let destination = table.destination();
        let Some((_, service)) = filters.iter().find(|(k, _)| *k == destination) else {
            return Ok(self.services().await?.1.clone());
        };
        if let Some(c) = lock(&self.destinations).get(service) {
            return Ok(c.clone());
        }
        let filter = [(Key::Service, service.clone())];
        let rows = self
            .scan(&self.request(Table::Service, &filter, &Read::merged(false)))
            .await?;
        let choice = Arc::new(SourceChoice::from_service_rows(&rows, self.dedup));
        lock(&self.destinations).insert(service.clone(), choice.clone());
        Ok(choice)
    }

    /// Rows of `table` matching `filters` as `read` asks and the source choice that
    /// applies to them; the caller keeps the rows of the chosen source.
    async fn read(
        &self,
        table: Table,
        filters: &[(Key, String)],
        read: &Read,
    ) -> Result<(Cow<'_, [Row]>, Arc<SourceChoice>)> {
        if table == Table::Service && filters.is_empty() && read.resolution == Resolution::Window {
            let (rows, choice) = self.services().await?;
            return Ok((Cow::Borrowed(rows), choice.clone()));
        }
        let rows = self.scan(&self.request(table, filters, read)).await?;
        let choice = self.choice(table, filters, &rows).await?;
        Ok((Cow::Owned(rows), choice))
    }

    /// Entities of `table` matching `filters`, one per key, source and side rules applied.
    /// Sorted by key.
    pub async fn entities(&self, table: Table, filters: &[(Key, String)]) -> Result<Vec<Entity>> {
        let (rows, choice) = self.read(table, filters, &Read::merged(true)).await?;
        let destination = table.destination();
        let mut by_key: HashMap<&Keys, Sides> = HashMap::default();
        for row in rows
            .iter()
            .filter(|r| r.key.source == choice.of(r.key.keys.get(destination)))
        {
            let e = by_key.entry(&row.key.keys).or_default();
            e.flags |= row.flags;
            let slot = match row.key.side {
                Side::Client => &mut e.client,
                Side::Server => &mut e.server,
            };
            slot.get_or_insert_with(Metrics::default)
                .merge(&row.metrics);
        }
        let mut out: Vec<Entity> = by_key
            .into_iter()
            .map(|(keys, s)| Entity {
                source: choice.of(keys.get(destination)),
                keys: keys.clone(),
                flags: s.flags,
                client_seen: s.client.is_some(),
                server_seen: s.server.is_some(),
                metrics: s.server.or(s.client).unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.keys.cmp(&b.keys));
        Ok(out)
    }

    /// Per-minute metrics of the rows of `table` matching `filters`, summed over all
    /// matching keys, with the source rule decided per key over the whole window and the
    /// reports of `side` (`None`: the side rule's, also decided per key over the window).
    /// Minutes without data are absent.
    pub async fn series(
        &self,
        table: Table,
        filters: &[(Key, String)],
        side: Option<Side>,
    ) -> Result<Vec<(i64, Metrics)>> {
        let mut by_minute: BTreeMap<i64, Metrics> = BTreeMap::new();
        for k in self.key_minutes(table, filters).await? {
            for (minute, m) in k.reports(side) {
                by_minute.entry(*minute).or_default().merge(m);
            }
        }
        Ok(by_minute.into_iter().collect())
    }

    /// Per-key, per-side, per-minute metrics of `table` matching `filters`, with the source
    /// rule applied over the whole window (the side rule is left to the caller:
    /// [`KeyMinutes::chosen`]). Sorted by key.
    pub async fn key_minutes(
        &self,
        table: Table,
        filters: &[(Key, String)],
    ) -> Result<Vec<KeyMinutes>> {
        self.key_parts(table, filters, &Read::minutes()).await
    }

    /// [`Reader::key_minutes`] as `read` asks: with [`Resolution::Parts`], each entry
    /// sums a part of the window and carries the part's start (summing a key's entries
    /// over any run of whole parts gives what summing its minutes does).
    pub async fn key_parts(
        &self,
        table: Table,
        filters: &[(Key, String)],
        read: &Read,
    ) -> Result<Vec<KeyMinutes>> {
        let (rows, choice) = self.read(table, filters, read).await?;
        let destination = table.destination();
        let mut out: Vec<KeyMinutes> = Vec::new();
        let mut index: HashMap<Keys, usize> = HashMap::default();
        // A store's rows of one key usually come together (the embedded store's always
        // do): the key's source and entry are looked up when the key changes.
        let mut run: Option<(Keys, Source, Option<usize>)> = None;
        for r in rows.into_owned() {
            if run.as_ref().is_none_or(|(keys, ..)| *keys != r.key.keys) {
                let source = choice.of(r.key.keys.get(destination));
                run = Some((r.key.keys.clone(), source, None));
            }
            let Some((keys, source, at)) = run.as_mut() else {
                continue;
            };
            if r.key.source != *source {
                continue;
            }
            let i = *at.get_or_insert_with(|| {
                *index.entry(keys.clone()).or_insert_with(|| {
                    out.push(KeyMinutes {
                        source: *source,
                        keys: keys.clone(),
                        client: Vec::new(),
                        server: Vec::new(),
                    });
                    out.len() - 1
                })
            });
            let Some(k) = out.get_mut(i) else {
                continue;
            };
            let side = match r.key.side {
                Side::Client => &mut k.client,
                Side::Server => &mut k.server,
            };
            side.push((r.key.minute, r.metrics));
        }
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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a thread panicked while inserting into a cache of plain
    // values; the map is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::row::{RowBatch, RowKey};

    /// A part of a split read equals `key_minutes` over the window summed inside the
    /// part, with the rules decided over the whole window: edges whose server side
    /// reported only before the part count nothing in it (the server's side is chosen), a
    /// trace-only destination's edges come from traces, a client-only edge from its client.
    #[tokio::test]
    async fn a_part_is_its_minutes_summed_under_the_windows_rules() {
        use crate::row::{RowBatch, RowKey};
        use crate::store::parquet::{ParquetSettings, ParquetStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("open");
        let edge = |c: &str, s: &str| -> Keys {
            let pairs = [(Key::Client, c), (Key::Server, s), (Key::Protocol, "http")];
            Keys::new(
                Table::ServiceRelation,
                pairs.map(|(k, v)| (k, Arc::<str>::from(v))),
            )
            .expect("edge keys")
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
        let (a, b, c) = (edge("a", "b"), edge("a", "c"), edge("x", "t"));
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
        let service = |name: &str| {
            Keys::new(Table::Service, [(Key::Service, Arc::<str>::from(name))])
                .expect("service keys")
        };
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
        // Each read on its own reader, so each makes its own choice over the window.
        let minutes = Reader::new(&store, &dedup, window)
            .key_minutes(Table::ServiceRelation, &[])
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
        // The window in two parts, cut where `part` starts: per key, the second part's
        // figures on the counted side.
        let split = |side: Option<Side>| {
            let store = &store;
            let dedup = &dedup;
            async move {
                // The side rule's side is read as PromQL reads it (the store may leave
                // out the other); a fixed side reads both.
                let read = Read {
                    resolution: Resolution::parts(540, 1080, [part.start_minute]),
                    histograms: false,
                    chosen_side: side.is_none(),
                };
                Reader::new(store, dedup, window)
                    .key_parts(Table::ServiceRelation, &[], &read)
                    .await
                    .expect("key_parts")
                    .iter()
                    .filter_map(|k| {
                        let counted = match side {
                            None => k.chosen(),
                            Some(Side::Client) => &k.client,
                            Some(Side::Server) => &k.server,
                        };
                        counted
                            .iter()
                            .find(|(m, _)| *m == part.start_minute)
                            .map(|(_, m)| (k.keys.clone(), m.calls))
                    })
                    .collect::<Vec<(Keys, u64)>>()
            }
        };
        let got = split(None).await;
        assert_eq!(got, want);
        assert_eq!(got, vec![(b.clone(), 5), (c.clone(), 13)]);
        // A fixed side ignores the side rule: a→b's client calls in the part.
        let clients = split(Some(Side::Client)).await;
        assert_eq!(clients[0], (a, 7));
    }

    /// A server-side row of minute 600 with `calls` calls.
    fn server_row(table: Table, keys: Vec<(Key, Arc<str>)>, source: Source, calls: u64) -> Row {
        Row {
            key: RowKey {
                minute: 600,
                side: Side::Server,
                source,
                keys: Keys::new(table, keys).expect("keys"),
            },
            flags: 0,
            metrics: Metrics {
                calls,
                ..Default::default()
            },
        }
    }

    /// Counts the scans of each table a real store answers.
    struct Counting<S> {
        inner: S,
        scans: [AtomicUsize; 5],
    }

    #[async_trait]
    impl<S: Store> Store for Counting<S> {
        async fn write(&self, batch: Arc<RowBatch>) -> Result<()> {
            self.inner.write(batch).await
        }
        async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
            self.scans[request.table as usize].fetch_add(1, Ordering::SeqCst);
            self.inner.scan(request).await
        }
        async fn maintain(&self) -> Result<()> {
            self.inner.maintain().await
        }
    }

    /// What a topology request reads: the edges and the nodes (service entities), with the
    /// source choice for both from one read of the service table.
    #[tokio::test]
    async fn one_reader_reads_the_service_table_once() {
        use crate::store::parquet::{ParquetSettings, ParquetStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let parquet = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("open");
        let name = |s: &str| Arc::<str>::from(s);
        let row = server_row;
        let edge = |source, calls| {
            let keys = vec![
                (Key::Client, name("a")),
                (Key::Server, name("b")),
                (Key::Protocol, name("http")),
            ];
            row(Table::ServiceRelation, keys, source, calls)
        };
        let service = |source, calls| {
            row(
                Table::Service,
                vec![(Key::Service, name("b"))],
                source,
                calls,
            )
        };
        parquet
            .write(Arc::new(RowBatch {
                tables: vec![
                    (
                        Table::ServiceRelation,
                        vec![edge(Source::Mesh, 3), edge(Source::Trace, 4)],
                    ),
                    (
                        Table::Service,
                        vec![service(Source::Mesh, 3), service(Source::Trace, 4)],
                    ),
                ],
            }))
            .await
            .expect("write");
        let store = Counting {
            inner: parquet,
            scans: Default::default(),
        };
        let dedup = Dedup::default();
        let reader = Reader::new(&store, &dedup, Window::from_seconds(0, 1200));
        let edges = reader
            .entities(Table::ServiceRelation, &[])
            .await
            .expect("edges");
        let nodes = reader.entities(Table::Service, &[]).await.expect("nodes");
        // Both sources hear b as a server: the preferred mesh counts, once.
        assert_eq!(edges.len(), 1);
        assert_eq!((edges[0].source, edges[0].metrics.calls), (Source::Mesh, 3));
        assert_eq!((nodes[0].source, nodes[0].metrics.calls), (Source::Mesh, 3));
        let scans = |t: Table| store.scans[t as usize].load(Ordering::SeqCst);
        assert_eq!(scans(Table::Service), 1);
        assert_eq!(scans(Table::ServiceRelation), 1);
        // A read filtered to one destination after that reuses the choice.
        let filtered = reader
            .entities(Table::ServiceRelation, &[(Key::Server, "b".into())])
            .await
            .expect("filtered");
        assert_eq!(filtered, edges);
        assert_eq!(scans(Table::Service), 1);
    }

    /// A destination written between two reads of one request, heard only by traces, is
    /// counted from traces: the later read chooses again instead of applying the preferred
    /// mesh to a destination the first choice never saw.
    #[tokio::test]
    async fn a_destination_written_after_the_choice_is_chosen_again() {
        use crate::store::parquet::{ParquetSettings, ParquetStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let parquet = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("open");
        let name = |s: &str| Arc::<str>::from(s);
        let row = |table, keys, source| server_row(table, keys, source, 9);
        let batch = |server: &str, source: Source| {
            let edge = vec![
                (Key::Client, name("a")),
                (Key::Server, name(server)),
                (Key::Protocol, name("http")),
            ];
            Arc::new(RowBatch {
                tables: vec![
                    (
                        Table::ServiceRelation,
                        vec![row(Table::ServiceRelation, edge, source)],
                    ),
                    (
                        Table::Service,
                        vec![row(
                            Table::Service,
                            vec![(Key::Service, name(server))],
                            source,
                        )],
                    ),
                ],
            })
        };
        parquet
            .write(batch("b", Source::Mesh))
            .await
            .expect("write b");
        let store = Counting {
            inner: parquet,
            scans: Default::default(),
        };
        let dedup = Dedup::default();
        let reader = Reader::new(&store, &dedup, Window::from_seconds(0, 1200));
        let nodes = reader.entities(Table::Service, &[]).await.expect("nodes");
        assert_eq!(nodes.len(), 1);
        store
            .inner
            .write(batch("t", Source::Trace))
            .await
            .expect("write t");
        let edges = reader
            .entities(Table::ServiceRelation, &[])
            .await
            .expect("edges");
        let got: Vec<(&str, Source, u64)> = edges
            .iter()
            .map(|e| (e.keys.get(Key::Server), e.source, e.metrics.calls))
            .collect();
        assert_eq!(got, vec![("b", Source::Mesh, 9), ("t", Source::Trace, 9)]);
        assert_eq!(
            store.scans[Table::Service as usize].load(Ordering::SeqCst),
            2
        );
    }
}
