//! The admin endpoints' switch (`api.enable_admin_api`, `--enable-admin-api`) and the
//! coalescing of flush requests: one flush serves every request made before it started,
//! and two flushes start at least `api.admin_flush_interval` apart, so a loop of requests
//! costs at most one flush per interval (no storm of tiny files or parts, no starved
//! ingestion). The route itself is [`crate::views::admin`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::ApiConfig;
use crate::error::ApiError;

/// The admin endpoints' switch and the flush coalescing.
#[derive(Debug)]
pub struct Admin {
    enabled: bool,
    interval: Duration,
    /// Requests made so far (each takes the next number).
    requested: AtomicU64,
    /// Held by the one flush under way: the highest request number the last successful
    /// flush covered, and when it started.
    last: Mutex<(u64, Option<Instant>)>,
    /// `meshscope_admin_flush_requests_total` and `meshscope_admin_flushes_total`.
    requests: Counter,
    flushes: Counter,
}

impl Admin {
    /// The admin endpoints as `config` sets them, their counters registered in `registry`.
    pub fn new(config: &ApiConfig, registry: &mut Registry) -> Admin {
        let admin = Admin::unregistered(config.enable_admin_api, config.admin_flush_interval);
        registry.register(
            "admin_flush_requests",
            "Admin flush requests answered (api.enable_admin_api)",
            admin.requests.clone(),
        );
        registry.register(
            "admin_flushes",
            "Flushes run for admin requests; requests within api.admin_flush_interval share one",
            admin.flushes.clone(),
        );
        admin
    }

    fn unregistered(enabled: bool, interval: Duration) -> Admin {
        Admin {
            enabled,
            interval,
            requested: AtomicU64::new(0),
            last: Mutex::new((0, None)),
            requests: Counter::default(),
            flushes: Counter::default(),
        }
    }

    /// Runs `flush` for this request, or waits for one that covers it: a flush started
    /// after the request was made.
    pub(crate) async fn coalesced<F, Fut>(&self, flush: F) -> Result<(), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), ApiError>>,
    {
        self.requests.inc();
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.last.lock().await;
        if last.0 >= ticket {
            return Ok(());
        }
        if let Some(started) = last.1 {
            tokio::time::sleep_until(started + self.interval).await;
        }
        // Every request numbered up to here was made before this flush starts.
        let covers = self.requested.load(Ordering::SeqCst);
        let started = Instant::now();
        self.flushes.inc();
        // A failed flush covers nobody, but the next one still waits its interval.
        last.1 = Some(started);
        flush().await?;
        last.0 = covers;
        Ok(())
    }
}

impl Admin {
    /// Whether the admin endpoints answer.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

impl Default for Admin {
    /// Admin endpoints off.
    fn default() -> Admin {
        Admin::unregistered(false, Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// How many flushes one request runs itself.
    async fn flushes_run_by_one_request(admin: &Admin) -> usize {
        let ran = AtomicUsize::new(0);
        admin
            .coalesced(|| async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .expect("flush");
        ran.load(Ordering::SeqCst)
    }

    /// Many requests at once share flushes; flushes keep the interval apart.
    #[tokio::test(start_paused = true)]
    async fn requests_coalesce_and_flushes_keep_their_interval() {
        let admin = Arc::new(Admin::unregistered(true, Duration::from_secs(1)));
        let flushes = Arc::new(AtomicUsize::new(0));
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (admin, flushes, starts) = (admin.clone(), flushes.clone(), starts.clone());
            tasks.push(tokio::spawn(async move {
                admin
                    .coalesced(|| async move {
                        starts.lock().expect("lock").push(Instant::now() - t0);
                        flushes.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(())
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("flush");
        }
        // The first request's flush, then one more for everyone who asked during it.
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
        let starts = starts.lock().expect("lock").clone();
        assert!(
            starts[1] - starts[0] >= Duration::from_secs(1),
            "{starts:?}"
        );
        // A request after both are done gets its own flush.
        assert_eq!(flushes_run_by_one_request(&admin).await, 1);
    }

    /// A failed flush covers nobody: the next request flushes again.
    #[tokio::test]
    async fn a_failed_flush_is_not_shared() {
        let admin = Admin::unregistered(true, Duration::ZERO);
        let err = admin
            .coalesced(|| async { Err(ApiError::NoAggregator) })
            .await;
        assert!(err.is_err());
        assert_eq!(flushes_run_by_one_request(&admin).await, 1);
    }
}
