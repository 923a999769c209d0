//! The source rule's inputs and outcome: the `[dedup]` preference, what each source heard
//! of a destination, and the source chosen per destination for one window (see the rule in
//! [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};

use proto::{Side, Source};

use crate::row::Row;
use crate::schema::Key;

/// Which source counts when the mesh and traces both report calls into a service
/// (`[dedup]` in the config file).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dedup {
    /// The source preferred for every destination: `mesh` (default) or `trace`.
    pub prefer: Source,
    /// Per-service exceptions: `"checkout.shop" = "trace"`.
    pub services: BTreeMap<String, Source>,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            prefer: Source::Mesh,
            services: BTreeMap::new(),
        }
    }
}

impl Dedup {
    /// The preferred source for `service`.
    pub fn preferred(&self, service: &str) -> Source {
        self.services.get(service).copied().unwrap_or(self.prefer)
    }
}

/// What the store holds for one destination: per source, whether it has server-side
/// reports and whether it has any.
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    server: [bool; 2],
    any: [bool; 2],
}

impl Heard {
    fn choose(self, preferred: Source) -> Source {
        let other = preferred.other();
        let (p, o) = (preferred as usize, other as usize);
        if self.server[p] {
            preferred
        } else if self.server[o] {
            other
        } else if self.any[p] || !self.any[o] {
            preferred
        } else {
            other
        }
    }
}

/// The source chosen per destination service for one window.
#[derive(Debug, Clone)]
pub struct SourceChoice {
    chosen: HashMap<Arc<str>, Source>,
    dedup: Dedup,
}

impl SourceChoice {
    /// The source counted for calls into `service`.
    pub fn of(&self, service: &str) -> Source {
        match self.chosen.get(service) {
            Some(s) => *s,
            // The service table lacks it (every flush writes all tables at once, so only
            // a retention cut or a write between two reads can do this): the preferred
            // source.
            None => self.dedup.preferred(service),
        }
    }

    /// Whether the service table this choice was made from held `service`.
    pub fn knows(&self, service: &str) -> bool {
        self.chosen.contains_key(service)
    }

    /// Chooses from rows of the service table (any minute split, any subset of
    /// services: a destination's choice needs only its own rows).
    pub fn from_service_rows(rows: &[Row], dedup: &Dedup) -> SourceChoice {
        let mut heard: HashMap<Arc<str>, Heard> = HashMap::default();
        for r in rows {
            let service = match r.key.keys.shared(Key::Service) {
                Some(s) => s.clone(),
                None => Arc::from(""),
            };
            let h = heard.entry(service).or_default();
            let i = r.key.source as usize;
            h.any[i] = true;
            h.server[i] |= r.key.side == Side::Server;
        }
        let chosen = heard
            .into_iter()
            .map(|(name, h)| {
                let pick = h.choose(dedup.preferred(&name));
                (name, pick)
            })
            .collect();
        SourceChoice {
            chosen,
            dedup: dedup.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_that_hears_the_destination_itself_wins() {
        let heard = |server: [bool; 2], any: [bool; 2]| Heard { server, any };
        use Source::{Mesh, Trace};
        // Both hear it as a server: the preference decides.
        let both = heard([true, true], [true, true]);
        assert_eq!(both.choose(Mesh), Mesh);
        assert_eq!(both.choose(Trace), Trace);
        // Only the traces hear it as a server (an instrumented service outside the mesh
        // that meshed callers reach): traces, whatever the preference.
        let traced = heard([false, true], [true, true]);
        assert_eq!(traced.choose(Mesh), Trace);
        // Only callers report it: the preferred source when it has anything.
        let callers = heard([false, false], [true, true]);
        assert_eq!(callers.choose(Mesh), Mesh);
        assert_eq!(callers.choose(Trace), Trace);
        let trace_callers = heard([false, false], [false, true]);
        assert_eq!(trace_callers.choose(Mesh), Trace);
    }
}
