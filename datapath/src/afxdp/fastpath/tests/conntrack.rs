//! The differential property for flows through conntrack: random
//! stateful pipelines (a Service's DNAT, SNAT, a firewall that drops what
//! conntrack calls invalid, rewrites after the `ct` pass) run a TCP, UDP
//! or ICMP echo connection through the in-memory datapath until it is
//! established (answered);
//! then each side's next packet goes through the pipeline and through the
//! loaded program holding the entry the daemon would make for it
//! (`daemon::fastpath::compose` over the pipeline's own connection table,
//! then `offload`): the same output port and the same bytes, NAT and
//! checksums included. Before the connection is established no entry is
//! made; an ICMP error quoting the connection never gets one; a ping whose
//! identifier SNAT had to move stays with the poll threads.

use super::random::Rng;
use super::*;
use crate::daemon::fastpath::compose::{compose, NoPath};
use crate::memdp::MemDatapath;
use crate::pipeline::PmdConfig;

const VIP: [u8; 4] = [10, 96, 0, 10];
const SNAT_IP: [u8; 4] = [192, 168, 77, 9];
const CLIENT_PORT: u16 = 40000;

/// What a case's connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    /// ICMP echo; the client's identifier is `CLIENT_PORT`.
    Echo,
}

fn ip(a: [u8; 4]) -> String {
    Ipv4Addr::from(a).to_string()
}

