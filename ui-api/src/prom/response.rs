//! The typed answers of the Prometheus API, in Prometheus' JSON shapes: the
//! `{"status":"success","data":…}` envelope, query results (`resultType` and `result`),
//! and sample values as strings (`"NaN"`, `"+Inf"`).

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};

use super::data::Labels;
use super::error::PromError;

/// A handler's result.
pub type PromResult = Result<Response, PromError>;

#[derive(Serialize)]
struct Success<T> {
    status: &'static str,
    data: T,
}

/// `{"status":"success","data":data}`.
pub fn success(data: impl Serialize) -> PromResult {
    Ok(axum::Json(Success {
        status: "success",
        data,
    })
    .into_response())
}

/// A sample value as Prometheus writes it: a string, with `NaN`, `+Inf` and `-Inf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleValue(pub f64);

impl Serialize for SampleValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            s.collect_str(&v)
        }
    }
}

/// `[unix seconds, "value"]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point(f64, SampleValue);

impl Point {
    /// The point at `ms` (milliseconds since the epoch).
    pub fn at(ms: i64, value: f64) -> Point {
        Point(ms as f64 / 1000.0, SampleValue(value))
    }
}

/// One element of an instant vector.
#[derive(Debug, Serialize)]
pub struct VectorSample {
    pub metric: Labels,
    pub value: Point,
}

/// One series of a range vector.
#[derive(Debug, Serialize)]
pub struct MatrixSeries {
    pub metric: Labels,
    pub values: Vec<Point>,
}

/// The `data` of `query` and `query_range`.
#[derive(Debug, Serialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    Scalar(Point),
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
}

/// The `data` of `status/buildinfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub branch: &'static str,
    pub build_user: &'static str,
    pub build_date: &'static str,
    pub go_version: &'static str,
}

/// One family's entry in the `data` of `metadata`.
#[derive(Debug, Serialize)]
pub struct MetricMetadata {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub help: &'static str,
    pub unit: &'static str,
}

/// The `data` of `metadata`: family name → its entries.
pub type Metadata = BTreeMap<&'static str, Vec<MetricMetadata>>;

/// The `data` of `rules`: no rule groups.
#[derive(Debug, Serialize)]
pub struct NoRules {
    pub groups: [(); 0],
}

/// The `data` of `alerts`: no alerts.
#[derive(Debug, Serialize)]
pub struct NoAlerts {
    pub alerts: [(); 0],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &impl Serialize) -> String {
        serde_json::to_string(v).expect("serialises")
    }

    #[test]
    fn answers_have_prometheus_shapes() {
        let vector = QueryData::Vector(vec![VectorSample {
            metric: [("a".to_string(), "b".to_string())].into(),
            value: Point::at(1_500, 2.5),
        }]);
        assert_eq!(
            json(&vector),
            r#"{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"2.5"]}]}"#
        );
        let scalar = QueryData::Scalar(Point::at(60_000, f64::NAN));
        assert_eq!(
            json(&scalar),
            r#"{"resultType":"scalar","result":[60.0,"NaN"]}"#
        );
        let matrix = QueryData::Matrix(vec![MatrixSeries {
            metric: Labels::new(),
            values: vec![Point::at(0, f64::INFINITY), Point::at(1, -f64::INFINITY)],
        }]);
        assert_eq!(
            json(&matrix),
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[0.0,"+Inf"],[0.001,"-Inf"]]}]}"#
        );
        assert_eq!(json(&NoRules { groups: [] }), r#"{"groups":[]}"#);
        assert_eq!(json(&SampleValue(1e21)), r#""1000000000000000000000""#);
    }
}
