//! Label-set operations the evaluator shares: dropping the metric name, keeping or
//! dropping label names, and Prometheus' one-label-set-per-element rule.

use std::collections::BTreeSet;
use std::sync::Arc;

use promql_parser::label::Labels as LabelList;
use promql_parser::parser::LabelModifier;

use super::value::Sample;
use crate::prom::data::Labels;
use crate::prom::error::PromError;

/// `labels` without the metric name (the same set, shared, when it has none).
pub(super) fn without_name(labels: &Arc<Labels>) -> Arc<Labels> {
    if !labels.contains_key("__name__") {
        return labels.clone();
    }
    let mut l = Labels::clone(labels);
    l.remove("__name__");
    Arc::new(l)
}

pub(super) fn map_values(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            labels: without_name(&s.labels),
            value: f(s.value),
        })
        .collect()
}

/// Refuses a vector with two elements of one label set (Prometheus' rule, e.g. after
/// `rate()` drops the names of two metrics).
pub(super) fn unique(v: Vec<Sample>) -> Result<Vec<Sample>, PromError> {
    let mut seen = BTreeSet::new();
    for s in &v {
        if !seen.insert(&s.labels) {
            return Err(PromError::unsupported(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(v)
}

pub(super) fn keep_only(labels: &Labels, names: &LabelList) -> Labels {
    // Called per element and step: no set built per call (`by` lists are short).
    labels
        .iter()
        .filter(|(k, _)| names.labels.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels an aggregation groups `labels` by (`by`/`without`, none without a modifier),
/// borrowed and in label order: comparing two of these compares the label sets.
pub(super) fn grouping<'a>(
    labels: &'a Labels,
    m: Option<&LabelModifier>,
) -> Vec<(&'a str, &'a str)> {
    let pairs = labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    match m {
        None => Vec::new(),
        Some(LabelModifier::Include(by)) => pairs
            .filter(|(k, _)| by.labels.iter().any(|b| b == k))
            .collect(),
        Some(LabelModifier::Exclude(without)) => pairs
            .filter(|(k, _)| *k != "__name__" && !without.labels.iter().any(|w| w == k))
            .collect(),
    }
}

/// `labels` without `names` and without the metric name.
pub(super) fn drop_names(labels: &Labels, names: &[String]) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__" && !names.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
