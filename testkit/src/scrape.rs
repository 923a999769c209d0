//! Reading a server's `/metrics` text (Prometheus / OpenMetrics exposition).

/// Sum of the samples of metric `name` (every label set) in Prometheus/OpenMetrics text.
/// `name` may include a label set (`name{reason="x"}`); a longer metric name that merely
/// starts with `name` does not match.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
