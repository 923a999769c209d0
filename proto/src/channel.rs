//! The bounded hand-off from receivers to the aggregator, bounded twice: by batches in
//! flight and by calls in flight, so a flood of huge messages cannot queue unbounded
//! memory. A sender waits (backpressure) when either bound is reached.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::CallBatch;

/// A batch together with its share of the in-flight budget; dropping it frees the budget.
#[derive(Debug)]
pub struct Received {
    pub batch: CallBatch,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The sending half. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallSender {
    tx: mpsc::Sender<Received>,
    budget: Arc<Semaphore>,
    max_calls: u32,
}

/// The receiving half.
#[derive(Debug)]
pub struct CallReceiver {
    rx: mpsc::Receiver<Received>,
    budget: Arc<Semaphore>,
}

/// The batch could not be sent: the receiver is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A channel holding at most `max_batches` batches and `max_calls` calls.
pub fn call_channel(max_batches: usize, max_calls: u32) -> (CallSender, CallReceiver) {
    let max_calls = max_calls.max(1);
    let (tx, rx) = mpsc::channel(max_batches.max(1));
    let budget = Arc::new(Semaphore::new(max_calls as usize));
    (
        CallSender {
            tx,
            budget: budget.clone(),
            max_calls,
        },
        CallReceiver { rx, budget },
    )
}

impl CallSender {
    /// Sends a batch, waiting while the channel is full.
    pub async fn send(&self, batch: CallBatch) -> Result<(), Closed> {
        // A batch larger than the whole budget takes all of it rather than wait forever.
        let n = u32::try_from(batch.len())
            .unwrap_or(u32::MAX)
            .min(self.max_calls);
        let permit = if n == 0 {
            None
        } else {
            Some(
                self.budget
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| Closed)?,
            )
        };
        self.tx
            .send(Received {
                batch,
                _permit: permit,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl CallReceiver {
    /// The next batch; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        self.rx.recv().await
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }

    /// Refuses every later send, and every send still waiting, with [`Closed`]; what is
    /// already in the channel stays for [`CallReceiver::recv`], which answers `None` once
    /// it is taken. So after `close`, receiving until `None` takes every batch a sender
    /// was told was accepted.
    pub fn close(&mut self) {
        self.budget.close();
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closing takes what is in the channel and refuses the rest, waiting senders too.
    #[tokio::test]
    async fn closing_keeps_what_was_accepted_and_refuses_the_rest() {
        let (tx, mut rx) = call_channel(100, 3);
        let batch = |n: usize| vec![crate::tests_support::call(); n];
        tx.send(batch(3)).await.expect("fits");
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(1)).await }
        });
        tokio::task::yield_now().await;
        rx.close();
        assert_eq!(waiting.await.expect("task"), Err(Closed));
        assert_eq!(tx.send(batch(1)).await, Err(Closed));
        assert_eq!(rx.recv().await.expect("accepted").batch.len(), 3);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn senders_wait_while_the_call_budget_is_spent() {
        let (tx, mut rx) = call_channel(100, 3);
        let batch = |n: usize| vec![crate::tests_support::call(); n];
        tx.send(batch(2)).await.expect("fits");
        // One call of budget left: a batch of two must wait.
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(50), tx.send(batch(2))).await;
        assert!(blocked.is_err(), "send should wait for budget");
        // Receiving (and dropping) the first batch frees its budget.
        let first = rx.recv().await.expect("first");
        assert_eq!(first.batch.len(), 2);
        drop(first);
        tx.send(batch(2)).await.expect("fits after release");
        // Larger than the whole budget: takes all of it instead of deadlocking.
        let got = rx.recv().await.expect("second");
        drop(got);
        tx.send(batch(10)).await.expect("oversized batch");
        assert_eq!(rx.recv().await.expect("third").batch.len(), 10);
    }
}
