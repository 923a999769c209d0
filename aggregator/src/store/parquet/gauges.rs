//! What the embedded store holds, as gauges (`meshscope_store_files{tier}`, and the files
//! maintenance still has to add to the tiers or compact), published after every manifest
//! change: how an operator, or a benchmark, knows the store has settled.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::manifest::Manifest;
use crate::store::tiers::Tier;

/// Label set `{tier}`: `minute`, `hour` or `day`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Minute => "minute",
        Tier::Hour => "hour",
        Tier::Day => "day",
    }
}

/// The store's gauges; unregistered ones are simply not exported.
#[derive(Clone, Debug, Default)]
pub(super) struct StoreGauges {
    files: Family<TierLabel, Gauge>,
    awaiting_tiers: Gauge,
    awaiting_compaction: Gauge,
}

impl StoreGauges {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "store_files",
            "Live data files of the embedded store, by tier (minute, hour, day rows)",
            self.files.clone(),
        );
        registry.register(
            "store_files_awaiting_tiers",
            "Minute files whose rows maintenance has not added to the hour and day tiers yet (reads add them meanwhile)",
            self.awaiting_tiers.clone(),
        );
        registry.register(
            "store_files_awaiting_compaction",
            "Files in groups (table, day, tier, level) large enough for the next compaction",
            self.awaiting_compaction.clone(),
        );
    }

    /// Sets the gauges from the manifest; `min_files` is `store.compact_min_files`.
    pub fn publish(&self, m: &Manifest, min_files: usize) {
        let mut by_tier = [0i64; 3];
        let mut awaiting_tiers = 0i64;
        for f in &m.files {
            by_tier[f.res.index()] += 1;
            if !f.in_tiers {
                awaiting_tiers += 1;
            }
        }
        for t in Tier::ALL {
            self.files
                .get_or_create(&TierLabel { tier: tier_name(t) })
                .set(by_tier[t.index()]);
        }
        self.awaiting_tiers.set(awaiting_tiers);
        let awaiting: usize = m
            .compaction_groups(min_files)
            .iter()
            .map(|(_, files)| files.len())
            .sum();
        self.awaiting_compaction
            .set(i64::try_from(awaiting).unwrap_or(i64::MAX));
    }
}
