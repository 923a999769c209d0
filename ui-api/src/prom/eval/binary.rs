//! Binary operators: arithmetic and comparisons (with `bool`) between scalars and vectors,
//! one-to-one, many-to-one (`group_left`) and one-to-many (`group_right`) vector matching
//! with `on` / `ignoring`, and `and`, `or`, `unless`, as Prometheus evaluates them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::Evaluator;
use super::labels::{drop_names, keep_only, unique, without_name};
use super::value::{Sample, Value};
use crate::prom::data::Labels;
use crate::prom::error::PromError;

impl Evaluator {
    pub(super) fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value, PromError> {
        let op = b.op.id();
        if let Some(m) = &b.modifier
            && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
        {
            return Err(PromError::unsupported(
                "fill modifiers are not supported by meshscope",
            ));
        }
        let return_bool = b.return_bool();
        let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
        let card = b
            .modifier
            .as_ref()
            .map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
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
                (l, r),
                (matching, card),
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

/// `l op r` element by element, matched on their signatures: one-to-one, or with
/// `group_left` (many-to-one: each left element may share its match with others and takes
/// the `group_left` labels from its right match) or `group_right` (the mirror image). The
/// result's labels are those of the "many" side, as in Prometheus.
fn vector_vector(
    op: TokenId,
    (l, r): (Vec<Sample>, Vec<Sample>),
    (m, card): (Option<&LabelModifier>, &VectorMatchCardinality),
    return_bool: bool,
) -> Result<Vec<Sample>, PromError> {
    let (many, one, swapped, include): (_, _, _, &[String]) = match card {
        VectorMatchCardinality::ManyToOne(include) => (l, r, false, &include.labels),
        VectorMatchCardinality::OneToMany(include) => (r, l, true, &include.labels),
        _ => (l, r, false, &[]),
    };
    let one_to_one = !matches!(
        card,
        VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
    );
    let mut matches: BTreeMap<Labels, &Sample> = BTreeMap::new();
    for s in &one {
        let sig = signature(&s.labels, m);
        if matches.contains_key(&sig) {
            return Err(PromError::unsupported(format!(
                "found duplicate series for the match group {sig:?} on the {} hand-side of the operation; many-to-many matching is not supported",
                if swapped { "left" } else { "right" }
            )));
        }
        matches.insert(sig, s);
    }
    let drop_name = !is_comparison(op) || return_bool;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, m);
        let Some(o) = matches.get(&sig) else {
            continue;
        };
        // The operands in the expression's order, whichever side is the "many" one.
        let (lv, rv) = if swapped {
            (o.value, s.value)
        } else {
            (s.value, o.value)
        };
        let (value, keep) = apply(op, lv, rv, return_bool)?;
        if !keep {
            continue;
        }
        let mut labels = if drop_name {
            without_name(&s.labels)
        } else {
            s.labels
        };
        if one_to_one {
            // Per element: no set built per call (`on`/`ignoring` lists are short).
            match m {
                Some(LabelModifier::Include(on)) => {
                    Arc::make_mut(&mut labels).retain(|k, _| on.labels.contains(k));
                }
                Some(LabelModifier::Exclude(ign)) => {
                    Arc::make_mut(&mut labels).retain(|k, _| !ign.labels.contains(k));
                }
                None => {}
            }
        }
        // `group_left(x)`: x comes from the "one" side (absent there: absent here).
        for name in include {
            let l = Arc::make_mut(&mut labels);
            match o.labels.get(name).filter(|v| !v.is_empty()) {
                Some(v) => l.insert(name.clone(), v.clone()),
                None => l.remove(name),
            };
        }
        let fresh = if one_to_one {
            seen.insert((sig, Labels::new()))
        } else {
            seen.insert((sig, Labels::clone(&labels)))
        };
        if !fresh {
            return Err(PromError::unsupported(if one_to_one {
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".to_string()
            } else {
                "multiple matches for labels: grouping labels must ensure unique matches"
                    .to_string()
            }));
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

    fn one_to_one(
        op: TokenId,
        l: Vec<Sample>,
        r: Vec<Sample>,
        m: Option<&LabelModifier>,
    ) -> Result<Vec<Sample>, PromError> {
        vector_vector(op, (l, r), (m, &VectorMatchCardinality::OneToOne), false)
    }

    /// Each endpoint's share of its service's calls, as Grafana panels ask it:
    /// `endpoint / on (service) group_left (tier) service`, and the mirror image.
    #[test]
    fn many_to_one_and_one_to_many_matching() {
        let endpoints = vec![
            sample(
                &[("__name__", "e"), ("service", "a"), ("endpoint", "x")],
                2.0,
            ),
            sample(
                &[("__name__", "e"), ("service", "a"), ("endpoint", "y")],
                6.0,
            ),
            sample(
                &[("__name__", "e"), ("service", "b"), ("endpoint", "z")],
                5.0,
            ),
            // No service to match: left out.
            sample(
                &[("__name__", "e"), ("service", "c"), ("endpoint", "w")],
                1.0,
            ),
        ];
        let services = vec![
            sample(
                &[("__name__", "s"), ("service", "a"), ("tier", "front")],
                8.0,
            ),
            sample(&[("__name__", "s"), ("service", "b")], 10.0),
        ];
        let on = LabelModifier::Include(LabelList::new(vec!["service"]));
        let left = VectorMatchCardinality::ManyToOne(LabelList::new(vec!["tier"]));
        // `l op on (service) group_left (tier) r`.
        let group_left = |op, l: &[Sample], r: &[Sample]| {
            vector_vector(op, (l.to_vec(), r.to_vec()), (Some(&on), &left), false)
        };
        let out = group_left(token::T_DIV, &endpoints, &services).expect("group_left");
        assert_eq!(
            out,
            vec![
                sample(
                    &[("service", "a"), ("endpoint", "x"), ("tier", "front")],
                    0.25
                ),
                sample(
                    &[("service", "a"), ("endpoint", "y"), ("tier", "front")],
                    0.75
                ),
                sample(&[("service", "b"), ("endpoint", "z")], 0.5),
            ]
        );
        // group_right: the right side is the "many" one; values stay left op right.
        let right = VectorMatchCardinality::OneToMany(LabelList::new(vec![]));
        let out = vector_vector(
            token::T_DIV,
            (services.clone(), endpoints.clone()),
            (Some(&on), &right),
            false,
        )
        .expect("group_right");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], sample(&[("service", "a"), ("endpoint", "x")], 4.0));
        // A comparison keeps the left operand's value and the "many" side's name.
        let out = group_left(token::T_GTR, &endpoints, &services).expect("filter");
        assert!(out.is_empty());
        let out = group_left(token::T_LSS, &endpoints, &services).expect("filter");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].labels["__name__"], "e");
        assert_eq!(out[0].value, 2.0);
        // The "one" side must be unique per match group…
        let twice = [services.clone(), services[..1].to_vec()].concat();
        let err =
            group_left(token::T_DIV, &endpoints, &twice).expect_err("duplicate on the one side");
        assert!(format!("{err:?}").contains("duplicate series"), "{err:?}");
        // …and the results unique per group: two names that become one label set.
        let renamed = vec![
            sample(&[("__name__", "e1"), ("service", "a")], 1.0),
            sample(&[("__name__", "e2"), ("service", "a")], 1.0),
        ];
        let err = group_left(token::T_DIV, &renamed, &services).expect_err("not unique");
        assert!(format!("{err:?}").contains("grouping labels"), "{err:?}");
    }

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
        let out = one_to_one(token::T_DIV, l.clone(), r.clone(), Some(&on)).expect("divides");
        assert_eq!(
            out,
            vec![sample(&[("svc", "x")], 3.0), sample(&[("svc", "y")], 2.0)]
        );
        // Without `on`, `pod` keeps them apart: nothing matches.
        assert!(
            one_to_one(token::T_DIV, l.clone(), r.clone(), None)
                .expect("ok")
                .is_empty()
        );
        let ign = LabelModifier::Exclude(LabelList::new(vec!["pod"]));
        assert_eq!(
            one_to_one(token::T_GTR, l.clone(), r.clone(), Some(&ign))
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
        assert!(one_to_one(token::T_ADD, twins.clone(), one.clone(), Some(&on)).is_err());
        // …unless a comparison filters all but one of them out first, as in Prometheus.
        let kept = one_to_one(token::T_GTR, twins, one, Some(&on)).expect("ok");
        assert_eq!(kept, vec![sample(&[("svc", "x")], 8.0)]);
        let many = LabelModifier::Include(LabelList::new(vec![]));
        assert!(one_to_one(token::T_ADD, l.clone(), r[..1].to_vec(), Some(&many)).is_err());
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
