//! Handing rule sets to poll threads without a lock on the packet path.
//!
//! The control thread owns the master [`Bridge`]; after a change it
//! publishes an immutable snapshot (`Arc<Bridge>`, cheap because tables are
//! shared copy-on-write) and bumps a version number. A poll thread reads the
//! version, one atomic load per batch; only when it changed does it take the
//! mutex to pick up the new snapshot. Packets in flight finish with the
//! snapshot they started with, so each sees the old rules or the new ones,
//! never a mix.

use flowtable::Bridge;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The current rule set.
pub struct Published {
    version: AtomicU64,
    bridge: Mutex<Arc<Bridge>>,
}

impl Published {
    /// Starts with `br`, version 1.
    pub fn new(br: Bridge) -> Published {
        Published {
            version: AtomicU64::new(1),
            bridge: Mutex::new(Arc::new(br)),
        }
    }

    /// Replaces the snapshot.
    pub fn publish(&self, br: Bridge) {
        let mut slot = self.bridge.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(br);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The snapshot, if it changed since `seen` (which is updated).
    #[inline]
    pub fn changed_since(&self, seen: &mut u64) -> Option<Arc<Bridge>> {
        let v = self.version.load(Ordering::Acquire);
        if v == *seen {
            return None;
        }
        *seen = v;
        Some(
            self.bridge
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
