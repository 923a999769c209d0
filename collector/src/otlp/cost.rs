//! The decoded size of an `ExportTraceServiceRequest`, estimated from its wire shape before
//! it is decoded (see [`crate::budget`]): its bytes plus the structs its spans,
//! attributes, events, links and nested values become. The JSON form cannot be walked
//! without parsing; [`json_cost`] bounds it by its objects instead.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::budget::Cost;
use crate::wire::{Malformed, Value, each, fields};

/// Values nested deeper than this (arrays of arrays …) are not walked: their bytes are
/// charged at [`DEEP_FACTOR`] times their length instead.
const MAX_WALK_DEPTH: usize = 16;
const DEEP_FACTOR: usize = 64;

/// The estimated cost of the protobuf request in `buf`.
pub fn request_cost(buf: &[u8]) -> Result<Cost, Malformed> {
    let mut cost = Cost {
        bytes: buf.len(),
        items: 0,
    };
    cost.add::<ExportTraceServiceRequest>(1);
    for rs in each(buf, 1) {
        cost.add::<ResourceSpans>(1);
        for f in fields(rs?) {
            match f? {
                (1, Value::Bytes(resource)) => key_values(resource, 1, 0, &mut cost)?,
                (2, Value::Bytes(scope_spans)) => {
                    cost.add::<ScopeSpans>(1);
                    for f in fields(scope_spans) {
                        match f? {
                            (1, Value::Bytes(scope)) => key_values(scope, 3, 0, &mut cost)?,
                            (2, Value::Bytes(span)) => {
                                cost.items += 1;
                                cost.add::<Span>(1);
                                span_cost(span, &mut cost)?;
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(cost)
}

fn span_cost(span: &[u8], cost: &mut Cost) -> Result<(), Malformed> {
    for f in fields(span) {
        match f? {
            (9, Value::Bytes(kv)) => key_value(kv, 0, cost)?,
            (11, Value::Bytes(event)) => {
                cost.add::<Event>(1);
                key_values(event, 3, 0, cost)?;
            }
            (13, Value::Bytes(link)) => {
                cost.add::<Link>(1);
                key_values(link, 4, 0, cost)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `KeyValue`s of field `number` of the message in `buf`.
fn key_values(buf: &[u8], number: u32, depth: usize, cost: &mut Cost) -> Result<(), Malformed> {
    for kv in each(buf, number) {
        key_value(kv?, depth, cost)?;
    }
    Ok(())
}

fn key_value(kv: &[u8], depth: usize, cost: &mut Cost) -> Result<(), Malformed> {
    cost.add::<KeyValue>(1);
    for f in fields(kv) {
        if let (2, Value::Bytes(value)) = f? {
            any_value(value, depth + 1, cost)?;
        }
    }
    Ok(())
}

fn any_value(value: &[u8], depth: usize, cost: &mut Cost) -> Result<(), Malformed> {
    cost.add::<AnyValue>(1);
    if depth > MAX_WALK_DEPTH {
        cost.bytes = cost
            .bytes
            .saturating_add(value.len().saturating_mul(DEEP_FACTOR));
        return Ok(());
    }
    for f in fields(value) {
        match f? {
            // array_value: values (1) are AnyValues.
            (5, Value::Bytes(array)) => {
                for v in each(array, 1) {
                    any_value(v?, depth + 1, cost)?;
                }
            }
            // kvlist_value: values (1) are KeyValues.
            (6, Value::Bytes(list)) => key_values(list, 1, depth + 1, cost)?,
            _ => {}
        }
    }
    Ok(())
}

/// The cost of a JSON request of `body`: every object may become a span (the largest
/// struct of the request), every array a list header.
pub fn json_cost(body: &[u8]) -> Cost {
    let objects = body.iter().filter(|b| **b == b'{').count();
    let mut cost = Cost {
        bytes: body.len(),
        items: 0,
    };
    cost.add::<Span>(objects);
    cost
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, any_value};
    use prost::Message;

    use super::*;

    #[test]
    fn the_estimate_covers_empty_spans_and_nested_values() {
        let request = |spans: Vec<Span>| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let wire = request(vec![Span::default(); 10_000]).encode_to_vec();
        let cost = request_cost(&wire).expect("cost");
        assert_eq!(cost.items, 10_000);
        assert!(cost.bytes >= 10_000 * std::mem::size_of::<Span>());

        // An attribute holding an array of 10 000 empty values.
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue::default(); 10_000],
            })),
        };
        let span = Span {
            attributes: vec![KeyValue {
                value: Some(array),
                ..Default::default()
            }],
            ..Default::default()
        };
        let wire = request(vec![span]).encode_to_vec();
        let cost = request_cost(&wire).expect("cost");
        assert!(cost.bytes >= 10_000 * std::mem::size_of::<AnyValue>());
        assert!(json_cost(b"[{},{},{}]").bytes >= 3 * std::mem::size_of::<Span>());
    }
}
