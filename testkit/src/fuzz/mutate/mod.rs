//! Structure-aware input mutation for the in-process fuzzing driver (stable Rust, std only).
//!
//! [`Mutator::mutate`] turns a corpus entry into a mutant by stacking one to four random edits.
//! Every [`Shape`] gets the generic byte edits: bit flips, interesting bytes and integers,
//! inserted, deleted and duplicated ranges, a splice with a second entry, truncation. Each shape
//! adds edits that keep enough structure to get past the first checks of its decoder:
//!
//! - [`Shape::Protobuf`] walks the top level as protobuf fields and edits varints, length
//!   prefixes, tags and whole fields, recurses into nested messages (re-encoding their length)
//!   and inserts deeply nested message chains;
//! - [`Shape::Json`] nests deeply, swaps in odd numbers and strings, duplicates elements and
//!   drops punctuation;
//! - [`Shape::Text`] inserts and repeats PromQL tokens and unbalances brackets;
//! - [`Shape::Binary`] aims half of its edits at the first and last 64 bytes, where headers and
//!   footers (a Parquet footer length and magic) live.
//!
//! Repeated fields, duplicated ranges and nesting make "amplifying" inputs, small on the wire
//! and costly to decode. No mutant is longer than the mutator's `max_len`.
//!
//! Everything random comes from [`Rng`] (splitmix64): the same seed, inputs and call sequence
//! give the same mutants, so a failure replays from its seed. No input makes the mutator panic.

mod bytes;
mod edit;
mod json;
mod protobuf;
mod rng;
mod text;
mod util;

pub use rng::Rng;

use edit::Edit;

/// What the inputs are; selects the structure-aware edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Protobuf messages (Envoy ALS, OTLP): field, length, tag and nesting edits.
    Protobuf,
    /// JSON documents (OTLP/JSON): nesting, number, string and punctuation edits.
    Json,
    /// PromQL text: inserted and repeated query tokens, unbalanced brackets.
    Text,
    /// Binary files (spool, Parquet): byte edits, half of them at the first or last 64 bytes.
    Binary,
}

/// Mutates corpus entries of one [`Shape`] into mutants of at most `max_len` bytes.
#[derive(Debug, Clone)]
pub struct Mutator {
    shape: Shape,
    max_len: usize,
}

impl Mutator {
    /// A mutator for inputs of `shape` whose mutants never exceed `max_len` bytes.
    #[must_use]
    pub fn new(shape: Shape, max_len: usize) -> Mutator {
        Mutator { shape, max_len }
    }

    /// Writes into `out` (cleared first) a mutant of `input` made by 1 to 4 stacked edits.
    /// `other` is a second corpus entry for splicing. `out` never exceeds `max_len` bytes.
    pub fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(input);
        let mut edit = Edit::new(rng, out, self.max_len);
        for _ in 0..edit.rng.between(1, 4) {
            edit.once(self.shape, other);
        }
        edit.buf.truncate(self.max_len);
    }
}

impl Edit<'_> {
    /// One edit: structure-aware half of the time, a byte edit otherwise or when the
    /// structured one does not apply. Binary inputs aim that half at their edges instead.
    fn once(&mut self, shape: Shape, other: &[u8]) {
        if self.buf.is_empty() {
            self.insert_random(false);
            return;
        }
        let structured = self.rng.chance(2);
        let done = structured
            && match shape {
                Shape::Protobuf => self.protobuf(0).is_some(),
                Shape::Json => self.json().is_some(),
                Shape::Text => self.text().is_some(),
                Shape::Binary => false,
            };
        if !done {
            self.bytes(other, structured && shape == Shape::Binary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTOBUF: &[u8] = &[0x0a, 0x03, 0x08, 0x96, 0x01];
    const CORPUS: [&[u8]; 4] = [
        b"",
        PROTOBUF,
        br#"{"resourceSpans":[{"a":1}]}"#,
        b"sum by (a) (rate(x[5m]))",
    ];
    const SHAPES: [Shape; 4] = [Shape::Protobuf, Shape::Json, Shape::Text, Shape::Binary];

    #[test]
    fn mutants_never_exceed_max_len() {
        for shape in SHAPES {
            let mutator = Mutator::new(shape, 4096);
            let mut out = Vec::new();
            for seed in 0..5 {
                let mut rng = Rng::new(seed);
                for (index, entry) in CORPUS.into_iter().enumerate() {
                    let other = CORPUS[(index + 1) % CORPUS.len()];
                    let mut current = entry.to_vec();
                    for _ in 0..1000 {
                        mutator.mutate(&mut rng, &current, other, &mut out);
                        assert!(out.len() <= 4096, "{shape:?}: {} bytes", out.len());
                        // Mutants of mutants too, so that large and broken inputs are covered.
                        current = if rng.chance(4) {
                            out.clone()
                        } else {
                            entry.to_vec()
                        };
                    }
                }
            }
        }
    }

    fn mutants(seed: u64) -> Vec<Vec<u8>> {
        let mut rng = Rng::new(seed);
        let mut all = Vec::new();
        for (shape, entry) in SHAPES.into_iter().zip(CORPUS).cycle().take(400) {
            let mut out = Vec::new();
            Mutator::new(shape, 4096).mutate(&mut rng, entry, CORPUS[2], &mut out);
            all.push(out);
        }
        all
    }

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        assert_eq!(mutants(7), mutants(7));
        assert_ne!(mutants(7), mutants(8));
    }

    #[test]
    fn protobuf_mutants_amplify() {
        let mutator = Mutator::new(Shape::Protobuf, 1 << 20);
        let mut out = Vec::new();
        let reached = (0..10_000).any(|seed| {
            mutator.mutate(&mut Rng::new(seed), PROTOBUF, &[], &mut out);
            out.len() >= 50 * PROTOBUF.len()
        });
        assert!(reached);
    }
}
