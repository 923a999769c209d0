//! Label matching for selectors (`=`, `!=`, `=~`, `!~`, `or` sets), and a family's labels
//! and store filters for one key.

use aggregator::row::Keys;
use aggregator::schema::Key;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use super::series::Labels;
use crate::prom::catalog::Family;

/// The matcher sets of a selector (AND within a set, OR across sets: `{a="1" or b="2"}`),
/// the metric name included as `__name__`.
pub fn matcher_sets(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let mut base: Vec<Matcher> = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    if vs.matchers.or_matchers.is_empty() {
        return vec![base];
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|set| set.iter().cloned().chain(base.iter().cloned()).collect())
        .collect()
}

/// Whether every matcher accepts `labels` (an absent label reads as empty).
pub fn matches(all: &[Matcher], labels: &Labels) -> bool {
    all.iter()
        .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

/// Whether a matcher set's `__name__` matchers accept the series name `name`.
pub fn name_matches(set: &[Matcher], name: &str) -> bool {
    set.iter()
        .filter(|m| m.name == "__name__")
        .all(|m| m.is_match(name))
}

/// `__name__` and the family's key labels of one key.
pub fn key_labels(f: &Family, name: &str, keys: &Keys) -> Labels {
    let mut labels: Labels = f
        .labels
        .iter()
        .map(|(label, key)| ((*label).to_string(), keys.get(*key).to_string()))
        .collect();
    labels.insert("__name__".into(), name.to_string());
    labels
}

/// The equality matchers of `set` on `f`'s key labels, as store filters.
pub fn key_filters(f: &Family, set: &[Matcher]) -> Vec<(Key, String)> {
    let mut filters: Vec<(Key, String)> = set
        .iter()
        .filter(|m| m.op == MatchOp::Equal)
        .filter_map(|m| {
            f.labels
                .iter()
                .find(|(l, _)| *l == m.name)
                .map(|(_, k)| (*k, m.value.clone()))
        })
        .collect();
    filters.sort();
    filters.dedup();
    filters
}
