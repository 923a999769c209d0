//! Files read again on a timer (certificates, tokens), for as long as what holds them
//! lives: the task ends at the first tick after the last strong reference is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

/// Runs `reread` on what `held` points to every `interval`, on the current runtime's
/// blocking pool (file reads must not stall its workers), until it is dropped.
pub fn every<T: Send + Sync + 'static>(
    held: &Arc<T>,
    interval: Duration,
    reread: impl Fn(&Arc<T>) + Send + Sync + 'static,
) {
    let weak: Weak<T> = Arc::downgrade(held);
    let reread = Arc::new(reread);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(held) = weak.upgrade() else {
                return;
            };
            let reread = reread.clone();
            if tokio::task::spawn_blocking(move || reread(&held))
                .await
                .is_err()
            {
                return;
            }
        }
    });
}
