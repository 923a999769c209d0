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
    let mut resource_spans = 0;
    for rs in each(buf, 1) {
        resource_spans += 1;
        let mut scope_spans = 0;
        for f in fields(rs?) {
            match f? {
                (1, Value::Bytes(resource)) => key_values(resource, 1, 0, &mut cost)?,
                (2, Value::Bytes(ss)) => {
                    scope_spans += 1;
                    let mut spans = 0;
                    for f in fields(ss) {
                        match f? {
                            (1, Value::Bytes(scope)) => key_values(scope, 3, 0, &mut cost)?,
                            (2, Value::Bytes(span)) => {
                                spans += 1;
                                span_cost(span, &mut cost)?;
                            }
                            _ => {}
                        }
                    }
                    cost.list::<Span>(spans);
                    cost.items = cost.items.saturating_add(spans);
                }
                _ => {}
            }
        }
        cost.list::<ScopeSpans>(scope_spans);
    }
    cost.list::<ResourceSpans>(resource_spans);
    Ok(cost)
}

fn span_cost(span: &[u8], cost: &mut Cost) -> Result<(), Malformed> {
    let (mut attributes, mut events, mut links) = (0, 0, 0);
    for f in fields(span) {
        match f? {
            (9, Value::Bytes(kv)) => {
                attributes += 1;
                key_value(kv, 0, cost)?;
            }
            (11, Value::Bytes(event)) => {
                events += 1;
                key_values(event, 3, 0, cost)?;
            }
            (13, Value::Bytes(link)) => {
                links += 1;
                key_values(link, 4, 0, cost)?;
            }
            _ => {}
        }
    }
    cost.list::<KeyValue>(attributes);
    cost.list::<Event>(events);
    cost.list::<Link>(links);
    Ok(())
}

/// The list of `KeyValue`s of field `number` of the message in `buf`.
fn key_values(buf: &[u8], number: u32, depth: usize, cost: &mut Cost) -> Result<(), Malformed> {
    let mut n = 0;
    for kv in each(buf, number) {
        n += 1;
        key_value(kv?, depth, cost)?;
    }
    cost.list::<KeyValue>(n);
    Ok(())
}

/// What one `KeyValue` holds besides itself (its list counts it).
fn key_value(kv: &[u8], depth: usize, cost: &mut Cost) -> Result<(), Malformed> {
    for f in fields(kv) {
        if let (2, Value::Bytes(value)) = f? {
            cost.add::<AnyValue>(1);
            any_value(value, depth + 1, cost)?;
        }
    }
    Ok(())
}

/// What one `AnyValue` holds besides itself.
fn any_value(value: &[u8], depth: usize, cost: &mut Cost) -> Result<(), Malformed> {
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
                let mut n = 0;
                for v in each(array, 1) {
                    n += 1;
                    any_value(v?, depth + 1, cost)?;
                }
                cost.list::<AnyValue>(n);
            }
            // kvlist_value: values (1) are KeyValues.
            (6, Value::Bytes(list)) => key_values(list, 1, depth + 1, cost)?,
            _ => {}
        }
    }
    Ok(())
}

/// The cost of a JSON request of `body`, bounded by its objects: an object at the depth
/// of spans (`{"resourceSpans":[{"scopeSpans":[{"spans":[{…}]}]}]}`, the fourth object
/// level) may become a span and counts as one; any other object a key-value (which holds
/// its value inline). Each is charged twice, for the spare capacity of the list it lands
/// in.
pub fn json_cost(body: &[u8]) -> Cost {
    let (mut spans, mut others) = (0usize, 0usize);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => {
                depth += 1;
                if depth == 4 {
                    spans += 1;
                } else {
                    others += 1;
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut cost = Cost {
        bytes: body.len(),
        items: spans,
    };
    cost.add::<Span>(spans.saturating_mul(2));
    cost.add::<KeyValue>(others.saturating_mul(2));
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
        assert!(cost.bytes >= 16_384 * std::mem::size_of::<Span>());

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
        assert!(cost.bytes >= 16_384 * std::mem::size_of::<AnyValue>());
        let spans = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{"name":"{{{"},{}]}]}]}"#;
        let cost = json_cost(spans);
        assert_eq!(cost.items, 3);
        assert!(cost.bytes >= 3 * std::mem::size_of::<Span>());
    }
}
