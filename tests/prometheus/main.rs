//! The Prometheus-compatible API under `/prometheus` (metadata endpoints, PromQL, the
//! shipped dashboards' queries, promtool, and a real Prometheus given the same samples),
//! over real HTTP against a stack loaded with simulated mesh traffic; expected label
//! values are computed from the generated hops.

#[path = "../common/mod.rs"]
mod common;
mod dashboards;
mod metadata;
mod promql;
mod promtool;
mod versus;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use testkit::sim::{self, Generator, Hop, Target};

use common::enc;
use common::truth::{Expect, Expected, expected};

async fn prom_get(stack: &common::Stack, path_and_query: &str) -> (u16, Value) {
    stack.get(&format!("/prometheus{path_and_query}")).await
}

async fn prom_post(stack: &common::Stack, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    stack.post_form(&format!("/prometheus{path}"), form).await
}

fn strings(v: &Value) -> BTreeSet<String> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// One series of a query result: labels (`__name__` included when kept) and value.
type Labels = BTreeMap<String, String>;

fn number(v: &Value) -> f64 {
    match v.as_str().expect("sample value is a string") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().expect("number"),
    }
}

fn labels_of(v: &Value) -> Labels {
    v.as_object()
        .expect("metric")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
        .collect()
}

/// An instant query's vector, by label set.
async fn instant(stack: &common::Stack, q: &str, t: i64) -> BTreeMap<Labels, f64> {
    let (status, got) = prom_post(
        stack,
        "/api/v1/query",
        &[("query", q), ("time", &t.to_string())],
    )
    .await;
    assert_eq!(status, 200, "{q}: {got}");
    assert_eq!(got["data"]["resultType"], "vector", "{q}: {got}");
    let mut out = BTreeMap::new();
    for s in got["data"]["result"].as_array().expect("result") {
        assert_eq!(s["value"][0].as_f64(), Some(t as f64), "{q}");
        let prev = out.insert(labels_of(&s["metric"]), number(&s["value"][1]));
        assert!(prev.is_none(), "{q}: duplicate series");
    }
    out
}

/// A range query's matrix: per label set, `(unix seconds, value)`.
async fn range(
    stack: &common::Stack,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let (status, got) = prom_get(
        stack,
        &format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            enc(q)
        ),
    )
    .await;
    assert_eq!(status, 200, "{q}: {got}");
    seconds(matrix_of(&got))
}

/// A matrix answer (Prometheus' shape): per label set, `(unix seconds, value)`.
fn matrix_of(body: &Value) -> BTreeMap<Labels, Vec<(f64, f64)>> {
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    body["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| (p[0].as_f64().expect("time"), number(&p[1])))
                .collect();
            (labels_of(&s["metric"]), points)
        })
        .collect()
}

/// A range query's points at whole seconds (its steps are).
fn seconds(m: BTreeMap<Labels, Vec<(f64, f64)>>) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    m.into_iter()
        .map(|(l, points)| (l, points.into_iter().map(|(t, v)| (t as i64, v)).collect()))
        .collect()
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Exact equality of two result maps (values compared to 1e-12 relative; NaN equals NaN).
fn same(q: &str, got: &BTreeMap<Labels, f64>, want: &BTreeMap<Labels, f64>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{q}: series"
    );
    for (k, w) in want {
        assert!(
            (got[k].is_nan() && w.is_nan()) || common::rel(got[k], *w) < 1e-12,
            "{q} {k:?}: {} != {w}",
            got[k]
        );
    }
}

/// The selectors of `q` (with their `offset` / `@`), as PromQL text.
fn selectors_of(q: &str) -> Vec<String> {
    use promql_parser::parser::Expr;
    fn walk(e: &Expr, out: &mut Vec<String>) {
        match e {
            Expr::VectorSelector(vs) => out.push(vs.to_string()),
            Expr::MatrixSelector(ms) => out.push(ms.vs.to_string()),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(&promql_parser::parser::parse(q).expect("a query"), &mut out);
    out
}

/// An instant query's vector at `t`, checked against the same query with every selector
/// loaded minute by minute. A selector only `rate`/`increase` read is loaded in parts of
/// the window cut at the times it reads at; one whose sample values are read anywhere is
/// loaded every minute. The comparison query adds `or (<selector> < -1)` for each
/// selector (a raw read matching nothing: counters and quantiles are never negative), so
/// its selectors load every minute over the same window (raw reads start the window at
/// 00:00 UTC, as every read does), and must give the same series and values.
async fn instant_both_ways(stack: &common::Stack, q: &str, t: i64) -> BTreeMap<Labels, f64> {
    let got = instant(stack, q, t).await;
    let raw: Vec<String> = selectors_of(q)
        .iter()
        .map(|s| format!(" or ({s} < -1)"))
        .collect();
    let minutes = format!("({q}){}", raw.concat());
    same(
        &format!("{q} (in parts vs every minute)"),
        &got,
        &instant(stack, &minutes, t).await,
    );
    got
}

/// The queries Grafana's service-graph view (Tempo data source with `serviceMap`) sends to
/// the linked Prometheus data source, with `$__range` = 15m.
const SERVICE_GRAPH_QUERIES: [&str; 5] = [
    "sum by (client, server) (rate(traces_service_graph_request_total[15m]))",
    "sum by (client, server) (rate(traces_service_graph_request_failed_total[15m]))",
    "sum by (client, server) (rate(traces_service_graph_request_server_seconds_sum[15m]))",
    "histogram_quantile(0.9, sum by (client, server, le) (rate(traces_service_graph_request_server_seconds_bucket[15m])))",
    "group by (client, connection_type, server) (traces_service_graph_request_total)",
];
