//! Istio < 1.24 peer metadata: the `wasm.upstream_peer` / `wasm.downstream_peer` filter
//! state, a FlatBuffers `Wasm.Common.FlatNode` (istio/proxy
//! `extensions/common/node_info.fbs`) wrapped in a `google.protobuf.BytesValue` inside the
//! access log's `Any`.
//!
//! A small, bounds-checked reader of the few fields meshscope uses: every offset is checked
//! against the buffer, so a hostile buffer yields `None`, never a panic.
//!
//! `FlatNode` slots: 0 `name`, 1 `namespace`, 2 `labels: [KeyVal]`, 3 `owner`,
//! 4 `workload_name`, … ; `KeyVal` slots: 0 `key`, 1 `value`.

use prost::Message;

const SLOT_NAME: usize = 0;
const SLOT_NAMESPACE: usize = 1;
const SLOT_LABELS: usize = 2;
const SLOT_WORKLOAD_NAME: usize = 4;

/// The fields of a `FlatNode` meshscope reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlatNode<'a> {
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub workload_name: Option<&'a str>,
    pub labels: Vec<(&'a str, &'a str)>,
}

impl<'a> FlatNode<'a> {
    /// The value of label `key`, if present and non-empty.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels
            .iter()
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| *v)
    }
}

/// Unwraps the `BytesValue` around the flatbuffer when `type_url` says so.
pub fn unwrap_any(type_url: &str, value: &[u8]) -> Option<Vec<u8>> {
    if type_url.ends_with("google.protobuf.BytesValue") {
        <Vec<u8> as Message>::decode(value).ok()
    } else {
        Some(value.to_vec())
    }
}

struct Buf<'a>(&'a [u8]);

impl<'a> Buf<'a> {
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.0.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    }

    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.0.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }

    fn i32(&self, at: usize) -> Option<i32> {
        Some(i32::from_le_bytes(
            self.0.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }

    /// Position of a field of the table at `table`, or `None` when absent.
    fn field(&self, table: usize, slot: usize) -> Option<usize> {
        let vtable = i64::try_from(table).ok()? - i64::from(self.i32(table)?);
        let vtable = usize::try_from(vtable).ok()?;
        let vtable_len = usize::from(self.u16(vtable)?);
        let entry = 4 + 2 * slot;
        if entry + 2 > vtable_len {
            return None;
        }
        match self.u16(vtable + entry)? {
            0 => None,
            off => table.checked_add(usize::from(off)),
        }
    }

    /// Follows the `uoffset` stored at `at`.
    fn deref(&self, at: usize) -> Option<usize> {
        at.checked_add(usize::try_from(self.u32(at)?).ok()?)
    }

    fn string(&self, table: usize, slot: usize) -> Option<&'a str> {
        let s = self.deref(self.field(table, slot)?)?;
        let len = usize::try_from(self.u32(s)?).ok()?;
        let bytes = self
            .0
            .get(s.checked_add(4)?..s.checked_add(4)?.checked_add(len)?)?;
        std::str::from_utf8(bytes).ok()
    }

    /// Tables of a vector-of-tables field.
    fn tables(&self, table: usize, slot: usize) -> Vec<usize> {
        let Some(v) = self.field(table, slot).and_then(|f| self.deref(f)) else {
            return Vec::new();
        };
        let Some(len) = self.u32(v).and_then(|l| usize::try_from(l).ok()) else {
            return Vec::new();
        };
        // A length larger than the buffer could hold is hostile; reading stops at the end.
        (0..len.min(self.0.len() / 4))
            .map_while(|i| self.deref(v + 4 + 4 * i))
            .collect()
    }
}

/// Reads a `FlatNode`; `None` when the buffer is not one.
pub fn parse(bytes: &[u8]) -> Option<FlatNode<'_>> {
    let b = Buf(bytes);
    let root = usize::try_from(b.u32(0)?).ok()?;
    // The root table must have a readable vtable; otherwise this is not a flatbuffer.
    let vtable = i64::try_from(root).ok()? - i64::from(b.i32(root)?);
    b.u16(usize::try_from(vtable).ok()?)?;
    let labels = b
        .tables(root, SLOT_LABELS)
        .into_iter()
        .filter_map(|kv| Some((b.string(kv, 0)?, b.string(kv, 1).unwrap_or(""))))
        .collect();
    Some(FlatNode {
        name: b.string(root, SLOT_NAME).filter(|s| !s.is_empty()),
        namespace: b.string(root, SLOT_NAMESPACE).filter(|s| !s.is_empty()),
        workload_name: b.string(root, SLOT_WORKLOAD_NAME).filter(|s| !s.is_empty()),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flatbuffers::{FlatBufferBuilder, WIPOffset};

    /// Builds a FlatNode with the flatbuffers crate, as Istio's proxy does.
    fn build(name: &str, ns: &str, workload: &str, labels: &[(&str, &str)]) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let kvs: Vec<WIPOffset<flatbuffers::TableFinishedWIPOffset>> = labels
            .iter()
            .map(|(k, v)| {
                let k = fbb.create_string(k);
                let v = fbb.create_string(v);
                let t = fbb.start_table();
                fbb.push_slot_always(4, k);
                fbb.push_slot_always(6, v);
                fbb.end_table(t)
            })
            .collect();
        let labels = fbb.create_vector(&kvs);
        let name = fbb.create_string(name);
        let ns = fbb.create_string(ns);
        let owner = fbb.create_string("kubernetes://apis/apps/v1/namespaces/x");
        let workload = fbb.create_string(workload);
        let t = fbb.start_table();
        fbb.push_slot_always(4, name);
        fbb.push_slot_always(6, ns);
        fbb.push_slot_always(8, labels);
        fbb.push_slot_always(10, owner);
        fbb.push_slot_always(12, workload);
        let root = fbb.end_table(t);
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    #[test]
    fn reads_what_the_flatbuffers_builder_wrote() {
        let bytes = build(
            "reviews-v2-7bf8c9648f-xk2lp",
            "default",
            "reviews-v2",
            &[("app", "reviews"), ("version", "v2")],
        );
        let wrapped = bytes.clone().encode_to_vec();
        let unwrapped =
            unwrap_any("type.googleapis.com/google.protobuf.BytesValue", &wrapped).expect("unwrap");
        assert_eq!(unwrapped, bytes);
        let node = parse(&unwrapped).expect("flat node");
        assert_eq!(node.name, Some("reviews-v2-7bf8c9648f-xk2lp"));
        assert_eq!(node.namespace, Some("default"));
        assert_eq!(node.workload_name, Some("reviews-v2"));
        assert_eq!(node.label("app"), Some("reviews"));
        assert_eq!(node.label("version"), Some("v2"));
    }

    #[test]
    fn hostile_buffers_are_rejected_without_panicking() {
        let good = build("p", "ns", "w", &[("app", "a")]);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        let mut flipped = good.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = parse(&flipped);
            flipped[i] ^= 0xff;
        }
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
