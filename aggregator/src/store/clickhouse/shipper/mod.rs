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
//!
//! [`sender`] is the sending task; [`metrics`] its counters.

mod metrics;
mod sender;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::chunk::Chunk;
use super::spool::{Spool, SpoolFile};
use super::target::Target;
use crate::{Error, Result};
use metrics::ShipperMetrics;

/// How long [`Shipper::close`] keeps sending before it spools what is left.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(10);

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
}
