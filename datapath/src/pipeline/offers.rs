//! What a poll thread offers the XDP fast path: flow keys worth an entry,
//! collected on the packet path without allocating and handed to the
//! control thread once per loop turn (`daemon::fastpath` decides).

use flowtable::FlowKey;

/// Flow keys a poll thread offers the XDP fast path (`daemon::fastpath`):
/// the key of the packet whose upcall installs a megaflow, a key whenever
/// the EMC takes it in (the EMC's insertion policy), the first megaflow
/// hit of each exact key (see [`Offers::megaflow_hit`]), and one EMC hit
/// in [`OFFER_HIT_SAMPLE`], so that a flow whose fast-path entry was
/// flushed by a rule change, but whose EMC entry survived revalidation, is
/// offered again. Off (the default), it costs one branch per EMC hit.
#[derive(Default)]
pub struct Offers {
    on: bool,
    keys: Vec<FlowKey>,
    hits: u32,
    /// The hashes of keys offered from megaflow hits, direct-mapped by
    /// their low bits (`hash | 1`, so an empty slot matches nothing).
    recent: Vec<u32>,
}

/// Keys held for the control thread at most; more wait for a later
/// insertion or sample.
const MAX_OFFERS: usize = 256;
/// One EMC hit in this many is offered again.
pub const OFFER_HIT_SAMPLE: u32 = 256;
/// Slots of the filter of keys offered from megaflow hits (a power of two).
const RECENT_SLOTS: usize = 1024;

impl Offers {
    /// Offers that collect keys (room reserved now, so the packet path
    /// never allocates).
    pub fn enabled() -> Offers {
        Offers {
            on: true,
            keys: Vec::with_capacity(MAX_OFFERS),
            hits: 0,
            recent: vec![0; RECENT_SLOTS],
        }
    }

    /// A megaflow or the EMC took `key` in: offer it, if the fast path
    /// could ever hold it and there is room. True if it was offered.
    #[inline]
    pub(super) fn inserted(&mut self, key: &FlowKey) -> bool {
        if self.on
            && self.keys.len() < MAX_OFFERS
            && crate::afxdp::fastpath::FpKey::from_flow_key(key).is_some()
        {
            self.keys.push(*key);
            return true;
        }
        false
    }

    /// `key` (of hash `hash`) hit a megaflow and the EMC did not take it
    /// in: offered unless the same hash was offered from here before. The
    /// fast path's entries are exact keys, but a megaflow covers many: a
    /// key whose megaflow another packet installed (a ping whose flow's
    /// megaflow an ARP or IPv6 packet made) would otherwise wait for the
    /// EMC's one insertion in 100, a hundred packets on the slow path. The
    /// filter keeps a flood of megaflow hits (an EMC too small for the
    /// flows, keys the fast path refuses) from offering every packet; a
    /// key it hides still comes through the EMC's insertions and samples.
    #[inline]
    pub(super) fn megaflow_hit(&mut self, key: &FlowKey, hash: u32) {
        if !self.on {
            return;
        }
        let slot = hash as usize & (RECENT_SLOTS - 1);
        let tag = hash | 1;
        if self.recent[slot] != tag && self.inserted(key) {
            self.recent[slot] = tag;
        }
    }

    /// Forgets which keys were offered from megaflow hits: after a rule
    /// change, a key refused before may be taken now.
    pub(super) fn forget(&mut self) {
        self.recent.fill(0);
    }

    /// `key` hit the EMC: offered once in [`OFFER_HIT_SAMPLE`] hits.
    #[inline]
    pub(super) fn hit(&mut self, key: &FlowKey) {
        if self.on {
            self.hits = self.hits.wrapping_add(1);
            if self.hits % OFFER_HIT_SAMPLE == 0 {
                self.inserted(key);
            }
        }
    }

    /// True if keys wait.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Moves the waiting keys to `out` (which the caller sends on).
    pub fn take(&mut self, out: &mut Vec<FlowKey>) {
        out.extend_from_slice(&self.keys);
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtable::extract;

    fn frame(udp_src: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&udp_src.to_be_bytes());
        f.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        f
    }

    fn key(udp_src: u16) -> FlowKey {
        let mut k = FlowKey::default();
        extract(&frame(udp_src), 1, &mut k).unwrap();
        k
    }

    #[test]
    fn off_collects_nothing() {
        let mut o = Offers::default();
        o.inserted(&key(1));
        for _ in 0..OFFER_HIT_SAMPLE {
            o.hit(&key(1));
        }
        assert!(o.is_empty());
    }

    #[test]
    fn insertions_and_one_hit_in_the_sample_are_offered_up_to_the_cap() {
        let mut o = Offers::enabled();
        o.inserted(&key(1));
        for _ in 0..OFFER_HIT_SAMPLE - 1 {
            o.hit(&key(2));
        }
        let mut out = Vec::new();
        o.take(&mut out);
        assert_eq!(out.len(), 1, "the insertion only");
        o.hit(&key(2));
        o.take(&mut out);
        assert_eq!(out.len(), 2, "and the sampled hit");
        assert!(out[1].same(&key(2)));
        for i in 0..2 * MAX_OFFERS {
            o.inserted(&key(i as u16));
        }
        out.clear();
        o.take(&mut out);
        assert_eq!(out.len(), MAX_OFFERS, "bounded");
        // A key the fast path never takes (a recirculated pass) is not offered.
        let mut k = key(3);
        k.set(flowtable::Field::RecircId, 2);
        o.inserted(&k);
        assert!(o.is_empty());
    }

    #[test]
    fn megaflow_hits_offer_each_exact_key_once_until_the_rules_change() {
        let mut o = Offers::enabled();
        let (a, b) = (key(1), key(2));
        let mut out = Vec::new();
        for _ in 0..3 {
            o.megaflow_hit(&a, a.hash());
            o.megaflow_hit(&b, b.hash());
        }
        o.take(&mut out);
        assert_eq!(out.len(), 2, "each key once");
        o.forget();
        o.megaflow_hit(&a, a.hash());
        o.take(&mut out);
        assert_eq!(out.len(), 3, "again after forget");
        let mut off = Offers::default();
        off.megaflow_hit(&a, a.hash());
        assert!(off.is_empty());
    }

    /// A flow whose megaflow another flow's packet installed (a ping after
    /// the ARP exchange that made `in_port=1`'s megaflow) is offered on its
    /// first packet, not after the EMC's one insertion in many.
    #[test]
    fn a_flow_behind_another_flows_megaflow_is_offered_on_its_first_packet() {
        let cfg = crate::pipeline::PmdConfig {
            emc_inv_prob: u32::MAX,
            ..Default::default()
        };
        let mut dp = crate::memdp::MemDatapath::new(64, cfg);
        dp.add_port(1, "p1");
        dp.add_port(2, "p2");
        crate::daemon::load_flows(&mut dp.bridge, "in_port=1,actions=output:2\n").unwrap();
        dp.pmd.offers = Offers::enabled();
        let mut out = Vec::new();
        dp.inject(1, &frame(1));
        dp.run_until_idle(0);
        dp.pmd.offers.take(&mut out);
        assert_eq!(out.len(), 1, "the upcall's key");
        assert!(out[0].same(&key(1)));
        for _ in 0..3 {
            dp.inject(1, &frame(2));
            dp.run_until_idle(0);
        }
        assert_eq!(dp.pmd.stats.upcall, 1, "one megaflow for both");
        out.clear();
        dp.pmd.offers.take(&mut out);
        assert_eq!(out.len(), 1, "the second flow, once: {out:?}");
        assert!(out[0].same(&key(2)));
        dp.discard_tx();
    }
}
