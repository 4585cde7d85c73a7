//! Golden tests: a flow file, packets in, and the exact bytes expected out of
//! each port. Expected packets are built by etherparse from a description,
//! so their checksums are computed independently of our incremental updates.

use datapath::MemDatapath;
use flowtable::DropReason;
use oxvs_tests::{always_emc, datapath, Pkt, L4};

const A: [u8; 4] = [10, 244, 1, 2];
const B: [u8; 4] = [10, 244, 1, 3];
const C: [u8; 4] = [10, 244, 2, 3];

fn send(dp: &mut MemDatapath, port: u32, bytes: &[u8]) {
    assert!(dp.inject(port, bytes), "inject on port {port}");
    dp.run_until_idle(0);
}

fn assert_only(dp: &mut MemDatapath, n_ports: u32, expect: &[(u32, &[u8])]) {
    for port in 1..=n_ports {
        let got = dp.take_tx(port);
        let want: Vec<Vec<u8>> = expect
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, b)| b.to_vec())
            .collect();
        assert_eq!(got, want, "port {port}");
    }
}

#[test]
fn l2_forwarding_by_port() {
    let mut dp = datapath(
        3,
        "in_port=1,actions=output:2\nin_port=2,actions=output:1\n",
        always_emc(),
    );
    let p = Pkt::tcp(A, B, 40000, 80).build(32);
    for _ in 0..3 {
        send(&mut dp, 1, &p);
        assert_only(&mut dp, 3, &[(2, &p)]);
    }
    let back = Pkt::tcp(B, A, 80, 40000).build(0);
    send(&mut dp, 2, &back);
    assert_only(&mut dp, 3, &[(1, &back)]);
    // Port 3 has no rule: a table miss, counted by name.
    send(&mut dp, 3, &p);
    assert_only(&mut dp, 3, &[]);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::TableMiss), 1);
    // Three packets of one flow: one upcall, then cache hits.
    assert_eq!(dp.pmd.stats.upcall, 3);
    assert_eq!(dp.pmd.stats.emc_hit, 2);
}

#[test]
fn normal_learns_floods_then_forwards() {
    let mut dp = datapath(3, "actions=normal\n", always_emc());
    let mut ab = Pkt::tcp(A, B, 1, 2);
    ab.src_mac = [2, 0, 0, 0, 0, 0xa];
    ab.dst_mac = [2, 0, 0, 0, 0, 0xb];
    let mut ba = Pkt::tcp(B, A, 2, 1);
    ba.src_mac = ab.dst_mac;
    ba.dst_mac = ab.src_mac;
    let (ab, ba) = (ab.build(10), ba.build(10));
    // b unknown: flood to every port but the input.
    send(&mut dp, 1, &ab);
    assert_only(&mut dp, 3, &[(2, &ab), (3, &ab)]);
    // a was learned on port 1: unicast back.
    send(&mut dp, 2, &ba);
    assert_only(&mut dp, 3, &[(1, &ba)]);
    // b is now learned on port 2; the cached flood must not survive that.
    send(&mut dp, 1, &ab);
    assert_only(&mut dp, 3, &[(2, &ab)]);
    assert!(dp.pmd.stats.revalidations >= 2);
    // Broadcast floods.
    let mut bc = Pkt::tcp(A, B, 1, 2);
    bc.dst_mac = [0xff; 6];
    let bc = bc.build(0);
    send(&mut dp, 3, &bc);
    assert_only(&mut dp, 3, &[(1, &bc), (2, &bc)]);
}

#[test]
fn l3_rewrite_with_dec_ttl() {
    let flows = "table=0,priority=100,ip,nw_dst=10.244.2.0/24,actions=dec_ttl,mod_dl_src:0a:00:00:00:00:fe,mod_dl_dst:02:00:00:00:02:03,output:2\n\
                 table=0,priority=0,actions=drop\n";
    let mut dp = datapath(2, flows, always_emc());
    let mut p = Pkt::tcp(A, C, 33000, 8080);
    let input = p.build(100);
    p.ttl = 63;
    p.src_mac = [0x0a, 0, 0, 0, 0, 0xfe];
    p.dst_mac = [2, 0, 0, 0, 2, 3];
    let want = p.build(100);
    send(&mut dp, 1, &input);
    assert_only(&mut dp, 2, &[(2, &want)]);
    // UDP and ICMP through the same rule.
    for l4 in [L4::Udp(5353, 53), L4::IcmpEcho(9, 3)] {
        let mut q = Pkt::tcp(A, C, 0, 0);
        q.l4 = l4;
        let input = q.build(20);
        q.ttl = 63;
        q.src_mac = [0x0a, 0, 0, 0, 0, 0xfe];
        q.dst_mac = [2, 0, 0, 0, 2, 3];
        send(&mut dp, 1, &input);
        assert_only(&mut dp, 2, &[(2, &q.build(20))]);
    }
    // TTL 1 cannot be decremented: dropped with its reason.
    let mut dying = Pkt::tcp(A, C, 33000, 8080);
    dying.ttl = 1;
    send(&mut dp, 1, &dying.build(0));
    assert_only(&mut dp, 2, &[]);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::TtlExceeded), 1);
    // Elsewhere: explicit drop.
    send(&mut dp, 1, &Pkt::tcp(A, B, 1, 2).build(0));
    assert_eq!(dp.pmd.stats.drops_for(DropReason::NoOutput), 1);
}

