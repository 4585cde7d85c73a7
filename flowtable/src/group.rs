//! The group table: `all`, `select` and `indirect` groups.
//!
//! A select group picks its bucket from a hash of the flow's addresses and
//! ports, weighted, so that every packet of a connection takes the same
//! bucket and the choice can be cached in a megaflow (the hashed fields are
//! added to the megaflow's mask by translation).

use crate::action::GroupType;
use crate::rule::{Bucket, GroupSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An installed group.
#[derive(Debug, Clone)]
pub struct Group {
    /// The spec it was made from.
    pub spec: GroupSpec,
    /// Sum of bucket weights (select groups).
    total_weight: u32,
}

impl Group {
    /// Makes a group from its spec.
    pub fn new(spec: GroupSpec) -> Group {
        let total_weight = spec.buckets.iter().map(|b| b.weight as u32).sum();
        Group { spec, total_weight }
    }

    /// The group's type.
    pub fn kind(&self) -> GroupType {
        self.spec.kind
    }

    /// The bucket a select group takes for a flow whose hash is `hash`:
    /// weighted, so a bucket of weight 2 gets twice the flows of weight 1.
    pub fn select(&self, hash: u32) -> Option<&Bucket> {
        if self.total_weight == 0 {
            return None;
        }
        let mut point = ((hash as u64 * self.total_weight as u64) >> 32) as u32;
        for b in &self.spec.buckets {
            if point < b.weight as u32 {
                return Some(b);
            }
            point -= b.weight as u32;
        }
        None
    }
}

/// Groups by id.
#[derive(Debug, Clone, Default)]
pub struct GroupTable {
    groups: BTreeMap<u32, Arc<Group>>,
}

impl GroupTable {
    /// Looks a group up.
    pub fn get(&self, id: u32) -> Option<&Arc<Group>> {
        self.groups.get(&id)
    }

    /// Whether group `id` exists.
    pub fn contains(&self, id: u32) -> bool {
        self.groups.contains_key(&id)
    }

    /// Adds or replaces a group.
    pub fn insert(&mut self, spec: GroupSpec) {
        self.groups.insert(spec.id, Arc::new(Group::new(spec)));
    }

    /// Removes a group.
    pub fn remove(&mut self, id: u32) -> Option<Arc<Group>> {
        self.groups.remove(&id)
    }

    /// Every group in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.values()
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;

    #[test]
    fn select_respects_weights() {
        let b = |w, p| Bucket {
            weight: w,
            watch_port: None,
            actions: vec![Action::Output(p)],
        };
        let g = Group::new(GroupSpec {
            id: 1,
            kind: GroupType::Select,
            buckets: vec![b(1, 1), b(3, 2)],
        });
        let mut counts = [0u32; 3];
        for i in 0..4000u32 {
            let h = i.wrapping_mul(0x9e37_79b9);
            if let Some(Action::Output(p)) = g.select(h).unwrap().actions.first() {
                counts[*p as usize] += 1;
            }
        }
        assert!(counts[2] > 2 * counts[1], "{counts:?}");
    }
}
