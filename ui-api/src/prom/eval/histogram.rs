//! `histogram_quantile` over classic `_bucket{le}` series, as Prometheus computes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::value::Sample;
use crate::prom::data::Labels;

/// `histogram_quantile` over classic `_bucket{le}` series, as Prometheus computes it:
/// per label set without `le`, linear interpolation inside the bucket holding the rank.
pub(super) fn histogram_quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(|le| parse_le(le)) else {
            continue;
        };
        let mut labels = Labels::clone(&s.labels);
        labels.remove("__name__");
        labels.remove("le");
        groups.entry(labels).or_default().push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| Sample {
            labels: Arc::new(labels),
            value: bucket_quantile(q, buckets),
        })
        .collect()
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if !b.last().is_some_and(|(le, _)| *le == f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets of one bound summed; counts made monotonic.
    b.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
    let mut max = f64::NEG_INFINITY;
    for x in &mut b {
        max = max.max(x.1);
        x.1 = max;
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let total = b[b.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * total;
    let i = b[..b.len() - 1].partition_point(|(_, c)| *c < rank);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_interpolates_like_prometheus() {
        let b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        // Rank 20 of 40 lies halfway through (0.1, 0.5].
        assert!((bucket_quantile(0.5, b.clone()) - 0.3).abs() < 1e-12);
        // Rank 5 in the first bucket: from 0.
        assert!((bucket_quantile(0.125, b.clone()) - 0.05).abs() < 1e-12);
        // In +Inf: the last finite bound.
        assert_eq!(bucket_quantile(0.99, b.clone()), 0.5);
        assert!(bucket_quantile(0.5, vec![(0.1, 1.0)]).is_nan());
        assert!(bucket_quantile(0.5, vec![(0.1, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert_eq!(bucket_quantile(-1.0, b.clone()), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, b), f64::INFINITY);
    }
}
