//! A Prometheus-compatible HTTP API under `/prometheus`, so Grafana's stock Prometheus
//! data source works against meshscope (`http://host:8080/prometheus`).
//!
//! The metadata endpoints (`status/buildinfo`, `metadata`, `labels`, `label/{name}/values`,
//! `series`) list the series of [`catalog`]; `query` and `query_range` evaluate PromQL
//! with [`eval`] over series built from the rollups by [`data`]. GET and form-encoded
//! POST are both accepted, with `match[]` where Prometheus takes it. Label values reach
//! the store only as bound filter values, never as query text.

pub mod catalog;
mod data;
mod eval;

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
use catalog::{FAMILIES, Family, Reports};
use data::Labels;

/// The Prometheus version meshscope's API follows (what `promql-parser` is compatible
/// with); Grafana picks its features from it.
pub const PROMETHEUS_VERSION: &str = "2.45.0";

/// Most points a range query returns per series (Prometheus' own limit).
const MAX_POINTS: i64 = 11_000;

/// Most points one range query returns in all (Prometheus bounds loaded samples at 50
/// million; a JSON answer this size is already about 250 MB).
const MAX_RESULT_POINTS: usize = 5_000_000;

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

    fn internal(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
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
            other => PromError::internal(other.to_string()),
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
        // Grafana asks for these; meshscope keeps no exemplars, rules or alerts.
        .route(
            "/api/v1/query_exemplars",
            get(no_exemplars).post(no_exemplars),
        )
        .route("/api/v1/rules", get(no_rules))
        .route("/api/v1/alerts", get(no_alerts))
        .fallback(|| async {
            PromError {
                status: StatusCode::NOT_FOUND,
                kind: "bad_data",
                message: "no such Prometheus API endpoint".into(),
            }
        })
}

async fn no_exemplars(p: PromParams) -> PromResult {
    parse_query(&p).await?;
    success(json!([]))
}

async fn no_rules() -> PromResult {
    success(json!({"groups": []}))
}

async fn no_alerts() -> PromResult {
    success(json!({"alerts": []}))
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
    if end - start > params::MAX_WINDOW_SECONDS as f64 {
        return Err(PromError::bad(format!(
            "window is longer than {} days",
            params::MAX_WINDOW_SECONDS / 86_400
        )));
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

async fn series(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let sets: Vec<Vec<Matcher>> = selectors(&p)?.iter().flat_map(data::matcher_sets).collect();
    if sets.is_empty() {
        return Err(PromError::bad("no match[] parameter provided"));
    }
    let window = metadata_window(&p)?;
    success(matching_series(&state, window, &sets).await?)
}

async fn labels(State(state): State<ApiState>, p: PromParams) -> PromResult {
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

/// Stack for parsing a query: the parser, the depth check and dropping a refused tree
/// recurse once per nesting level, and a 64 KiB query can nest thirty thousand deep.
const PARSE_STACK_BYTES: usize = 256 << 20;

fn parse_bounded(q: String) -> Result<Expr, PromError> {
    let parse = move || {
        // A parser panic (e.g. an out-of-range duration) is a bad query, not a crash.
        let expr = std::panic::catch_unwind(|| parser::parse(&q))
            .map_err(|_| PromError::bad("invalid query: the parser rejected it"))?
            .map_err(|e| PromError::bad(format!("invalid query: {e}")))?;
        if eval::depth(&expr) > eval::MAX_DEPTH {
            return Err(PromError::bad(format!(
                "query nests deeper than {} levels",
                eval::MAX_DEPTH
            )));
        }
        Ok(expr)
    };
    std::thread::Builder::new()
        .name("promql-parse".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(parse)
        .map_err(|e| PromError::internal(format!("starting the parser: {e}")))?
        .join()
        .map_err(|_| PromError::bad("invalid query: the parser rejected it"))?
}

/// Most operators (outside string literals) a query may hold: the parser's time grows
/// with the square of a flat operator chain (thirty thousand `+1` take twenty seconds).
const MAX_OPERATORS: usize = 500;

/// A cheap bound checked before parsing: bracket depth and operator count outside string
/// literals.
fn precheck(q: &str) -> Result<(), PromError> {
    let (mut depth, mut deepest, mut ops) = (0usize, 0usize, 0usize);
    let mut word = String::new();
    let mut chars = q.chars();
    let keyword = |w: &mut String, ops: &mut usize| {
        if matches!(
            w.to_ascii_lowercase().as_str(),
            "and" | "or" | "unless" | "atan2"
        ) {
            *ops += 1;
        }
        w.clear();
    };
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        keyword(&mut word, &mut ops);
        match c {
            '"' | '\'' | '`' => {
                // Skip the literal; `\` escapes in the quoted forms.
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => ops += 1,
            _ => {}
        }
    }
    keyword(&mut word, &mut ops);
    if deepest > eval::MAX_DEPTH {
        return Err(PromError::bad(format!(
            "query nests deeper than {} levels",
            eval::MAX_DEPTH
        )));
    }
    if ops > MAX_OPERATORS {
        return Err(PromError::bad(format!(
            "query has more than {MAX_OPERATORS} operators"
        )));
    }
    Ok(())
}

async fn parse_query(p: &PromParams) -> Result<Expr, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| PromError::bad("missing query parameter"))?;
    if q.len() > 64 * 1024 {
        return Err(PromError::bad("query longer than 64 KiB"));
    }
    precheck(q)?;
    let q = q.to_string();
    tokio::task::spawn_blocking(move || parse_bounded(q))
        .await
        .map_err(|e| PromError::internal(format!("parsing: {e}")))?
}

/// Runs CPU-bound evaluation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PromError> + Send + 'static,
) -> Result<T, PromError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PromError::internal(format!("evaluating: {e}")))?
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

