//! What decoding may cost in memory, process-wide. A message's decoded size is estimated
//! from its wire shape ([`crate::wire`]) before prost allocates anything: its bytes plus,
//! for every repeated element, map entry and entry or span, the size of the struct it
//! becomes. The estimate is charged to one budget shared by every listener
//! (`collector.max_decoding_bytes`) and released when the message has been turned into
//! calls and dropped. A message alone over the budget, or with more entries or spans than
//! `collector.max_items_per_message`, is refused as too large. A message that finds the
//! budget spent by others waits for it on an access-log stream ([`DecodeBudget::charge_waiting`]:
//! the stream waits, Envoy buffers, nothing is lost) and is refused as busy on OTLP
//! ([`DecodeBudget::charge`]: `UNAVAILABLE` / 503, which exporters retry).
//!
//! A waiting stream holds its message's wire bytes. Those are bounded too: all waiting
//! messages together may hold as many wire bytes as the budget itself; a message that
//! would pass that is refused as busy (`UNAVAILABLE`, Envoy opens a new stream). So
//! received messages cost at most twice `collector.max_decoding_bytes`, whatever the
//! number of streams.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reject::Rejection;

/// The estimated decoded size of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes the decoded message takes (estimate; an upper bound for what we declare).
    pub bytes: usize,
    /// Entries (ALS) or spans (OTLP) it holds.
    pub items: usize,
}

impl Cost {
    /// Adds `n` structs `T` held by value.
    pub fn add<T>(&mut self, n: usize) {
        self.bytes = self
            .bytes
            .saturating_add(n.saturating_mul(std::mem::size_of::<T>()));
    }

    /// Adds a list of `n` `T`s as prost builds it, one push at a time: its capacity is
    /// the next power of two, four at least.
    pub fn list<T>(&mut self, n: usize) {
        if n > 0 {
            self.add::<T>(n.checked_next_power_of_two().unwrap_or(usize::MAX).max(4));
        }
    }

    /// Adds a hash map of `n` `(K, V)` entries: hashbrown's buckets (a power of two with
    /// an eighth spare, four at least), each an entry and a control byte.
    pub fn map<K, V>(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let buckets = match n {
            0..4 => 4,
            4..8 => 8,
            _ => (n.saturating_mul(8) / 7)
                .checked_next_power_of_two()
                .unwrap_or(usize::MAX),
        };
        let bucket = std::mem::size_of::<(K, V)>() + 1;
        self.bytes = self.bytes.saturating_add(buckets.saturating_mul(bucket));
    }
}

/// The shared decoding budget. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    /// Wire bytes (KiB) of the messages waiting for `permits`, at most `total_kib`.
    waiting: Arc<Semaphore>,
    /// The budget, in KiB (the semaphore's unit).
    total_kib: usize,
    max_items: usize,
    in_use: Gauge,
}

/// A decoded message and its share of the budget, released when dropped.
#[derive(Debug)]
pub struct Charged<T> {
    /// The decoded message.
    pub message: T,
    permit: Charge,
}

/// A share of the budget.
#[derive(Debug)]
pub struct Charge {
    _permit: OwnedSemaphorePermit,
    kib: i64,
    in_use: Gauge,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.in_use.dec_by(self.kib * 1024);
    }
}

impl<T> Charged<T> {
    /// The message and its charge apart: drop the message, then the charge, once the
    /// message's content has been taken.
    pub fn into_parts(self) -> (T, Charge) {
        (self.message, self.permit)
    }
}

impl DecodeBudget {
    /// A budget of `max_bytes` for all messages being decoded at once, and at most
    /// `max_items` entries or spans in one message; `in_use` shows the bytes charged.
    pub fn new(max_bytes: usize, max_items: usize, in_use: Gauge) -> DecodeBudget {
        let total_kib = (max_bytes / 1024).clamp(1, u32::MAX as usize);
        DecodeBudget {
            permits: Arc::new(Semaphore::new(total_kib)),
            waiting: Arc::new(Semaphore::new(total_kib)),
            total_kib,
            max_items,
            in_use,
        }
    }

