//! IP fragments through `ct(...)` in the whole in-memory datapath: a
//! datagram larger than the MTU, cut into fragments, crosses a conntrack
//! firewall and a port-changing Service DNAT built like the agent's
//! pipeline, and arrives whole. The output fragments are reassembled here
//! and compared with the datagram etherparse builds for the translated
//! addresses and ports, so the UDP checksum the first fragment's
//! incremental update leaves is checked against one computed from scratch
//! over the whole datagram.

use datapath::MemDatapath;
use etherparse::PacketBuilder;
use oxvs_tests::{always_emc, datapath, ipv4_fragments};

const CLIENT: [u8; 4] = [10, 244, 1, 2];
const SERVER: [u8; 4] = [10, 244, 2, 3];
const VIP: [u8; 4] = [10, 96, 0, 10];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// A UDP datagram from `src:sport` to `dst:dport` with `payload`.
fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("etherparse builds the datagram");
    out
}

/// An ICMP echo request (`request`) or reply with `payload`.
fn echo(src: [u8; 4], dst: [u8; 4], id: u16, request: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64);
    let b = if request {
        b.icmpv4_echo_request(id, 1)
    } else {
        b.icmpv4_echo_reply(id, 1)
    };
    let mut out = Vec::new();
    b.write(&mut out, payload)
        .expect("etherparse builds the echo");
    out
}

fn payload(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
}

/// Reassembles fragments (any order, one datagram): the IPv4 header of the
/// first, with fragment fields cleared and lengths and checksum fixed, and
/// the L4 bytes of all of them in offset order. Each fragment's header
/// checksum must be valid, and the pieces must leave no gap.
fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut v: Vec<(usize, bool, &Vec<u8>)> = frags
        .iter()
        .map(|f| {
            assert_eq!(
                wire::checksum::checksum(&f[14..34]),
                0,
                "IP header checksum"
            );
            let w = u16::from_be_bytes([f[20], f[21]]);
            ((w & 0x1fff) as usize * 8, w & 0x2000 != 0, f)
        })
        .collect();
    v.sort_by_key(|x| x.0);
    let mut out = v[0].2[..34].to_vec();
    let mut at = 0;
    for (i, (off, more, f)) in v.iter().enumerate() {
        assert_eq!(*off, at, "fragments leave no gap");
        assert_eq!(*more, i + 1 < v.len(), "MF on all but the last");
        out.extend_from_slice(&f[34..]);
        at += f.len() - 34;
    }
    let total = (out.len() - 14) as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[18..22].copy_from_slice(&[0; 4]);
    out[24..26].copy_from_slice(&[0, 0]);
    let c = wire::checksum::checksum(&out[14..34]);
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out
}

/// Whether reassembled datagram `got` is `want` (IPv4 without options): the
/// same addresses, protocol and L4 bytes, checksum included. The IP
/// header's own fields that fragmentation changes (identification, flags)
/// are not compared. Panics with a short message, not the bytes.
fn assert_same_datagram(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(got[14 + 9], want[14 + 9], "{what}: protocol");
    assert_eq!(got[14 + 12..34], want[14 + 12..34], "{what}: addresses");
    assert_eq!(
        got[34..42],
        want[34..42],
        "{what}: L4 header (ports, length, checksum)"
    );
    assert!(got[42..] == want[42..], "{what}: payload differs");
}

fn inject_all(dp: &mut MemDatapath, port: u32, frags: &[Vec<u8>], now: u64) {
    for f in frags {
        assert!(dp.inject(port, f), "inject on port {port}");
    }
    dp.run_until_idle(now);
}

/// The agent's shape (docs/kubernetes.md): every IP packet through
/// `ct(nat)` in zone 65520, invalid ones dropped; a Service frontend
/// (10.96.0.10:53/UDP) DNATed to its endpoint's target port 5353 with
/// `ct(commit,nat(dst=...))` and the Service bit of the mark; then an
/// ingress policy that lets new connections reach the endpoint on port
/// 5353 only, established ones pass first, and output.
const SERVICE: &str = "\
table=0,priority=10,ip,actions=ct(table=31,zone=65520,nat)
table=31,priority=200,ct_state=+inv+trk,ip,actions=drop
table=31,priority=0,actions=goto_table:40
table=40,priority=200,udp,nw_dst=10.96.0.10,tp_dst=53,actions=ct(commit,table=60,zone=65520,nat(dst=10.244.2.3:5353),exec(set_field:0x1/0x1->ct_mark))
table=40,priority=0,actions=goto_table:60
table=60,priority=210,ct_state=-new+trk,ip,actions=goto_table:80
table=60,priority=200,udp,nw_dst=10.244.2.3,tp_dst=5353,actions=goto_table:80
table=60,priority=0,actions=drop
table=80,priority=10,ip,nw_dst=10.244.2.3,actions=output:2
table=80,priority=10,ip,nw_dst=10.244.1.2,actions=output:1
";

