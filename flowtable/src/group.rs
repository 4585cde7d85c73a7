//! The group table: `all`, `select` and `indirect` groups.
//!
//! A select group picks its bucket from a hash of the flow's addresses and
//! ports, weighted, so that every packet of a connection takes the same
//! bucket and the choice can be cached in a megaflow (the hashed fields are
//! added to the megaflow's mask by translation). `selection_method=hash,
//! fields(...)` (ovs-ofctl(8)) narrows the hash to the fields named, so that
//! `fields(ip_src)` keeps every flow of one client on one bucket (session
//! affinity) and megaflows match only the client address.

use crate::action::GroupType;
use crate::field::Field;
use crate::maglev::{Backend, Maglev};
use crate::rule::{Bucket, GroupSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One field of `selection_method=hash,fields(...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashField {
    /// The field hashed.
    pub field: Field,
    /// Which of its bits are hashed (`fields(ip_src=255.255.255.0)`).
    pub mask: u128,
    /// The `nw_proto` the spelling implies (`tcp_dst`: 6): as in OVS, the
    /// field is hashed only for packets that have it.
    pub proto: Option<u8>,
}

/// An installed group.
#[derive(Debug, Clone)]
pub struct Group {
    /// The spec it was made from.
    pub spec: GroupSpec,
    /// Sum of bucket weights (select groups).
    total_weight: u32,
    /// Select groups: the Maglev table from flow hash to bucket.
    maglev: Option<Maglev>,
}

impl Group {
    /// Makes a group from its spec. A select group gets a Maglev table
    /// whose backends are its buckets, each identified by a hash of its
    /// actions: a Service's endpoint keeps its identity when others are
    /// added or removed, so only about 1/N of the flows move (a plain
    /// weighted range would reshuffle most of them).
    pub fn new(spec: GroupSpec) -> Group {
        let total_weight = spec.buckets.iter().map(|b| b.weight as u32).sum();
        // Weights in lowest terms: Maglev gives a backend `weight` turns per
        // round, and OVS's default weight of 100 for every bucket would
        // make each take 100 slots in a row, which spoils the
        // interleaving that keeps flows in place when buckets change.
        let gcd = spec
            .buckets
            .iter()
            .map(|b| b.weight as u32)
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let maglev = (spec.kind == GroupType::Select && total_weight > 0)
            .then(|| {
                let backends: Vec<Backend> = spec
                    .buckets
                    .iter()
                    .map(|b| Backend {
                        id: bucket_id(b),
                        weight: b.weight as u32 / gcd.max(1),
                    })
                    .collect();
                Maglev::new(&backends, table_size(backends.len())).ok()
            })
            .flatten();
        Group {
            spec,
            total_weight,
            maglev,
        }
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
        if let Some(m) = &self.maglev {
            return self.spec.buckets.get(m.lookup_index(hash));
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

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A bucket's identity: a hash of its actions (the endpoint it rewrites to
/// and where it sends the packet), stable across runs and rule reloads.
fn bucket_id(b: &Bucket) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    b.actions.hash(&mut h);
    h.finish()
}

/// Maglev wants far more slots than backends (about 100 per backend keeps
/// shares within a few percent); a prime from a short list keeps the build
/// cheap for small groups and the memory bounded for large ones.
fn table_size(backends: usize) -> usize {
    const PRIMES: [usize; 8] = [251, 1021, 4093, 8191, 16381, 32749, 65521, 65537];
    let want = backends * 100;
    PRIMES.into_iter().find(|&p| p >= want).unwrap_or(65537)
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
            bucket_id: p,
            weight: w,
            watch_port: None,
            actions: vec![Action::Output(p)],
        };
        let g = Group::new(GroupSpec {
            id: 1,
            kind: GroupType::Select,
            buckets: vec![b(1, 1), b(3, 2)],
            hash_fields: None,
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

    #[test]
    fn adding_an_endpoint_moves_few_flows() {
        let b = |p| Bucket {
            bucket_id: p,
            weight: 100,
            watch_port: None,
            actions: vec![Action::Output(p)],
        };
        let group = |n: u32| {
            Group::new(GroupSpec {
                id: 1,
                kind: GroupType::Select,
                buckets: (1..=n).map(b).collect(),
                hash_fields: None,
            })
        };
        let out = |g: &Group, h: u32| match g.select(h).unwrap().actions.first() {
            Some(Action::Output(p)) => *p,
            _ => 0,
        };
        let (three, four) = (group(3), group(4));
        let n = 20_000u32;
        let moved = (0..n)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .filter(|&h| out(&three, h) != out(&four, h))
            .count();
        // A fourth endpoint should take about a quarter of the flows, and
        // the flows it takes are the only ones that move.
        let share = moved as f64 / n as f64;
        assert!((0.18..0.35).contains(&share), "moved {share}");
        let to_new = (0..n)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .filter(|&h| out(&three, h) != out(&four, h) && out(&four, h) != 4)
            .count();
        assert!(
            to_new as f64 / n as f64 <= 0.02,
            "{to_new} moved between old endpoints"
        );
    }
}
