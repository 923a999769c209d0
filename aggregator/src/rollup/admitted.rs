//! Names admitted under a cap, forgotten when idle. Two generations are kept, the current
//! one and the one before: a name found in either is admitted (and moves to the current
//! one); [`Admitted::rotate`] makes the current generation the previous one and drops the
//! one before. Rotated every `aggregator.cap_forget_after`, a name not seen for between
//! one and two periods leaves the cap, so one-off names (a scan, a flood of hostile
//! names) cannot hold the places of real services until a restart. Admission costs one
//! lookup; rotation costs nothing per name until the dropped generation is freed.

use std::hash::Hash;

use foldhash::HashSet;

/// The names admitted under one cap.
#[derive(Debug)]
pub(super) struct Admitted<T> {
    current: HashSet<T>,
    /// Names admitted before the last rotation and not seen since (never in `current`).
    previous: HashSet<T>,
}

impl<T> Default for Admitted<T> {
    fn default() -> Self {
        Admitted {
            current: HashSet::default(),
            previous: HashSet::default(),
        }
    }
}

impl<T: Hash + Eq + Clone> Admitted<T> {
    /// Whether `name` has a place under `cap`: it has one already, or one is free and it
    /// takes it.
    pub(super) fn admit(&mut self, name: &T, cap: usize) -> bool {
        if self.current.contains(name) {
            return true;
        }
        if let Some(name) = self.previous.take(name) {
            self.current.insert(name);
            return true;
        }
        if self.len() < cap {
            self.current.insert(name.clone());
            return true;
        }
        false
    }

    /// Starts a new generation; names not seen since the rotation before are forgotten.
    pub(super) fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// Names holding a place.
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub(super) fn contains(&self, name: &T) -> bool {
        self.current.contains(name) || self.previous.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_names_leave_after_two_rotations_and_free_their_places() {
        let mut a = Admitted::default();
        assert!(a.admit(&"real", 2));
        assert!(a.admit(&"one-off", 2));
        assert!(!a.admit(&"late", 2), "the cap is full");
        a.rotate();
        // Seen again after a rotation: kept, and the cap still counts both.
        assert!(a.admit(&"real", 2));
        assert!(!a.admit(&"late", 2));
        a.rotate();
        // "one-off" was not seen for a whole period: gone, its place free.
        assert!(!a.contains(&"one-off"));
        assert!(a.contains(&"real"));
        assert!(a.admit(&"late", 2));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn a_name_seen_every_period_is_never_forgotten() {
        let mut a = Admitted::default();
        for _ in 0..10 {
            assert!(a.admit(&"steady", 1));
            a.rotate();
        }
        assert!(a.contains(&"steady"));
        assert!(!a.admit(&"other", 1));
    }
}