#[test]
fn a_fragmented_datagram_to_a_service_arrives_whole_both_ways() {
    let mut dp = datapath(2, SERVICE, always_emc());
    let data = payload(3000, 1);
    let sent = ipv4_fragments(&udp(CLIENT, 40000, VIP, 53, &data), 0x1234);
    assert_eq!(sent.len(), 3);
    // All three in one batch.
    inject_all(&mut dp, 1, &sent, 0);
    let got = dp.take_tx(2);
    assert_eq!(
        got.len(),
        3,
        "every fragment passes the firewall and policy"
    );
    let want = udp(CLIENT, 40000, SERVER, 5353, &data);
    assert_same_datagram(
        &reassemble(&got),
        &want,
        "DNATed to 10.244.2.3:5353, UDP checksum valid over the datagram",
    );

    // The answer, larger still, fragment by fragment: translated back to
    // the Service's address and port.
    let answer = payload(4000, 2);
    let sent = ipv4_fragments(&udp(SERVER, 5353, CLIENT, 40000, &answer), 0x77);
    assert_eq!(sent.len(), 3);
    for (i, f) in sent.iter().enumerate() {
        inject_all(&mut dp, 2, std::slice::from_ref(f), 1 + i as u64);
    }
    let got = dp.take_tx(1);
    assert_eq!(got.len(), 3);
    let want = udp(VIP, 53, CLIENT, 40000, &answer);
    assert_same_datagram(&reassemble(&got), &want, "the answer, from the Service");

    // A second request on the same connection, now established and with
    // the caches warm, one fragment per poll.
    let data = payload(3000, 3);
    for (i, f) in ipv4_fragments(&udp(CLIENT, 40000, VIP, 53, &data), 0x1235)
        .iter()
        .enumerate()
    {
        inject_all(&mut dp, 1, std::slice::from_ref(f), 10 + i as u64);
    }
    let got = dp.take_tx(2);
    let want = udp(CLIENT, 40000, SERVER, 5353, &data);
    assert_same_datagram(&reassemble(&got), &want, "the second request");
    let s = dp.pmd.ct.frag_stats();
    assert_eq!(s.orphans, 0);
    assert_eq!(dp.pmd.ct.zone_len(65520), 1, "one connection");
}

#[test]
fn a_later_fragment_before_its_first_is_dropped_and_counted() {
    let mut dp = datapath(2, SERVICE, always_emc());
    let sent = ipv4_fragments(&udp(CLIENT, 40000, VIP, 53, &payload(3000, 4)), 9);
    // Reordered on the way: the last fragment comes first. Without
    // reassembly nothing says what its ports are: +inv, dropped.
    inject_all(&mut dp, 1, &sent[2..], 0);
    assert!(dp.take_tx(2).is_empty());
    assert_eq!(dp.pmd.ct.frag_stats().orphans, 1);
    inject_all(&mut dp, 1, &sent[..2], 1);
    assert_eq!(dp.take_tx(2).len(), 2, "the rest of the datagram passes");
    assert_eq!(dp.pmd.ct.frag_stats().orphans, 1);
}

/// Pod-to-pod with a policy on ports: new connections to UDP port 5353
/// only, and nothing else.
const POLICY: &str = "\
table=0,priority=10,ip,actions=ct(table=1)
table=1,priority=200,ct_state=+inv+trk,ip,actions=drop
table=1,priority=100,ct_state=-new+trk,ip,in_port=2,actions=output:1
table=1,priority=50,udp,in_port=1,ct_state=+new+trk,tp_dst=5353,actions=ct(commit),output:2
table=1,priority=40,icmp,in_port=1,ct_state=+new+trk,actions=ct(commit),output:2
table=1,priority=0,actions=drop
";

