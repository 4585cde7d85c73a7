//! The MAC learning table behind the `normal` action.
//!
//! Translation only reads it; what a packet teaches (source MAC and VLAN on
//! its input port) comes back from translation as a [`Learn`] for the caller
//! to apply, which keeps translation free of side effects and lets
//! revalidation re-run it without learning anything. Every change that could
//! alter a forwarding decision bumps [`MacTable::version`], which tells the
//! datapath to revalidate its megaflows.

use crate::port::PortNo;
use std::collections::HashMap;

/// How long an entry lives without being refreshed (OVS's default).
pub const DEFAULT_AGING_MS: u64 = 300_000;

/// Default capacity (OVS's default `mac-table-size`).
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

/// What a packet taught: `mac` on `vlan` lives behind `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Learn {
    /// VLAN id (0 when untagged).
    pub vlan: u16,
    /// Source MAC.
    pub mac: [u8; 6],
    /// Input port.
    pub port: PortNo,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortNo,
    used_ms: u64,
}

/// The table: (vlan, mac) to port, with aging.
#[derive(Clone, Debug)]
pub struct MacTable {
    entries: HashMap<(u16, [u8; 6]), Entry>,
    aging_ms: u64,
    max_entries: usize,
    version: u64,
}

impl Default for MacTable {
    fn default() -> Self {
        MacTable {
            entries: HashMap::new(),
            aging_ms: DEFAULT_AGING_MS,
            max_entries: DEFAULT_MAX_ENTRIES,
            version: 0,
        }
    }
}

impl MacTable {
    /// Where `mac` on `vlan` was last seen. Aging happens only in
    /// [`MacTable::expire`], never here, so that the table's answers change
    /// only together with its version.
    pub fn lookup(&self, vlan: u16, mac: &[u8; 6]) -> Option<PortNo> {
        self.entries.get(&(vlan, *mac)).map(|e| e.port)
    }

    /// Applies what a packet taught. A new or moved MAC bumps the version; a
    /// refresh of a known one does not, because no decision changes.
    pub fn learn(&mut self, l: &Learn, now_ms: u64) {
        let aging = self.aging_ms;
        if let Some(e) = self.entries.get_mut(&(l.vlan, l.mac)) {
            let stale = now_ms >= e.used_ms + aging;
            if e.port != l.port || stale {
                e.port = l.port;
                self.version += 1;
            }
            e.used_ms = now_ms;
            return;
        }
        if self.entries.len() >= self.max_entries {
            self.expire(now_ms);
            if self.entries.len() >= self.max_entries {
                // Evict the least recently used entry, as a full OVS table does.
                if let Some(k) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.used_ms)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(
            (l.vlan, l.mac),
            Entry {
                port: l.port,
                used_ms: now_ms,
            },
        );
        self.version += 1;
    }

    /// Drops entries older than the aging time.
    pub fn expire(&mut self, now_ms: u64) {
        let aging = self.aging_ms;
        let before = self.entries.len();
        self.entries.retain(|_, e| now_ms < e.used_ms + aging);
        if self.entries.len() != before {
            self.version += 1;
        }
    }

    /// Forgets everything learned on `port` (the port went away).
    pub fn flush_port(&mut self, port: PortNo) {
        self.entries.retain(|_, e| e.port != port);
        self.version += 1;
    }

    /// Changes the aging time.
    pub fn set_aging_ms(&mut self, ms: u64) {
        self.aging_ms = ms;
        self.version += 1;
    }

    /// Bumped by every change that can alter a forwarding decision.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of entries, live or not yet expired.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_move_and_age() {
        let mut t = MacTable::default();
        let mac = [0, 1, 2, 3, 4, 5];
        t.learn(
            &Learn {
                vlan: 0,
                mac,
                port: 1,
            },
            0,
        );
        let v = t.version();
        assert_eq!(t.lookup(0, &mac), Some(1));
        t.learn(
            &Learn {
                vlan: 0,
                mac,
                port: 1,
            },
            20,
        );
        assert_eq!(t.version(), v, "a refresh changes no decision");
        t.learn(
            &Learn {
                vlan: 0,
                mac,
                port: 2,
            },
            30,
        );
        assert!(t.version() > v);
        assert_eq!(t.lookup(0, &mac), Some(2));
        assert_eq!(t.lookup(7, &mac), None);
        let v = t.version();
        t.expire(30 + DEFAULT_AGING_MS);
        assert_eq!(t.lookup(0, &mac), None);
        assert!(t.version() > v);
    }
}
