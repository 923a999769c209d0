//! Small helpers shared by the JSON and text edits.

/// A byte range, `start..end`, of a token or a word.
pub(super) type Span = (usize, usize);

/// The positions of the bytes of `buf` that are among `set`.
pub(super) fn positions_of(buf: &[u8], set: &[u8]) -> Vec<usize> {
    let found = buf.iter().enumerate().filter(|(_, b)| set.contains(b));
    found.map(|(i, _)| i).collect()
}
