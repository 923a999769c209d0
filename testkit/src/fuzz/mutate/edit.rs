//! The edit in progress (buffer, generator, length bound) and its bounded splicing helpers.

use super::rng::Rng;

/// An edit in progress: the buffer being mutated, the generator and the length bound. Edits
/// that would outgrow `max_len` are cut to fit; the few that may not are truncated at the end.
pub(super) struct Edit<'a> {
    pub(super) rng: &'a mut Rng,
    pub(super) buf: &'a mut Vec<u8>,
    pub(super) max_len: usize,
}

impl<'a> Edit<'a> {
    pub(super) fn new(rng: &'a mut Rng, buf: &'a mut Vec<u8>, max_len: usize) -> Self {
        Edit { rng, buf, max_len }
    }

    /// Bytes left before `max_len`.
    pub(super) fn room(&self) -> usize {
        self.max_len.saturating_sub(self.buf.len())
    }

    /// How many copies of a `unit`-byte piece fit, at most `wanted`; `None` when none does.
    pub(super) fn fit(&self, wanted: usize, unit: usize) -> Option<usize> {
        Some(wanted.min(self.room() / unit.max(1))).filter(|&n| n > 0)
    }

    /// Replaces `buf[start..end]` with `with`, clamping the range to the buffer.
    pub(super) fn replace(&mut self, start: usize, end: usize, with: &[u8]) {
        let end = end.min(self.buf.len());
        let start = start.min(end);
        drop(self.buf.splice(start..end, with.iter().copied()));
    }

    /// Inserts `with` at `at` (clamped to the end).
    pub(super) fn insert(&mut self, at: usize, with: &[u8]) {
        self.replace(at, at, with);
    }
}