#[test]
fn a_policy_on_ports_judges_every_fragment_and_caches_keep_datagrams_apart() {
    let mut dp = datapath(2, POLICY, always_emc());
    // Two datagrams between the same pods whose later fragments have one
    // and the same first-pass key (same addresses, no ports): one to an
    // allowed port, one to a denied one, interleaved.
    for round in 0..3u16 {
        let ok = ipv4_fragments(
            &udp(CLIENT, 40000, SERVER, 5353, &payload(3000, 5)),
            100 + round,
        );
        let no = ipv4_fragments(
            &udp(CLIENT, 40000, SERVER, 9999, &payload(3000, 6)),
            200 + round,
        );
        let mixed: Vec<Vec<u8>> = (0..3)
            .flat_map(|i| [ok[i].clone(), no[i].clone()])
            .collect();
        if round == 0 {
            inject_all(&mut dp, 1, &mixed, 0);
        } else {
            // One fragment a poll, with every cache warm from the round
            // before.
            for f in &mixed {
                inject_all(&mut dp, 1, std::slice::from_ref(f), round.into());
            }
        }
        assert!(
            dp.take_tx(2) == ok,
            "round {round}: the allowed datagram whole, nothing of the other"
        );
    }
    // Each later fragment is found at `ct(table=1)`; the allowed ones
    // again at `ct(commit)`.
    let s = dp.pmd.ct.frag_stats();
    assert_eq!((s.later, s.orphans), (3 * (2 * 2 + 2), 0), "{s:?}");
}

#[test]
fn a_large_ping_through_a_firewall_gets_its_reply() {
    let mut dp = datapath(2, POLICY, always_emc());
    // `ping -s 3000`: 3008 bytes of ICMP, three fragments each way.
    let data = payload(3000, 7);
    let req = ipv4_fragments(&echo(CLIENT, SERVER, 0x4d2, true, &data), 41);
    inject_all(&mut dp, 1, &req, 0);
    assert!(dp.take_tx(2) == req, "the request, all of it");
    let rep = ipv4_fragments(&echo(SERVER, CLIENT, 0x4d2, false, &data), 42);
    inject_all(&mut dp, 2, &rep, 1);
    assert!(dp.take_tx(1) == rep, "the reply, all of it");
}

/// Cuts IPv6 frame `whole` (no extension headers) into fragments of at most
/// 1448 L4 bytes, each with a Fragment header (RFC 8200 §4.5) of
/// identification `id`, as a 1500-byte MTU does.
fn fragment_v6(whole: &[u8], id: u32) -> Vec<Vec<u8>> {
    let l4 = &whole[54..];
    let next = whole[20];
    let mut out = Vec::new();
    let mut from = 0;
    while from < l4.len() {
        let to = (from + 1448).min(l4.len());
        let mut f = whole[..54].to_vec();
        f[20] = 44;
        f[18..20].copy_from_slice(&(8 + (to - from) as u16).to_be_bytes());
        let word = (from as u16 / 8) << 3 | u16::from(to < l4.len());
        f.extend_from_slice(&[next, 0]);
        f.extend_from_slice(&word.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&l4[from..to]);
        out.push(f);
        from = to;
    }
    out
}

#[test]
fn ipv6_fragments_take_their_datagrams_ports_too() {
    let flows = "\
table=0,priority=10,ipv6,actions=ct(table=1)
table=1,priority=200,ct_state=+inv+trk,ipv6,actions=drop
table=1,priority=100,ct_state=-new+trk,ipv6,in_port=2,actions=output:1
table=1,priority=50,udp6,in_port=1,ct_state=+new+trk,tp_dst=5353,actions=ct(commit),output:2
table=1,priority=0,actions=drop
";
    let mut dp = datapath(2, flows, always_emc());
    let (a, b) = (
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3],
    );
    let udp6 = |src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, salt: u8| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, &payload(3000, salt))
            .unwrap();
        out
    };
    let ok = fragment_v6(&udp6(a, 40000, b, 5353, 8), 0x1_0001);
    let no = fragment_v6(&udp6(a, 40000, b, 9999, 9), 0x1_0002);
    assert_eq!(ok.len(), 3);
    let mixed: Vec<Vec<u8>> = (0..3)
        .flat_map(|i| [ok[i].clone(), no[i].clone()])
        .collect();
    inject_all(&mut dp, 1, &mixed, 0);
    assert!(
        dp.take_tx(2) == ok,
        "the allowed datagram whole, nothing of the other"
    );
    let back = fragment_v6(&udp6(b, 5353, a, 40000, 10), 0x2_0001);
    inject_all(&mut dp, 2, &back, 1);
    assert!(dp.take_tx(1) == back, "the answer, whole");
    assert_eq!(dp.pmd.ct.frag_stats().orphans, 0);
}
