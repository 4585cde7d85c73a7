//! The differential property for flows through conntrack: random
//! stateful pipelines (a Service's DNAT, SNAT, a firewall that drops what
//! conntrack calls invalid, rewrites after the `ct` pass) run a TCP or UDP
//! connection through the in-memory datapath until it is established;
//! then each side's next packet goes through the pipeline and through the
//! loaded program holding the entry the daemon would make for it
//! (`daemon::fastpath::compose` over the pipeline's own connection table,
//! then `offload`): the same output port and the same bytes, NAT and
//! checksums included. Before the connection is established no entry is
//! made.

use super::random::Rng;
use super::*;
use crate::daemon::fastpath::compose::{compose, NoPath};
use crate::memdp::MemDatapath;
use crate::pipeline::PmdConfig;

const VIP: [u8; 4] = [10, 96, 0, 10];
const SNAT_IP: [u8; 4] = [192, 168, 77, 9];
const CLIENT_PORT: u16 = 40000;

fn ip(a: [u8; 4]) -> String {
    Ipv4Addr::from(a).to_string()
}

/// What one random pipeline does to a connection from the client on port
/// 1 toward `(dst, dport)`: where the server on port 2 sees it come from
/// and go to.
struct Case {
    rules: String,
    tcp: bool,
    dst: [u8; 4],
    dport: u16,
    server: ([u8; 4], u16),
    client_seen: [u8; 4],
}

fn rewrites(r: &mut Rng) -> String {
    let mut acts = String::new();
    for _ in 0..r.below(3) {
        acts += &match r.below(3) {
            0 => format!("mod_dl_dst:0a:00:00:00:00:{:02x},", r.next() as u8),
            1 => "dec_ttl,".to_string(),
            _ => format!("mod_nw_tos:{},", (r.next() as u8) & 0xfc),
        };
    }
    acts
}

fn case(r: &mut Rng) -> Case {
    let zone = 1 + r.below(1000);
    let tcp = r.below(2) == 0;
    let proto = if tcp { "tcp" } else { "udp" };
    let service = r.below(2) == 0;
    let snat = r.below(2) == 0;
    let (dst, dport, server) = if service {
        (VIP, 80, (DST4, 8080))
    } else {
        (DST4, 443, (DST4, 443))
    };
    let nat = if snat {
        format!(",nat(src={})", ip(SNAT_IP))
    } else {
        String::new()
    };
    let mut rules = format!(
        "table=0,priority=100,ip,actions=ct(table=1,zone={zone},nat)\n\
         table=1,priority=200,ct_state=+inv+trk,ip,actions=drop\n\
         table=1,priority=100,ct_state=+new+trk,{proto},nw_dst={},tp_dst=80,\
         actions=ct(commit,table=2,zone={zone},nat(dst={}:8080))\n\
         table=1,priority=90,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone={zone}{nat})\n\
         table=1,priority=80,ct_state=+est+trk,ip,actions=resubmit(,2)\n",
        ip(VIP),
        ip(DST4),
    );
    // The DNAT rule commits without SNAT: a Service connection is only
    // translated at its destination.
    let client_seen = if snat && !service { SNAT_IP } else { SRC4 };
    rules += &format!(
        "table=2,priority=10,ip,in_port=1,actions={}output:2\n\
         table=2,priority=10,ip,in_port=2,actions={}output:1\n",
        rewrites(r),
        rewrites(r)
    );
    Case {
        rules,
        tcp,
        dst,
        dport,
        server,
        client_seen,
    }
}

/// A segment or datagram; `from_client` picks the direction (addresses
/// as each end sees them).
fn packet(c: &Case, from_client: bool, flags: &str, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let (s, sp, d, dp) = if from_client {
        (SRC4, CLIENT_PORT, c.dst, c.dport)
    } else {
        (c.server.0, c.server.1, c.client_seen, CLIENT_PORT)
    };
    let (sm, dm) = if from_client { (A, B) } else { (B, A) };
    build(|f| {
        let ip = PacketBuilder::ethernet2(sm, dm).ipv4(s, d, 64);
        if !c.tcp {
            return ip.udp(sp, dp).write(f, data).unwrap();
        }
        let mut t = ip.tcp(sp, dp, seq, 64000);
        if flags.contains('S') {
            t = t.syn();
        }
        if flags.contains('A') {
            t = t.ack(ack);
        }
        if flags.contains('P') {
            t = t.psh();
        }
        t.write(f, data).unwrap()
    })
}

