//! Decap rejects every kind of malformed outer frame with the error (and
//! so the drop counter) that names the problem, and never panics.

mod common;

use common::*;
use encap::{decap, DecapConfig, DecapError, Options, Template, TlvMap, TunMetadata};
use proptest::prelude::*;

fn v4(csum: bool, options: &Options) -> Vec<u8> {
    let t = Template::new(&config(false, csum)).unwrap();
    encapsulate(&t, &inner_icmp4(20), 7, options)
}

fn v6(options: &Options) -> Vec<u8> {
    let t = Template::new(&config(true, false)).unwrap();
    encapsulate(&t, &inner_icmp4(20), 7, options)
}

fn run(frame: &[u8]) -> Result<(), DecapError> {
    decap(frame, &DecapConfig::default()).map(|_| ())
}

/// Offsets in an IPv4-outer frame.
const UDP4: usize = 34;
const GEN4: usize = 42;
/// Offsets in an IPv6-outer frame.
const UDP6: usize = 54;
const GEN6: usize = 62;

#[test]
fn valid_frames_pass() {
    assert_eq!(run(&v4(false, &Options::new())), Ok(()));
    assert_eq!(run(&v4(true, &Options::new())), Ok(()));
    assert_eq!(run(&v6(&Options::new())), Ok(()));
}

#[test]
fn truncated() {
    let f = v4(false, &Options::new());
    for n in [0, 13, 14, 33, 40, 45, f.len() - 1] {
        assert_eq!(run(&f[..n]), Err(DecapError::Truncated), "len {n}");
    }
    let f = v6(&Options::new());
    for n in [20, 53, 60] {
        assert_eq!(run(&f[..n]), Err(DecapError::Truncated), "len {n}");
    }
    // A UDP length that covers only part of the Geneve header.
    let mut f = v4(false, &Options::new());
    f[UDP4 + 4..UDP4 + 6].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(run(&f), Err(DecapError::Truncated));
}

#[test]
fn not_ip_and_bad_ip() {
    let mut f = v4(false, &Options::new());
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(run(&f), Err(DecapError::NotIp));

    let mut f = v4(false, &Options::new());
    f[14] = 0x55;
    assert_eq!(run(&f), Err(DecapError::BadOuterIp));

    let mut f = v6(&Options::new());
    f[14] = 0x45;
    assert_eq!(run(&f), Err(DecapError::BadOuterIp));

    let mut f = v4(false, &Options::new());
    f[22] -= 1; // TTL changed, checksum not.
    assert_eq!(run(&f), Err(DecapError::BadIpChecksum));
}

#[test]
fn fragments_and_other_protocols() {
    let mut f = v4(false, &Options::new());
    f[20] |= 0x20; // MF
    fix_ipv4_checksum(&mut f);
    assert_eq!(run(&f), Err(DecapError::Fragment));

    let mut f = v4(false, &Options::new());
    f[23] = 6;
    fix_ipv4_checksum(&mut f);
    assert_eq!(run(&f), Err(DecapError::NotUdp));

    let mut f = v6(&Options::new());
    f[20] = 6;
    assert_eq!(run(&f), Err(DecapError::NotUdp));
}

#[test]
fn udp_errors() {
    let mut f = v4(false, &Options::new());
    f[UDP4 + 2..UDP4 + 4].copy_from_slice(&4789u16.to_be_bytes());
    assert_eq!(run(&f), Err(DecapError::WrongPort));

    let mut f = v4(false, &Options::new());
    f[UDP4 + 4..UDP4 + 6].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(run(&f), Err(DecapError::BadUdpLen));

    let mut f = v4(true, &Options::new());
    let last = f.len() - 1;
    f[last] ^= 1;
    assert_eq!(run(&f), Err(DecapError::BadUdpChecksum));
    let lax = DecapConfig {
        verify_udp_checksum: false,
        ..DecapConfig::default()
    };
    assert!(decap(&f, &lax).is_ok());

    let mut f = v6(&Options::new());
    f[last + 20] ^= 1;
    assert_eq!(run(&f), Err(DecapError::BadUdpChecksum));

    // RFC 8200 §8.1 rejects a zero checksum over IPv6 unless configured.
    let mut f = v6(&Options::new());
    f[UDP6 + 6] = 0;
    f[UDP6 + 7] = 0;
    assert_eq!(run(&f), Err(DecapError::BadUdpChecksum));
    let zero_ok = DecapConfig {
        accept_ipv6_zero_checksum: true,
        ..DecapConfig::default()
    };
    assert!(decap(&f, &zero_ok).is_ok());
}

