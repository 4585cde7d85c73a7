//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! IPv4, ICMP, TCP and UDP all protect their bytes with the 16-bit ones'
//! complement of the ones'-complement sum of 16-bit big-endian words. The
//! functions here split that computation into parts that compose:
//!
//! * [`sum`] and the pseudo-header sums return a *partial sum*: a plain `u32`
//!   that is congruent, modulo 0xFFFF, to the ones'-complement sum of the
//!   words. Partial sums from this module stay below 2^21, so a caller can
//!   add thousands of them without overflow before calling [`fold`].
//! * [`fold`] reduces a partial sum to 16 bits by adding the carries back in
//!   (RFC 1071 §4.1), without complementing.
//! * [`checksum`] is the finished value, `!fold(sum(data))`.
//!
//! A switch rewrites a few fields per packet (TTL, an address, a port), so
//! [`update16`], [`update32`] and [`update_bytes`] patch an existing checksum
//! in a handful of instructions instead of re-summing the header and payload.
//! They implement RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which unlike the
//! older eqn. 2 of RFC 1141 never turns a correct 0x0000 into 0xFFFF.
//!
//! [`sum`] reads eight bytes per step and accumulates the two 32-bit halves
//! in a `u64`: because 2^16 ≡ 1 (mod 0xFFFF), a sum of 32-bit big-endian
//! words folds to the same value as a sum of 16-bit words (RFC 1071 §2(B),
//! "byte order independence" and "parallel summation").

/// Ones'-complement partial sum of `data` as 16-bit big-endian words, with an
/// odd trailing byte padded by a zero low byte (RFC 1071 §4.1).
///
/// The result is already folded to at most 0xFFFF. Partial sums of
/// consecutive slices may be added only when every slice but the last has an
/// even length, since an odd slice would shift the next one's byte lanes.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Each step adds at most 2^33, so the accumulator cannot overflow for
    // buffers below 16 GiB, far beyond any packet.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // The remainder starts at a multiple of eight, so zero-padding it on
        // the right keeps every byte in its big-endian lane, including the
        // odd final byte, which becomes the high byte of its word.
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let w = u64::from_be_bytes(last);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    u32::from(fold(acc))
}

/// Folds a partial sum to 16 bits by adding the carries back in, without
/// complementing. Accepts `u16`, `u32` or `u64` partial sums.
///
/// The result is 0 only for a sum of 0, otherwise it lies in 1..=0xFFFF, so
/// a non-zero sum always folds to the same representative of its class.
#[inline]
pub fn fold<S: Into<u64>>(sum: S) -> u16 {
    let s: u64 = sum.into();
    // Two 32-bit folds bring any u64 below 2^32; then two 16-bit folds bring
    // it to at most 0xFFFF (the first yields at most 0x1FFFE).
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The Internet checksum of `data`: the complement of its folded sum.
///
/// To verify a header that includes its checksum field, check that this
/// returns 0 (equivalently, that `fold(sum(data)) == 0xFFFF`).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793 §3.1,
/// RFC 768): source, destination, zero byte and protocol, and the L4 length.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    word(src[0], src[1])
        + word(src[2], src[3])
        + word(dst[0], dst[1])
        + word(dst[2], dst[3])
        + u32::from(proto)
        + u32::from(len)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source,
/// destination, 32-bit upper-layer length, three zero bytes and next header.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    let mut acc = u32::from(proto) + (len >> 16) + (len & 0xffff);
    for i in (0..16).step_by(2) {
        acc += word(src[i], src[i + 1]) + word(dst[i], dst[i + 1]);
    }
    acc
}

/// Updates checksum `csum` after a 16-bit word it covers changed from `old`
/// to `new`, by RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`.
///
/// The result equals a full recomputation whenever the covered data is not
/// all zero after the change, which always holds for an IPv4 header (its
/// version field alone is non-zero) and for TCP and UDP with their
/// pseudo-header (the protocol number is non-zero). For all-zero data a
/// full recomputation gives 0xFFFF, whereas this gives 0x0000; both are
/// representations of zero, but only 0xFFFF verifies.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// Like [`update16`] for a 32-bit field (an IPv4 address, a TCP sequence
/// number) that starts on a 16-bit boundary of the checksummed data.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(acc)
}

/// Like [`update16`] for a longer field (an IPv6 address) that starts on a
/// 16-bit boundary: `old` and `new` are its bytes before and after.
///
/// The two slices must have the same even length; a trailing odd byte and
/// the excess of the longer slice are ignored rather than panicking, since
/// this runs on the packet path (and debug builds assert the contract).
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert!(old.len() == new.len() && old.len() % 2 == 0);
    // Each iteration adds at most 0x1FFFE, so a u64 cannot overflow.
    let mut acc = u64::from(!csum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!word(o[0], o[1]) & 0xffff) + u64::from(word(n[0], n[1]));
    }
    !fold(acc)
}

