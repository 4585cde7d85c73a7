//! `reject` and `log(name=...)` through the whole in-memory pipeline: rules
//! parsed from ovs-ofctl syntax, real frames in, answers out of the input
//! port, counters and policy log records as the daemon would see them.

use datapath::policy_log::LogRecord;
use datapath::{MemDatapath, PmdConfig};
use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, PacketBuilder, SlicedPacket, TransportSlice,
};
use flowtable::{DropReason, Verdict};

const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];
const POD1: [u8; 4] = [10, 244, 1, 5];
const POD2: [u8; 4] = [10, 244, 1, 6];

const FLOWS: &str = "\
priority=100,tcp,nw_dst=10.244.1.6,tp_dst=80,actions=log(name=deny-web),reject
priority=100,icmp,nw_dst=10.244.1.6,actions=log(name=deny-ping),reject
priority=100,udp,nw_dst=10.244.1.6,tp_dst=53,actions=reject(tcp_rst)
priority=100,udp,nw_dst=10.244.1.6,tp_dst=54,actions=log(name=drop-udp),drop
priority=90,tcp,nw_dst=10.244.1.6,tp_dst=81,actions=log(name=allow-81),output:2
priority=0,actions=normal
";

fn datapath() -> MemDatapath {
    let mut dp = MemDatapath::new(
        1024,
        PmdConfig {
            emc_inv_prob: 1,
            ..Default::default()
        },
    );
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    let file = ctl::ofp::parse_flow_file(FLOWS, &dp.bridge.ports).unwrap_or_else(|e| panic!("{e}"));
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0)
        .unwrap_or_else(|(i, e)| panic!("change {i}: {e}"));
    dp
}

fn syn(sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(POD1, POD2, 64)
        .tcp(sport, dport, 5000, 64000)
        .syn();
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    f
}

fn send(dp: &mut MemDatapath, bytes: &[u8]) {
    assert!(dp.inject(1, bytes));
    dp.run_until_idle(0);
}

fn records(dp: &mut MemDatapath) -> Vec<LogRecord> {
    let mut v = Vec::new();
    dp.pmd.policy_log.take(&mut v);
    v
}

#[test]
fn tcp_gets_a_rst_on_the_input_port_and_one_log_line() {
    let mut dp = datapath();
    for _ in 0..4 {
        send(&mut dp, &syn(40000, 80));
    }
    let back = dp.take_tx(1);
    assert!(dp.take_tx(2).is_empty(), "the rejected packet went nowhere");
    assert_eq!(back.len(), 4, "every SYN is answered");
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not tcp")
    };
    assert!(t.rst() && t.ack());
    assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
    assert_eq!(t.acknowledgment_number(), 5001);
    assert_eq!(&back[0][0..6], &MAC1);
    let s = dp.pmd.stats;
    assert_eq!(s.reject_sent, 4);
    assert_eq!(s.drops_for(DropReason::Rejected), 4);
    assert_eq!((s.log_records, s.log_deduped), (1, 3));
    let recs = records(&mut dp);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].verdict, Verdict::Reject);
    assert_eq!(dp.bridge.log_names.name(recs[0].name), "deny-web");
    assert_eq!((recs[0].sport, recs[0].dport), (40000, 80));
    // A second connection is a second line.
    send(&mut dp, &syn(40001, 80));
    assert_eq!(records(&mut dp).len(), 1);
}

#[test]
fn ping_gets_administratively_prohibited() {
    let mut dp = datapath();
    let b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(POD1, POD2, 64)
        .icmpv4_echo_request(1, 1);
    let mut f = Vec::new();
    b.write(&mut f, &[0; 56]).unwrap();
    send(&mut dp, &f);
    let back = dp.take_tx(1);
    assert_eq!(back.len(), 1);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not icmp")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FilterProhibited)
    );
    assert_eq!(icmp.payload(), &f[14..]);
    // The answer to an ICMP error is nothing: feed the answer back in.
    let mut err = back[0].clone();
    err[0..6].copy_from_slice(&MAC2);
    err[14 + 16..14 + 20].copy_from_slice(&POD2);
    send(&mut dp, &err);
    assert_eq!(dp.pmd.stats.reject_sent, 1);
}

#[test]
fn tcp_rst_only_drops_other_protocols_and_log_drop_logs() {
    let mut dp = datapath();
    let udp = |dport| {
        let b = PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(POD1, POD2, 64)
            .udp(5000, dport);
        let mut f = Vec::new();
        b.write(&mut f, &[1, 2, 3]).unwrap();
        f
    };
    send(&mut dp, &udp(53));
    assert!(dp.take_tx(1).is_empty() && dp.take_tx(2).is_empty());
    assert_eq!(dp.pmd.stats.drops_for(DropReason::Rejected), 1);
    assert_eq!(dp.pmd.stats.reject_sent, 0);
    send(&mut dp, &udp(54));
    assert!(dp.take_tx(1).is_empty() && dp.take_tx(2).is_empty());
    assert_eq!(dp.pmd.stats.drops_for(DropReason::NoOutput), 1);
    let recs = records(&mut dp);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].verdict, Verdict::Drop);
    assert_eq!(dp.bridge.log_names.name(recs[0].name), "drop-udp");
}

#[test]
fn log_then_output_allows_and_logs() {
    let mut dp = datapath();
    let f = syn(40000, 81);
    send(&mut dp, &f);
    assert_eq!(dp.take_tx(2), vec![f]);
    let recs = records(&mut dp);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].verdict, Verdict::Allow);
    assert_eq!(dp.pmd.stats.total_drops(), 0);
}
