//! Debian's `promtool` (Prometheus' own client) against the API, and its output parsed.

use std::collections::BTreeMap;

use super::Labels;

/// Runs Debian's `promtool` against the API; its stdout.
pub fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (Debian package `prometheus`; `.ci/deps` installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "promtool {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `promtool query instant` lines: `{a="b", c="d"} => 12 @[1700000000]`.
pub fn promtool_vector(text: &str) -> BTreeMap<Labels, f64> {
    text.lines()
        .filter_map(|line| line.split_once(" => "))
        .map(|(metric, rest)| {
            let labels = metric
                .trim_matches(|c| c == '{' || c == '}')
                .split(", ")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("label");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            let value = rest.split(" @[").next().expect("value").trim();
            (labels, value.parse().expect("number"))
        })
        .collect()
}
