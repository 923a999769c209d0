//! The selectors of an expression, with the range each is read over and whether its sample
//! values are read; the time a selector reads at (`@`, `offset`); the query's bounds.

use std::time::{Duration, SystemTime};

use promql_parser::parser::{AtModifier, Call, Expr, Offset, VectorSelector};

use super::super::data;
use crate::prom::error::PromError;

/// Longest span of data one query may read.
pub(super) const MAX_WINDOW_MS: i64 = 400 * data::DAY_MS;

/// Deepest expression accepted (the evaluator recurses once per level).
pub const MAX_DEPTH: usize = 100;

/// The nesting depth of `e` (run on a thread with a stack large for the input).
pub fn depth(e: &Expr) -> usize {
    1 + match e {
        Expr::Aggregate(a) => depth(&a.expr).max(a.param.as_deref().map_or(0, depth)),
        Expr::Unary(u) => depth(&u.expr),
        Expr::Binary(b) => depth(&b.lhs).max(depth(&b.rhs)),
        Expr::Paren(p) => depth(&p.expr),
        Expr::Subquery(q) => depth(&q.expr),
        Expr::Call(c) => c.args.args.iter().map(|a| depth(a)).max().unwrap_or(0),
        _ => 0,
    }
}

/// The time a selector reads at when a query over `[start, end]` is evaluated at `t`:
/// `@` and `offset` applied.
pub(super) fn read_time(vs: &VectorSelector, t: i64, start: i64, end: i64) -> i64 {
    let base = match &vs.at {
        None => t,
        Some(AtModifier::Start) => start,
        Some(AtModifier::End) => end,
        Some(AtModifier::At(st)) => system_ms(st),
    };
    base.saturating_sub(offset_ms(&vs.offset))
}

pub(super) fn address(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

pub(super) fn millis(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

fn system_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => millis(&d),
        Err(e) => -millis(&e.duration()),
    }
}

/// A selector, the range it is read over (0 for instant selectors) and whether sample
/// values are read (anything but `rate`/`increase`, which read differences only).
pub(super) type Use<'e> = (&'e VectorSelector, i64, bool);

/// Every selector in `e`.
pub(super) fn selectors<'e>(e: &'e Expr, out: &mut Vec<Use<'e>>) -> Result<(), PromError> {
    let first_matrix = |c: &'e Call| match c.args.args.first().map(|a| a.as_ref()) {
        Some(Expr::MatrixSelector(ms)) if matches!(c.func.name, "rate" | "increase") => Some(ms),
        _ => None,
    };
    match e {
        Expr::VectorSelector(vs) => out.push((vs, 0, true)),
        Expr::MatrixSelector(ms) => out.push((&ms.vs, millis(&ms.range), true)),
        Expr::Call(c) if first_matrix(c).is_some() => {
            if let Some(ms) = first_matrix(c) {
                out.push((&ms.vs, millis(&ms.range), false));
            }
        }
        Expr::Aggregate(a) => {
            selectors(&a.expr, out)?;
            if let Some(p) = &a.param {
                selectors(p, out)?;
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out)?,
        Expr::Binary(b) => {
            selectors(&b.lhs, out)?;
            selectors(&b.rhs, out)?;
        }
        Expr::Paren(p) => selectors(&p.expr, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, out)?;
            }
        }
        Expr::Subquery(_) => {
            return Err(PromError::unsupported(
                "subqueries are not supported by meshscope",
            ));
        }
        Expr::Extension(_) => return Err(PromError::unsupported("unsupported expression")),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
    Ok(())
}
