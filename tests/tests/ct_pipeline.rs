//! `ct(...)` through the whole in-memory datapath: parsing the flow text,
//! translation, the caches, conntrack, NAT and recirculation. Expected bytes
//! are built by etherparse, so the checksums NAT patches incrementally are
//! checked against ones computed from scratch.

use datapath::MemDatapath;
use etherparse::PacketBuilder;
use flowtable::DropReason;
use oxvs_tests::{always_emc, datapath};

const CLIENT: [u8; 4] = [10, 244, 1, 2];
const SERVER: [u8; 4] = [10, 244, 2, 3];
const VIP: [u8; 4] = [10, 96, 0, 10];

/// TCP flags for [`tcp`].
#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
}

/// A TCP segment from `src:sport` to `dst:dport`.
fn tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    f: Flags,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64240);
    let b = match f {
        Flags::Syn => b.syn(),
        Flags::SynAck => b.syn().ack(ack),
        Flags::Ack => b.ack(ack),
    };
    let mut out = Vec::new();
    b.write(&mut out, &[])
        .expect("etherparse builds the segment");
    out
}

fn send(dp: &mut MemDatapath, port: u32, bytes: &[u8], now: u64) {
    assert!(dp.inject(port, bytes), "inject on port {port}");
    dp.run_until_idle(now);
}

/// A stateful firewall: port 1 may open connections to port 2, replies
/// come back, and port 2 may not open connections of its own.
const FIREWALL: &str = "\
table=0,priority=10,ip,actions=ct(table=1)
table=1,priority=20,ip,in_port=1,ct_state=+trk+new,actions=ct(commit),output:2
table=1,priority=20,ip,in_port=1,ct_state=+trk+est,actions=output:2
table=1,priority=20,ip,in_port=2,ct_state=+trk+est+rpl,actions=output:1
table=1,priority=10,ip,actions=drop
";

#[test]
fn replies_pass_and_new_connections_from_the_far_side_do_not() {
    let mut dp = datapath(2, FIREWALL, always_emc());
    let syn = tcp(CLIENT, 40000, SERVER, 80, Flags::Syn, 1000, 0);
    send(&mut dp, 1, &syn, 0);
    assert_eq!(dp.take_tx(2), vec![syn.clone()]);

    let synack = tcp(SERVER, 80, CLIENT, 40000, Flags::SynAck, 5000, 1001);
    send(&mut dp, 2, &synack, 1);
    assert_eq!(dp.take_tx(1), vec![synack.clone()], "the reply passes");

    let ack = tcp(CLIENT, 40000, SERVER, 80, Flags::Ack, 1001, 5001);
    send(&mut dp, 1, &ack, 2);
    assert_eq!(dp.take_tx(2), vec![ack.clone()], "established");

    // The server opening a connection of its own is new in the other
    // direction and falls to the drop rule.
    let rogue = tcp(SERVER, 81, CLIENT, 22, Flags::Syn, 1, 0);
    send(&mut dp, 2, &rogue, 3);
    assert!(
        dp.take_tx(1).is_empty(),
        "a new connection from port 2 is dropped"
    );
    assert_eq!(
        dp.pmd.ct.len(),
        1,
        "only the allowed connection is committed"
    );
    assert_eq!(dp.pmd.stats.recirc, 4, "every packet made a second pass");
}

#[test]
fn second_pass_is_served_from_the_caches() {
    let mut dp = datapath(2, FIREWALL, always_emc());
    send(
        &mut dp,
        1,
        &tcp(CLIENT, 40000, SERVER, 80, Flags::Syn, 1000, 0),
        0,
    );
    send(
        &mut dp,
        2,
        &tcp(SERVER, 80, CLIENT, 40000, Flags::SynAck, 5000, 1001),
        1,
    );
    dp.take_tx(1);
    dp.take_tx(2);
    let upcalls = dp.pmd.stats.upcall;
    for i in 0..10u32 {
        let ack = tcp(CLIENT, 40000, SERVER, 80, Flags::Ack, 1001 + i, 5001);
        send(&mut dp, 1, &ack, 2 + u64::from(i));
        assert_eq!(dp.take_tx(2).len(), 1);
    }
    // The first ACK is the first +est packet on port 1: one upcall for its
    // second pass. The rest hit the caches in both passes.
    assert_eq!(dp.pmd.stats.upcall - upcalls, 1);
}

