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

/// Single bytes on the boundaries decoders check.
const INTERESTING_BYTES: [u8; 7] = [0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x40];

/// Integers whose low 2, 4 or 8 bytes overwrite a range: 0, -1, `i32::MAX`, `i32::MIN`
/// (sign-extended), `u32::MAX`, `i64::MAX`, 1 << 31 and 1 << 63.
#[rustfmt::skip]
const INTERESTING_INTS: [u64; 8] = [
    0, u64::MAX, 0x7fff_ffff, 0xffff_ffff_8000_0000,
    0xffff_ffff, 0x7fff_ffff_ffff_ffff, 1 << 31, 1 << 63,
];

/// Values for protobuf varint fields.
const INTERESTING_VARINTS: [u64; 7] = [0, 1, 127, 128, 0xffff_ffff, u64::MAX, 1 << 63];

/// 1 encoded as an overlong 10-byte varint.
const OVERLONG_VARINT: [u8; 10] = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];

/// Recursion bound for edits inside nested protobuf messages.
const MAX_PROTOBUF_DEPTH: usize = 32;

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

/// PromQL tokens for [`Shape::Text`].
#[rustfmt::skip]
const PROMQL_TOKENS: &[&[u8]] = &[
    b"(", b")", b"{", b"}", b"[", b"]", b"[5m]", b"[1e30s]", b"offset 1y", b"@ 1e300",
    b" or ", b" and ", b" unless ", b" by (a)", b" without (b)", b"sum(", b"rate(",
    b"histogram_quantile(0.9,", b"topk(3,", br#"=~".*""#, br#"!~"(a|b)*c""#, br#""\xff""#,
    b"\"\xff\"", b"1e308", b"-Inf", b"NaN", b"0x1p-1074", b"+", b"/", b"^", b"==bool",
    b"__name__", br#"{__name__=~".+"}"#, b"1/0",
];

/// A small deterministic generator (splitmix64): the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`; every seed, 0 included, is fine.
    #[must_use]
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`, or 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(n) if n > 0 => usize::try_from(self.next_u64() % n).unwrap_or(0),
            _ => 0,
        }
    }

    /// True with probability `1 / one_in` (always when `one_in` is 0 or 1).
    pub fn chance(&mut self, one_in: u32) -> bool {
        one_in <= 1 || self.next_u64().is_multiple_of(u64::from(one_in))
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo.saturating_add(self.below(hi.saturating_sub(lo).saturating_add(1)))
    }

    /// 1 half of the time, otherwise a number in `1..=max`.
    fn repeats(&mut self, max: usize) -> usize {
        let many = self.between(1, max);
        self.either(1, many)
    }

    /// `a` or `b`, evenly.
    fn either<T>(&mut self, a: T, b: T) -> T {
        if self.chance(2) { a } else { b }
    }

    /// A random element of `items`, `None` when it is empty.
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        items.get(self.below(items.len())).copied()
    }

    /// A random byte.
    fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// A position in `0..len` (0 when `len` is 0); with `edges`, within 64 of either end.
    fn position(&mut self, len: usize, edges: bool) -> usize {
        if !edges || len <= 128 {
            return self.below(len);
        }
        let offset = self.below(64);
        self.either(offset, len - 1 - offset)
    }
}

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

/// A byte range, `start..end`, of a token or a word.
type Span = (usize, usize);

/// `n` as a `u64` (saturating on exotic targets).
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The positions of the bytes of `buf` that are among `set`.
fn positions_of(buf: &[u8], set: &[u8]) -> Vec<usize> {
    let found = buf.iter().enumerate().filter(|(_, b)| set.contains(b));
    found.map(|(i, _)| i).collect()
}

/// An edit in progress: the buffer being mutated, the generator and the length bound. Edits
/// that would outgrow `max_len` are cut to fit; the few that may not are truncated at the end.
struct Edit<'a> {
    rng: &'a mut Rng,
    buf: &'a mut Vec<u8>,
    max_len: usize,
}

impl<'a> Edit<'a> {
    fn new(rng: &'a mut Rng, buf: &'a mut Vec<u8>, max_len: usize) -> Self {
        Edit { rng, buf, max_len }
    }

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

    /// Bytes left before `max_len`.
    fn room(&self) -> usize {
        self.max_len.saturating_sub(self.buf.len())
    }

    /// How many copies of a `unit`-byte piece fit, at most `wanted`; `None` when none does.
    fn fit(&self, wanted: usize, unit: usize) -> Option<usize> {
        Some(wanted.min(self.room() / unit.max(1))).filter(|&n| n > 0)
    }

    /// Replaces `buf[start..end]` with `with`, clamping the range to the buffer.
    fn replace(&mut self, start: usize, end: usize, with: &[u8]) {
        let end = end.min(self.buf.len());
        let start = start.min(end);
        drop(self.buf.splice(start..end, with.iter().copied()));
    }

    /// Inserts `with` at `at` (clamped to the end).
    fn insert(&mut self, at: usize, with: &[u8]) {
        self.replace(at, at, with);
    }

    // ---- generic byte edits ----

    /// One generic byte edit. With `edges`, point edits land within 64 bytes of either end.
    fn bytes(&mut self, other: &[u8], edges: bool) {
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
    fn insert_random(&mut self, edges: bool) {
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

    // ---- protobuf ----

    /// One protobuf-aware edit; `None` when the input does not parse or the edit does not apply.
    fn protobuf(&mut self, depth: usize) -> Option<()> {
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

    // ---- JSON ----

    /// One JSON-aware edit.
    fn json(&mut self) -> Option<()> {
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

    // ---- text (PromQL) ----

    /// One PromQL-aware edit.
    fn text(&mut self) -> Option<()> {
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
    fn protobuf_field_duplication_amplifies() {
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
        let mutator = Mutator::new(Shape::Protobuf, 1 << 20);
        let mut out = Vec::new();
        let reached = (0..10_000).any(|seed| {
            mutator.mutate(&mut Rng::new(seed), PROTOBUF, &[], &mut out);
            out.len() >= 50 * PROTOBUF.len()
        });
        assert!(reached);
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