/// What one random pipeline does to a connection from the client on port
/// 1 toward `(dst, dport)`: where the server on port 2 sees it come from
/// and go to.
struct Case {
    rules: String,
    proto: Proto,
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
    let proto = [Proto::Tcp, Proto::Udp, Proto::Echo][r.below(3) as usize];
    let service = r.below(2) == 0;
    let snat = r.below(2) == 0;
    let (dst, dport, server) = match (service, proto) {
        // A ping to a Service goes to its endpoint, identifier kept.
        (true, Proto::Echo) => (VIP, CLIENT_PORT, (DST4, CLIENT_PORT)),
        (true, _) => (VIP, 80, (DST4, 8080)),
        (false, Proto::Echo) => (DST4, CLIENT_PORT, (DST4, CLIENT_PORT)),
        (false, _) => (DST4, 443, (DST4, 443)),
    };
    let service_match = match proto {
        Proto::Tcp => format!("tcp,nw_dst={},tp_dst=80", ip(VIP)),
        Proto::Udp => format!("udp,nw_dst={},tp_dst=80", ip(VIP)),
        Proto::Echo => format!("icmp,nw_dst={}", ip(VIP)),
    };
    let service_to = match proto {
        Proto::Echo => ip(DST4),
        _ => format!("{}:8080", ip(DST4)),
    };
    let nat = if snat {
        format!(",nat(src={})", ip(SNAT_IP))
    } else {
        String::new()
    };
    let mut rules = format!(
        "table=0,priority=100,ip,actions=ct(table=1,zone={zone},nat)\n\
         table=1,priority=200,ct_state=+inv+trk,ip,actions=drop\n\
         table=1,priority=100,ct_state=+new+trk,{service_match},\
         actions=ct(commit,table=2,zone={zone},nat(dst={service_to}))\n\
         table=1,priority=90,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone={zone}{nat})\n\
         table=1,priority=80,ct_state=+est+trk,ip,actions=resubmit(,2)\n",
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
        proto,
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
        match c.proto {
            Proto::Udp => return ip.udp(sp, dp).write(f, data).unwrap(),
            // The sequence number stands in for TCP's.
            Proto::Echo if from_client => {
                return ip
                    .icmpv4_echo_request(sp, seq as u16)
                    .write(f, data)
                    .unwrap()
            }
            Proto::Echo => return ip.icmpv4_echo_reply(sp, seq as u16).write(f, data).unwrap(),
            Proto::Tcp => {}
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

/// Port unreachable from the server to the client, quoting the client's
/// echo request as the server received it.
fn unreachable_from_server(c: &Case) -> Vec<u8> {
    let quoted = build(|f| {
        PacketBuilder::ipv4(c.client_seen, c.server.0, 64)
            .icmpv4_echo_request(CLIENT_PORT, 1)
            .write(f, &[])
            .unwrap()
    });
    build(|f| {
        PacketBuilder::ethernet2(B, A)
            .ipv4(c.server.0, c.client_seen, 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(f, &quoted)
            .unwrap()
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
    let (mut compared, mut waited, mut echo) = (0, 0, 0);
    for n in 0..60 {
        let c = case(&mut r);
        let mut dp = MemDatapath::new(1024, PmdConfig::default());
        for (no, name) in [(1, "p1"), (2, "p2")] {
            dp.add_port(no, name);
        }
        crate::daemon::load_flows(&mut dp.bridge, &c.rules).expect("rules");
        let why = format!("case {n}, {:?}\nrules:\n{}", c.proto, c.rules);
        let ct = dp.pmd.ct.clone();
        // Opening: the first packet, then (TCP) the handshake.
        let tcp = c.proto == Proto::Tcp;
        let (open, answer, close): (Vec<u8>, Vec<u8>, Vec<u8>) = if tcp {
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
        if tcp {
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
            echo += usize::from(c.proto == Proto::Echo);
        }
        if c.proto == Proto::Echo {
            // An error quoting the ping (its endpoint unreachable) is
            // related to the connection, which conntrack and the pipeline
            // handle; compose never makes an entry of it.
            let err = unreachable_from_server(&c);
            let key = flow_key(&err, 2, None);
            assert_eq!(
                compose(&dp.bridge, Some(&ct), &key, 1000).err(),
                Some(NoPath::Rules),
                "icmp error: {why}"
            );
        }
        for fk in installed {
            lab.maps.remove(&fk).expect("remove");
        }
    }
    eprintln!("{compared} compared ({echo} of them pings), {waited} refused before established");
    assert_eq!(compared, 120);
    assert!(echo >= 20, "{echo} pings");
}

/// Two clients behind one SNAT address ping one server with the same
/// identifier: the second connection's identifier is moved (the reply
/// tuples would collide), which no entry can do, so its pings stay with
/// the poll threads while the first client's are offloaded.
#[test]
fn a_ping_whose_identifier_snat_moved_is_not_offloaded() {
    let Some(lab) = lab("a_ping_whose_identifier_snat_moved_is_not_offloaded") else {
        return;
    };
    lab.maps.set_output(1, LO).expect("devmap");
    let rules = format!(
        "table=0,priority=100,ip,actions=ct(table=1,zone=5,nat)\n\
         table=1,priority=90,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone=5,nat(src={}))\n\
         table=1,priority=80,ct_state=+est+trk,ip,actions=resubmit(,2)\n\
         table=2,priority=10,ip,in_port=1,actions=output:2\n\
         table=2,priority=10,ip,in_port=2,actions=output:1\n",
        ip(SNAT_IP)
    );
    let mut dp = MemDatapath::new(1024, PmdConfig::default());
    for (no, name) in [(1, "p1"), (2, "p2")] {
        dp.add_port(no, name);
    }
    crate::daemon::load_flows(&mut dp.bridge, &rules).expect("rules");
    let ct = dp.pmd.ct.clone();
    let ping = |src: [u8; 4], seq: u16| {
        build(|f| {
            PacketBuilder::ethernet2(A, B)
                .ipv4(src, DST4, 64)
                .icmpv4_echo_request(7, seq)
                .write(f, &[1; 8])
                .unwrap()
        })
    };
    let pong = |id: u16, seq: u16| {
        build(|f| {
            PacketBuilder::ethernet2(B, A)
                .ipv4(DST4, SNAT_IP, 64)
                .icmpv4_echo_reply(id, seq)
                .write(f, &[1; 8])
                .unwrap()
        })
    };
    let second = [10, 244, 1, 6];
    let mut ids = Vec::new();
    for src in [SRC4, second] {
        let sent = through(&mut dp, 1, &ping(src, 1));
        assert_eq!(sent.len(), 1);
        let id = u16::from_be_bytes([sent[0].1[14 + 20 + 4], sent[0].1[14 + 20 + 5]]);
        assert_eq!(through(&mut dp, 2, &pong(id, 1)).len(), 1, "answered");
        ids.push(id);
    }
    assert_eq!(ids[0], 7, "the first keeps its identifier");
    assert_ne!(ids[1], 7, "the second's is moved");
    let first = flow_key(&ping(SRC4, 2), 1, None);
    let path = compose(&dp.bridge, Some(&ct), &first, 1000).expect("first client");
    assert!(offload(&first, &path.actions, &lab).is_some());
    for (port, p) in [(1, ping(second, 2)), (2, pong(ids[1], 2))] {
        let key = flow_key(&p, port, None);
        assert_eq!(
            compose(&dp.bridge, Some(&ct), &key, 1000).err(),
            Some(NoPath::Conntrack),
            "from port {port}"
        );
    }
}
