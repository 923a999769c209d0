//! The metadata endpoints Grafana's editors and variables use: `status/buildinfo`,
//! `metadata`, `labels`, `label/{name}/values`, `series`, and the empty `query_exemplars`,
//! `rules` and `alerts`. They list the series of [`super::catalog`] present in a window,
//! matching `match[]` selectors in memory against each entity's label set.

use std::collections::{BTreeMap, BTreeSet};

use aggregator::query::{Entity, Reader, Window};
use aggregator::schema::Table;
use axum::extract::{Path, State};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use super::catalog::{self, FAMILIES, Family, Reports};
use super::data::{self, Labels};
use super::error::PromError;
use super::params::{PromParams, metadata_window};
use super::parse::{MAX_SELECTORS, parse_query, parse_selector};
use super::response::{
    BuildInfo, Metadata, MetricMetadata, NoAlerts, NoRules, PromResult, success,
};
use crate::params;
use crate::state::ApiState;

/// The Prometheus version meshscope's API follows (what `promql-parser` is compatible
/// with); Grafana picks its features from it.
pub const PROMETHEUS_VERSION: &str = "2.45.0";

/// `query_exemplars`: meshscope keeps no exemplars (the query must still parse).
pub async fn no_exemplars(p: PromParams) -> PromResult {
    parse_query(&p).await?;
    success([(); 0])
}

/// `rules`: none.
pub async fn no_rules() -> PromResult {
    success(NoRules { groups: [] })
}

/// `alerts`: none.
pub async fn no_alerts() -> PromResult {
    success(NoAlerts { alerts: [] })
}

/// `status/buildinfo`: the Prometheus version whose API meshscope follows.
pub async fn buildinfo() -> PromResult {
    success(BuildInfo {
        version: PROMETHEUS_VERSION,
        revision: concat!("meshscope-", env!("CARGO_PKG_VERSION")),
        branch: "",
        build_user: "meshscope",
        build_date: "",
        go_version: "",
    })
}

/// `metadata`: each family's type and help.
pub async fn metadata(p: PromParams) -> PromResult {
    let wanted = p.get("metric");
    let limit = match p.get("limit") {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| PromError::bad("limit must be an integer"))?,
        None => -1,
    };
    let mut out = Metadata::new();
    for f in FAMILIES {
        if wanted.is_some_and(|w| w != f.name) {
            continue;
        }
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        out.insert(
            f.name,
            vec![MetricMetadata {
                kind: f.kind.as_str(),
                help: f.help,
                unit: "",
            }],
        );
    }
    success(out)
}

/// The selectors of `match[]`; each must be a plain series selector.
fn selectors(p: &PromParams) -> Result<Vec<VectorSelector>, PromError> {
    let all = p.all("match[]");
    if all.len() > MAX_SELECTORS {
        return Err(PromError::bad(format!(
            "more than {MAX_SELECTORS} match[] selectors"
        )));
    }
    all.into_iter().map(parse_selector).collect()
}

/// Entities of each table a family reads, listed once per request.
struct Tables<'a> {
    reader: Reader<'a>,
    cache: BTreeMap<Table, Vec<Entity>>,
}

impl Tables<'_> {
    async fn entities(&mut self, table: Table) -> Result<&[Entity], PromError> {
        if !self.cache.contains_key(&table) {
            let list = self.reader.entities(table, &[]).await?;
            self.cache.insert(table, list);
        }
        Ok(self.cache.get(&table).map_or(&[], Vec::as_slice))
    }
}

fn reported(f: &Family, e: &Entity) -> bool {
    match f.reports {
        Reports::Chosen => true,
        Reports::Server => e.server_seen,
        Reports::Client => e.client_seen,
    }
}

/// The label sets of every series in the window that one of `sets` (AND within a set,
/// OR across sets) matches.
async fn matching_series(
    state: &ApiState,
    window: Window,
    sets: &[Vec<Matcher>],
) -> Result<BTreeSet<Labels>, PromError> {
    let mut tables = Tables {
        reader: state.reader(window),
        cache: BTreeMap::new(),
    };
    let mut out = BTreeSet::new();
    for f in FAMILIES {
        for name in catalog::series_names(f) {
            // Skip the scan when no set can match this name.
            let named: Vec<&Vec<Matcher>> = sets
                .iter()
                .filter(|set| data::name_matches(set, &name))
                .collect();
            if named.is_empty() {
                continue;
            }
            let extra: Vec<Option<(&str, String)>> = match catalog::extra_label(f, &name) {
                Some((label, values)) => {
                    values.into_iter().map(|(v, _)| Some((label, v))).collect()
                }
                None => vec![None],
            };
            for e in tables.entities(f.table).await? {
                if !reported(f, e) {
                    continue;
                }
                let labels = data::key_labels(f, &name, &e.keys);
                for x in &extra {
                    let mut l = labels.clone();
                    if let Some((label, value)) = x {
                        l.insert((*label).to_string(), value.clone());
                    }
                    if named.iter().any(|set| data::matches(set, &l)) {
                        out.insert(l);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `series`: the label sets `match[]` selects.
pub async fn series(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().flat_map(data::matcher_sets).collect();
    if sets.is_empty() {
        return Err(PromError::bad("no match[] parameter provided"));
    }
    let window = metadata_window(&p)?;
    success(matching_series(&state, window, &sets).await?)
}

/// `labels`: label names, of the series `match[]` selects if given.
pub async fn labels(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().flat_map(data::matcher_sets).collect();
    let mut names = BTreeSet::new();
    if sets.is_empty() {
        names.insert("__name__".to_string());
        for f in FAMILIES {
            names.extend(catalog::label_names(f).map(str::to_string));
        }
    } else {
        let window = metadata_window(&p)?;
        for s in matching_series(&state, window, &sets).await? {
            names.extend(s.into_keys());
        }
    }
    success(names)
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `label/{name}/values`: a label's values, of the series `match[]` selects if given.
pub async fn label_values(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    p: PromParams,
) -> PromResult {
    if !valid_label_name(&name) {
        return Err(PromError::bad(format!(
            "invalid label name {:?}",
            params::clip(&name)
        )));
    }
    let mut sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().flat_map(data::matcher_sets).collect();
    if sets.is_empty() {
        // Every series that has the label.
        sets.push(vec![Matcher::new(MatchOp::NotEqual, &name, "")]);
    }
    let window = metadata_window(&p)?;
    let values: BTreeSet<String> = matching_series(&state, window, &sets)
        .await?
        .into_iter()
        .filter_map(|mut s| s.remove(&name))
        .filter(|v| !v.is_empty())
        .collect();
    success(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_follow_prometheus_syntax() {
        assert!(valid_label_name("client"));
        assert!(valid_label_name("__name__"));
        assert!(!valid_label_name("1x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
    }
}
