//! Label-set operations the evaluator shares: dropping the metric name, keeping or
//! dropping label names, and Prometheus' one-label-set-per-element rule.

use std::collections::BTreeSet;

use promql_parser::label::Labels as LabelList;

use super::value::Sample;
use crate::prom::data::Labels;
use crate::prom::error::PromError;

pub(super) fn without_name(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.remove("__name__");
    l
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

/// `labels` without `names` and without the metric name.
pub(super) fn drop_names(labels: &Labels, names: &[String]) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__" && !names.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
