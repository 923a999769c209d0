//! Gets insert chunks into ClickHouse whatever its state: a bounded in-memory queue, then
//! the on-disk spool, and one background task that sends them (memory and spool files
//! taking turns, each in order) with jittered exponential backoff.
//!
//! - [`Shipper::enqueue`] takes a flush's chunks: into memory while `buffer_bytes` allows
//!   (an empty queue takes any flush), else into a spool file while `spool_bytes` allows,
//!   else it waits up to `full_wait` for the task to make room (backpressure: the aggregator stops reading calls, the call
//!   channel fills, receivers stop reading their streams) and then refuses the batch; the
//!   aggregator keeps refused rows up to its `max_pending_rows` and counts what it drops.
//!   While ClickHouse is failing (from a failed attempt to the next success) the spool
//!   comes first: an outage's backlog is on disk, and a crash during it loses only what
//!   was queued in memory before the first failure.
//! - A chunk whose send failed may still have landed (a timeout, a reset connection), and
//!   spooled chunks may have landed before a restart: before sending such a chunk again the
//!   task looks for its marker row and skips it when found. Inserts run with the chunk's
//!   token as `query_id`, so a retry cannot run while a first attempt the client gave up
//!   on still runs on the server (ClickHouse refuses it with code 216; it is retried).
//! - A chunk ClickHouse rejects as malformed can never succeed: it is dropped, counted and
//!   logged at ERROR. Every other failure is retried.
//! - [`Shipper::close`] keeps sending while ClickHouse answers (up to [`CLOSE_DRAIN`]) and
//!   spools the rest, which the next start sends.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::schema::Table;
use crate::{Error, Result};

use super::chunk::{Chunk, MINUTE};
use super::client::Client;
use super::schema::{self, Dialect};
use super::spool::{self, Spool, SpoolFile};
use super::sql::quote;

/// How long [`Shipper::close`] keeps sending before it spools what is left.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(10);

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// ClickHouse error codes that say the data itself is bad (it cannot parse, the types do
/// not match, the statement is malformed): retrying cannot help.
const MALFORMED: [u32; 11] = [6, 26, 27, 38, 41, 53, 62, 69, 72, 117, 131];

/// Bounds of the write path.
#[derive(Debug, Clone)]
pub struct ShipperSettings {
    /// Chunk bytes queued in memory at most.
    pub buffer_bytes: u64,
    /// Chunk bytes spooled on disk at most.
    pub spool_bytes: u64,
    /// How long a write waits for room when both are full before it is refused.
    pub full_wait: Duration,
}

/// What the store needs from the shipper's side of the schema.
#[derive(Debug)]
pub struct Target {
    pub client: Client,
    pub database: String,
    /// `db` backquoted.
    pub db_sql: String,
    pub retention_days: u32,
    /// Set once the schema is known to be migrated.
    pub dialect: OnceLock<Dialect>,
    /// When the schema was last re-created after a drop (at most once per
    /// [`RECREATE_EVERY`]).
    pub recreated: Mutex<Option<tokio::time::Instant>>,
}

/// The shortest time between two re-creations of a dropped schema: an error that keeps
/// saying "unknown table" (a table that cannot be created here, a remote shard) does
/// not make every retry run the migration.
const RECREATE_EVERY: Duration = Duration::from_secs(5);

impl Target {
    /// Detects the server's dialect and migrates the schema (once per process).
    pub async fn prepare(&self) -> Result<Dialect> {
        if let Some(d) = self.dialect.get() {
            return Ok(*d);
        }
        let (version, dialect) = schema::detect(&self.client).await?;
        schema::migrate(&self.client, &self.database, dialect, self.retention_days).await?;
        info!(
            database = self.database,
            version,
            dialect = dialect.as_str(),
            "ClickHouse schema ready"
        );
        Ok(*self.dialect.get_or_init(|| dialect))
    }

