//! Cookies: every rule the agent writes carries one naming the object that
//! produced it, as Antrea's agent does, so that
//! `oxvs-ctl dump-flows cookie=0xC/0xffffffffffff0000` shows every rule of
//! one Service or Pod, and a rule left behind by a deleted object can be
//! found by its owner.
//!
//! Layout: bits 63..16 are a 48-bit hash (FNV-1a, mixed) of the owner's key text
//! (`Service/default/web`, `Namespace/dev`, `Node/node1`); bits 15..0 are
//! the [`Category`]. The hash is of the key only, so it is the same on
//! every node and across restarts.

use crate::object::ObjectKey;

/// The mask that selects one object's rules, whatever their category.
pub const OBJECT_MASK: u64 = 0xffff_ffff_ffff_0000;

/// What part of the pipeline a rule belongs to (the cookie's low bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum Category {
    /// The node's fixed pipeline: table misses, conntrack, gateway and tunnel.
    Pipeline = 1,
    /// A namespace's subnet: ARP responder, egress SNAT.
    Namespace = 2,
    /// A pod on this node: classification, spoof guard, delivery, hairpin.
    LocalPod = 3,
    /// A pod on another node: the tunnel route.
    RemotePod = 4,
    /// A Service's frontends: ClusterIP, NodePort, LoadBalancer IP, reject.
    Service = 5,
    /// An endpoint's DNAT.
    Endpoint = 6,
    /// Session-affinity rules the switch learns (never in the desired set:
    /// the sync leaves them alone).
    Learned = 7,
    /// Another node: routes to its IP for replies of its SNATed flows.
    Node = 8,
    /// A policy rule's verdict: its `conj_id` flow, a single-clause rule,
    /// a NetworkPolicy's isolation drop.
    Policy = 9,
    /// A clause of policy conjunctions (`conjunction(id,k/n)` actions):
    /// shared by every rule whose address group or ports hold the same
    /// match, so it carries the cookie of the first of them.
    PolicyClause = 10,
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The cookie of `owner`'s rules of category `c`.
pub fn cookie(owner: &ObjectKey, c: Category) -> u64 {
    object_bits(owner) | c as u64
}

/// The high bits every cookie of `owner` has: FNV-1a of the key text,
/// then splitmix64's finalizer, so that keys differing in one character
/// (`frontend-0`, `frontend-1`) differ in every part of the cookie.
pub fn object_bits(owner: &ObjectKey) -> u64 {
    let h = mix(fnv1a(owner.to_string().as_bytes())) & OBJECT_MASK;
    // A zero hash would make the cookie look like "no cookie" to a filter
    // that only masks the high bits; move it off zero.
    if h == 0 {
        1 << 16
    } else {
        h
    }
}

/// The category in a cookie's low bits.
pub fn category(cookie: u64) -> u16 {
    (cookie & !OBJECT_MASK) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Kind;

    #[test]
    fn stable_and_distinct() {
        let a = ObjectKey::new(Kind::Service, "default", "web");
        let b = ObjectKey::new(Kind::Service, "default", "web2");
        assert_eq!(cookie(&a, Category::Service), cookie(&a, Category::Service));
        assert_ne!(object_bits(&a), object_bits(&b));
        assert_eq!(
            cookie(&a, Category::Endpoint) & OBJECT_MASK,
            object_bits(&a)
        );
        assert_eq!(category(cookie(&a, Category::Endpoint)), 6);
        // The text form is part of the contract: a changed hash would orphan
        // every rule on every switch at the next upgrade.
        assert_eq!(
            mix(fnv1a(b"Service/default/web")) & OBJECT_MASK,
            object_bits(&a)
        );
    }
}
