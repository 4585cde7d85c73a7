//! The flow key: every header field and metadata value a rule can match, packed
//! into a fixed array of 64-bit words.
//!
//! A key is plain words rather than a struct of named fields because every
//! operation the caches perform is word-wise: the exact-match cache hashes and
//! compares whole keys, a megaflow subtable ANDs a key with its mask and hashes
//! only the words the mask touches, and the translation's "which fields did I
//! consult" record is another key-shaped mask. Where each field lives is decided
//! once, in [`crate::field`]; nothing else knows the layout.
//!
//! Invariant: bits of a word that belong to no field are always zero, so two
//! keys for the same packet compare equal word for word. One value that is
//! not a field has bits of its own: the ICMP echo identifier
//! ([`FlowKey::echo_id`]), which `extract` fills for echo requests and
//! replies; it is a function of the packet like every field, so the
//! invariant holds.

use crate::field::Field;

/// How many 64-bit words a key (and a mask) holds.
pub const KEY_WORDS: usize = 32;

/// Word indices of the layout; [`crate::field`] maps each field onto them.
pub(crate) mod word {
    pub const PORT: usize = 0; // in_port | recirc_id << 32
    pub const TUN_ID: usize = 1;
    pub const TUN_IP: usize = 2; // tun_src | tun_dst << 32
    pub const METADATA: usize = 3;
    pub const REG0: usize = 4; // reg(2i) | reg(2i+1) << 32, words 4..12
    pub const CT: usize = 12; // ct_state | ct_zone << 16 | ct_mark << 32
    pub const DL_SRC: usize = 13; // dl_src | dl_type << 48
    pub const DL_DST: usize = 14; // dl_dst | vlan_tci << 48
    pub const NW_ADDR: usize = 15; // nw_src | nw_dst << 32
    pub const IPV6_SRC: usize = 16; // two words, high half first
    pub const IPV6_DST: usize = 18; // two words, high half first
    pub const NW: usize = 20; // proto | tos<<8 | ttl<<16 | frag<<24 | tp_src<<32 | tp_dst<<48
    pub const L4X: usize = 21; // tcp_flags | echo id << 16 (not a field) | ipv6_label << 32
    pub const ARP_SHA: usize = 22;
    pub const ARP_THA: usize = 23;
    pub const TUN_IPV6_SRC: usize = 24; // two words, high half first
    pub const TUN_IPV6_DST: usize = 26; // two words, high half first
    pub const TUN_METADATA0: usize = 28;
    pub const TUN_METADATA1: usize = 29;
    pub const CT_LABEL: usize = 30; // two words, high half first
}

/// Where [`FlowKey::echo_id`] lives: bits 16..32 of word `L4X`, which no
/// field covers.
pub(crate) const ECHO_ID_SHIFT: u32 = 16;

/// The values of every matchable field of one packet (or, masked, of a
/// class of packets).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The packed words; see the layout in [`crate::field`].
    pub w: [u64; KEY_WORDS],
}

/// Which bits of a [`FlowKey`] matter: a set bit means "this bit is matched".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowMask {
    /// Same layout as [`FlowKey::w`].
    pub w: [u64; KEY_WORDS],
}

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey { w: [0; KEY_WORDS] }
    }
}

impl Default for FlowMask {
    fn default() -> Self {
        FlowMask { w: [0; KEY_WORDS] }
    }
}

impl FlowKey {
    /// Reads a field (right-aligned; 128-bit fields fill the whole value).
    #[inline]
    pub fn get(&self, f: Field) -> u128 {
        f.read(&self.w)
    }

    /// Writes a field, leaving every other field alone. Bits above the
    /// field's width are ignored.
    #[inline]
    pub fn set(&mut self, f: Field, v: u128) {
        f.write(&mut self.w, v, u128::MAX)
    }

    /// Writes the bits of `v` selected by `mask` into field `f`.
    #[inline]
    pub fn set_masked(&mut self, f: Field, v: u128, mask: u128) {
        f.write(&mut self.w, v, mask)
    }

    /// The key with every bit outside `mask` cleared.
    #[inline]
    pub fn masked(&self, mask: &FlowMask) -> FlowKey {
        let mut out = *self;
        for (o, m) in out.w.iter_mut().zip(mask.w.iter()) {
            *o &= m;
        }
        out
    }

