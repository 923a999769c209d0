//! JSON-aware edits: nesting, odd numbers and strings, duplicated elements, dropped punctuation.

use super::edit::Edit;
use super::rng::Rng;
use super::util::{Span, positions_of};

/// Numbers (and not-quite numbers) that replace a JSON number.
#[rustfmt::skip]
const JSON_NUMBERS: &[&[u8]] = &[
    b"1e400", b"-0", b"1e-400", b"18446744073709551616", b"-9223372036854775809",
    b"9007199254740993", b"NaN", b"\"123\"", b"0.1e", b"00",
];

/// Strings that replace a JSON string: escapes, lone surrogates, invalid UTF-8, unterminated.
#[rustfmt::skip]
const JSON_STRINGS: &[&[u8]] = &[
    br#""\u0000""#, br#""\ud800""#, br#""\udc00\ud800x""#, br#""\uZZZZ""#,
    b"\"\xff\xfe\"", b"\"\xc0\x80\"", b"\"\xed\xa0\x80\"", b"\"\\", b"\"",
];

/// Units repeated into a long JSON string.
const JSON_STRING_UNITS: &[&[u8]] = &[b"a", br"\u0000", br"\n", b"\xff", "\u{e9}".as_bytes()];

impl Edit<'_> {
    /// One JSON-aware edit.
    pub(super) fn json(&mut self) -> Option<()> {
        let tokens = json_tokens(self.buf);
        match self.rng.below(5) {
            0 => self.insert_json_nesting(&tokens)?,
            1 => {
                let (start, end) = pick_token(self.rng, self.buf, &tokens, b"-0123456789")?;
                let number = self.rng.pick(JSON_NUMBERS)?;
                self.replace(start, end, number);
            }
            2 => {
                let (start, end) = pick_token(self.rng, self.buf, &tokens, b"\"")?;
                let with = match self.rng.pick(JSON_STRINGS) {
                    Some(odd) if !self.rng.chance(3) => odd.to_vec(),
                    _ => self.long_json_string(),
                };
                self.replace(start, end, &with);
            }
            3 => self.duplicate_json_element(&tokens)?,
            _ => {
                let at = self.rng.pick(&positions_of(self.buf, b"\":,}]{["))?;
                self.replace(at, at + 1, &[]);
            }
        }
        Some(())
    }

    /// Inserts up to 10 000 levels of `[` or `{"a":`, closed or not, after a bracket, `:` or
    /// `,` (or anywhere).
    fn insert_json_nesting(&mut self, tokens: &[Span]) -> Option<()> {
        let arrays = (b"[".as_slice(), b"]".as_slice(), b"".as_slice());
        let (open, close, inner) = self.rng.either(arrays, (br#"{"a":"#, b"}", b"0"));
        let closed = self.rng.chance(2);
        let unit = open.len() + if closed { close.len() + inner.len() } else { 0 };
        let wanted = self.rng.between(1, 10_000);
        let levels = self.fit(wanted, unit)?;
        let mut nest = open.repeat(levels);
        if closed {
            nest.extend_from_slice(inner);
            nest.extend_from_slice(&close.repeat(levels));
        }
        let at = match pick_token(self.rng, self.buf, tokens, b"{[:,") {
            Some((_, end)) if !self.rng.chance(4) => end,
            _ => self.rng.below(self.buf.len() + 1),
        };
        self.insert(at, &nest);
        Some(())
    }

    /// A string of up to 10 000 repeated units (plain, escaped, or invalid UTF-8), as fit.
    fn long_json_string(&mut self) -> Vec<u8> {
        let unit = self.rng.pick(JSON_STRING_UNITS).unwrap_or(b"a");
        let wanted = self.rng.between(1, 10_000);
        let count = self.fit(wanted, unit.len()).unwrap_or(1);
        [b"\"", unit.repeat(count).as_slice(), b"\""].concat()
    }

    /// Appends `,` and copies of an `{...}` or `[...]` element after it, up to 1000 of them.
    fn duplicate_json_element(&mut self, tokens: &[Span]) -> Option<()> {
        let (start, _) = pick_token(self.rng, self.buf, tokens, b"{[")?;
        let mut depth = 0usize;
        let (_, end) = tokens
            .iter()
            .copied()
            .skip_while(|t| t.0 < start)
            .find(|t| {
                match self.buf.get(t.0) {
                    Some(b'{' | b'[') => depth += 1,
                    Some(b'}' | b']') => depth = depth.saturating_sub(1),
                    _ => return false,
                }
                depth == 0
            })?;
        let element = [b",", self.buf.get(start..end)?].concat();
        let wanted = self.rng.repeats(1000);
        let repeated = element.repeat(self.fit(wanted, element.len())?);
        self.insert(end, &repeated);
        Some(())
    }
}

// ---- JSON lexing ----

/// Lenient JSON lexing: the ranges of strings (escape-aware), numbers, brackets, `:` and `,`.
/// A token's first byte tells its kind.
fn json_tokens(buf: &[u8]) -> Vec<Span> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    while let Some(&byte) = buf.get(pos) {
        let start = pos;
        pos += 1;
        if byte == b'"' {
            while let Some(&b) = buf.get(pos) {
                pos += if b == b'\\' { 2 } else { 1 };
                if b == b'"' {
                    break;
                }
            }
        } else if byte == b'-' || byte.is_ascii_digit() {
            while buf.get(pos).is_some_and(|b| b"0123456789.eE+-".contains(b)) {
                pos += 1;
            }
        } else if !b"{}[]:,".contains(&byte) {
            continue;
        }
        tokens.push((start, pos.min(buf.len())));
    }
    tokens
}

/// A random token whose first byte is among `first`.
fn pick_token(rng: &mut Rng, buf: &[u8], tokens: &[Span], first: &[u8]) -> Option<Span> {
    let kind = |t: &&Span| buf.get(t.0).is_some_and(|b| first.contains(b));
    let matching: Vec<Span> = tokens.iter().filter(kind).copied().collect();
    rng.pick(&matching)
}
