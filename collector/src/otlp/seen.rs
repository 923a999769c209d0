//! Spans seen recently, by `(trace_id, span_id)` and side: an exporter that times out and
//! retries sends the same spans again, and they must count once. (The side keeps apart
//! the two halves of a Zipkin-style shared span, which carry one span id.) Bounded by a window and a size:
//! a span is remembered for `otlp.dedup_window` or until `otlp.dedup_max_spans` newer
//! spans have been seen, whichever comes first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use foldhash::HashSet;

use super::spans::PairKey;

/// A span's id and whether it is the callee's half.
pub type SeenKey = (PairKey, bool);

/// The recently seen span ids.
pub struct Seen {
    window: Duration,
    max: usize,
    ids: HashSet<SeenKey>,
    /// Arrival order = expiry order.
    order: VecDeque<(Instant, SeenKey)>,
}

impl Seen {
    /// Remembers spans for `window`, `max` at most.
    pub fn new(window: Duration, max: usize) -> Seen {
        Seen {
            window,
            max,
            ids: HashSet::default(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` arrives for the first time (within the bounds); remembers it.
    pub fn first_time(&mut self, id: SeenKey, now: Instant) -> bool {
        while let Some((at, old)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window && self.order.len() < self.max {
                break;
            }
            self.ids.remove(old);
            self.order.pop_front();
        }
        if self.max == 0 || !self.ids.insert(id) {
            return self.max == 0;
        }
        self.order.push_back((now, id));
        true
    }

    /// Span ids remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_counts_once_within_the_window_and_the_size() {
        let t0 = Instant::now();
        let id = |n: u8| (([n; 16], [n; 8]), false);
        let mut seen = Seen::new(Duration::from_secs(60), 3);
        assert!(seen.first_time(id(1), t0));
        assert!(!seen.first_time(id(1), t0 + Duration::from_secs(59)));
        // Past the window it is new again.
        assert!(seen.first_time(id(1), t0 + Duration::from_secs(61)));
        // Past the size the oldest is forgotten.
        let t1 = t0 + Duration::from_secs(62);
        assert!(seen.first_time(id(2), t1));
        assert!(seen.first_time(id(3), t1));
        assert!(seen.first_time(id(4), t1));
        assert_eq!(seen.len(), 3);
        assert!(seen.first_time(id(1), t1));
        assert!(!seen.first_time(id(4), t1));
        // The other half of a shared span id is not a retry.
        assert!(seen.first_time((id(4).0, true), t1));
    }
}
