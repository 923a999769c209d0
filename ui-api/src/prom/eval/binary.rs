//! Binary operators: arithmetic and comparisons (with `bool`) between scalars and vectors,
//! one-to-one vector matching with `on` / `ignoring`, and `and`, `or`, `unless`.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::Evaluator;
use super::labels::{drop_names, keep_only, list, unique, without_name};
use super::value::{Sample, Value};
use crate::prom::data::Labels;
use crate::prom::error::PromError;

impl Evaluator {
    pub(super) fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value, PromError> {
        let op = b.op.id();
        if let Some(m) = &b.modifier {
            if matches!(
                m.card,
                VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
            ) {
                return Err(PromError::unsupported(
                    "group_left / group_right are not supported by meshscope",
                ));
            }
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(PromError::unsupported(
                    "fill modifiers are not supported by meshscope",
                ));
            }
        }
        let return_bool = b.return_bool();
        let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let set = matches!(op, token::T_LAND | token::T_LOR | token::T_LUNLESS);
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                if is_comparison(op) && !return_bool {
                    return Err(PromError::bad(
                        "comparisons between scalars must use BOOL modifier",
                    ));
                }
                Ok(Value::Scalar(apply(op, l, r, return_bool)?.0))
            }
            (Value::Vector(l), Value::Vector(r)) if set => {
                Ok(Value::Vector(set_op(op, l, r, matching)))
            }
            (Value::Vector(v), Value::Scalar(s)) if !set => {
                Ok(Value::Vector(vector_scalar(op, v, s, false, return_bool)?))
            }
            (Value::Scalar(s), Value::Vector(v)) if !set => {
                Ok(Value::Vector(vector_scalar(op, v, s, true, return_bool)?))
            }
            (Value::Vector(l), Value::Vector(r)) => Ok(Value::Vector(vector_vector(
                op,
                l,
                r,
                matching,
                return_bool,
            )?)),
            _ => Err(PromError::bad(format!(
                "operator {} is not defined for these operand types",
                b.op
            ))),
        }
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// `(value, keep)` of `l op r`: arithmetic keeps every result; a comparison keeps `l`
/// when true (or gives 1/0 with `bool`).
fn apply(op: TokenId, l: f64, r: f64, return_bool: bool) -> Result<(f64, bool), PromError> {
    let arith = |v: f64| Ok((v, true));
    let cmp = |c: bool| {
        if return_bool {
            Ok((if c { 1.0 } else { 0.0 }, true))
        } else {
            Ok((l, c))
        }
    };
    match op {
        token::T_ADD => arith(l + r),
        token::T_SUB => arith(l - r),
        token::T_MUL => arith(l * r),
        token::T_DIV => arith(l / r),
        token::T_MOD => arith(l % r),
        token::T_POW => arith(l.powf(r)),
        token::T_ATAN2 => arith(l.atan2(r)),
        token::T_EQLC => cmp(l == r),
        token::T_NEQ => cmp(l != r),
        token::T_GTR => cmp(l > r),
        token::T_LSS => cmp(l < r),
        token::T_GTE => cmp(l >= r),
        token::T_LTE => cmp(l <= r),
        _ => Err(PromError::unsupported(format!(
            "operator {} is not supported by meshscope",
            token::TokenType::new(op)
        ))),
    }
}

/// The labels two vectors match on: `on(…)` only those, else all but `ignoring(…)` and
/// the metric name.
fn signature(labels: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        Some(LabelModifier::Include(on)) => keep_only(labels, on),
        Some(LabelModifier::Exclude(ign)) => drop_names(labels, &ign.labels),
        None => drop_names(labels, &[]),
    }
}