#[test]
fn vlan_push_on_access_pop_on_trunk() {
    let flows = "in_port=1,actions=push_vlan:0x8100,mod_vlan_vid:100,output:3\n\
                 in_port=3,dl_vlan=100,actions=pop_vlan,output:1\n\
                 in_port=3,dl_vlan=200,actions=mod_vlan_vid:300,output:2\n";
    let mut dp = datapath(3, flows, always_emc());
    let plain = Pkt::tcp(A, B, 1, 2);
    let mut tagged = plain;
    tagged.vlan = Some(100);
    send(&mut dp, 1, &plain.build(40));
    assert_only(&mut dp, 3, &[(3, &tagged.build(40))]);
    send(&mut dp, 3, &tagged.build(40));
    assert_only(&mut dp, 3, &[(1, &plain.build(40))]);
    let mut v200 = plain;
    v200.vlan = Some(200);
    let mut v300 = plain;
    v300.vlan = Some(300);
    send(&mut dp, 3, &v200.build(0));
    assert_only(&mut dp, 3, &[(2, &v300.build(0))]);
}

#[test]
fn multi_table_resubmit_and_service_rewrite() {
    // Table 0 classifies by port into reg0; table 10 rewrites a service
    // address and port; table 20 routes on the rewritten destination.
    let flows = "\
table=0,priority=100,in_port=1,actions=load:0x1->NXM_NX_REG0[0..7],resubmit(,10)
table=10,priority=100,tcp,reg0=0x1/0xff,nw_dst=10.96.0.10,tp_dst=80,actions=mod_nw_dst:10.244.2.3,mod_tp_dst:8080,goto_table:20
table=10,priority=0,actions=goto_table:20
table=20,priority=100,ip,nw_dst=10.244.2.3,actions=output:2
table=20,priority=50,ip,actions=output:3
";
    let mut dp = datapath(3, flows, always_emc());
    let input = Pkt::tcp(A, [10, 96, 0, 10], 41000, 80);
    let mut want = input;
    want.dst_ip = C;
    want.l4 = L4::Tcp(41000, 8080);
    for _ in 0..2 {
        send(&mut dp, 1, &input.build(64));
        assert_only(&mut dp, 3, &[(2, &want.build(64))]);
    }
    // Another port is not classified: table 0 misses.
    send(&mut dp, 2, &input.build(0));
    assert_only(&mut dp, 3, &[]);
    // Another destination falls through to the default route.
    let other = Pkt::tcp(A, B, 41000, 80);
    send(&mut dp, 1, &other.build(0));
    assert_only(&mut dp, 3, &[(3, &other.build(0))]);
}

#[test]
fn groups_select_all_indirect() {
    let flows = "\
group_id=1,type=select,bucket=weight:100,actions=output:2,bucket=weight:100,actions=output:3
group_id=2,type=all,bucket=actions=output:2,bucket=actions=mod_dl_dst:02:00:00:00:00:99,output:3,bucket=actions=output:4
group_id=3,type=indirect,bucket=actions=output:4
priority=10,tcp,tp_dst=80,actions=group:1
priority=10,udp,actions=group:2
priority=10,icmp,actions=group:3
";
    let mut dp = datapath(4, flows, always_emc());
    // Select: each flow sticks to one bucket; many flows use both.
    let mut seen = [0u32; 5];
    for sport in 10000..10064u16 {
        let p = Pkt::tcp(A, B, sport, 80).build(0);
        let mut first = None;
        for _ in 0..2 {
            send(&mut dp, 1, &p);
            let on: Vec<u32> = (2..=3)
                .filter(|&port| !dp.take_tx(port).is_empty())
                .collect();
            assert_eq!(on.len(), 1, "one bucket per packet");
            assert_eq!(
                *first.get_or_insert(on[0]),
                on[0],
                "a flow sticks to its bucket"
            );
        }
        seen[first.unwrap() as usize] += 1;
    }
    assert!(seen[2] > 10 && seen[3] > 10, "both buckets used: {seen:?}");
    // All: each bucket gets its own copy, rewrites do not leak between them.
    let mut u = Pkt::tcp(A, B, 0, 0);
    u.l4 = L4::Udp(1234, 53);
    let mut rewritten = u;
    rewritten.dst_mac = [2, 0, 0, 0, 0, 0x99];
    send(&mut dp, 1, &u.build(12));
    assert_only(
        &mut dp,
        4,
        &[
            (2, &u.build(12)),
            (3, &rewritten.build(12)),
            (4, &u.build(12)),
        ],
    );
    assert!(dp.pmd.stats.tx_copies >= 2);
    // Indirect.
    let mut i = Pkt::tcp(A, B, 0, 0);
    i.l4 = L4::IcmpEcho(1, 1);
    send(&mut dp, 1, &i.build(8));
    assert_only(&mut dp, 4, &[(4, &i.build(8))]);
}