    /// Re-creates what an operator dropped while meshscope runs (a table or the database),
    /// after `e` said it is gone; a no-op for any other error.
    async fn recreate_if_gone(&self, e: &Error) {
        let (
            Error::ClickHouse {
                code: Some(code), ..
            },
            Some(dialect),
        ) = (e, self.dialect.get())
        else {
            return;
        };
        if !schema::SCHEMA_GONE.contains(code) {
            return;
        }
        {
            let mut last = lock(&self.recreated);
            let now = tokio::time::Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < RECREATE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        match schema::migrate(&self.client, &self.database, *dialect, self.retention_days).await {
            Ok(_) => warn!(
                database = self.database,
                error = %e,
                "a ClickHouse table or the database was dropped while meshscope runs; re-created it (empty)"
            ),
            Err(e) => warn!(error = %e, "re-creating dropped ClickHouse tables failed; will retry"),
        }
    }

    /// `db`.`table`.
    pub fn table(&self, t: Table) -> String {
        format!("{}.`{}`", self.db_sql, t.name())
    }

    fn insert_sql(&self, t: Table) -> String {
        let columns: Vec<String> = schema::columns(t, Dialect::Legacy)
            .into_iter()
            .flat_map(|(name, _)| {
                if name == schema::HISTOGRAM {
                    vec![format!("{name}.idx"), format!("{name}.cnt")]
                } else {
                    vec![name]
                }
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) FORMAT TabSeparated",
            self.table(t),
            columns.join(", ")
        )
    }

    /// Whether the chunk's marker row is in ClickHouse (its insert landed).
    async fn landed(&self, c: &Chunk) -> Result<bool> {
        let marker = super::schema::marker_column(c.table);
        let answer = self
            .client
            .execute(&format!(
                "SELECT count() FROM {} WHERE res = {MINUTE} AND minute = toDateTime({}) AND side = 'marker' AND `{marker}` = {} FORMAT TSV",
                self.table(c.table),
                c.minute,
                quote(&c.token)
            ))
            .await?;
        let text = String::from_utf8_lossy(&answer);
        let n: u64 = text.trim().parse().map_err(|_| Error::ClickHouse {
            code: None,
            message: format!("unexpected answer to a marker lookup: {:?}", text.trim()),
        })?;
        Ok(n > 0)
    }
}

#[derive(Debug, Clone)]
struct ShipperMetrics {
    inserts: Counter,
    rows: Counter,
    failures: Counter,
    duplicates_skipped: Counter,
    dropped_rows: Counter,
    spilled_batches: Counter,
    buffered_bytes: Gauge,
    spooled_bytes: Gauge,
}

impl ShipperMetrics {
    fn register(registry: &mut Registry) -> ShipperMetrics {
        let m = ShipperMetrics {
            inserts: Counter::default(),
            rows: Counter::default(),
            failures: Counter::default(),
            duplicates_skipped: Counter::default(),
            dropped_rows: Counter::default(),
            spilled_batches: Counter::default(),
            buffered_bytes: Gauge::default(),
            spooled_bytes: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("clickhouse");
        r.register(
            "inserts",
            "Insert chunks (one table, one UTC day) ClickHouse accepted",
            m.inserts.clone(),
        );
        r.register(
            "rows_inserted",
            "Minute rows ClickHouse accepted (hour and day rows not counted)",
            m.rows.clone(),
        );
        r.register(
            "insert_failures",
            "Failed insert attempts (each is retried unless the data is malformed)",
            m.failures.clone(),
        );
        r.register(
            "duplicate_inserts_skipped",
            "Retried chunks found already in ClickHouse by their marker row and not sent again",
            m.duplicates_skipped.clone(),
        );
        r.register(
            "dropped_rows",
            "Minute rows dropped because ClickHouse rejected them as malformed",
            m.dropped_rows.clone(),
        );
        r.register(
            "spilled_batches",
            "Flushes written to the disk spool (memory queue full, or ClickHouse failing)",
            m.spilled_batches.clone(),
        );
        r.register(
            "buffered_bytes",
            "Insert bytes queued in memory",
            m.buffered_bytes.clone(),
        );
        r.register(
            "spooled_bytes",
            "Insert bytes waiting in the disk spool",
            m.spooled_bytes.clone(),
        );
        m
    }
}

#[derive(Debug, Default)]
struct Queue {
    memory: VecDeque<Chunk>,
    memory_bytes: u64,
    files: VecDeque<SpoolFile>,
    file_bytes: u64,
    closed: bool,
}

#[derive(Debug)]
struct Inner {
    target: Arc<Target>,
    settings: ShipperSettings,
    queue: Mutex<Queue>,
    spool: Mutex<Spool>,
    spool_dir: PathBuf,
    /// New work or closing: wakes the task.
    work: Notify,
    /// Room freed: wakes waiting writers.
    room: Notify,
    /// Closing: send what is in memory while ClickHouse answers, then stop.
    draining: AtomicBool,
    /// Closing started: cuts a backoff pause short.
    closing: Notify,
    /// The last attempt to reach ClickHouse failed: new batches go to the spool first.
    failing: AtomicBool,
    /// A spool write failed since the last successful one or the last answer from
    /// ClickHouse: the spool is not tried first.
    spool_failed: AtomicBool,
    metrics: ShipperMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent at every await-free step; a panic elsewhere
    // does not make it unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The write path's queue and its sending task.
#[derive(Debug)]
pub struct Shipper {
    inner: Arc<Inner>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

fn bytes_of(chunks: &[Chunk]) -> u64 {
    chunks.iter().map(|c| c.body.len() as u64).sum()
}

/// Exponential backoff with ±50 % jitter.
struct Backoff {
    next: Duration,
    random: u64,
}

impl Backoff {
    fn new() -> Backoff {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        Backoff {
            next: BACKOFF_MIN,
            random: h.finish() | 1,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn step(&mut self) -> Duration {
        // xorshift64
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let jitter = 0.5 + (self.random % 1000) as f64 / 1000.0;
        let wait = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}

/// How one chunk's attempt ended.
enum Sent {
    Done,
    /// Malformed data: dropped.
    Dropped,
    Failed(Error),
}

impl Shipper {
    /// Opens the spool in `spool_dir` and starts the sending task; spooled chunks from
    /// an earlier run are sent first.
    pub fn start(
        target: Arc<Target>,
        settings: ShipperSettings,
        spool_dir: PathBuf,
        registry: &mut Registry,
    ) -> Result<Shipper> {
        let (spool, files) = Spool::open(&spool_dir)?;
        let metrics = ShipperMetrics::register(registry);
        let file_bytes = files.iter().map(|f| f.bytes).sum();
        if !files.is_empty() {
            info!(
                files = files.len(),
                bytes = file_bytes,
                dir = %spool_dir.display(),
                "ClickHouse spool from an earlier run will be sent"
            );
        }
        metrics.spooled_bytes.set(file_bytes as i64);
        let inner = Arc::new(Inner {
            target,
            settings,
            queue: Mutex::new(Queue {
                files: files.into(),
                file_bytes,
                ..Queue::default()
            }),
            spool: Mutex::new(spool),
            spool_dir,
            work: Notify::new(),
            room: Notify::new(),
            draining: AtomicBool::new(false),
            closing: Notify::new(),
            failing: AtomicBool::new(false),
            spool_failed: AtomicBool::new(false),
            metrics,
        });
        let task = tokio::spawn(inner.clone().run());
        Ok(Shipper {
            inner,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// Queues a flush's chunks (see the module docs for where they go and when this waits
    /// or refuses).
    pub async fn enqueue(&self, chunks: Vec<Chunk>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let bytes = bytes_of(&chunks);
        let deadline = tokio::time::Instant::now() + inner.settings.full_wait;
        let mut chunks = Some(chunks);
        // Cleared when the spool refused a batch it was to take first.
        let mut spool_first = true;
        loop {
            let room = inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let (to_disk, first) = {
                let mut q = lock(&inner.queue);
                if q.closed {
                    return Err(Error::Stopped);
                }
                let spool_fits = q.file_bytes + bytes <= inner.settings.spool_bytes;
                if spool_first
                    && spool_fits
                    && inner.failing.load(Ordering::SeqCst)
                    && !inner.spool_failed.load(Ordering::SeqCst)
                {
                    (true, true)
                } else if q.memory.is_empty()
                    || q.memory_bytes + bytes <= inner.settings.buffer_bytes
                {
                    // An empty queue takes any batch, so one larger than the queue still
                    // gets in (memory stays bounded by the queue plus one flush).
                    q.memory.extend(chunks.take().into_iter().flatten());
                    q.memory_bytes += bytes;
                    inner.metrics.buffered_bytes.set(q.memory_bytes as i64);
                    (false, false)
                } else {
                    (spool_fits, false)
                }
            };
            if chunks.is_none() {
                inner.work.notify_one();
                return Ok(());
            }
            if to_disk {
                let batch = chunks.take().unwrap_or_default();
                match inner.spill(batch.clone()).await {
                    Ok(()) => {
                        inner.metrics.spilled_batches.inc();
                        inner.work.notify_one();
                        return Ok(());
                    }
                    Err(e) if first => {
                        warn!(error = %e, "could not spool a batch while ClickHouse is failing; queueing it in memory");
                        inner.spool_failed.store(true, Ordering::SeqCst);
                        chunks = Some(batch);
                        spool_first = false;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                let (memory, spooled) = {
                    let q = lock(&inner.queue);
                    (q.memory_bytes, q.file_bytes)
                };
                return Err(Error::Backlog(format!(
                    "ClickHouse is not taking inserts fast enough: {memory} bytes queued in memory (limit {}), {spooled} spooled in {} (limit {})",
                    inner.settings.buffer_bytes,
                    inner.spool_dir.display(),
                    inner.settings.spool_bytes
                )));
            }
        }
    }

    /// Waits until nothing is queued or spooled (everything enqueued so far is in
    /// ClickHouse or dropped as malformed), at most `full_wait`.
    pub async fn sync(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.full_wait;
        loop {
            let room = self.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let (memory, spooled) = self.backlog();
            if memory == 0 && spooled == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Error::Backlog(format!(
                    "not in ClickHouse yet after {:?}: {memory} bytes queued in memory, {spooled} spooled",
                    self.inner.settings.full_wait
                )));
            }
        }
    }

    /// Bytes queued in memory and spooled.
    pub fn backlog(&self) -> (u64, u64) {
        let q = lock(&self.inner.queue);
        (q.memory_bytes, q.file_bytes)
    }

    /// Sends what is in memory while ClickHouse answers, for up to [`CLOSE_DRAIN`], then
    /// spools the rest. Later writes are refused.
    pub async fn close(&self) -> Result<()> {
        let Some(mut task) = self.task.lock().await.take() else {
            return Ok(());
        };
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.work.notify_one();
        self.inner.closing.notify_one();
        if tokio::time::timeout(CLOSE_DRAIN, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        let rest: Vec<Chunk> = {
            let mut q = lock(&self.inner.queue);
            q.closed = true;
            q.memory_bytes = 0;
            q.memory.drain(..).collect()
        };
        self.inner.metrics.buffered_bytes.set(0);
        if rest.is_empty() {
            return Ok(());
        }
        let rows: usize = rest.iter().map(|c| c.rows).sum();
        if let Err(e) = self.inner.spill(rest).await {
            self.inner.metrics.dropped_rows.inc_by(rows as u64);
            error!(error = %e, rows, "could not spool what ClickHouse did not take before shutdown; these rows are lost");
            return Err(e);
        }
        info!(
            rows,
            dir = %self.inner.spool_dir.display(),
            "ClickHouse did not take everything before shutdown; the rest is spooled for the next start"
        );
        Ok(())
    }
}

impl Inner {
    /// Writes chunks to a new spool file (off the async threads).
    async fn spill(self: &Arc<Self>, chunks: Vec<Chunk>) -> Result<()> {
        let this = self.clone();
        let file = tokio::task::spawn_blocking(move || lock(&this.spool).write(&chunks)).await??;
        self.spool_failed.store(false, Ordering::SeqCst);
        let mut q = lock(&self.queue);
        q.file_bytes += file.bytes;
        q.files.push_back(file);
        self.metrics.spooled_bytes.set(q.file_bytes as i64);
        Ok(())
    }

    async fn send(&self, c: &mut Chunk) -> Sent {
        let sent = self.try_send(c).await;
        if let Sent::Failed(e) = &sent {
            self.target.recreate_if_gone(e).await;
        }
        sent
    }

    async fn try_send(&self, c: &mut Chunk) -> Sent {
        if c.attempted {
            match self.target.landed(c).await {
                Ok(true) => {
                    self.metrics.duplicates_skipped.inc();
                    debug!(
                        token = c.token,
                        "chunk already in ClickHouse; not sent again"
                    );
                    return Sent::Done;
                }
                Ok(false) => {}
                Err(e) => return Sent::Failed(e),
            }
        }
        c.attempted = true;
        match self
            .target
            .client
            .insert(&self.target.insert_sql(c.table), c.body.clone(), &c.token)
            .await
        {
            Ok(()) => {
                self.metrics.inserts.inc();
                self.metrics.rows.inc_by(c.rows as u64);
                Sent::Done
            }
            Err(Error::ClickHouse {
                code: Some(code),
                message,
            }) if MALFORMED.contains(&code) => {
                self.metrics.dropped_rows.inc_by(c.rows as u64);
                error!(
                    table = c.table.name(),
                    rows = c.rows,
                    calls = c.calls,
                    code,
                    message,
                    "ClickHouse rejected an insert as malformed; its rows are dropped"
                );
                Sent::Dropped
            }
            Err(e) => Sent::Failed(e),
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sleeps for a backoff step; returns early when closing starts.
    async fn pause(&self, backoff: &mut Backoff) {
        let wait = backoff.step();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.closing.notified() => {}
        }
    }

    async fn run(self: Arc<Self>) {
        let mut backoff = Backoff::new();
        // The spool file being sent and its chunks not yet in ClickHouse.
        let mut file: Option<(SpoolFile, VecDeque<Chunk>)> = None;
        let mut files_turn = false;
        loop {
            let draining = self.draining();
            if self.target.dialect.get().is_none() {
                if draining {
                    return;
                }
                if let Err(e) = self.target.prepare().await {
                    self.failing.store(true, Ordering::SeqCst);
                    warn!(error = %e, "ClickHouse is not ready; will retry");
                    self.pause(&mut backoff).await;
                    continue;
                }
            }
            // Memory and spool take turns, so neither starves the other under steady load.
            let front = {
                let q = lock(&self.queue);
                let files_waiting = file.is_some() || !q.files.is_empty();
                if files_turn && files_waiting && !draining {
                    None
                } else {
                    q.memory.front().cloned()
                }
            };
            if let Some(mut c) = front {
                files_turn = true;
                let sent = self.send(&mut c).await;
                let failed = matches!(sent, Sent::Failed(_));
                if !failed {
                    // Before the pop: a `sync` that sees the queue empty sees the flag clear.
                    self.answered(&mut backoff);
                }
                {
                    let mut q = lock(&self.queue);
                    if failed {
                        if let Some(f) = q.memory.front_mut() {
                            f.attempted = true;
                        }
                    } else if let Some(done) = q.memory.pop_front() {
                        q.memory_bytes -= done.body.len() as u64;
                        self.metrics.buffered_bytes.set(q.memory_bytes as i64);
                    }
                }
                if let Sent::Failed(e) = sent {
                    self.failed(&e, &c, draining);
                    if draining {
                        return;
                    }
                    self.pause(&mut backoff).await;
                } else {
                    self.room.notify_waiters();
                }
                continue;
            }
            if draining {
                return;
            }
            if file.is_none() {
                let next = lock(&self.queue).files.front().cloned();
                if let Some(f) = next {
                    let path = f.path.clone();
                    match tokio::task::spawn_blocking(move || spool::read(&path)).await {
                        Ok(Ok(chunks)) => file = Some((f, chunks.into())),
                        Ok(Err(e @ Error::Io { .. })) => {
                            warn!(error = %e, "reading a spool file failed; will retry");
                            self.pause(&mut backoff).await;
                        }
                        Ok(Err(e)) => {
                            error!(error = %e, file = %f.path.display(),
                                "unreadable ClickHouse spool file; moved aside as .bad, its rows are lost");
                            if let Err(e) = spool::quarantine(&f.path) {
                                error!(error = %e, "could not move the spool file aside");
                            }
                            self.file_done(&f);
                        }
                        Err(e) => {
                            error!(error = %e, "reading a spool file failed");
                            self.pause(&mut backoff).await;
                        }
                    }
                    continue;
                }
            }
            if let Some((f, chunks)) = &mut file {
                match chunks.front_mut() {
                    Some(c) => match self.send(c).await {
                        Sent::Failed(e) => {
                            self.failed(&e, c, false);
                            self.pause(&mut backoff).await;
                        }
                        Sent::Done | Sent::Dropped => {
                            chunks.pop_front();
                            self.answered(&mut backoff);
                            files_turn = false;
                        }
                    },
                    None => {
                        if let Err(e) = spool::remove(&f.path) {
                            error!(error = %e, "could not remove a sent spool file");
                        }
                        let f = f.clone();
                        file = None;
                        self.file_done(&f);
                        debug!(file = %f.path.display(), "spool file sent");
                    }
                }
                continue;
            }
            // Nothing to do: wait for work.
            let work = self.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            let idle = {
                let q = lock(&self.queue);
                q.memory.is_empty() && q.files.is_empty()
            };
            if idle && !self.draining() {
                work.await;
            }
        }
    }

    /// ClickHouse took (or definitely refused) a chunk: it answers again.
    fn answered(&self, backoff: &mut Backoff) {
        backoff.reset();
        self.spool_failed.store(false, Ordering::SeqCst);
        if self.failing.swap(false, Ordering::SeqCst) {
            info!("ClickHouse takes inserts again; new batches queue in memory");
        }
    }

    fn failed(&self, e: &Error, c: &Chunk, draining: bool) {
        // The flag first: whoever sees the failure counted sees the flag set.
        self.failing.store(true, Ordering::SeqCst);
        self.metrics.failures.inc();
        if draining {
            warn!(error = %e, table = c.table.name(), "ClickHouse insert failed during shutdown; spooling the rest");
        } else {
            warn!(error = %e, table = c.table.name(), rows = c.rows, "ClickHouse insert failed; kept and retried");
        }
    }

    fn file_done(&self, f: &SpoolFile) {
        {
            let mut q = lock(&self.queue);
            if q.files.front().is_some_and(|x| x.path == f.path) {
                q.files.pop_front();
                q.file_bytes -= f.bytes;
            }
            self.metrics.spooled_bytes.set(q.file_bytes as i64);
        }
        self.room.notify_waiters();
    }
}
