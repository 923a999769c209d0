//! Protobuf-aware edits: varint framing, a shallow field parser, field and nesting edits.

use super::edit::Edit;
use super::rng::Rng;

/// Values for protobuf varint fields.
const INTERESTING_VARINTS: [u64; 7] = [0, 1, 127, 128, 0xffff_ffff, u64::MAX, 1 << 63];

/// 1 encoded as an overlong 10-byte varint.
const OVERLONG_VARINT: [u8; 10] = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];

/// Recursion bound for edits inside nested protobuf messages.
const MAX_PROTOBUF_DEPTH: usize = 32;

impl Edit<'_> {
    /// One protobuf-aware edit; `None` when the input does not parse or the edit does not apply.
    pub(super) fn protobuf(&mut self, depth: usize) -> Option<()> {
        let fields = parse_fields(self.buf)?;
        let field = self.rng.pick(&fields)?;
        match self.rng.below(9) {
            0 => self.set_varint(&fields)?,
            1 => self.break_length(&fields)?,
            2 => self.duplicate_field(field)?,
            3 => self.replace(field.start, field.end, &[]),
            4 => self.swap_fields(&fields)?,
            5 => self.retag_field(field),
            6 | 7 => self.mutate_nested(&fields, depth)?,
            _ => self.insert_nesting(field)?,
        }
        Some(())
    }

    /// Replaces a varint value with an interesting one, sometimes overlong.
    fn set_varint(&mut self, fields: &[Field]) -> Option<()> {
        let field = pick_field(self.rng, fields, 0)?;
        let value = match self.rng.pick(&INTERESTING_VARINTS) {
            Some(v) if !self.rng.chance(8) => varint(v),
            _ => OVERLONG_VARINT.to_vec(),
        };
        self.replace(field.tag_end, field.end, &value);
        Some(())
    }

    /// Gives a length-delimited field a wrong length prefix, leaving its payload as it is.
    fn break_length(&mut self, fields: &[Field]) -> Option<()> {
        let field = pick_field(self.rng, fields, 2)?;
        let len = to_u64(field.end - field.body);
        let wrong = [
            len.saturating_add(1),
            len.wrapping_sub(1),
            0,
            0xffff_ffff,
            u64::MAX,
        ];
        let wrong = self.rng.pick(&wrong)?;
        self.replace(field.tag_end, field.body, &varint(wrong));
        Some(())
    }

    /// Repeats a whole field up to 1000 times right after itself, as many times as fit.
    fn duplicate_field(&mut self, field: Field) -> Option<()> {
        let wanted = self.rng.repeats(1000);
        let bytes = self.buf.get(field.start..field.end)?;
        let repeated = bytes.repeat(self.fit(wanted, bytes.len())?);
        self.insert(field.end, &repeated);
        Some(())
    }

    /// Swaps two distinct fields.
    fn swap_fields(&mut self, fields: &[Field]) -> Option<()> {
        let (x, y) = (self.rng.pick(fields)?, self.rng.pick(fields)?);
        let (a, b) = if x.start < y.start { (x, y) } else { (y, x) };
        let first = self.buf.get(a.start..a.end)?.to_vec();
        let second = self
            .buf
            .get(b.start..b.end)
            .filter(|_| a.end <= b.start)?
            .to_vec();
        self.replace(b.start, b.end, &first);
        self.replace(a.start, a.end, &second);
        Some(())
    }

    /// Changes a field's number, sometimes its wire type too, leaving its value as it is.
    fn retag_field(&mut self, field: Field) {
        let numbers = [
            field.number,
            field.number.saturating_add(1),
            field.number.saturating_sub(1),
            1 + self.rng.next_u64() % 20,
            (1 << 29) - 1,
            1 << 29,
            19_000,
        ];
        let number = self.rng.pick(&numbers).unwrap_or(1);
        let random_wire = self.rng.next_u64() % 8;
        let wire = self.rng.either(u64::from(field.wire), random_wire);
        self.replace(field.start, field.tag_end, &varint((number << 3) | wire));
    }

    /// Edits inside a length-delimited payload (protobuf-aware when it parses, bytewise when
    /// not) and re-encodes its length.
    fn mutate_nested(&mut self, fields: &[Field], depth: usize) -> Option<()> {
        let field = pick_field(self.rng, fields, 2)?;
        let mut inner = self.buf.get(field.body..field.end)?.to_vec();
        let max_len = self.max_len.saturating_sub(self.buf.len() - inner.len());
        let recurse = !inner.is_empty() && depth < MAX_PROTOBUF_DEPTH;
        let mut edit = Edit::new(self.rng, &mut inner, max_len);
        if !(recurse && edit.protobuf(depth + 1).is_some()) {
            edit.bytes(&[], false);
        }
        let mut encoded = varint(to_u64(inner.len()));
        encoded.extend_from_slice(&inner);
        self.replace(field.tag_end, field.end, &encoded);
        Some(())
    }

    /// Inserts a chain of 100 to 10 000 nested messages (as many as fit) before a field or at
    /// the end, as field 1 or as the number of an existing field.
    fn insert_nesting(&mut self, field: Field) -> Option<()> {
        let number = self.rng.either(1, field.number);
        let levels = self.rng.between(100, 10_000);
        let chain = nested_chain((number << 3) | 2, levels, self.room());
        let at = self.rng.either(self.buf.len(), field.start);
        if chain.is_empty() {
            return None;
        }
        self.insert(at, &chain);
        Some(())
    }
}