#[test]
fn geneve_errors() {
    let mut f = v4(false, &Options::new());
    f[GEN4] |= 0x40;
    assert_eq!(run(&f), Err(DecapError::BadVersion));

    // An option area longer than the UDP payload.
    let mut f = v4(false, &Options::new());
    f[GEN4] = 63;
    assert_eq!(run(&f), Err(DecapError::BadOptLen));

    // One option whose length field runs past the option area.
    let mut o = Options::new();
    o.push(0x0102, 0x80, &[1, 2, 3, 4]).unwrap();
    let mut f = v6(&o);
    f[GEN6 + 8 + 3] = 2;
    let unchecked = DecapConfig {
        verify_udp_checksum: false,
        ..DecapConfig::default()
    };
    assert_eq!(decap(&f, &unchecked).err(), Some(DecapError::BadOptLen));

    let mut f = v4(false, &Options::new());
    f[GEN4 + 2..GEN4 + 4].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(run(&f), Err(DecapError::NotEthernet));

    let t = Template::new(&config(false, false)).unwrap();
    let f = encapsulate(&t, &[0u8; 13], 1, &Options::new());
    assert_eq!(run(&f), Err(DecapError::InnerTruncated));
}

#[test]
fn option_mapping_errors() {
    let map = TlvMap::parse("{class=0x0102,type=0x80,len=4}->tun_metadata0").unwrap();
    let mut md = TunMetadata::new();

    let mut o = Options::new();
    o.push(0x0102, 0x80, &[1, 2, 3, 4]).unwrap();
    o.push(0x0103, 0x01, &[0; 8]).unwrap();
    let d = decap(&v4(false, &o), &DecapConfig::default()).unwrap();
    assert_eq!(map.decode(&d.meta.options, &mut md), Ok(()));
    assert_eq!(map.get(&md, 0), Some(&[1, 2, 3, 4][..]));

    o.push(0x0103, 0x81, &[]).unwrap();
    let d = decap(&v4(false, &o), &DecapConfig::default()).unwrap();
    assert!(d.meta.critical);
    assert_eq!(
        map.decode(&d.meta.options, &mut md),
        Err(DecapError::CriticalUnknown)
    );

    let mut o = Options::new();
    o.push(0x0102, 0x80, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let d = decap(&v6(&o), &DecapConfig::default()).unwrap();
    assert_eq!(
        map.decode(&d.meta.options, &mut md),
        Err(DecapError::OptLenMismatch)
    );
}

#[test]
fn counter_names_are_unique_and_prefixed() {
    let mut names: Vec<_> = DecapError::ALL.iter().map(|e| e.name()).collect();
    assert!(names.iter().all(|n| n.starts_with("geneve_")));
    assert!(names.contains(&"geneve_bad_opt_len"));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), DecapError::ALL.len());
    for e in DecapError::ALL {
        assert_eq!(e.to_string(), e.message());
    }
}

proptest! {
    /// Any single corruption of a valid frame is either accepted or
    /// rejected, never a panic, and an accepted inner frame stays in bounds.
    #[test]
    fn corrupted_frames_never_panic(pos in 0usize..200, val in any::<u8>(), cut in 0usize..200, ipv6 in any::<bool>()) {
        let mut o = Options::new();
        o.push(0x0102, 0x80, &[1, 2, 3, 4]).unwrap();
        let mut f = if ipv6 { v6(&o) } else { v4(false, &o) };
        let n = f.len();
        f[pos % n] = val;
        f.truncate(n - cut % 40);
        if let Ok(d) = decap(&f, &DecapConfig { verify_udp_checksum: false, ..DecapConfig::default() }) {
            prop_assert!(d.inner_off + d.inner_len <= f.len());
        }
    }
}
