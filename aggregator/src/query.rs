//! Reading rollups back: time windows, the one-call-once side rule, entity lists and
//! time series. Backend-independent: everything here goes through [`Store::scan`].
//!
//! The side rule (DESIGN § 5): a call seen by both sidecars is stored once per side. For
//! each entity, if any server-side row exists in the window the server side is used,
//! otherwise the client side. The choice is made over the whole window, never per minute,
//! so a call whose two reports straddle a minute boundary is still counted once.

use foldhash::HashMap;

use proto::Side;

use crate::Result;
use crate::metrics::Metrics;
use crate::rollup::Row;
use crate::schema::{Keys, Table};
use crate::store::{ScanRequest, Store};

/// A half-open window of whole minutes, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_minute: i64,
    pub end_minute: i64,
}

impl Window {
    /// The minutes whose start lies in `[start, end)`, for times in unix seconds.
    pub fn from_seconds(start: i64, end: i64) -> Window {
        let up = |t: i64| t.div_euclid(60) * 60 + if t.rem_euclid(60) == 0 { 0 } else { 60 };
        let start_minute = up(start);
        let end_minute = up(end).max(start_minute);
        Window {
            start_minute,
            end_minute,
        }
    }

    /// Number of minutes in the window.
    pub fn minutes(&self) -> i64 {
        (self.end_minute - self.start_minute) / 60
    }
}

/// One entity's merged metrics over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub keys: Keys,
    /// OR of the node flags of its rows (see [`crate::schema::FLAGS`]).
    pub flags: u8,
    /// Which sides reported it (`detect_points`).
    pub client_seen: bool,
    pub server_seen: bool,
    /// Metrics from the chosen side.
    pub metrics: Metrics,
}

#[derive(Default)]
struct Sides {
    flags: u8,
    client: Option<Metrics>,
    server: Option<Metrics>,
}

fn fold_sides(rows: Vec<Row>) -> HashMap<Keys, Sides> {
    let mut by_key: HashMap<Keys, Sides> = HashMap::default();
    for row in rows {
        let e = by_key.entry(row.key.keys).or_default();
        e.flags |= row.flags;
        let slot = match row.key.side {
            Side::Client => &mut e.client,
            Side::Server => &mut e.server,
        };
        slot.get_or_insert_with(Metrics::default)
            .merge(&row.metrics);
    }
    by_key
}

/// Entities of `table` in `window` matching `filters`, one per key, side rule applied.
pub async fn entities(
    store: &dyn Store,
    table: Table,
    window: Window,
    filters: Vec<(usize, String)>,
) -> Result<Vec<Entity>> {
    let rows = store
        .scan(&ScanRequest {
            table,
            start_minute: window.start_minute,
            end_minute: window.end_minute,
            filters,
            by_minute: false,
        })
        .await?;
    let mut out: Vec<Entity> = fold_sides(rows)
        .into_iter()
        .map(|(keys, s)| Entity {
            keys,
            flags: s.flags,
            client_seen: s.client.is_some(),
            server_seen: s.server.is_some(),
            metrics: s.server.or(s.client).unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| a.keys.cmp(&b.keys));
    Ok(out)
}

/// Per-minute metrics of the rows of `table` matching `filters`, summed over all matching
/// keys, with the side rule decided per key over the whole window. Minutes without data
/// are absent.
pub async fn series(
    store: &dyn Store,
    table: Table,
    window: Window,
    filters: Vec<(usize, String)>,
) -> Result<Vec<(i64, Metrics)>> {
    let rows = store
        .scan(&ScanRequest {
            table,
            start_minute: window.start_minute,
            end_minute: window.end_minute,
            filters,
            by_minute: true,
        })
        .await?;
    let mut server_keys = std::collections::HashSet::new();
    for r in &rows {
        if r.key.side == Side::Server {
            server_keys.insert(r.key.keys.clone());
        }
    }
    let mut by_minute: std::collections::BTreeMap<i64, Metrics> = Default::default();
    for r in rows {
        let wanted = if server_keys.contains(&r.key.keys) {
            Side::Server
        } else {
            Side::Client
        };
        if r.key.side == wanted {
            by_minute.entry(r.key.minute).or_default().merge(&r.metrics);
        }
    }
    Ok(by_minute.into_iter().collect())
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