/// One big-endian 16-bit word, widened for summing.
#[inline(always)]
fn word(hi: u8, lo: u8) -> u32 {
    u32::from(u16::from_be_bytes([hi, lo]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious RFC 1071 loop, as a reference for the fast version.
    fn naive_sum(data: &[u8]) -> u64 {
        let mut acc = 0u64;
        for pair in data.chunks(2) {
            let lo = pair.get(1).copied().unwrap_or(0);
            acc += u64::from(u16::from_be_bytes([pair[0], lo]));
        }
        acc
    }

    fn naive_fold(mut s: u64) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Bytes biased toward 0x00 and 0xFF, where ones'-complement corner cases
    /// (the two zeros) live.
    fn edgy_bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], len)
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, which
        // folds to ddf2; the checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        // Byte swapping commutes with summation (RFC 1071 §2(B)).
        let swapped = [0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6];
        assert_eq!(fold(sum(&swapped)), 0xf2dd);
    }

    #[test]
    fn rfc1624_section4_example() {
        // RFC 1624 §4: other words sum to 0xCD7A, m = 0x5555 becomes
        // 0x3285. Eqn. 2 would give 0xFFFF; recomputation and eqn. 3 give
        // 0x0000.
        let hc = !fold(0xcd7au32 + 0x5555);
        assert_eq!(hc, 0xdd2f);
        assert_eq!(update16(hc, 0x5555, 0x3285), 0x0000);
        assert_eq!(!fold(0xcd7au32 + 0x3285), 0x0000);
    }

    #[test]
    fn odd_and_empty_inputs() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(
            sum(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            0x0102 + 0x0304 + 0x0506 + 0x0708 + 0x0900
        );
    }

    #[test]
    fn fold_extremes() {
        assert_eq!(fold(0u32), 0);
        assert_eq!(fold(0xffffu32), 0xffff);
        assert_eq!(fold(0x1_0000u32), 1);
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x1_0000_0000u64), 1);
        assert_eq!(fold(0xffffu16), 0xffff);
    }

    #[test]
    fn all_zero_data_is_the_documented_exception() {
        // The only covered word goes from 0x1234 to 0: recomputation gives
        // 0xFFFF, eqn. 3 the other zero, 0x0000.
        let hc = checksum(&[0x12, 0x34]);
        assert_eq!(checksum(&[0, 0]), 0xffff);
        assert_eq!(update16(hc, 0x1234, 0), 0x0000);
    }

    #[test]
    fn pseudo_headers_match_summed_bytes() {
        let src = [192, 0, 2, 1];
        let dst = [198, 51, 100, 7];
        let bytes = [192, 0, 2, 1, 198, 51, 100, 7, 0, 6, 0x05, 0xdc];
        assert_eq!(fold(pseudo_header_v4(src, dst, 6, 1500)), fold(sum(&bytes)));

        let mut s6 = [0u8; 16];
        let mut d6 = [0u8; 16];
        s6[0] = 0xfe;
        s6[1] = 0x80;
        s6[15] = 1;
        d6[0] = 0xff;
        d6[1] = 0x02;
        d6[15] = 0x16;
        let mut bytes6 = Vec::new();
        bytes6.extend_from_slice(&s6);
        bytes6.extend_from_slice(&d6);
        bytes6.extend_from_slice(&0x0001_0020u32.to_be_bytes());
        bytes6.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            fold(pseudo_header_v6(&s6, &d6, 58, 0x0001_0020)),
            fold(sum(&bytes6))
        );
    }

    proptest! {
        #[test]
        fn sum_matches_naive(data in edgy_bytes(0..200)) {
            prop_assert_eq!(fold(sum(&data)), naive_fold(naive_sum(&data)));
            prop_assert!(sum(&data) <= 0xffff);
        }

        #[test]
        fn fold_matches_naive(s in any::<u64>()) {
            prop_assert_eq!(fold(s), naive_fold(s));
        }

        #[test]
        fn sums_compose_over_even_splits(data in edgy_bytes(0..120), cut in 0usize..60) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }

        #[test]
        fn update16_matches_recompute(
            mut data in edgy_bytes(2..64),
            idx in any::<prop::sample::Index>(),
            new in prop_oneof![Just(0u16), Just(0xffffu16), any::<u16>()],
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = idx.index(data.len() / 2) * 2;
            let hc = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update16(hc, old, new), checksum(&data));
        }

        #[test]
        fn update32_matches_recompute(
            mut data in edgy_bytes(4..64),
            idx in any::<prop::sample::Index>(),
            new in prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
        ) {
            data.truncate(data.len() & !1);
            let i = idx.index(data.len() / 2 - 1) * 2;
            let hc = checksum(&data);
            let old = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            data[i..i + 4].copy_from_slice(&new.to_be_bytes());
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update32(hc, old, new), checksum(&data));
        }

        #[test]
        fn update_bytes_matches_recompute(
            mut data in edgy_bytes(40..80),
            new in edgy_bytes(16..17),
            at in 0usize..12,
        ) {
            data.truncate(data.len() & !1);
            let i = at * 2;
            let hc = checksum(&data);
            let old = data[i..i + 16].to_vec();
            data[i..i + 16].copy_from_slice(&new);
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update_bytes(hc, &old, &new), checksum(&data));
        }

        #[test]
        fn updated_checksum_verifies(
            mut data in edgy_bytes(6..64),
            new in any::<u16>(),
        ) {
            // Store the checksum in the first word, as IPv4 headers do, then
            // change the last word and check that the patched packet
            // verifies in the receiver's way (the sum including the field).
            data.truncate(data.len() & !1);
            data[0] = 0;
            data[1] = 0;
            data[2] |= 0x40; // A non-zero word, like the IPv4 version.
            let hc = checksum(&data);
            data[..2].copy_from_slice(&hc.to_be_bytes());
            let n = data.len();
            let old = u16::from_be_bytes([data[n - 2], data[n - 1]]);
            data[n - 2..].copy_from_slice(&new.to_be_bytes());
            let hc2 = update16(hc, old, new);
            data[..2].copy_from_slice(&hc2.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
        }
    }
}
