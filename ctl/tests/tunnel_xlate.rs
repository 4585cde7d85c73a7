//! Tunnel ports in translation: `set_field:...->tun_dst,set_field:...->tun_id,
//! output:gnv0` becomes a Geneve push with that VNI and remote; a packet that
//! arrives on the tunnel port matches on `tun_id`/`tun_src`; fixed remotes
//! and keys come from the port; and megaflows of packets from ordinary ports
//! never depend on tunnel fields.

use ctl::ofp::{parse_flow_file, parse_packet};
use flowtable::tunnel::{TlvSlot, Tunnel};
use flowtable::{translate, Bridge, DpAction, DropReason, Field};

fn bridge(flows: &str, remote: Option<&str>, key: Option<u32>, local: &str) -> Bridge {
    let mut br = Bridge::default();
    br.add_port(1, "vA1");
    br.add_port(2, "vA2");
    br.ports.add_tunnel(
        100,
        "gnv0",
        Tunnel {
            local: local.parse().unwrap(),
            remote: remote.map(|r| r.parse().unwrap()),
            key,
        },
    );
    let file = parse_flow_file(flows, &br.ports).expect("flows parse");
    let (changes, _) = ctl::load::file_changes(&file);
    br.apply(&changes, 0).expect("flows apply");
    br
}

fn mapped(ip: &str) -> [u8; 16] {
    let a: std::net::Ipv4Addr = ip.parse().unwrap();
    a.to_ipv6_mapped().octets()
}

#[test]
fn flow_based_remote_and_key_from_set_field() {
    let br = bridge(
        "in_port=vA1,ip,nw_dst=10.244.2.0/24,actions=set_field:192.168.77.2->tun_dst,set_field:0x2a->tun_id,output:gnv0\n",
        None,
        None,
        "192.168.77.1",
    );
    let key = parse_packet(
        "in_port=1,udp,nw_src=10.244.1.2,nw_dst=10.244.2.2,tp_src=1,tp_dst=2",
        &br.ports,
    )
    .unwrap();
    let x = translate(&br, &key, None);
    assert_eq!(
        x.actions,
        vec![DpAction::TunnelPush {
            port: 100,
            vni: 42,
            dst: mapped("192.168.77.2")
        }]
    );
    for f in [
        Field::TunId,
        Field::TunDst,
        Field::TunIpv6Dst,
        Field::TunMetadata0,
    ] {
        assert_eq!(x.mask.get(f), 0, "{f:?} is zero for every packet from vA1");
    }
}

#[test]
fn ipv6_remote_and_family_mismatch() {
    let flows =
        "in_port=vA1,actions=set_field:fd00:77::2->tun_ipv6_dst,set_field:7->tun_id,output:gnv0\n";
    let br = bridge(flows, None, None, "fd00:77::1");
    let key = parse_packet(
        "in_port=1,udp,nw_src=10.244.1.2,nw_dst=10.244.2.2",
        &br.ports,
    )
    .unwrap();
    let x = translate(&br, &key, None);
    let want: std::net::Ipv6Addr = "fd00:77::2".parse().unwrap();
    assert_eq!(
        x.actions,
        vec![DpAction::TunnelPush {
            port: 100,
            vni: 7,
            dst: want.octets()
        }]
    );
    // An IPv4 VTEP cannot reach an IPv6 remote.
    let br = bridge(flows, None, None, "192.168.77.1");
    let x = translate(&br, &key, None);
    assert_eq!(x.actions, vec![DpAction::Drop(DropReason::PortDown)]);
}

#[test]
fn fixed_remote_and_key_come_from_the_port() {
    let br = bridge(
        "in_port=vA1,actions=output:gnv0\n",
        Some("192.168.77.3"),
        Some(5001),
        "192.168.77.1",
    );
    let key = parse_packet(
        "in_port=1,tcp,nw_src=10.244.1.2,nw_dst=10.244.3.2",
        &br.ports,
    )
    .unwrap();
    let x = translate(&br, &key, None);
    assert_eq!(
        x.actions,
        vec![DpAction::TunnelPush {
            port: 100,
            vni: 5001,
            dst: mapped("192.168.77.3")
        }]
    );
}

#[test]
fn decapsulated_packets_match_tunnel_fields() {
    let flows = "in_port=gnv0,tun_id=0x2a,tun_src=192.168.77.2,actions=output:vA2\nin_port=gnv0,actions=drop\n";
    let br = bridge(flows, None, None, "192.168.77.1");
    let key = parse_packet(
        "in_port=100,tun_id=0x2a,tun_src=192.168.77.2,tun_dst=192.168.77.1,udp,nw_src=10.244.2.2,nw_dst=10.244.1.3",
        &br.ports,
    )
    .unwrap();
    let x = translate(&br, &key, None);
    assert_eq!(x.actions, vec![DpAction::Output(2)]);
    assert_eq!(x.mask.get(Field::TunId), 0xffff_ffff_ffff_ffff);
    assert_eq!(x.mask.get(Field::TunSrc), 0xffff_ffff);
    let other = parse_packet(
        "in_port=100,tun_id=0x2b,tun_src=192.168.77.2,udp",
        &br.ports,
    )
    .unwrap();
    assert_eq!(
        translate(&br, &other, None).actions,
        vec![DpAction::Drop(DropReason::NoOutput)]
    );
}

#[test]
fn mapped_metadata_travels_as_an_option() {
    let flows = "in_port=vA1,actions=set_field:192.168.77.2->tun_dst,set_field:0xabcd->tun_metadata0,output:gnv0\n";
    let mut br = bridge(flows, None, Some(9), "192.168.77.1");
    // Without a TLV map entry the field is not sent.
    let key = parse_packet("in_port=1,udp", &br.ports).unwrap();
    let x = translate(&br, &key, None);
    assert!(
        matches!(x.actions[..], [DpAction::TunnelPush { vni: 9, .. }]),
        "{:?}",
        x.actions
    );
    br.tlv.slots[0] = Some(TlvSlot {
        class: 0x0102,
        ty: 0x80,
        len: 4,
    });
    let x = translate(&br, &key, None);
    assert_eq!(
        x.actions[0],
        DpAction::TunnelMetadata {
            slot: 0,
            value: 0xabcd
        }
    );
    assert!(matches!(x.actions[1], DpAction::TunnelPush { vni: 9, .. }));
}