/// `n` as a `u64` (saturating on exotic targets).
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

// ---- protobuf framing ----

/// Reads a varint at `*pos`, advancing it; `None` when truncated or longer than 10 bytes
/// (`*pos` is then unspecified). Bits past 64 are dropped, as lenient decoders do.
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Appends `v` as a varint.
fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// `v` as a varint.
fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    write_varint(&mut out, v);
    out
}

/// One field of a shallow protobuf parse: the tag at `start..tag_end`, a length prefix at
/// `tag_end..body` (empty unless length-delimited), the value at `body..end`.
#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    tag_end: usize,
    body: usize,
    end: usize,
    number: u64,
    wire: u8,
}

/// Splits `buf` into top-level fields; `None` unless it is a well-framed field sequence
/// (groups, wire types 3 and 4, count as malformed).
fn parse_fields(buf: &[u8]) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = read_varint(buf, &mut pos)?;
        let (tag_end, number, wire) = (pos, tag >> 3, tag.to_le_bytes()[0] & 7);
        let len = match wire {
            0 => read_varint(buf, &mut pos).map(|_| 0)?,
            1 => 8,
            2 => usize::try_from(read_varint(buf, &mut pos)?).ok()?,
            5 => 4,
            _ => return None,
        };
        let body = if wire == 0 { tag_end } else { pos };
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= buf.len() && number > 0)?;
        fields.push(Field {
            start,
            tag_end,
            body,
            end,
            number,
            wire,
        });
        pos = end;
    }
    Some(fields)
}

/// A random field of wire type `wire`.
fn pick_field(rng: &mut Rng, fields: &[Field], wire: u8) -> Option<Field> {
    let matching: Vec<Field> = fields.iter().copied().filter(|f| f.wire == wire).collect();
    rng.pick(&matching)
}

/// Up to `levels` messages nested in each other, each the field `tag` of the one around it,
/// with correct length prefixes; as many levels as fit in `room` bytes.
fn nested_chain(tag: u64, levels: usize, room: usize) -> Vec<u8> {
    let tag = varint(tag);
    let mut payload_lens = Vec::new();
    let mut payload = 0usize;
    while payload_lens.len() < levels {
        let prefix = varint(to_u64(payload)).len();
        let total = payload.saturating_add(tag.len() + prefix);
        if total > room {
            break;
        }
        payload_lens.push(payload);
        payload = total;
    }
    let mut out = Vec::with_capacity(payload);
    for &len in payload_lens.iter().rev() {
        out.extend_from_slice(&tag);
        write_varint(&mut out, to_u64(len));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTOBUF: &[u8] = &[0x0a, 0x03, 0x08, 0x96, 0x01];

    #[test]
    fn field_duplication_amplifies() {
        let amplified = (0..200).any(|seed| {
            let (mut rng, mut buf) = (Rng::new(seed), PROTOBUF.to_vec());
            let field = parse_fields(&buf).unwrap()[0];
            let done = Edit::new(&mut rng, &mut buf, 1 << 20)
                .duplicate_field(field)
                .is_some();
            let copies = parse_fields(&buf).unwrap().len();
            done && buf.len() >= 50 * PROTOBUF.len() && copies * PROTOBUF.len() == buf.len()
        });
        assert!(amplified);
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::MAX] {
            let (bytes, mut pos) = (varint(value), 0);
            assert_eq!(read_varint(&bytes, &mut pos), Some(value));
            assert_eq!(pos, bytes.len());
        }
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(read_varint(&[0x80], &mut 0), None);
        assert_eq!(read_varint(&[0xff; 11], &mut 0), None);
        assert_eq!(read_varint(&OVERLONG_VARINT, &mut 0), Some(1));
    }

    #[test]
    fn nested_chains_are_well_framed() {
        let mut buf = nested_chain(0x0a, 100, 1 << 20);
        let mut levels = 0;
        while let Some(&[field]) = parse_fields(&buf).as_deref() {
            assert_eq!((field.number, field.wire), (1, 2));
            buf = buf[field.body..field.end].to_vec();
            levels += 1;
        }
        assert_eq!((levels, buf.len()), (100, 0));
        assert!(nested_chain(0x0a, 10_000, 50).len() <= 50);
    }
}