#[test]
fn drops_are_named() {
    let mut dp = datapath(
        2,
        "in_port=1,actions=output:1\nin_port=2,actions=drop\n",
        always_emc(),
    );
    let good = Pkt::tcp(A, B, 1, 2).build(0);
    send(&mut dp, 1, &good);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::OutputToInPort), 1);
    send(&mut dp, 2, &good);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::NoOutput), 1);
    // A runt, an IPv4 header claiming more bytes than it has, a TCP header
    // cut short: each dropped before any lookup, under its own reason.
    send(&mut dp, 1, &good[..10]);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::MalformedEthernet), 1);
    let mut bad_len = good.clone();
    bad_len[16] = 0x05; // total length 0x05xx > frame
    send(&mut dp, 1, &bad_len);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::MalformedIpv4), 1);
    let mut short_tcp = good[..14 + 20 + 10].to_vec();
    short_tcp[16..18].copy_from_slice(&30u16.to_be_bytes());
    short_tcp[24..26].copy_from_slice(&[0, 0]);
    let c = wire::checksum::checksum(&short_tcp[14..34]);
    short_tcp[24..26].copy_from_slice(&c.to_be_bytes());
    send(&mut dp, 1, &short_tcp);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::MalformedL4), 1);
    assert_eq!(
        dp.pmd.stats.upcall, 2,
        "malformed packets never reach the classifier"
    );
    assert_eq!(
        dp.pool.n_free(),
        4096,
        "every dropped frame went back to the pool"
    );
}

#[test]
fn ipv6_rewrite_updates_the_udp_checksum() {
    let flows = "udp6,ipv6_dst=fd00::10,actions=set_field:fd00::20->ipv6_dst,dec_ttl,output:2\n";
    let mut dp = datapath(2, flows, always_emc());
    let build = |dst: [u8; 16], hops: u8| {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                dst,
                hops,
            )
            .udp(5000, 53)
            .write(&mut out, b"question")
            .expect("builds");
        out
    };
    let mut to = [0u8; 16];
    to[0] = 0xfd;
    to[15] = 0x10;
    let mut rewritten = to;
    rewritten[15] = 0x20;
    for _ in 0..2 {
        send(&mut dp, 1, &build(to, 64));
        assert_only(&mut dp, 2, &[(2, &build(rewritten, 63))]);
    }
}

#[test]
fn rule_counters_and_idle_timeout() {
    let flows = "priority=10,in_port=1,idle_timeout=5,actions=output:2\npriority=10,in_port=2,idle_timeout=5,actions=output:1\n";
    let mut dp = datapath(2, flows, always_emc());
    let p = Pkt::tcp(A, B, 1, 2).build(26);
    for t in [0, 1000, 2000] {
        assert!(dp.inject(1, &p));
        dp.run_until_idle(t);
    }
    dp.take_tx(2);
    // Megaflow hits reach the rule when statistics are pushed.
    dp.push_stats(2000);
    let rule = |dp: &MemDatapath, port: u128| {
        dp.bridge
            .cls
            .rules()
            .find(|r| r.m.get(flowtable::Field::InPort).0 == port)
            .cloned()
    };
    let r1 = rule(&dp, 1).expect("rule for port 1");
    assert_eq!(
        r1.stats.packets.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(
        r1.stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
        3 * p.len() as u64
    );
    // At 6 s the unused rule for port 2 has idled out; the used one has not.
    let gone = dp.bridge.expire(6000);
    assert_eq!(gone.len(), 1);
    assert!(rule(&dp, 2).is_none() && rule(&dp, 1).is_some());
    // At 8 s, with no traffic since 2 s, the other goes too, and the cached
    // megaflow with it: the next packet is a table miss.
    assert_eq!(dp.bridge.expire(8000).len(), 1);
    send(&mut dp, 1, &p);
    assert_only(&mut dp, 2, &[]);
    assert_eq!(dp.pmd.stats.drops_for(DropReason::TableMiss), 1);
}

/// A changed group reaches flows already cached: a group change is not a
/// table change, so it revalidates every megaflow, not only those of
/// changed tables (the rule table is untouched here).
#[test]
fn a_group_change_reaches_cached_flows() {
    let flows = "group_id=1,type=indirect,bucket=actions=output:2\nin_port=1,actions=group:1\n";
    let mut dp = datapath(3, flows, always_emc());
    let p = Pkt::tcp(A, B, 40000, 80).build(0);
    for _ in 0..2 {
        send(&mut dp, 1, &p);
        assert_only(&mut dp, 3, &[(2, &p)]);
    }
    let file = ctl::ofp::parse_flow_file(
        "group_id=1,type=indirect,bucket=actions=output:3\n",
        &dp.bridge.ports,
    )
    .expect("parses");
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).expect("applies");
    send(&mut dp, 1, &p);
    assert_only(&mut dp, 3, &[(3, &p)]);
}
