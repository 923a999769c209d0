//! The resolutions rows are kept at — minutes, hours and days — and how a merged read over
//! a window takes each part of it from the coarsest resolution that covers that part:
//! whole UTC days from day rows, whole hours from hour rows, the ragged ends from minute
//! rows. Both backends keep the three tiers and read them by this plan.

use serde::{Deserialize, Serialize};

use crate::row::{Row, RowKey};

/// One resolution of stored rows; a row's `minute` is the start of its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u32", try_from = "u32")]
pub enum Tier {
    Minute,
    Hour,
    Day,
}

impl Tier {
    /// Finest first.
    pub const ALL: [Tier; 3] = [Tier::Minute, Tier::Hour, Tier::Day];

    /// The period's length in seconds (also the ClickHouse store's `res` column).
    pub const fn seconds(self) -> u32 {
        match self {
            Tier::Minute => 60,
            Tier::Hour => 3_600,
            Tier::Day => 86_400,
        }
    }

    /// The tier's place in [`Tier::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Tier::Minute => 0,
            Tier::Hour => 1,
            Tier::Day => 2,
        }
    }

    /// The start of the period of this tier holding `t` (unix seconds).
    pub fn floor(self, t: i64) -> i64 {
        let p = i64::from(self.seconds());
        t.div_euclid(p) * p
    }

    /// `row` moved to the start of its period of this tier (to be merged with the others
    /// of that period).
    pub fn roll(self, row: &Row) -> Row {
        Row {
            key: RowKey {
                minute: self.floor(row.key.minute),
                ..row.key.clone()
            },
            flags: row.flags,
            metrics: row.metrics.clone(),
        }
    }

    /// The first period start of this tier at or after `t`.
    pub fn ceil(self, t: i64) -> i64 {
        let down = self.floor(t);
        if down == t {
            t
        } else {
            down.saturating_add(i64::from(self.seconds()))
        }
    }
}

impl From<Tier> for u32 {
    fn from(t: Tier) -> u32 {
        t.seconds()
    }
}

impl TryFrom<u32> for Tier {
    type Error = String;

    fn try_from(seconds: u32) -> Result<Tier, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.seconds() == seconds)
            .ok_or_else(|| format!("{seconds} s is not a stored resolution (60, 3600, 86400)"))
    }
}

/// Which half-open ranges `[from, to)` of a window each tier answers. The ranges of all
/// tiers are disjoint and together are the window; every hour range is whole hours and
/// every day range whole UTC days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierPlan {
    pub minute: Vec<(i64, i64)>,
    pub hour: Vec<(i64, i64)>,
    pub day: Vec<(i64, i64)>,
}

impl TierPlan {
    /// The plan of the minute-aligned window `[start, end)`.
    pub fn of(start: i64, end: i64) -> TierPlan {
        let mut plan = TierPlan::default();
        if start >= end {
            return plan;
        }
        let (h0, h1) = (Tier::Hour.ceil(start), Tier::Hour.floor(end));
        if h0 >= h1 {
            plan.minute.push((start, end));
            return plan;
        }
        plan.minute.extend([(start, h0), (h1, end)]);
        let (d0, d1) = (Tier::Day.ceil(h0), Tier::Day.floor(h1));
        if d0 >= d1 {
            plan.hour.push((h0, h1));
        } else {
            plan.hour.extend([(h0, d0), (d1, h1)]);
            plan.day.push((d0, d1));
        }
        plan.minute.retain(|(a, b)| a < b);
        plan.hour.retain(|(a, b)| a < b);
        plan
    }

    /// Minute rows only, for `[start, end)`.
    pub fn minutes(start: i64, end: i64) -> TierPlan {
        TierPlan {
            minute: if start < end {
                vec![(start, end)]
            } else {
                Vec::new()
            },
            ..TierPlan::default()
        }
    }

    /// The plans of consecutive parts `[a, b)` (in time order) together, a tier's ranges
    /// that meet joined into one.
    pub fn of_parts(parts: impl IntoIterator<Item = (i64, i64)>) -> TierPlan {
        let mut plan = TierPlan::default();
        for (a, b) in parts {
            let part = TierPlan::of(a, b);
            for tier in Tier::ALL {
                let ranges = plan.ranges_mut(tier);
                for &(from, to) in part.ranges(tier) {
                    match ranges.last_mut() {
                        Some(last) if last.1 == from => last.1 = to,
                        _ => ranges.push((from, to)),
                    }
                }
            }
        }
        plan
    }

    fn ranges_mut(&mut self, tier: Tier) -> &mut Vec<(i64, i64)> {
        match tier {
            Tier::Minute => &mut self.minute,
            Tier::Hour => &mut self.hour,
            Tier::Day => &mut self.day,
        }
    }

    /// The ranges `tier` answers.
    pub fn ranges(&self, tier: Tier) -> &[(i64, i64)] {
        match tier {
            Tier::Minute => &self.minute,
            Tier::Hour => &self.hour,
            Tier::Day => &self.day,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn a_window_splits_into_minutes_hours_and_days() {
        let day = 20_000 * DAY;
        // Within an hour: minutes only.
        assert_eq!(
            TierPlan::of(day + 60, day + 600),
            TierPlan {
                minute: vec![(day + 60, day + 600)],
                ..TierPlan::default()
            }
        );
        // Across hours, not a whole day.
        assert_eq!(
            TierPlan::of(day + 600, day + 3 * 3600 + 1200),
            TierPlan {
                minute: vec![
                    (day + 600, day + 3600),
                    (day + 3 * 3600, day + 3 * 3600 + 1200)
                ],
                hour: vec![(day + 3600, day + 3 * 3600)],
                day: vec![],
            }
        );
        // Across days with ragged ends; an aligned start has no minute head.
        assert_eq!(
            TierPlan::of(day - 3600, day + 2 * DAY + 5400),
            TierPlan {
                minute: vec![(day + 2 * DAY + 3600, day + 2 * DAY + 5400)],
                hour: vec![(day - 3600, day), (day + 2 * DAY, day + 2 * DAY + 3600)],
                day: vec![(day, day + 2 * DAY)],
            }
        );
        // Exactly one day.
        assert_eq!(
            TierPlan::of(day, day + DAY),
            TierPlan {
                day: vec![(day, day + DAY)],
                ..TierPlan::default()
            }
        );
        assert_eq!(TierPlan::of(day, day), TierPlan::default());
    }

    proptest::proptest! {
        /// The plan's ranges tile the window: every minute of it in exactly one range,
        /// nothing outside, each range aligned to its tier.
        #[test]
        fn the_plan_tiles_the_window(a in 0i64..5_000, len in 0i64..5_000) {
            let (start, end) = (19_000 * DAY + a * 60, 19_000 * DAY + (a + len) * 60);
            let plan = TierPlan::of(start, end);
            let mut covered = 0i64;
            for tier in Tier::ALL {
                for &(from, to) in plan.ranges(tier) {
                    proptest::prop_assert!(from < to && from >= start && to <= end);
                    proptest::prop_assert_eq!(tier.floor(from), from);
                    proptest::prop_assert_eq!(tier.floor(to), to);
                    covered += to - from;
                }
            }
            proptest::prop_assert_eq!(covered, end - start);
            let mut all: Vec<(i64, i64)> = Tier::ALL.iter().flat_map(|t| plan.ranges(*t).to_vec()).collect();
            all.sort();
            for w in all.windows(2) {
                proptest::prop_assert!(w[0].1 <= w[1].0);
            }
        }
    }
}
