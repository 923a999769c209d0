//! The minutes a request covers.

/// A half-open window of whole minutes, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start_minute: i64,
    pub end_minute: i64,
}

impl Window {
    /// The minutes whose start lies in `[start, end)`, for times in unix seconds (total:
    /// times near `i64::MAX` saturate rather than wrap).
    pub fn from_seconds(start: i64, end: i64) -> Window {
        let up = |t: i64| {
            let floor = t.div_euclid(60) * 60;
            if t.rem_euclid(60) == 0 {
                floor
            } else {
                floor.saturating_add(60)
            }
        };
        let start_minute = up(start);
        let end_minute = up(end).max(start_minute);
        Window {
            start_minute,
            end_minute,
        }
    }

    /// Number of minutes in the window.
    pub fn minutes(&self) -> i64 {
        self.end_minute.saturating_sub(self.start_minute) / 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rounds_to_minutes_starting_inside() {
        let w = Window::from_seconds(90, 300);
        assert_eq!((w.start_minute, w.end_minute, w.minutes()), (120, 300, 3));
        let w = Window::from_seconds(120, 301);
        assert_eq!((w.start_minute, w.end_minute, w.minutes()), (120, 360, 4));
        let w = Window::from_seconds(500, 100);
        assert_eq!(w.minutes(), 0);
    }
}
