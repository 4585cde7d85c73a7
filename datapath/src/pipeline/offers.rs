//! What a poll thread offers the XDP fast path: flow keys worth an entry,
//! collected on the packet path without allocating and handed to the
//! control thread once per loop turn (`daemon::fastpath` decides).

use flowtable::FlowKey;

/// Flow keys a poll thread offers the XDP fast path (`daemon::fastpath`):
/// the key of the packet whose upcall installs a megaflow, a key whenever
/// the EMC takes it in (the EMC's insertion policy), and one EMC hit in
/// [`OFFER_HIT_SAMPLE`], so that a flow whose fast-path
/// entry was flushed by a rule change, but whose EMC entry survived
/// revalidation, is offered again. Off (the default), it costs one branch
/// per EMC hit.
#[derive(Default)]
pub struct Offers {
    on: bool,
    keys: Vec<FlowKey>,
    hits: u32,
}

/// Keys held for the control thread at most; more wait for a later
/// insertion or sample.
const MAX_OFFERS: usize = 256;
/// One EMC hit in this many is offered again.
pub const OFFER_HIT_SAMPLE: u32 = 256;

impl Offers {
    /// Offers that collect keys (room reserved now, so the packet path
    /// never allocates).
    pub fn enabled() -> Offers {
        Offers {
            on: true,
            keys: Vec::with_capacity(MAX_OFFERS),
            hits: 0,
        }
    }

    /// A megaflow or the EMC took `key` in: offer it, if the fast path
    /// could ever hold it and there is room.
    #[inline]
    pub(super) fn inserted(&mut self, key: &FlowKey) {
        if self.on
            && self.keys.len() < MAX_OFFERS
            && crate::afxdp::fastpath::FpKey::from_flow_key(key).is_some()
        {
            self.keys.push(*key);
        }
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

    fn key(udp_src: u16) -> FlowKey {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&udp_src.to_be_bytes());
        f.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        let mut k = FlowKey::default();
        extract(&f, 1, &mut k).unwrap();
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
}
