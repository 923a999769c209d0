//! Aggregations: `sum`, `avg`, `min`, `max`, `count`, `group`, `topk`, `bottomk`, with
//! `by` / `without`.

use std::collections::BTreeMap;

use foldhash::HashMap;

use promql_parser::parser::token;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::Evaluator;
use super::labels::grouping;
use super::value::{Sample, Value};
use crate::prom::data::Labels;
use crate::prom::error::PromError;

impl Evaluator {
    pub(super) fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value, PromError> {
        let op = a.op.id();
        let v = self.vector_arg(&a.expr, t)?;
        let group = |labels: &Labels| group_labels(labels, a.modifier.as_ref());
        if op == token::T_TOPK || op == token::T_BOTTOMK {
            let param = a
                .param
                .as_ref()
                .ok_or_else(|| PromError::bad(format!("{} needs a parameter", a.op)))?;
            let k = self.scalar_arg(param, t)?;
            if k.is_nan() {
                return Err(PromError::bad(format!("parameter of {} is NaN", a.op)));
            }
            if k < 1.0 {
                return Ok(Value::Vector(Vec::new()));
            }
            let k = k.min(usize::MAX as f64) as usize;
            let mut groups: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
            for s in v {
                groups.entry(group(&s.labels)).or_default().push(s);
            }
            let top = op == token::T_TOPK;
            // NaN ranks below every number for topk and above for bottomk.
            let rank = |x: f64| match (x.is_nan(), top) {
                (true, true) => f64::NEG_INFINITY,
                (true, false) => f64::INFINITY,
                _ => x,
            };
            let mut out = Vec::new();
            for (_, mut members) in groups {
                members.sort_by(|x, y| {
                    let (a, b) = (rank(x.value), rank(y.value));
                    let o = a.total_cmp(&b);
                    if top { o.reverse() } else { o }
                });
                members.truncate(k);
                out.extend(members);
            }
            return Ok(Value::Vector(out));
        }
        #[derive(Default)]
        struct Acc {
            sum: f64,
            n: f64,
            min: Option<f64>,
            max: Option<f64>,
        }
        // Groups are found by their labels borrowed from the samples (no label set is built
        // per sample), and built once each at the end, in label order.
        let mut index: HashMap<Vec<(&str, &str)>, usize> = HashMap::default();
        let mut groups: Vec<(Vec<(&str, &str)>, Acc)> = Vec::new();
        for s in &v {
            let key = grouping(&s.labels, a.modifier.as_ref());
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    groups.push((key.clone(), Acc::default()));
                    index.insert(key, groups.len() - 1);
                    groups.len() - 1
                }
            };
            let acc = &mut groups[i].1;
            acc.sum += s.value;
            acc.n += 1.0;
            // NaN only when every value is NaN, as in Prometheus.
            let pick = |cur: Option<f64>, better: fn(f64, f64) -> bool| match cur {
                None => Some(s.value),
                Some(c) if c.is_nan() || better(s.value, c) => Some(s.value),
                keep => keep,
            };
            acc.min = pick(acc.min, |x, c| x < c);
            acc.max = pick(acc.max, |x, c| x > c);
        }
        let value = |acc: &Acc| -> Result<f64, PromError> {
            Ok(match op {
                token::T_SUM => acc.sum,
                token::T_AVG => acc.sum / acc.n,
                token::T_MIN => acc.min.unwrap_or(f64::NAN),
                token::T_MAX => acc.max.unwrap_or(f64::NAN),
                token::T_COUNT => acc.n,
                token::T_GROUP => 1.0,
                _ => {
                    return Err(PromError::unsupported(format!(
                        "aggregation {} is not supported by meshscope",
                        a.op
                    )));
                }
            })
        };
        drop(index);
        groups.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        let mut out = Vec::with_capacity(groups.len());
        for (labels, acc) in &groups {
            out.push(Sample {
                labels: self.intern(labels),
                value: value(acc)?,
            });
        }
        if groups.is_empty() {
            // Still refuse an unsupported aggregation on empty input.
            value(&Acc::default())?;
        }
        Ok(Value::Vector(out))
    }
}

/// The labels an aggregation groups by, owned ([`grouping`]'s).
fn group_labels(labels: &Labels, m: Option<&LabelModifier>) -> Labels {
    grouping(labels, m)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
