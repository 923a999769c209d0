//! Function calls: `rate`, `increase`, the `*_over_time` family, `histogram_quantile`,
//! `vector`, `scalar`, `time` and the math functions. Anything else is a 422.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::Evaluator;
use super::histogram::histogram_quantile;
use super::labels::{map_values, unique, without_name};
use super::selectors::millis;
use super::value::{Sample, Value};
use crate::prom::data::{Labels, SeriesKind};
use crate::prom::error::PromError;

impl Evaluator {
    pub(super) fn call(&self, c: &Call, t: i64) -> Result<Value, PromError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let arg = |i: usize| {
            args.get(i)
                .copied()
                .ok_or_else(|| PromError::bad(format!("{name}() is missing an argument")))
        };
        let math = |f: fn(f64) -> f64| -> Result<Value, PromError> {
            Ok(Value::Vector(unique(map_values(
                self.vector_arg(arg(0)?, t)?,
                f,
            ))?))
        };
        match name {
            "rate" | "increase" => {
                let Expr::MatrixSelector(ms) = arg(0)? else {
                    return Err(PromError::unsupported(format!(
                        "{name}() is supported over a range selector only"
                    )));
                };
                let at = self.at(&ms.vs, t);
                let range = millis(&ms.range);
                let from = at.saturating_sub(range);
                let mut out = Vec::new();
                // Each series is read at the two ends of the range.
                self.spend(2 * self.series(&ms.vs).len())?;
                for s in self.series(&ms.vs) {
                    if s.kind != SeriesKind::Counter {
                        return Err(PromError::unsupported(format!(
                            "{name}() needs a counter; {} is a gauge",
                            s.labels.get("__name__").map_or("", String::as_str)
                        )));
                    }
                    if !s.present(from, at) {
                        continue;
                    }
                    let inc = s.total_at(at) - s.total_at(from);
                    let value = if name == "rate" {
                        inc / (range as f64 / 1000.0)
                    } else {
                        inc
                    };
                    out.push(Sample {
                        labels: s.bare.clone(),
                        value,
                    });
                }
                if self.bare_distinct(&ms.vs) {
                    Ok(Value::Vector(out))
                } else {
                    Ok(Value::Vector(unique(out)?))
                }
            }
            "sum_over_time" | "avg_over_time" | "min_over_time" | "max_over_time"
            | "count_over_time" => {
                let Value::Matrix(m) = self.eval(arg(0)?, t)? else {
                    return Err(PromError::bad(format!("{name}() needs a range vector")));
                };
                let out = m
                    .into_iter()
                    .map(|(labels, points)| {
                        let vals = points.iter().map(|(_, v)| *v);
                        let n = points.len() as f64;
                        let value = match name {
                            "sum_over_time" => vals.sum(),
                            "avg_over_time" => vals.sum::<f64>() / n,
                            "min_over_time" => vals.fold(f64::INFINITY, f64::min),
                            "max_over_time" => vals.fold(f64::NEG_INFINITY, f64::max),
                            _ => n,
                        };
                        Sample {
                            labels: without_name(&labels),
                            value,
                        }
                    })
                    .collect();
                Ok(Value::Vector(unique(out)?))
            }
            "histogram_quantile" => {
                let q = self.scalar_arg(arg(0)?, t)?;
                Ok(Value::Vector(histogram_quantile(
                    q,
                    self.vector_arg(arg(1)?, t)?,
                )))
            }
            "vector" => Ok(Value::Vector(vec![Sample {
                labels: Arc::new(Labels::new()),
                value: self.scalar_arg(arg(0)?, t)?,
            }])),
            "scalar" => {
                let v = self.vector_arg(arg(0)?, t)?;
                Ok(Value::Scalar(match v.as_slice() {
                    [one] => one.value,
                    _ => f64::NAN,
                }))
            }
            "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
            "abs" => math(f64::abs),
            "ceil" => math(f64::ceil),
            "floor" => math(f64::floor),
            "sqrt" => math(f64::sqrt),
            "exp" => math(f64::exp),
            "ln" => math(f64::ln),
            "log2" => math(f64::log2),
            "log10" => math(f64::log10),
            "round" => {
                let to = match args.get(1) {
                    Some(e) => self.scalar_arg(e, t)?,
                    None => 1.0,
                };
                let inv = 1.0 / to;
                let v = self.vector_arg(arg(0)?, t)?;
                Ok(Value::Vector(unique(map_values(v, |x| {
                    (x * inv + 0.5).floor() / inv
                }))?))
            }
            "clamp_min" | "clamp_max" => {
                let bound = self.scalar_arg(arg(1)?, t)?;
                let v = self.vector_arg(arg(0)?, t)?;
                let f = |x: f64| {
                    if x.is_nan() || bound.is_nan() {
                        f64::NAN
                    } else if name == "clamp_min" {
                        x.max(bound)
                    } else {
                        x.min(bound)
                    }
                };
                Ok(Value::Vector(unique(map_values(v, f))?))
            }
            other => Err(PromError::unsupported(format!(
                "function {other}() is not supported by meshscope"
            ))),
        }
    }
}