fn set_op(op: TokenId, l: Vec<Sample>, r: Vec<Sample>, m: Option<&LabelModifier>) -> Vec<Sample> {
    let rsigs: BTreeSet<Labels> = r.iter().map(|s| signature(&s.labels, m)).collect();
    match op {
        token::T_LAND => l
            .into_iter()
            .filter(|s| rsigs.contains(&signature(&s.labels, m)))
            .collect(),
        token::T_LUNLESS => l
            .into_iter()
            .filter(|s| !rsigs.contains(&signature(&s.labels, m)))
            .collect(),
        _ => {
            let lsigs: BTreeSet<Labels> = l.iter().map(|s| signature(&s.labels, m)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !lsigs.contains(&signature(&s.labels, m))),
            );
            out
        }
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, PromError> {
    let drop_name = !is_comparison(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        let (l, r) = if scalar_left {
            (s, x.value)
        } else {
            (x.value, s)
        };
        let (mut value, keep) = apply(op, l, r, return_bool)?;
        if !keep {
            continue;
        }
        if is_comparison(op) && !return_bool {
            // A filter keeps the vector's value, whichever side it is on.
            value = x.value;
        }
        out.push(Sample {
            labels: if drop_name {
                without_name(&x.labels)
            } else {
                x.labels
            },
            value,
        });
    }
    if drop_name { unique(out) } else { Ok(out) }
}

fn vector_vector(
    op: TokenId,
    l: Vec<Sample>,
    r: Vec<Sample>,
    m: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Sample>, PromError> {
    let mut right: BTreeMap<Labels, f64> = BTreeMap::new();
    for s in &r {
        if right.insert(signature(&s.labels, m), s.value).is_some() {
            return Err(PromError::unsupported(format!(
                "found duplicate series for the match group {:?} on the right hand-side of the operation; many-to-many matching is not supported",
                signature(&s.labels, m)
            )));
        }
    }
    let drop_name = !is_comparison(op) || return_bool;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in l {
        let sig = signature(&s.labels, m);
        let Some(rv) = right.get(&sig) else {
            continue;
        };
        let (value, keep) = apply(op, s.value, *rv, return_bool)?;
        if !keep {
            continue;
        }
        if !seen.insert(sig.clone()) {
            return Err(PromError::unsupported(format!(
                "multiple matches for labels {sig:?}: many-to-one matching must be explicit (group_left/group_right), which meshscope does not support"
            )));
        }
        let mut labels = if drop_name {
            without_name(&s.labels)
        } else {
            s.labels
        };
        match m {
            Some(LabelModifier::Include(on)) => {
                let on = list(on);
                labels.retain(|k, _| on.contains(k.as_str()));
            }
            Some(LabelModifier::Exclude(ign)) => {
                let ign = list(ign);
                labels.retain(|k, _| !ign.contains(k.as_str()));
            }
            None => {}
        }
        out.push(Sample { labels, value });
    }
    unique(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::sample;
    use super::*;
    use promql_parser::label::Labels as LabelList;

    #[test]
    fn one_to_one_matching_with_on_and_ignoring() {
        let l = vec![
            sample(&[("__name__", "a"), ("svc", "x"), ("pod", "1")], 6.0),
            sample(&[("__name__", "a"), ("svc", "y"), ("pod", "2")], 8.0),
        ];
        let r = vec![
            sample(&[("__name__", "b"), ("svc", "x")], 2.0),
            sample(&[("__name__", "b"), ("svc", "y")], 4.0),
        ];
        let on = LabelModifier::Include(LabelList::new(vec!["svc"]));
        let out =
            vector_vector(token::T_DIV, l.clone(), r.clone(), Some(&on), false).expect("divides");
        assert_eq!(
            out,
            vec![sample(&[("svc", "x")], 3.0), sample(&[("svc", "y")], 2.0)]
        );
        // Without `on`, `pod` keeps them apart: nothing matches.
        assert!(
            vector_vector(token::T_DIV, l.clone(), r.clone(), None, false)
                .expect("ok")
                .is_empty()
        );
        let ign = LabelModifier::Exclude(LabelList::new(vec!["pod"]));
        assert_eq!(
            vector_vector(token::T_GTR, l.clone(), r.clone(), Some(&ign), false)
                .expect("ok")
                .len(),
            2
        );
        // Two left series for one right one: refused, not guessed…
        let one = vec![sample(&[("svc", "x")], 7.0)];
        let twins = vec![
            sample(&[("svc", "x"), ("pod", "1")], 6.0),
            sample(&[("svc", "x"), ("pod", "2")], 8.0),
        ];
        assert!(vector_vector(token::T_ADD, twins.clone(), one.clone(), Some(&on), false).is_err());
        // …unless a comparison filters all but one of them out first, as in Prometheus.
        let kept = vector_vector(token::T_GTR, twins, one, Some(&on), false).expect("ok");
        assert_eq!(kept, vec![sample(&[("svc", "x")], 8.0)]);
        let many = LabelModifier::Include(LabelList::new(vec![]));
        assert!(
            vector_vector(token::T_ADD, l.clone(), r[..1].to_vec(), Some(&many), false).is_err()
        );
        // Set operators.
        let and = set_op(token::T_LAND, l.clone(), r[..1].to_vec(), Some(&on));
        assert_eq!(and.len(), 1);
        let unless = set_op(token::T_LUNLESS, l.clone(), r[..1].to_vec(), Some(&on));
        assert_eq!(unless[0].labels["svc"], "y");
        assert_eq!(set_op(token::T_LOR, l, r, Some(&on)).len(), 2);
    }

    #[test]
    fn scalar_comparisons_filter_and_keep_the_vector_value() {
        let v = vec![sample(&[("__name__", "a"), ("k", "1")], 5.0)];
        let kept = vector_scalar(token::T_LSS, v.clone(), 9.0, true, false).expect("ok");
        // `9 < a` keeps nothing (5 < 9 is the other way round)…
        assert!(kept.is_empty());
        // …`3 < a` keeps a with its own value and name.
        let kept = vector_scalar(token::T_LSS, v.clone(), 3.0, true, false).expect("ok");
        assert_eq!(kept, v);
        let b = vector_scalar(token::T_GTR, v, 3.0, false, true).expect("ok");
        assert_eq!(b, vec![sample(&[("k", "1")], 1.0)]);
    }
}
