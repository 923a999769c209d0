//! The sending task: memory chunks and spool files in turns, each in order, with jittered
//! exponential backoff; a chunk that may have landed is looked up by its marker first.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::{Inner, lock};
use crate::Error;
use crate::store::clickhouse::chunk::Chunk;
use crate::store::clickhouse::spool::{self, SpoolFile};

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// ClickHouse error codes that say the data itself is bad (it cannot parse, the types do
/// not match, the statement is malformed): retrying cannot help.
const MALFORMED: [u32; 11] = [6, 26, 27, 38, 41, 53, 62, 69, 72, 117, 131];

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

impl Inner {
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

    pub(super) async fn run(self: Arc<Self>) {
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