    /// Whether `self` agrees with the (pre-masked) `key` on every bit of `mask`.
    #[inline]
    pub fn matches(&self, key: &FlowKey, mask: &FlowMask) -> bool {
        let mut diff = 0u64;
        for i in 0..KEY_WORDS {
            diff |= (self.w[i] & mask.w[i]) ^ key.w[i];
        }
        diff == 0
    }

    /// Word-wise equality without early exit or a library call: the compiler
    /// turns it into a few vector compares.
    #[inline(always)]
    pub fn same(&self, other: &FlowKey) -> bool {
        let mut diff = 0u64;
        for i in 0..KEY_WORDS {
            diff |= self.w[i] ^ other.w[i];
        }
        diff == 0
    }

    /// Hash of the whole key, for the exact-match cache.
    #[inline]
    pub fn hash(&self) -> u32 {
        hash_words(&self.w)
    }

    /// The identifier of an ICMP or ICMPv6 echo request or reply (RFC 792,
    /// RFC 4443 §4), zero for every other packet. It is not a field: no
    /// rule can match it and no mask covers it, so translation, megaflows
    /// and their masks never see it. It is in the key because conntrack
    /// tells echo "connections" apart by it (as TCP and UDP ones by their
    /// ports): exact keys (the EMC's, the XDP fast path's) of two pings
    /// between the same hosts differ, and an entry that carries one
    /// connection's NAT (`datapath::daemon::fastpath::compose`) takes only
    /// that connection's packets.
    #[inline]
    pub fn echo_id(&self) -> u16 {
        (self.w[word::L4X] >> ECHO_ID_SHIFT) as u16
    }

    /// Sets [`FlowKey::echo_id`].
    #[inline]
    pub fn set_echo_id(&mut self, id: u16) {
        let w = &mut self.w[word::L4X];
        *w = (*w & !(0xffff << ECHO_ID_SHIFT)) | (id as u64) << ECHO_ID_SHIFT;
    }
}

impl FlowMask {
    /// The mask that matches every bit of every field exactly.
    pub fn exact() -> FlowMask {
        let mut m = FlowMask::default();
        for f in Field::all() {
            m.set_field(f);
        }
        m
    }

    /// Marks every bit of field `f` as matched.
    #[inline]
    pub fn set_field(&mut self, f: Field) {
        f.write(&mut self.w, u128::MAX, u128::MAX)
    }

    /// Marks the bits of `f` selected by `bits` as matched.
    #[inline]
    pub fn set_bits(&mut self, f: Field, bits: u128) {
        f.write(&mut self.w, u128::MAX, bits)
    }

    /// Marks every bit of field `f` as not matched.
    #[inline]
    pub fn clear_field(&mut self, f: Field) {
        f.write(&mut self.w, 0, u128::MAX)
    }

    /// The mask bits of field `f`, right-aligned.
    #[inline]
    pub fn get(&self, f: Field) -> u128 {
        f.read(&self.w)
    }

    /// Adds every bit of `other` to `self`.
    #[inline]
    pub fn union(&mut self, other: &FlowMask) {
        for (a, b) in self.w.iter_mut().zip(other.w.iter()) {
            *a |= b;
        }
    }

    /// Whether every bit set in `self` is also set in `other`.
    #[inline]
    pub fn is_subset_of(&self, other: &FlowMask) -> bool {
        self.w.iter().zip(other.w.iter()).all(|(a, b)| a & !b == 0)
    }

    /// Whether no bit is set.
    pub fn is_empty(&self) -> bool {
        self.w.iter().all(|w| *w == 0)
    }

    /// The indices of the words that have any bit set, in order.
    pub fn nonzero_words(&self) -> impl Iterator<Item = usize> + '_ {
        self.w
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0)
            .map(|(i, _)| i)
    }
}

/// Odd multipliers, one per key word (digits of pi and e, as in many
/// multilinear hash implementations: any fixed odd random-looking values do).
const MUL: [u64; KEY_WORDS] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7345,
    0xa409_3822_299f_31d1,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6d,
    0xc0ac_29b7_c97c_50dd,
    0x3f84_d5b5_b547_0917,
    0x9216_d5d9_8979_fb1b,
    0xd131_0ba6_98df_b5ad,
    0x2ffd_72db_d01a_dfb7,
    0xb8e1_afed_6a26_7e97,
    0xba7c_9045_f12c_7f99,
    0x24a1_9947_b391_6cf7,
    0x0801_f2e2_858e_fc17,
    0x6369_20d8_7157_4e69,
    0xa458_fea3_f493_3d7f,
    0x0d95_748f_728e_b659,
    0x718b_cd58_8215_4aef,
    0xd39a_5fd7_a2e1_ad4d,
    0x2b7e_1516_28ae_d2a7,
    0xabf7_1588_09cf_4f3d,
    0xb7e1_5162_8aed_2a6b,
    0x9e37_79b9_7f4a_7c15,
    0x6a09_e667_f3bc_c909,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// Final mix: folds high bits down so that fields in the top of a word