/// Sends `p` in on `port` through the pipeline; what came out, and where.
fn through(dp: &mut MemDatapath, port: u32, p: &[u8]) -> Vec<(u32, Vec<u8>)> {
    assert!(dp.inject(port, p));
    dp.run_until_idle(1000);
    (1..=2)
        .flat_map(|no| dp.take_tx(no).into_iter().map(move |b| (no, b)))
        .collect()
}

#[test]
fn established_connections_forward_as_the_pipeline_does() {
    let Some(lab) = lab("established_connections_forward_as_the_pipeline_does") else {
        return;
    };
    lab.maps.set_output(1, LO).expect("devmap");
    let mut r = Rng(0x0c7_5eed_d1ff_0001);
    let (mut compared, mut waited) = (0, 0);
    for n in 0..60 {
        let c = case(&mut r);
        let mut dp = MemDatapath::new(1024, PmdConfig::default());
        for (no, name) in [(1, "p1"), (2, "p2")] {
            dp.add_port(no, name);
        }
        crate::daemon::load_flows(&mut dp.bridge, &c.rules).expect("rules");
        let why = format!("case {n}, tcp {}\nrules:\n{}", c.tcp, c.rules);
        let ct = dp.pmd.ct.clone();
        // Opening: the first packet, then (TCP) the handshake.
        let (open, answer, close): (Vec<u8>, Vec<u8>, Vec<u8>) = if c.tcp {
            (
                packet(&c, true, "S", 1000, 0, &[]),
                packet(&c, false, "SA", 5000, 1001, &[]),
                packet(&c, true, "A", 1001, 5001, &[]),
            )
        } else {
            (
                packet(&c, true, "", 0, 0, &[1; 20]),
                packet(&c, false, "", 0, 0, &[2; 20]),
                Vec::new(),
            )
        };
        assert_eq!(through(&mut dp, 1, &open).len(), 1, "opened: {why}");
        let probe = packet(&c, true, "A", 1001, 5001, &[3; 10]);
        let key = flow_key(&probe, 1, None);
        assert_eq!(
            compose(&dp.bridge, Some(&ct), &key, 1000).err(),
            Some(NoPath::Conntrack),
            "no entry before an answer: {why}"
        );
        waited += 1;
        assert_eq!(through(&mut dp, 2, &answer).len(), 1, "answered: {why}");
        if c.tcp {
            assert_eq!(through(&mut dp, 1, &close).len(), 1, "handshake: {why}");
        }
        let data = [
            (1, packet(&c, true, "PA", 1001, 5001, &[0x5a; 100])),
            (2, packet(&c, false, "A", 5001, 1101, &[0xa5; 60])),
        ];
        let mut installed = Vec::new();
        for (port, p) in data {
            let key = flow_key(&p, port, None);
            let path = compose(&dp.bridge, Some(&ct), &key, 1000)
                .unwrap_or_else(|e| panic!("{e:?} from port {port}: {why}"));
            assert_eq!(path.conns.len(), 1, "{why}");
            let (fk, e) = offload(&key, &path.actions, &lab)
                .unwrap_or_else(|| panic!("offload {:?}: {why}", path.actions));
            let sent = through(&mut dp, port, &p);
            assert_eq!(sent.len(), 1, "the pipeline sent one frame: {why}");
            assert_eq!(sent[0].0, e.out_port, "output port from {port}: {why}");
            lab.maps.insert(&fk, &e).expect("insert");
            installed.push(fk);
            let (v, out) = lab.run_from(port, &p);
            assert_eq!(v, XdpAction::Redirect, "from {port}: {why}");
            assert_eq!(
                out, sent[0].1,
                "bytes from {port} ({:?}): {why}",
                path.actions
            );
            compared += 1;
        }
        for fk in installed {
            lab.maps.remove(&fk).expect("remove");
        }
    }
    eprintln!("{compared} compared, {waited} refused before established");
    assert_eq!(compared, 120);
}
