//! Generic byte edits for every shape, and the Binary shape's bias towards headers and footers.

use super::edit::Edit;
use super::rng::Rng;

/// Single bytes on the boundaries decoders check.
const INTERESTING_BYTES: [u8; 7] = [0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x40];

/// Integers whose low 2, 4 or 8 bytes overwrite a range: 0, -1, `i32::MAX`, `i32::MIN`
/// (sign-extended), `u32::MAX`, `i64::MAX`, 1 << 31 and 1 << 63.
#[rustfmt::skip]
const INTERESTING_INTS: [u64; 8] = [
    0, u64::MAX, 0x7fff_ffff, 0xffff_ffff_8000_0000,
    0xffff_ffff, 0x7fff_ffff_ffff_ffff, 1 << 31, 1 << 63,
];

impl Rng {
    /// A position in `0..len` (0 when `len` is 0); with `edges`, within 64 of either end.
    /// This is how `Shape::Binary` aims half of its edits at headers and footers.
    fn position(&mut self, len: usize, edges: bool) -> usize {
        if !edges || len <= 128 {
            return self.below(len);
        }
        let offset = self.below(64);
        self.either(offset, len - 1 - offset)
    }
}

impl Edit<'_> {
    /// One generic byte edit. With `edges`, point edits land within 64 bytes of either end.
    pub(super) fn bytes(&mut self, other: &[u8], edges: bool) {
        match self.rng.below(8) {
            0 | 1 => self.poke_byte(edges),
            2 => self.poke_int(edges),
            3 => self.insert_random(edges),
            4 => self.delete_range(),
            5 => self.duplicate_range(),
            6 => self.splice(other),
            _ => {
                let cut = self.rng.below(self.buf.len());
                self.buf.truncate(cut);
            }
        }
    }

    /// Flips a bit or sets an interesting byte.
    fn poke_byte(&mut self, edges: bool) {
        let at = self.rng.position(self.buf.len(), edges);
        let flipped = 1u8 << self.rng.below(8);
        let interesting = self
            .rng
            .pick(&INTERESTING_BYTES)
            .filter(|_| self.rng.chance(2));
        if let Some(byte) = self.buf.get_mut(at) {
            *byte = interesting.unwrap_or(*byte ^ flipped);
        }
    }

    /// Overwrites 2, 4 or 8 bytes with an interesting integer, little or big endian.
    fn poke_int(&mut self, edges: bool) {
        let width = self.rng.pick(&[2, 4, 8]).unwrap_or(4);
        let value = self.rng.pick(&INTERESTING_INTS).unwrap_or(0);
        let (le, be) = (value.to_le_bytes(), value.to_be_bytes());
        let src = self.rng.either(le.get(..width), be.get(8 - width..));
        let at = self
            .rng
            .position(self.buf.len().saturating_sub(width) + 1, edges);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(at..at + width), src) {
            dst.copy_from_slice(src);
        }
    }

    /// Inserts 1 to 16 random bytes, as many as fit.
    pub(super) fn insert_random(&mut self, edges: bool) {
        let count = self.rng.between(1, 16).min(self.room());
        let bytes: Vec<u8> = (0..count).map(|_| self.rng.byte()).collect();
        let at = self.rng.position(self.buf.len() + 1, edges);
        self.insert(at, &bytes);
    }

    /// Deletes 1 to 64 bytes.
    fn delete_range(&mut self) {
        let count = self.rng.between(1, self.buf.len().min(64));
        let start = self.rng.below(self.buf.len().saturating_sub(count) + 1);
        self.replace(start, start + count, &[]);
    }

    /// Copies up to 256 bytes elsewhere, sometimes up to 64 times over, as many as fit.
    fn duplicate_range(&mut self) {
        let len = self.rng.between(1, self.buf.len().min(256));
        let start = self.rng.below(self.buf.len().saturating_sub(len) + 1);
        let wanted = self.rng.repeats(64);
        let copies = self.fit(wanted, len).unwrap_or(0);
        let bytes = self
            .buf
            .get(start..start + len)
            .unwrap_or_default()
            .repeat(copies);
        let at = self.rng.below(self.buf.len() + 1);
        self.insert(at, &bytes);
    }

    /// A prefix of the input followed by a suffix of `other`.
    fn splice(&mut self, other: &[u8]) {
        let cut = self.rng.below(self.buf.len() + 1);
        self.buf.truncate(cut);
        let from = self.rng.below(other.len() + 1);
        self.buf
            .extend_from_slice(other.get(from..).unwrap_or_default());
    }
}