/// (tp_dst, dl_type) reach the low bits used as a bucket index.
#[inline(always)]
fn finish(h: u64) -> u32 {
    let h = (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 32) as u32 ^ h as u32
}

/// The words the exact-match cache hashes: what differs between flows in
/// practice (ports, MACs, addresses, protocol and L4 ports, tunnel, conntrack).
/// Keys that differ only elsewhere share a hash and are told apart by the
/// full compare, as Open vSwitch does with the NIC's 5-tuple RSS hash.
const EMC_WORDS: [usize; 11] = [
    word::PORT,
    word::TUN_ID,
    word::TUN_IP,
    word::CT,
    word::DL_SRC,
    word::DL_DST,
    word::NW_ADDR,
    word::IPV6_SRC + 1,
    word::IPV6_DST + 1,
    word::NW,
    word::L4X,
];

/// Multilinear hash of selected words: the multiplies are independent of
/// each other, so they overlap in the pipeline instead of forming a chain.
#[inline]
fn hash_words(w: &[u64; KEY_WORDS]) -> u32 {
    let mut h = 0u64;
    for &i in &EMC_WORDS {
        h = h.wrapping_add(w[i].wrapping_mul(MUL[i]));
    }
    finish(h)
}

/// Hashes `key & mask` over the listed words only: what a megaflow subtable
/// does, so a subtable that matches three words hashes three words.
#[inline]
pub fn hash_masked(key: &FlowKey, mask: &FlowMask, words: &[u8]) -> u32 {
    let mut h = 0u64;
    for &i in words {
        let i = i as usize;
        h = h.wrapping_add((key.w[i] & mask.w[i]).wrapping_mul(MUL[i]));
    }
    finish(h)
}

/// The 64-bit hash a `hashbrown` table wants from one of ours: it takes
/// bucket bits from the bottom and its 7-bit tag from the top, so both
/// halves must carry the hash.
#[inline(always)]
pub fn table_hash(h: u32) -> u64 {
    ((h as u64) << 32) | h as u64
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("FlowKey");
        for field in Field::all() {
            let v = self.get(field);
            if v != 0 {
                d.field(field.name(), &format_args!("{v:#x}"));
            }
        }
        d.finish()
    }
}

impl std::fmt::Debug for FlowMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("FlowMask");
        for field in Field::all() {
            let v = self.get(field);
            if v != 0 {
                d.field(field.name(), &format_args!("{v:#x}"));
            }
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        let mut seen = FlowMask::default();
        for f in Field::all() {
            let mut m = FlowMask::default();
            m.set_field(f);
            for i in 0..KEY_WORDS {
                assert_eq!(seen.w[i] & m.w[i], 0, "{} overlaps another field", f.name());
            }
            seen.union(&m);
            assert_eq!(m.get(f).count_ones(), f.bits() as u32, "{}", f.name());
        }
    }

    #[test]
    fn set_get_roundtrip_every_field() {
        for f in Field::all() {
            let mut k = FlowKey::default();
            let v = u128::MAX >> (128 - f.bits() as u32);
            k.set(f, v);
            assert_eq!(k.get(f), v, "{}", f.name());
            k.set_masked(f, 0, 1);
            assert_eq!(k.get(f), v & !1, "{}", f.name());
        }
    }

    #[test]
    fn masked_match_and_subset() {
        let mut k = FlowKey::default();
        k.set(Field::NwDst, 0x0a00_0001);
        k.set(Field::TpDst, 80);
        let mut m = FlowMask::default();
        m.set_bits(Field::NwDst, 0xffff_ff00);
        let rule = k.masked(&m);
        assert!(k.matches(&rule, &m));
        let mut other = k;
        other.set(Field::NwDst, 0x0a00_0101);
        assert!(!other.matches(&rule, &m));
        let mut wider = m;
        wider.set_field(Field::TpDst);
        assert!(m.is_subset_of(&wider));
        assert!(!wider.is_subset_of(&m));
    }
}
