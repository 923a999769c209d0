//! Interned names: rollup rows accumulate under small integer ids, so the five lookups a
//! call makes hash a few integers instead of strings and touch no reference counts.

use std::sync::Arc;

use foldhash::HashMap;
use proto::Protocol;

/// The name that stands for every endpoint past a service's cap, and for every service
/// name past the service cap.
pub const OVERFLOW: &str = "(overflow)";

/// The id of the empty name (an unused key slot, an unknown instance).
pub const ID_EMPTY: u32 = 0;
/// The id of [`OVERFLOW`].
pub const ID_OVERFLOW: u32 = 1;

/// Past this many names, the table is rebuilt at the next flush (pods come and go).
const RESET_AFTER: usize = 1 << 16;

/// Names ↔ ids. The fixed ids: [`ID_EMPTY`], [`ID_OVERFLOW`], then the protocols in
/// [`Protocol::ALL`] order ([`Names::protocol`]).
#[derive(Debug)]
pub struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    /// The table with only the fixed names.
    pub fn new() -> Names {
        let mut n = Names {
            ids: HashMap::default(),
            names: Vec::new(),
        };
        for s in ["", OVERFLOW] {
            n.id(&Arc::from(s));
        }
        for p in Protocol::ALL {
            n.id(&Arc::from(p.as_str()));
        }
        n
    }

    /// The id of a protocol's name.
    pub fn protocol(p: Protocol) -> u32 {
        ID_OVERFLOW + 1 + p as u32
    }

    /// The id of `name`, assigned on first sight.
    pub fn id(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.ids.get(&**name) {
            return id;
        }
        // More than u32::MAX names cannot accumulate between two resets.
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name.clone(), id);
        id
    }

    /// The name of an id this table gave out.
    pub fn name(&self, id: u32) -> Arc<str> {
        self.names[id as usize].clone()
    }

    /// Whether the table has grown past its reset size (call between flushes only: ids
    /// held by accumulating rows would dangle).
    pub fn too_large(&self) -> bool {
        self.names.len() > RESET_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ids_name_what_they_stand_for() {
        let n = Names::new();
        assert_eq!(&*n.name(ID_EMPTY), "");
        assert_eq!(&*n.name(ID_OVERFLOW), OVERFLOW);
        for p in Protocol::ALL {
            assert_eq!(&*n.name(Names::protocol(p)), p.as_str());
        }
    }
}