fn to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

fn stamp(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

async fn instant_query(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let expr = parse_query(&p).await?;
    let t = to_ms(time_param(&p, "time")?.unwrap_or_else(now));
    let ev = eval::Evaluator::load(&state, expr, t, t).await?;
    let value = blocking(move || ev.eval_at(t)).await?;
    match value {
        eval::Value::Scalar(v) => {
            success(json!({"resultType": "scalar", "result": [stamp(t), sample(v)]}))
        }
        eval::Value::Vector(v) => {
            let result: Vec<Value> = v
                .into_iter()
                .map(|s| json!({"metric": s.labels, "value": [stamp(t), sample(s.value)]}))
                .collect();
            success(json!({"resultType": "vector", "result": result}))
        }
        eval::Value::Matrix(m) => {
            let result: Vec<Value> = m
                .into_iter()
                .map(|(labels, points)| {
                    let values: Vec<Value> = points
                        .into_iter()
                        .map(|(ts, v)| json!([stamp(ts), sample(v)]))
                        .collect();
                    json!({"metric": labels, "values": values})
                })
                .collect();
            success(json!({"resultType": "matrix", "result": result}))
        }
    }
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

async fn range_query(State(state): State<ApiState>, p: PromParams) -> PromResult {
    let expr = parse_query(&p).await?;
    let start = time_param(&p, "start")?.ok_or_else(|| PromError::bad("missing start"))?;
    let end = time_param(&p, "end")?.ok_or_else(|| PromError::bad("missing end"))?;
    if end < start {
        return Err(PromError::bad(
            "end timestamp must not be before start time",
        ));
    }
    let (start, end, step) = (to_ms(start), to_ms(end), to_ms(step_param(&p)?));
    if step <= 0 {
        return Err(PromError::bad("query resolution step under a millisecond"));
    }
    if (end - start) / step >= MAX_POINTS {
        return Err(PromError::bad(format!(
            "exceeded maximum resolution of {MAX_POINTS} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )));
    }
    if matches!(expr, Expr::MatrixSelector(_)) {
        return Err(PromError::bad(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ));
    }
    let ev = eval::Evaluator::load(&state, expr, start, end).await?;
    let result = blocking(move || {
        let mut series: BTreeMap<Labels, Vec<Value>> = BTreeMap::new();
        let mut points = 0usize;
        let mut t = start;
        while t <= end {
            let samples = match ev.eval_at(t)? {
                eval::Value::Scalar(v) => vec![eval::Sample {
                    labels: Labels::new(),
                    value: v,
                }],
                eval::Value::Vector(v) => v,
                eval::Value::Matrix(_) => {
                    return Err(PromError::bad(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
                    ));
                }
            };
            points += samples.len();
            if points > MAX_RESULT_POINTS {
                return Err(PromError::unsupported(format!(
                    "the result would hold more than {MAX_RESULT_POINTS} points; narrow the query, the time range or use a larger step"
                )));
            }
            for s in samples {
                series
                    .entry(s.labels)
                    .or_default()
                    .push(json!([stamp(t), sample(s.value)]));
            }
            t += step;
        }
        Ok(series
            .into_iter()
            .map(|(metric, values)| json!({"metric": metric, "values": values}))
            .collect::<Vec<Value>>())
    })
    .await?;
    success(json!({"resultType": "matrix", "result": result}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_too_deep_or_too_long_are_refused_before_parsing() {
        assert!(precheck(r#"sum by (a) (rate(x{a=~"(((((((", b!="+-*/"}[5m])) > 0"#).is_ok());
        assert!(precheck(&format!("{}1{}", "(".repeat(101), ")".repeat(101))).is_err());
        assert!(precheck(&"1+".repeat(501)).is_err());
        assert!(precheck(&"x or ".repeat(501)).is_err());
        assert!(precheck(&format!("x{{a=\"{}\"}}", "+".repeat(5000))).is_ok());
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
