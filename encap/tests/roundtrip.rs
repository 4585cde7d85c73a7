//! Property test: encap then decap gives back exactly the inner frame and
//! the metadata that went in, and the outer headers are valid as an
//! independent parser (etherparse) sees them.

mod common;

use common::*;
use encap::{decap, DecapConfig, Options, PerPacket, Template};
use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use proptest::prelude::*;
use std::net::IpAddr;

fn options_strategy() -> impl Strategy<Value = Vec<(u16, u8, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u16>(), any::<u8>(), 0usize..=8).prop_flat_map(|(c, t, words)| {
            prop::collection::vec(any::<u8>(), words * 4).prop_map(move |d| (c, t, d))
        }),
        0..=4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encap_decap_round_trip(
        inner in prop::collection::vec(any::<u8>(), 14..1500),
        vni in 0u32..(1 << 24),
        opts in options_strategy(),
        ipv6 in any::<bool>(),
        csum in any::<bool>(),
        oam in any::<bool>(),
        ip_id in any::<u16>(),
    ) {
        let cfg = config(ipv6, csum);
        let t = Template::new(&cfg).unwrap();
        let mut options = Options::new();
        for (c, ty, d) in &opts {
            options.push(*c, *ty, d).unwrap();
        }
        let mut frame = frame_with(&inner);
        let pkt = PerPacket { vni, options: &options, ip_id, oam };
        let (off, len) = t.push(&mut frame, HEADROOM, inner.len(), &pkt).unwrap();
        let hdr = if ipv6 { 70 } else { 50 } + options.len();
        prop_assert_eq!(off, HEADROOM - hdr);
        prop_assert_eq!(len, hdr + inner.len());
        prop_assert_eq!(&frame[HEADROOM..HEADROOM + inner.len()], &inner[..]);

        let outer = &frame[off..off + len];
        let d = decap(outer, &DecapConfig::default()).unwrap();
        prop_assert_eq!(off + d.inner_off, HEADROOM);
        prop_assert_eq!(&outer[d.inner_off..d.inner_off + d.inner_len], &inner[..]);
        let m = &d.meta;
        prop_assert_eq!(m.vni, vni);
        prop_assert_eq!(m.options, options);
        prop_assert_eq!(m.oam, oam);
        prop_assert_eq!(m.critical, opts.iter().any(|o| o.1 & 0x80 != 0));
        prop_assert_eq!(m.src, cfg.src_ip);
        prop_assert_eq!(m.dst, cfg.dst_ip);
        prop_assert_eq!((m.tos, m.ttl), (cfg.tos, cfg.ttl));
        let hash = encap::inner_flow_hash(&inner);
        prop_assert_eq!(m.src_port, cfg.src_ports.port(hash));
        prop_assert!((32768..61000).contains(&m.src_port));

        // The outer headers, as etherparse reads them.
        let h = PacketHeaders::from_ethernet_slice(outer).unwrap();
        let ip_len = if ipv6 { 40 } else { 20 };
        let udp_payload = &outer[14 + ip_len + 8..];
        let udp = match h.transport {
            Some(TransportHeader::Udp(u)) => u,
            other => return Err(TestCaseError::fail(format!("not udp: {other:?}"))),
        };
        prop_assert_eq!(udp.destination_port, 6081);
        prop_assert_eq!(usize::from(udp.length), len - 14 - ip_len);
        match h.net {
            Some(NetHeaders::Ipv4(ip, _)) => {
                prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                prop_assert_eq!(usize::from(ip.total_len), len - 14);
                prop_assert!(ip.dont_fragment);
                prop_assert_eq!(ip.identification, ip_id);
                if csum {
                    prop_assert_eq!(udp.checksum, udp.calc_checksum_ipv4(&ip, udp_payload).unwrap());
                } else {
                    prop_assert_eq!(udp.checksum, 0);
                }
            }
            Some(NetHeaders::Ipv6(ip, _)) => {
                prop_assert_eq!(usize::from(ip.payload_length), len - 54);
                prop_assert_eq!(ip.flow_label.value(), hash & 0xfffff);
                prop_assert_eq!(udp.checksum, udp.calc_checksum_ipv6(&ip, udp_payload).unwrap());
            }
            other => return Err(TestCaseError::fail(format!("not ip: {other:?}"))),
        }
        match m.src {
            IpAddr::V4(_) => prop_assert!(!ipv6),
            IpAddr::V6(_) => prop_assert!(ipv6),
        }
    }
}

#[test]
fn mac_addresses_and_ethertype() {
    for ipv6 in [false, true] {
        let t = Template::new(&config(ipv6, false)).unwrap();
        let outer = encapsulate(&t, &inner_icmp4(32), 5, &Options::new());
        assert_eq!(&outer[0..6], &DST_MAC);
        assert_eq!(&outer[6..12], &SRC_MAC);
        assert_eq!(
            &outer[12..14],
            if ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x00] }
        );
    }
}