/// A ClusterIP: 10.96.0.10:80 is translated to the endpoint
/// 10.244.2.3:8080 in zone 5, and replies are translated back.
const SERVICE: &str = "\
table=0,priority=20,tcp,in_port=1,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,table=1,zone=5,nat(dst=10.244.2.3:8080))
table=0,priority=10,ip,in_port=2,actions=ct(table=1,zone=5,nat)
table=1,priority=20,ip,in_port=1,ct_state=+trk+dnat,nw_dst=10.244.2.3,actions=output:2
table=1,priority=20,ip,in_port=2,ct_state=+trk+est+rpl,actions=output:1
table=1,priority=10,ip,actions=drop
";

#[test]
fn cluster_ip_is_translated_both_ways() {
    let mut dp = datapath(2, SERVICE, always_emc());
    let syn = tcp(CLIENT, 40000, VIP, 80, Flags::Syn, 1000, 0);
    send(&mut dp, 1, &syn, 0);
    let want = tcp(CLIENT, 40000, SERVER, 8080, Flags::Syn, 1000, 0);
    assert_eq!(dp.take_tx(2), vec![want], "DNAT with correct checksums");

    let synack = tcp(SERVER, 8080, CLIENT, 40000, Flags::SynAck, 7000, 1001);
    send(&mut dp, 2, &synack, 1);
    let want = tcp(VIP, 80, CLIENT, 40000, Flags::SynAck, 7000, 1001);
    assert_eq!(dp.take_tx(1), vec![want], "the reply comes from the VIP");

    for i in 0..3u32 {
        let ack = tcp(CLIENT, 40000, VIP, 80, Flags::Ack, 1001 + i, 7001);
        send(&mut dp, 1, &ack, 2 + u64::from(i));
        let want = tcp(CLIENT, 40000, SERVER, 8080, Flags::Ack, 1001 + i, 7001);
        assert_eq!(dp.take_tx(2), vec![want]);
    }
    assert_eq!(dp.pmd.ct.zone_len(5), 1);
    assert_eq!(dp.pmd.ct.zone_len(0), 0);
}

#[test]
fn registers_survive_recirculation_and_exec_sets_the_mark() {
    let flows = "\
table=0,priority=10,ip,in_port=1,actions=load:0x2a->NXM_NX_REG3[],ct(commit,table=1,exec(set_field:0x7->ct_mark))
table=0,priority=10,ip,in_port=2,actions=ct(table=1)
table=1,priority=20,ip,reg3=0x2a,ct_mark=0x7,ct_state=+trk+new,actions=output:2
table=1,priority=20,ip,in_port=2,ct_mark=0x7,ct_state=+trk+est+rpl,actions=output:1
table=1,priority=10,ip,actions=drop
";
    let mut dp = datapath(2, flows, always_emc());
    let syn = tcp(CLIENT, 40000, SERVER, 80, Flags::Syn, 1000, 0);
    send(&mut dp, 1, &syn, 0);
    assert_eq!(
        dp.take_tx(2),
        vec![syn],
        "reg3 and the new mark reached table 1"
    );
    let synack = tcp(SERVER, 80, CLIENT, 40000, Flags::SynAck, 5000, 1001);
    send(&mut dp, 2, &synack, 1);
    assert_eq!(
        dp.take_tx(1),
        vec![synack],
        "the reply sees the connection's mark"
    );
}

