//! PromQL-aware edits for text inputs: inserted and repeated tokens, unbalanced brackets.

use super::edit::Edit;
use super::util::{Span, positions_of};

/// PromQL tokens for `Shape::Text`.
#[rustfmt::skip]
const PROMQL_TOKENS: &[&[u8]] = &[
    b"(", b")", b"{", b"}", b"[", b"]", b"[5m]", b"[1e30s]", b"offset 1y", b"@ 1e300",
    b" or ", b" and ", b" unless ", b" by (a)", b" without (b)", b"sum(", b"rate(",
    b"histogram_quantile(0.9,", b"topk(3,", br#"=~".*""#, br#"!~"(a|b)*c""#, br#""\xff""#,
    b"\"\xff\"", b"1e308", b"-Inf", b"NaN", b"0x1p-1074", b"+", b"/", b"^", b"==bool",
    b"__name__", br#"{__name__=~".+"}"#, b"1/0",
];

impl Edit<'_> {
    /// One PromQL-aware edit.
    pub(super) fn text(&mut self) -> Option<()> {
        let words = word_ranges(self.buf);
        let token = self.rng.pick(PROMQL_TOKENS)?;
        match self.rng.below(4) {
            0 => {
                let at = self.text_position(&words);
                self.insert(at, token);
            }
            1 => {
                let wanted = self.rng.between(1, 10_000);
                let repeated = token.repeat(self.fit(wanted, token.len())?);
                let at = self.text_position(&words);
                self.insert(at, &repeated);
            }
            2 => self.unbalance_brackets(&words),
            _ => {
                let (start, end) = self.rng.pick(&words)?;
                self.replace(start, end, token);
            }
        }
        Some(())
    }

    /// An insertion point: mostly a word boundary, sometimes any byte.
    fn text_position(&mut self, words: &[Span]) -> usize {
        match self.rng.pick(words) {
            Some((start, end)) if !self.rng.chance(4) => self.rng.either(start, end),
            _ => self.rng.below(self.buf.len() + 1),
        }
    }

    /// Deletes a bracket or inserts a stray one.
    fn unbalance_brackets(&mut self, words: &[Span]) {
        let brackets = positions_of(self.buf, b"(){}[]");
        match self.rng.pick(&brackets) {
            Some(at) if self.rng.chance(2) => self.replace(at, at + 1, &[]),
            _ => {
                let bracket = self.rng.pick(b"(){}[]").unwrap_or(b'(');
                let at = self.text_position(words);
                self.insert(at, &[bracket]);
            }
        }
    }
}

// ---- text lexing ----

/// Ranges of identifier-like runs (letters, digits, `_`, `.`).
fn word_ranges(buf: &[u8]) -> Vec<Span> {
    let mut ranges = Vec::new();
    let mut start = None;
    let bytes = buf.iter().copied().chain(std::iter::once(b' '));
    for (i, byte) in bytes.enumerate() {
        let word = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.';
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                ranges.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    ranges
}
