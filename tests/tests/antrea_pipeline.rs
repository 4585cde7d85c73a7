//! An Antrea-shaped pipeline (`tests/fixtures/antrea-pipeline.flows`) through
//! the parser and the whole in-memory datapath: every line loads and prints
//! back, and packets take Antrea's path — conntrack, a Service's select
//! group with a bucket id, DNAT, a conjunctive ingress policy, and the
//! final `output:NXM_NX_REG1[]` to the port L2ForwardingCalc chose.

use datapath::MemDatapath;
use etherparse::PacketBuilder;
use oxvs_tests::{always_emc, datapath};

const FLOWS: &str = include_str!("../fixtures/antrea-pipeline.flows");

const GW_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const A_MAC: [u8; 6] = [2, 0, 10, 10, 0, 3];
const B_MAC: [u8; 6] = [2, 0, 10, 10, 0, 4];
const A_IP: [u8; 4] = [10, 10, 0, 3];
const B_IP: [u8; 4] = [10, 10, 0, 4];
const VIP: [u8; 4] = [10, 96, 0, 10];

/// A TCP segment; `ack` of `Some(n)` makes it a SYN-ACK acknowledging `n`.
#[allow(clippy::too_many_arguments)]
fn tcp(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    ack: Option<u32>,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, ttl)
        .tcp(sport, dport, 1000, 64240);
    let b = match ack {
        None => b.syn(),
        Some(n) => b.syn().ack(n),
    };
    let mut out = Vec::new();
    b.write(&mut out, &[])
        .expect("etherparse builds the segment");
    out
}

fn node() -> MemDatapath {
    datapath(5, FLOWS, always_emc())
}

fn send(dp: &mut MemDatapath, port: u32, bytes: &[u8], now: u64) {
    assert!(dp.inject(port, bytes), "inject on port {port}");
    dp.run_until_idle(now);
}

#[test]
fn the_fixture_loads_entirely_and_prints_back() {
    let file = ctl::ofp::parse_flow_file(FLOWS, &()).unwrap_or_else(|e| panic!("{e}"));
    let lines = FLOWS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(file.flows.len() + file.groups.len(), lines);
    for (n, _, spec) in &file.flows {
        let text = ctl::format_flow_spec(spec, &());
        let back = ctl::parse_flow(&text, &()).unwrap_or_else(|e| panic!("line {n}: {e}"));
        assert_eq!(&back, spec, "line {n} printed as {text}");
    }
    for (n, g) in &file.groups {
        let text = ctl::format_group(g, &());
        assert_eq!(ctl::parse_group(&text, &()).as_ref(), Ok(g), "line {n}");
        assert!(text.contains("bucket=bucket_id:0,weight:100,"), "{text}");
    }
    let out = file
        .flows
        .iter()
        .map(|(_, _, s)| ctl::format_flow_spec(s, &()))
        .filter(|t| t.contains("output:NXM_NX_REG1[]"))
        .count();
    assert_eq!(out, 2);
}

#[test]
fn an_allowed_pod_connection_goes_out_on_the_port_in_reg1() {
    let mut dp = node();
    let syn = tcp((A_MAC, B_MAC), A_IP, 40000, B_IP, 8080, 64, None);
    send(&mut dp, 3, &syn, 0);
    assert_eq!(
        dp.take_tx(4),
        vec![syn],
        "the policy admits tcp/8080 from pod-a"
    );
    let synack = tcp((B_MAC, A_MAC), B_IP, 8080, A_IP, 40000, 64, Some(1001));
    send(&mut dp, 4, &synack, 1);
    assert_eq!(dp.take_tx(3), vec![synack], "the reply is established");
    for p in [1, 2, 5] {
        assert!(dp.take_tx(p).is_empty(), "nothing on port {p}");
    }
}

#[test]
fn the_ingress_policy_isolates_pod_b() {
    let mut dp = node();
    let ssh = tcp((A_MAC, B_MAC), A_IP, 40001, B_IP, 22, 64, None);
    send(&mut dp, 3, &ssh, 0);
    for p in 1..=5 {
        assert!(
            dp.take_tx(p).is_empty(),
            "tcp/22 is dropped, not sent on {p}"
        );
    }
}

#[test]
fn a_service_connection_is_dnated_routed_and_delivered() {
    let mut dp = node();
    let syn = tcp((A_MAC, GW_MAC), A_IP, 40002, VIP, 80, 64, None);
    send(&mut dp, 3, &syn, 0);
    // DNAT to the group's only endpoint, MACs rewritten by L3Forwarding,
    // the TTL decremented by L3DecTTL.
    let want = tcp((GW_MAC, B_MAC), A_IP, 40002, B_IP, 8080, 63, None);
    assert_eq!(dp.take_tx(4), vec![want]);
}