#[test]
fn a_ct_loop_is_cut_off_and_counted() {
    // Every pass recirculates again: the datapath stops it.
    let mut dp = datapath(2, "table=0,ip,actions=ct(table=0)\n", always_emc());
    send(&mut dp, 1, &tcp(CLIENT, 1, SERVER, 2, Flags::Syn, 1, 0), 0);
    assert!(dp.take_tx(2).is_empty());
    assert_eq!(dp.pmd.stats.drops_for(DropReason::RecircLimit), 1);
}

#[test]
fn ct_rules_print_back_as_they_were_written() {
    let lines = [
        "ip,actions=ct(commit,table=1,zone=5,exec(set_field:0x1->ct_mark),nat(dst=10.244.2.3:8080))",
        "ip,actions=ct(table=3,zone=NXM_NX_REG6[0..15],nat)",
        "tcp,actions=ct(commit,nat(src=192.168.77.1-192.168.77.4:30000-32767)),output:1",
        "ipv6,actions=ct(commit,nat(dst=[fd00::1]:80))",
        "ip,actions=ct_clear,ct(commit,exec(load:0x1->NXM_NX_CT_LABEL[64..127]))",
    ];
    oxvs_tests::assert_prints_back(&lines);
}

#[test]
fn bad_ct_actions_name_their_column() {
    let cases = [
        (
            "ip,actions=ct(exec(set_field:0x1->ct_mark))",
            "needs commit",
        ),
        (
            "ip,actions=ct(commit,exec(set_field:10.0.0.1->nw_dst))",
            "only write ct_mark",
        ),
        (
            "ip,actions=ct(commit,nat(src=10.0.0.9-10.0.0.1))",
            "runs backwards",
        ),
        ("ip,actions=ct(commit,nat(src=10.0.0.1:200-100))", "empty"),
        ("arp,actions=ct(commit,nat(dst=10.0.0.1))", "requires ip"),
        ("ip,actions=ct(commit,force)", "not supported"),
        ("ip,actions=ct(table=300)", "table"),
        ("ip,actions=ct(zone=NXM_NX_REG6[0..7])", "16 bits"),
        ("ip,actions=ct(commit,commit)", "twice"),
        (
            "ip,actions=ct(commit,nat(dst=10.0.0.1,random))",
            "not supported",
        ),
    ];
    oxvs_tests::assert_refused(&cases, 1);
}

#[test]
fn a_rewrite_before_ct_is_seen_by_the_next_pass() {
    // The second pass must match the rewritten address, so the packet is
    // parsed again rather than keyed by its first-pass key.
    let flows = "\
table=0,priority=10,ip,in_port=1,actions=mod_nw_dst:10.244.2.3,ct(table=1)
table=1,priority=20,ip,nw_dst=10.244.2.3,ct_state=+trk,actions=output:2
table=1,priority=10,ip,actions=drop
";
    let mut dp = datapath(2, flows, always_emc());
    send(
        &mut dp,
        1,
        &tcp(CLIENT, 40000, VIP, 80, Flags::Syn, 1000, 0),
        0,
    );
    let want = tcp(CLIENT, 40000, SERVER, 80, Flags::Syn, 1000, 0);
    assert_eq!(dp.take_tx(2), vec![want]);
}

#[test]
fn trace_follows_ct_into_the_next_pass() {
    let br = ctl::trace::load_bridge(SERVICE, &[]).expect("flows load");
    let spec = ctl::ofp::parse_packet(
        "in_port=1,tcp,nw_src=10.244.1.2,nw_dst=10.96.0.10,tp_src=40000,tp_dst=80",
        &br.ports,
    )
    .expect("packet parses");
    let text = ctl::trace::render(&br, &spec, &br.ports);
    // The first pass commits with DNAT, so the second sees the endpoint
    // and +dnat, and takes the rule that outputs to it.
    let head = "recirc(0x2) - resume conntrack with ct_state=new|trk|dnat";
    assert!(text.contains(head), "{text}");
    assert!(text.contains("nw_dst=10.244.2.3"), "{text}");
    assert!(text.contains("tp_dst=8080"), "{text}");
    assert!(text.ends_with("Datapath actions: 2\n"), "{text}");
}
