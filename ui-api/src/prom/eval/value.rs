//! What an expression evaluates to at one time: a scalar, an instant vector of
//! [`Sample`]s, or a range vector.

use std::sync::Arc;

use crate::prom::data::Labels;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The element's labels, shared with the series it came from until an operation
    /// changes them.
    pub labels: Arc<Labels>,
    /// Its value at the evaluation time.
    pub value: f64,
}

/// The value of an expression at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
    /// A range vector: labels and `(ms, value)` samples (only as an instant query's result
    /// or a function's argument).
    Matrix(Vec<RangeSeries>),
}

/// One series of a range vector: its labels and `(ms, value)` samples.
pub type RangeSeries = (Arc<Labels>, Vec<(i64, f64)>);
