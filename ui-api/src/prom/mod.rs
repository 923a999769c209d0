//! A Prometheus-compatible HTTP API under `/prometheus`, so Grafana's stock Prometheus
//! data source works against meshscope (`http://host:8080/prometheus`).
//!
//! This increment serves the metadata endpoints over the series of [`catalog`]
//! (`status/buildinfo`, `metadata`, `labels`, `label/{name}/values`, `series`) and
//! `query` / `query_range` for scalar expressions (`1+1`, Grafana's health check).
//! Vector expressions are parsed with `promql-parser` and answered with a clear 422 until
//! the evaluator lands; nothing returns a made-up number. GET and form-encoded POST are
//! both accepted, with `match[]` where Prometheus takes it.

pub mod catalog;

use std::collections::{BTreeMap, BTreeSet};

use aggregator::query::{self, Entity, Window};
use aggregator::schema::Table;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::params;
use catalog::{FAMILIES, Family, Kind, Reports};

/// The Prometheus version meshscope's API follows (what `promql-parser` is compatible
/// with); Grafana picks its features from it.
pub const PROMETHEUS_VERSION: &str = "2.45.0";

/// Most points a range query returns per series (Prometheus' own limit).
const MAX_POINTS: i64 = 11_000;

/// Largest form body accepted on POST.
const MAX_FORM_BYTES: usize = 1 << 20;

/// An error in Prometheus' shape: `{"status":"error","errorType":…,"error":…}`.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn unsupported(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "execution",
            message: message.into(),
        }
    }
}

impl From<crate::ApiError> for PromError {
    fn from(e: crate::ApiError) -> PromError {
        match e {
            crate::ApiError::BadRequest(m) | crate::ApiError::NotFound(m) => PromError::bad(m),
            other => PromError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "internal",
                message: other.to_string(),
            },
        }
    }
}

impl From<aggregator::Error> for PromError {
    fn from(e: aggregator::Error) -> PromError {
        PromError::from(crate::ApiError::Store(e))
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "errorType": self.kind, "error": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

type PromResult = Result<Response, PromError>;

fn success(data: impl Serialize) -> PromResult {
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

/// Request parameters from the URL and, for a form-encoded POST, the body; repeated keys
/// (`match[]`) kept.
pub struct PromParams(Vec<(String, String)>);

impl PromParams {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for PromParams {
    type Rejection = PromError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let decode = |s: &str| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(s)
                .map_err(|e| PromError::bad(format!("malformed parameters: {e}")))
        };
        let mut pairs = decode(req.uri().query().unwrap_or(""))?;
        if req.method() == Method::POST {
            let form = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            let body = Bytes::from_request(req, state)
                .await
                .map_err(|e| PromError::bad(format!("reading the body: {e}")))?;
            if body.len() > MAX_FORM_BYTES {
                return Err(PromError::bad("form body over 1 MiB"));
            }
            if form {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| PromError::bad("form body is not UTF-8"))?;
                pairs.extend(decode(text)?);
            } else if !body.is_empty() {
                return Err(PromError::bad(
                    "POST bodies must be application/x-www-form-urlencoded",
                ));
            }
        }
        Ok(PromParams(pairs))
    }
}

/// The router, to be nested under `/prometheus`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/status/buildinfo", get(buildinfo).post(buildinfo))
        .route("/api/v1/metadata", get(metadata).post(metadata))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/query", get(instant_query).post(instant_query))
        .route("/api/v1/query_range", get(range_query).post(range_query))
        .fallback(|| async {
            PromError {
                status: StatusCode::NOT_FOUND,
                kind: "bad_data",
                message: "no such Prometheus API endpoint".into(),
            }
        })
}

