//! Maglev consistent hashing: a lookup table from connection hash to
//! backend that changes as little as possible when backends come and go.
//!
//! Each backend walks its own permutation of the table's slots (an offset
//! and a skip derived from its id; the table size is prime, so every skip
//! visits every slot) and, taking turns, backends claim the next slot of
//! their permutation that is still free. A backend's preferences do not
//! depend on the others, so adding or removing one backend changes only a
//! little more than the share of slots that backend gains or loses
//! (Eisenbud et al., "Maglev", NSDI 2016, §3.4). Weights are honoured by
//! giving a backend `weight` turns per round.
//!
//! The table is built on the slow path (a group or backend change) and
//! read on the packet path, where a lookup is one multiply and one load.
//! Because it maps a hash to a backend without state, it is meant to pick
//! a DNAT target for a *new* connection; conntrack keeps the choice for
//! the connection's life.

/// The table size used when none is given: prime, and large enough that
/// hundreds of backends get even shares.
pub const DEFAULT_SIZE: usize = 65537;

/// A backend: a stable id (a hash of its address and port, say; it seeds
/// the backend's slot preferences) and a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity.
    pub id: u64,
    /// Relative share of the traffic; 0 takes none.
    pub weight: u32,
}

/// Why a table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The table size is not a prime number.
    NotPrime,
    /// No backend has a positive weight.
    NoBackends,
    /// The table must have more slots than there are backends.
    TooSmall,
}

/// A built Maglev table.
#[derive(Clone, Debug)]
pub struct Maglev {
    slots: Box<[u32]>,
    backends: Vec<Backend>,
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Maglev {
    /// Builds a table of `size` slots (a prime) over `backends`.
    pub fn new(backends: &[Backend], size: usize) -> Result<Maglev, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::NotPrime);
        }
        if backends.len() >= size {
            return Err(MaglevError::TooSmall);
        }
        if backends.iter().all(|b| b.weight == 0) {
            return Err(MaglevError::NoBackends);
        }
        let m = size as u64;
        // Each backend's permutation: slot(j) = (offset + j * skip) mod m.
        let perm: Vec<(u64, u64)> = backends
            .iter()
            .map(|b| {
                let offset = mix(b.id ^ 0x6d61_676c_6576_0001) % m;
                let skip = mix(b.id ^ 0x6d61_676c_6576_0002) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; backends.len()];
        let mut slots = vec![u32::MAX; size].into_boxed_slice();
        let mut filled = 0;
        'fill: loop {
            for (i, b) in backends.iter().enumerate() {
                for _ in 0..b.weight {
                    let (offset, skip) = perm[i];
                    // Every slot appears once in the permutation, so this
                    // finds a free one within `m` steps while any is free.
                    let mut c = (offset + next[i] * skip) % m;
                    while slots[c as usize] != u32::MAX {
                        next[i] += 1;
                        c = (offset + next[i] * skip) % m;
                    }
                    slots[c as usize] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Ok(Maglev {
            slots,
            backends: backends.to_vec(),
        })
    }

    /// The backends the table was built from, in the order given.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The table size.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The index (into [`Maglev::backends`]) of the backend for a
    /// connection whose hash is `hash`.
    #[inline]
    pub fn lookup_index(&self, hash: u32) -> usize {
        // Multiply-shift maps the hash onto the slots without a division.
        let slot = (hash as u64 * self.slots.len() as u64) >> 32;
        self.slots[slot as usize] as usize
    }

    /// The backend for a connection whose hash is `hash`.
    #[inline]
    pub fn lookup(&self, hash: u32) -> &Backend {
        &self.backends[self.lookup_index(hash)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u64) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                id: 1000 + i,
                weight: 1,
            })
            .collect()
    }

    fn keys() -> impl Iterator<Item = u32> {
        (0..200_000u64).map(|k| mix(k) as u32)
    }

    #[test]
    fn rejects_bad_sizes_and_empty_sets() {
        assert_eq!(
            Maglev::new(&backends(3), 65536).err(),
            Some(MaglevError::NotPrime)
        );
        assert_eq!(
            Maglev::new(&backends(7), 7).err(),
            Some(MaglevError::TooSmall)
        );
        let zero = [Backend { id: 1, weight: 0 }];
        assert_eq!(Maglev::new(&zero, 13).err(), Some(MaglevError::NoBackends));
    }

    #[test]
    fn shares_are_even_and_weights_honoured() {
        let mut bs = backends(4);
        bs[3].weight = 3;
        let m = Maglev::new(&bs, DEFAULT_SIZE).unwrap();
        let mut count = [0usize; 4];
        for s in m.slots.iter() {
            count[*s as usize] += 1;
        }
        // Weights 1:1:1:3 of 65537 slots.
        let unit = DEFAULT_SIZE as f64 / 6.0;
        for (i, &c) in count.iter().enumerate() {
            let want = unit * bs[i].weight as f64;
            assert!((c as f64 - want).abs() / want < 0.01, "{i}: {c} vs {want}");
        }
    }

    #[test]
    fn adding_a_backend_moves_about_its_share() {
        for n in [5u64, 10, 40] {
            let before = Maglev::new(&backends(n), DEFAULT_SIZE).unwrap();
            let after = Maglev::new(&backends(n + 1), DEFAULT_SIZE).unwrap();
            let (mut moved, mut total) = (0, 0);
            for k in keys() {
                total += 1;
                if before.lookup(k).id != after.lookup(k).id {
                    moved += 1;
                    // A key that moves, moves to the new backend... mostly;
                    // Maglev allows a little churn elsewhere.
                }
            }
            let frac = moved as f64 / total as f64;
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                frac >= ideal * 0.9 && frac <= ideal * 1.5,
                "n={n}: {frac} vs {ideal}"
            );
        }
    }

    #[test]
    fn removing_a_backend_moves_its_keys_and_few_others() {
        let n = 10;
        let all = backends(n);
        let before = Maglev::new(&all, DEFAULT_SIZE).unwrap();
        let gone = all[3].id;
        let rest: Vec<Backend> = all.iter().copied().filter(|b| b.id != gone).collect();
        let after = Maglev::new(&rest, DEFAULT_SIZE).unwrap();
        let (mut others, mut others_moved) = (0, 0);
        for k in keys() {
            let (b, a) = (before.lookup(k).id, after.lookup(k).id);
            assert_ne!(a, gone);
            if b != gone {
                others += 1;
                others_moved += (a != b) as usize;
            }
        }
        let frac = others_moved as f64 / others as f64;
        // The paper's figure 12 shows a few percent of churn at this size;
        // the removed backend's own keys always move.
        assert!(frac < 0.05, "{frac}");
    }
}
