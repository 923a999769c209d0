//! Series for PromQL selectors, built from the per-minute rollups.
//!
//! Every rollup row is one minute of one key. A minute's figures become a sample stamped
//! at the minute's *end* (its calls are complete then):
//! - counters (`…_total`, a histogram's `_bucket`/`_sum`/`_count`) are built from the
//!   per-minute increments. Their samples sit on every minute end from the end of the
//!   series' first minute with data in a UTC day to the end of that day, whatever window
//!   reads them (a query's window starts at 00:00 UTC of its first day for that); an
//!   instant selector looks back five minutes. `increase(x[r])` at `t` is exactly the
//!   calls of the minutes that ended in `(t−r, t]`. A sample's own value (what a bare
//!   selector returns) counts from 00:00 UTC of its day, a counter that resets at
//!   midnight, so it does not depend on the query either.
//! - gauges (the quantile families) have one sample per minute with data.
//!
//! Equality matchers on key labels go to the store as bound filters; every matcher is
//! then applied in memory to the full label set.
//!
//! - [`series`]: one series' samples, and how selectors see them;
//! - [`matchers`]: label matching, and a family's key labels and store filters;
//! - [`picks`]: what each series of a family reads from a minute's metrics;
//! - [`fetch`]: [`Fetcher`], which loads selectors through one reader.

mod fetch;
mod matchers;
mod picks;
mod series;

pub use fetch::Fetcher;
pub use matchers::{key_labels, matcher_sets, matches, name_matches};
pub use series::{DAY_MS, LOOKBACK_MS, Labels, MAX_SAMPLES, Series, SeriesKind, day_start};