async fn buildinfo() -> PromResult {
    success(json!({
        "version": PROMETHEUS_VERSION,
        "revision": concat!("meshscope-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "meshscope",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn metadata(p: PromParams) -> PromResult {
    let wanted = p.get("metric");
    let limit = match p.get("limit") {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| PromError::bad("limit must be an integer"))?,
        None => -1,
    };
    let mut out = BTreeMap::new();
    for f in FAMILIES {
        if wanted.is_some_and(|w| w != f.name) {
            continue;
        }
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        out.insert(
            f.name,
            vec![json!({"type": f.kind.as_str(), "help": f.help, "unit": ""})],
        );
    }
    success(out)
}

/// A Prometheus time: unix seconds (fractions allowed) or RFC 3339.
fn time_param(p: &PromParams, key: &str) -> Result<Option<f64>, PromError> {
    let Some(v) = p.get(key) else {
        return Ok(None);
    };
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        if !(0.0..=params::MAX_TIME as f64).contains(&f) {
            return Err(PromError::bad(format!(
                "{key} must be between 1970 and the year 9999"
            )));
        }
        return Ok(Some(f));
    }
    Ok(Some(params::parse_time(key, v)? as f64))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The `start`/`end` window of the metadata endpoints (default: the last hour).
fn metadata_window(p: &PromParams) -> Result<Window, PromError> {
    let end = time_param(p, "end")?.unwrap_or_else(now);
    let start = time_param(p, "start")?.unwrap_or(end - 3600.0);
    if start > end {
        return Err(PromError::bad("start must not be after end"));
    }
    if end - start > 90.0 * 86_400.0 {
        return Err(PromError::bad("window is longer than 90 days"));
    }
    // Minutes that start inside [start, end], the end minute included.
    Ok(Window::from_seconds(
        start.floor() as i64,
        end.floor() as i64 + 1,
    ))
}

/// The selectors of `match[]`; each must be a plain series selector.
fn selectors(p: &PromParams) -> Result<Vec<VectorSelector>, PromError> {
    p.all("match[]")
        .into_iter()
        .map(|m| match parser::parse(m) {
            Ok(Expr::VectorSelector(vs)) => Ok(vs),
            Ok(_) => Err(PromError::bad(format!(
                "match[] must be a series selector, got {:?}",
                params::clip(m)
            ))),
            Err(e) => Err(PromError::bad(format!(
                "invalid match[] {:?}: {e}",
                params::clip(m)
            ))),
        })
        .collect()
}

/// Every matcher of a selector, the metric name included as `__name__`.
fn matchers_of(vs: &VectorSelector) -> Vec<Matcher> {
    let mut out: Vec<Matcher> = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        out.push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    out
}

/// One series' labels.
type Labels = BTreeMap<String, String>;

fn matches(all: &[Matcher], labels: &Labels) -> bool {
    all.iter()
        .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

/// Entities of each table a family reads, listed once per request.
struct Tables<'a> {
    state: &'a ApiState,
    window: Window,
    cache: BTreeMap<Table, Vec<Entity>>,
}

impl Tables<'_> {
    async fn entities(&mut self, table: Table) -> Result<&[Entity], PromError> {
        if !self.cache.contains_key(&table) {
            let list = query::entities(
                self.state.store.as_ref(),
                &self.state.dedup,
                table,
                self.window,
                vec![],
            )
            .await?;
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
        state,
        window,
        cache: BTreeMap::new(),
    };
    let mut out = BTreeSet::new();
    for f in FAMILIES {
        for name in catalog::series_names(f) {
            let name_only: Labels = [("__name__".to_string(), name.clone())].into();
            // Skip the scan when no set can match this name.
            let named: Vec<&Vec<Matcher>> = sets
                .iter()
                .filter(|set| {
                    set.iter()
                        .filter(|m| m.name == "__name__")
                        .all(|m| m.is_match(&name))
                })
                .collect();
            if named.is_empty() {
                continue;
            }
            let les: Vec<Option<String>> = if name.ends_with("_bucket") {
                catalog::le_values().into_iter().map(Some).collect()
            } else {
                vec![None]
            };
            for e in tables.entities(f.table).await? {
                if !reported(f, e) {
                    continue;
                }
                let mut labels = name_only.clone();
                for (label, key) in f.labels {
                    labels.insert((*label).to_string(), e.keys[*key].to_string());
                }
                for le in &les {
                    let mut l = labels.clone();
                    if let Some(le) = le {
                        l.insert("le".into(), le.clone());
                    }
                    if named.iter().any(|set| matches(set, &l)) {
                        out.insert(l);
                    }
                }
            }
        }
    }
    Ok(out)
}

async fn series(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().map(matchers_of).collect();
    if sets.is_empty() {
        return Err(PromError::bad("no match[] parameter provided"));
    }
    let window = metadata_window(&p)?;
    success(matching_series(&state, window, &sets).await?)
}

async fn labels(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().map(matchers_of).collect();
    let mut names = BTreeSet::new();
    if sets.is_empty() {
        names.insert("__name__".to_string());
        for f in FAMILIES {
            names.extend(f.labels.iter().map(|(l, _)| l.to_string()));
            if f.kind == Kind::Histogram {
                names.insert("le".into());
            }
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

async fn label_values(
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
    let mut sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().map(matchers_of).collect();
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

/// Evaluates a scalar expression; anything touching series is not supported yet.
fn scalar(e: &Expr) -> Result<f64, PromError> {
    use promql_parser::parser::token;
    match e {
        Expr::NumberLiteral(n) => Ok(n.val),
        Expr::Paren(p) => scalar(&p.expr),
        Expr::Unary(u) => Ok(-scalar(&u.expr)?),
        Expr::Binary(b) => {
            let (l, r) = (scalar(&b.lhs)?, scalar(&b.rhs)?);
            let bool_ = |v: bool| if v { 1.0 } else { 0.0 };
            let cmp = |v: bool| {
                if b.return_bool() {
                    Ok(bool_(v))
                } else {
                    Err(PromError::bad("comparisons between scalars must use BOOL"))
                }
            };
            match b.op.id() {
                token::T_ADD => Ok(l + r),
                token::T_SUB => Ok(l - r),
                token::T_MUL => Ok(l * r),
                token::T_DIV => Ok(l / r),
                token::T_MOD => Ok(l % r),
                token::T_POW => Ok(l.powf(r)),
                token::T_ATAN2 => Ok(l.atan2(r)),
                token::T_EQLC => cmp(l == r),
                token::T_NEQ => cmp(l != r),
                token::T_GTR => cmp(l > r),
                token::T_LSS => cmp(l < r),
                token::T_GTE => cmp(l >= r),
                token::T_LTE => cmp(l <= r),
                _ => Err(PromError::bad(format!("operator {} needs vectors", b.op))),
            }
        }
        Expr::StringLiteral(_) => Err(PromError::unsupported("string results are not supported")),
        _ => Err(PromError::unsupported(
            "meshscope evaluates only scalar expressions in this version; series selectors, functions and aggregations are not supported yet",
        )),
    }
}

fn parse_query(p: &PromParams) -> Result<Expr, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| PromError::bad("missing query parameter"))?;
    if q.len() > 64 * 1024 {
        return Err(PromError::bad("query longer than 64 KiB"));
    }
    parser::parse(q).map_err(|e| PromError::bad(format!("invalid query: {e}")))
}

/// A sample value as Prometheus writes it.
fn sample(v: f64) -> Value {
    let s = if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    };
    Value::String(s)
}

async fn instant_query(p: PromParams) -> PromResult {
    let expr = parse_query(&p)?;
    let t = time_param(&p, "time")?.unwrap_or_else(now);
    let v = scalar(&expr)?;
    success(json!({"resultType": "scalar", "result": [t, sample(v)]}))
}

/// A Prometheus duration or float seconds, for `step`.
fn step_param(p: &PromParams) -> Result<f64, PromError> {
    let v = p
        .get("step")
        .ok_or_else(|| PromError::bad("missing step parameter"))?;
    let secs = match v.parse::<f64>() {
        Ok(f) => f,
        Err(_) => promql_parser::util::parse_duration(v)
            .map_err(|_| PromError::bad(format!("invalid step {:?}", params::clip(v))))?
            .as_secs_f64(),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(PromError::bad(
            "zero or negative query resolution step widths are not accepted",
        ));
    }
    Ok(secs)
}

async fn range_query(p: PromParams) -> PromResult {
    let expr = parse_query(&p)?;
    let start = time_param(&p, "start")?.ok_or_else(|| PromError::bad("missing start"))?;
    let end = time_param(&p, "end")?.ok_or_else(|| PromError::bad("missing end"))?;
    if end < start {
        return Err(PromError::bad(
            "end timestamp must not be before start time",
        ));
    }
    let step = step_param(&p)?;
    if (end - start) / step > MAX_POINTS as f64 {
        return Err(PromError::bad(format!(
            "exceeded maximum resolution of {MAX_POINTS} points per timeseries"
        )));
    }
    let v = scalar(&expr)?;
    let mut values = Vec::new();
    let mut t = start;
    while t <= end {
        values.push(json!([t, sample(v)]));
        t += step;
    }
    success(json!({"resultType": "matrix", "result": [{"metric": {}, "values": values}]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(q: &str) -> Result<f64, PromError> {
        scalar(&parser::parse(q).expect("parses"))
    }

    #[test]
    fn scalar_expressions_evaluate_and_the_rest_is_refused() {
        assert_eq!(eval("1+1").ok(), Some(2.0));
        assert_eq!(eval("-(2 * 3) ^ 2").ok(), Some(-36.0));
        assert_eq!(eval("7 % 4 + 10 / 4").ok(), Some(5.5));
        assert_eq!(eval("1 < bool 2").ok(), Some(1.0));
        assert_eq!(eval("2 == bool 3").ok(), Some(0.0));
        let e = eval("sum(rate(traces_service_graph_request_total[5m]))").expect_err("vector");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            eval(r#"traces_service_graph_request_total{client="a"}"#)
                .expect_err("selector")
                .kind,
            "execution"
        );
    }

    #[test]
    fn label_names_follow_prometheus_syntax() {
        assert!(valid_label_name("client"));
        assert!(valid_label_name("__name__"));
        assert!(!valid_label_name("1x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
    }
}
