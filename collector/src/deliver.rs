//! The hand-off of a decoded batch to the aggregator, counted.

use proto::CallBatch;
use proto::channel::CallSender;

use crate::metrics::CollectorMetrics;
use crate::reject::Rejection;

/// Hands a batch of calls to the aggregator and counts it: emitted, or dropped as
/// `aggregator_stopped` when the aggregator has gone (shutdown). Waits while the channel
/// is full: that is the backpressure on the sender.
pub async fn deliver(
    calls: &CallSender,
    metrics: &CollectorMetrics,
    batch: CallBatch,
) -> Result<(), Rejection> {
    let n = batch.len() as u64;
    calls.send(batch).await.map_err(|_| {
        metrics.calls_dropped(Rejection::ShuttingDown.reason(), n);
        Rejection::ShuttingDown
    })?;
    metrics.calls_emitted.inc_by(n);
    Ok(())
}