    /// The charge of `cost` in KiB, or why no budget can take it.
    fn kib(&self, cost: Cost, what: &str) -> Result<u32, Rejection> {
        if cost.items > self.max_items {
            return Err(Rejection::TooLarge(format!(
                "{what} holds {} entries or spans; at most {} are accepted per message (collector.max_items_per_message)",
                cost.items, self.max_items
            )));
        }
        let kib = cost.bytes.div_ceil(1024).max(1);
        if kib > self.total_kib {
            return Err(Rejection::TooLarge(format!(
                "{what} would take {} MiB decoded, more than the decoding budget of {} MiB (collector.max_decoding_bytes)",
                kib.div_ceil(1024),
                self.total_kib / 1024
            )));
        }
        // kib ≤ total_kib ≤ u32::MAX.
        Ok(kib as u32)
    }

    fn charged(&self, permit: OwnedSemaphorePermit, kib: u32) -> Charge {
        let kib = i64::from(kib);
        self.in_use.inc_by(kib * 1024);
        Charge {
            _permit: permit,
            kib,
            in_use: self.in_use.clone(),
        }
    }

    /// Charges `cost` for `what` (e.g. "the OTLP export request") now, or refuses it:
    /// too large for any budget, or busy while others hold it.
    pub fn charge(&self, cost: Cost, what: &str) -> Result<Charge, Rejection> {
        let kib = self.kib(cost, what)?;
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| {
                Rejection::Busy(format!(
                    "the decoding budget (collector.max_decoding_bytes) is in use by other messages; retry {what} later"
                ))
            })?;
        Ok(self.charged(permit, kib))
    }

    /// Charges `cost` for `what`, a message of `wire_bytes`, waiting while others hold
    /// the budget (the sender waits with it: backpressure). Refuses what no budget can
    /// take, and, as busy, a message that would make the waiting messages hold more wire
    /// bytes than the budget.
    pub async fn charge_waiting(
        &self,
        cost: Cost,
        wire_bytes: usize,
        what: &str,
    ) -> Result<Charge, Rejection> {
        let kib = self.kib(cost, what)?;
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(kib) {
            return Ok(self.charged(permit, kib));
        }
        // Within total_kib ≤ u32::MAX by the clamp.
        let wire_kib = wire_bytes.div_ceil(1024).clamp(1, self.total_kib) as u32;
        let Ok(_waiting) = self.waiting.clone().try_acquire_many_owned(wire_kib) else {
            return Err(Rejection::Busy(format!(
                "the decoding budget (collector.max_decoding_bytes) is in use and the messages waiting for it hold as much again; retry {what} later"
            )));
        };
        // The semaphore is never closed.
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| Rejection::ShuttingDown)?;
        Ok(self.charged(permit, kib))
    }

    /// `message` with its `charge`.
    pub fn attach<T>(message: T, charge: Charge) -> Charged<T> {
        Charged {
            message,
            permit: charge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_the_budget_and_released_when_dropped() {
        let gauge = Gauge::default();
        let budget = DecodeBudget::new(1 << 20, 10, gauge.clone());
        let cost = |bytes, items| Cost { bytes, items };
        let a = budget.charge(cost(600 << 10, 5), "a").expect("fits");
        assert_eq!(gauge.get(), 600 << 10);
        let refused = budget.charge(cost(600 << 10, 5), "b").expect_err("spent");
        assert_eq!(refused.reason(), "busy");
        drop(a);
        assert_eq!(gauge.get(), 0);
        assert!(budget.charge(cost(600 << 10, 5), "b").is_ok());
        let huge = budget.charge(cost(2 << 20, 1), "c").expect_err("over");
        assert_eq!(huge.reason(), "too_large");
        let many = budget.charge(cost(10, 11), "d").expect_err("items");
        assert_eq!(many.reason(), "too_large");
    }

    #[tokio::test]
    async fn a_waiting_charge_goes_on_once_the_budget_frees() {
        let budget = DecodeBudget::new(1 << 20, 10, Gauge::default());
        let cost = Cost {
            bytes: 600 << 10,
            items: 1,
        };
        let held = budget.charge(cost, "a").expect("fits");
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge_waiting(cost, 700 << 10, "b").await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // The first waiter holds 700 KiB of wire bytes; a second would pass the 1 MiB
        // that waiting messages may hold together, and is refused at once.
        let refused = budget
            .charge_waiting(cost, 400 << 10, "c")
            .await
            .expect_err("too much waiting");
        assert_eq!(refused.reason(), "busy");
        drop(held);
        waiting
            .await
            .expect("task")
            .expect("charged after the release");
        // Nothing waits any more: the waiting room is free again.
        let c = budget.charge_waiting(cost, 400 << 10, "c").await;
        assert!(c.is_ok());
    }
}
