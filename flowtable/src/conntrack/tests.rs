//! Conntrack state-machine, expiry, limit and concurrency tests.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tcp_flags::*;

pub(super) fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
}

pub(super) fn v6(d: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, d))
}

pub(super) fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> TcpInfo {
    TcpInfo {
        flags,
        seq,
        ack,
        window: 65535,
        wscale: if flags & SYN != 0 { Some(7) } else { None },
        payload_len: len,
    }
}

const EST_RPL: u8 = ct_state::TRK | ct_state::EST | ct_state::RPL;
const EST: u8 = ct_state::TRK | ct_state::EST;
const NEW: u8 = ct_state::TRK | ct_state::NEW;
const INV: u8 = ct_state::TRK | ct_state::INV;

/// A client (`c`, port 40000) and server (`s`, port 80) exchange.
struct Flow {
    c: IpAddr,
    s: IpAddr,
    cp: u16,
    sp: u16,
}

impl Flow {
    fn v4() -> Flow {
        Flow {
            c: v4(1),
            s: v4(2),
            cp: 40000,
            sp: 80,
        }
    }
    fn out(&self, t: TcpInfo) -> CtPacket {
        CtPacket::tcp(self.c, self.cp, self.s, self.sp, t)
    }
    fn back(&self, t: TcpInfo) -> CtPacket {
        CtPacket::tcp(self.s, self.sp, self.c, self.cp, t)
    }
}

fn ct() -> ConnTrack {
    ConnTrack::new(CtConfig::default())
}

/// Runs the three-way handshake; client ISN 1000, server ISN 5000.
fn handshake(ct: &ConnTrack, f: &Flow, now: u64) {
    assert_eq!(
        ct.process(&f.out(seg(SYN, 1000, 0, 0)), 0, now, true, None)
            .state,
        NEW
    );
    assert_eq!(
        ct.process(&f.back(seg(SYN | ACK, 5000, 1001, 0)), 0, now, true, None)
            .state,
        EST_RPL
    );
    assert_eq!(
        ct.process(&f.out(seg(ACK, 1001, 5001, 0)), 0, now, true, None)
            .state,
        EST
    );
}

#[test]
fn tcp_handshake_data_and_fin_close() {
    let ct = ct();
    let f = Flow::v4();
    handshake(&ct, &f, 0);
    assert_eq!(
        ct.process(&f.out(seg(ACK | PSH, 1001, 5001, 100)), 0, 1, false, None)
            .state,
        EST
    );
    assert_eq!(
        ct.process(&f.back(seg(ACK, 5001, 1101, 1400)), 0, 2, false, None)
            .state,
        EST_RPL
    );
    assert_eq!(
        ct.process(&f.out(seg(ACK | FIN, 1101, 6401, 0)), 0, 3, false, None)
            .state,
        EST
    );
    assert_eq!(
        ct.process(&f.back(seg(ACK | FIN, 6401, 1102, 0)), 0, 4, false, None)
            .state,
        EST_RPL
    );
    assert_eq!(
        ct.process(&f.out(seg(ACK, 1102, 6402, 0)), 0, 5, false, None)
            .state,
        EST
    );
    // Both sides closed: the tcp_close timeout (30 s) applies.
    assert_eq!(ct.expire(5 + 29_999, 100), 0);
    assert_eq!(ct.expire(5 + 30_000, 100), 1);
    assert!(ct.is_empty());
}

#[test]
fn tcp_rst_closes() {
    let ct = ct();
    let f = Flow::v4();
    handshake(&ct, &f, 0);
    assert_eq!(
        ct.process(&f.back(seg(RST, 5001, 0, 0)), 0, 10, false, None)
            .state,
        EST_RPL
    );
    assert_eq!(ct.expire(10 + 30_000, 100), 1);
}

#[test]
fn tcp_out_of_window_and_bad_flags_are_invalid() {
    let ct = ct();
    let f = Flow::v4();
    handshake(&ct, &f, 0);
    // Data far beyond what the server's window allows.
    let far = seg(ACK, 1001 + 50_000_000, 5001, 100);
    assert_eq!(ct.process(&f.out(far), 0, 1, false, None).state, INV);
    // An ACK for data the server never sent.
    let ahead = seg(ACK, 1001, 5001 + 10_000_000, 10);
    assert_eq!(ct.process(&f.out(ahead), 0, 1, false, None).state, INV);
    // SYN+FIN is never valid.
    assert_eq!(
        ct.process(&f.out(seg(SYN | FIN, 1001, 0, 0)), 0, 1, false, None)
            .state,
        INV
    );
    // A RST whose sequence number is not the expected one.
    assert_eq!(
        ct.process(&f.out(seg(RST, 1001 + 30_000, 0, 0)), 0, 1, false, None)
            .state,
        INV
    );
    // The connection itself is unharmed.
    assert_eq!(
        ct.process(&f.out(seg(ACK, 1001, 5001, 10)), 0, 2, false, None)
            .state,
        EST
    );
}

#[test]
fn syn_on_established_entry_is_invalid_and_reopens_after_close() {
    let ct = ct();
    let f = Flow::v4();
    handshake(&ct, &f, 0);
    // A new SYN with a fresh ISN while established falls outside the window.
    assert_eq!(
        ct.process(&f.out(seg(SYN, 900_000_000, 0, 0)), 0, 1, true, None)
            .state,
        INV
    );
    // After a reset both sides are closed; a SYN starts a new connection.
    ct.process(&f.out(seg(RST | ACK, 1001, 5001, 0)), 0, 2, false, None);
    assert_eq!(
        ct.process(&f.out(seg(SYN, 7_000, 0, 0)), 0, 3, true, None)
            .state,
        NEW
    );
    assert_eq!(ct.len(), 1);
    assert_eq!(
        ct.process(&f.back(seg(SYN | ACK, 9_000, 7_001, 0)), 0, 4, true, None)
            .state,
        EST_RPL
    );
}

#[test]
fn tcp_mid_stream_pickup_like_ovs() {
    let ct = ct();
    let f = Flow::v4();
    // OVS lets a non-SYN segment start an entry...
    assert_eq!(
        ct.process(&f.out(seg(ACK, 123_456, 777_777, 50)), 0, 0, true, None)
            .state,
        NEW
    );
    assert_eq!(
        ct.process(&f.back(seg(ACK, 777_777, 123_506, 10)), 0, 1, false, None)
            .state,
        EST_RPL
    );
    assert_eq!(
        ct.process(&f.out(seg(ACK, 123_506, 777_787, 10)), 0, 2, false, None)
            .state,
        EST
    );
    // ...but never a SYN+ACK, nor a segment with no ACK, RST or SYN.
    let g = Flow {
        cp: 40001,
        ..Flow::v4()
    };
    assert_eq!(
        ct.process(&g.out(seg(SYN | ACK, 1, 1, 0)), 0, 0, true, None)
            .state,
        INV
    );
    assert_eq!(
        ct.process(&g.out(seg(FIN, 1, 0, 0)), 0, 0, true, None)
            .state,
        INV
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn uncommitted_packets_leave_no_entry() {
    let ct = ct();
    let f = Flow::v4();
    assert_eq!(
        ct.process(&f.out(seg(SYN, 1, 0, 0)), 0, 0, false, None)
            .state,
        NEW
    );
    assert!(ct.is_empty());
}

#[test]
fn zones_separate_connections() {
    let ct = ct();
    let f = Flow::v4();
    assert_eq!(
        ct.process(&f.out(seg(SYN, 1, 0, 0)), 1, 0, true, None)
            .state,
        NEW
    );
    assert_eq!(
        ct.process(&f.out(seg(SYN, 1, 0, 0)), 2, 0, true, None)
            .state,
        NEW
    );
    assert_eq!(
        ct.process(&f.back(seg(SYN | ACK, 9, 2, 0)), 1, 0, true, None)
            .state,
        EST_RPL
    );
    assert_eq!(ct.zone_len(1), 1);
    assert_eq!(ct.zone_len(2), 1);
}

#[test]
fn udp_first_single_multiple() {
    let ct = ct();
    let out = CtPacket::udp(v4(1), 5353, v4(2), 53);
    let back = CtPacket::udp(v4(2), 53, v4(1), 5353);
    assert_eq!(ct.process(&out, 0, 0, true, None).state, NEW);
    assert_eq!(ct.process(&out, 0, 1, true, None).state, NEW);
    assert_eq!(ct.process(&back, 0, 2, true, None).state, EST_RPL);
    assert_eq!(ct.process(&out, 0, 3, true, None).state, EST);
    // udp_multiple: 30 s after the last packet.
    assert_eq!(ct.expire(3 + 29_999, 10), 0);
    assert_eq!(ct.expire(3 + 30_000, 10), 1);
}

#[test]
fn icmp_echo_request_reply() {
    let ct = ct();
    let req = CtPacket::icmp_echo(v4(1), v4(2), 77, true);
    let rep = CtPacket::icmp_echo(v4(2), v4(1), 77, false);
    assert_eq!(ct.process(&rep, 0, 0, true, None).state, INV);
    assert_eq!(ct.process(&req, 0, 0, true, None).state, NEW);
    assert_eq!(ct.process(&rep, 0, 1, true, None).state, EST_RPL);
    // A different identifier is a different "connection".
    let other = CtPacket::icmp_echo(v4(2), v4(1), 78, false);
    assert_eq!(ct.process(&other, 0, 1, true, None).state, INV);
    // Non-echo informational types are not tracked.
    let mut ts = req;
    ts.icmp_type = 13;
    assert_eq!(ct.process(&ts, 0, 1, true, None).state, INV);
    assert_eq!(ct.expire(1 + 30_000, 10), 1);
}

#[test]
fn ipv6_tcp_and_icmpv6_echo() {
    let ct = ct();
    let f = Flow {
        c: v6(1),
        s: v6(2),
        cp: 1234,
        sp: 443,
    };
    handshake(&ct, &f, 0);
    let req = CtPacket::icmp_echo(v6(1), v6(2), 5, true);
    let rep = CtPacket::icmp_echo(v6(2), v6(1), 5, false);
    assert_eq!(ct.process(&req, 0, 0, true, None).state, NEW);
    assert_eq!(ct.process(&rep, 0, 0, true, None).state, EST_RPL);
    // Mixed families are untrackable.
    let mixed = CtPacket::udp(v4(1), 1, v6(2), 2);
    assert_eq!(ct.process(&mixed, 0, 0, true, None).state, INV);
    assert_eq!(ct.len(), 2);
}

#[test]
fn icmp_error_is_related() {
    let ct = ct();
    let f = Flow::v4();
    handshake(&ct, &f, 0);
    // A router (10.0.0.9) tells the client its segment could not be
    // delivered; the error quotes the client's segment.
    let quoted = InnerTuple {
        src: f.c,
        dst: f.s,
        proto: proto::TCP,
        sport: f.cp,
        dport: f.sp,
    };
    let err = CtPacket::icmp_error(v4(9), f.c, 3, 1, quoted);
    let v = ct.process(&err, 0, 1, false, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::REL | ct_state::RPL);
    // The same error about an unknown connection is invalid.
    let unknown = InnerTuple { sport: 1, ..quoted };
    let err = CtPacket::icmp_error(v4(9), f.c, 3, 1, unknown);
    assert_eq!(ct.process(&err, 0, 1, false, None).state, INV);
    // ICMPv6 packet-too-big about a v6 echo.
    let req = CtPacket::icmp_echo(v6(1), v6(2), 9, true);
    ct.process(&req, 0, 0, true, None);
    let q6 = InnerTuple {
        src: v6(1),
        dst: v6(2),
        proto: proto::ICMPV6,
        sport: 9,
        dport: 9,
    };
    let ptb = CtPacket::icmp_error(v6(7), v6(1), 2, 0, q6);
    assert!(ct.process(&ptb, 0, 1, false, None).has(ct_state::REL));
}

#[test]
fn every_timeout_class_expires_on_time() {
    let to = Timeouts::default();
    let f = Flow::v4();
    // (setup, class the entry ends in)
    type Setup = fn(&ConnTrack, &Flow);
    let cases: [(Setup, TimeoutClass); 8] = [
        (
            |ct, f| {
                ct.process(&f.out(seg(SYN, 1, 0, 0)), 0, 0, true, None);
            },
            TimeoutClass::TcpSynSent,
        ),
        (
            |ct, f| {
                ct.process(&f.out(seg(SYN, 1, 0, 0)), 0, 0, true, None);
                ct.process(&f.back(seg(SYN | ACK, 9, 2, 0)), 0, 0, true, None);
            },
            TimeoutClass::TcpSynRecv,
        ),
        (|ct, f| handshake(ct, f, 0), TimeoutClass::TcpEstablished),
        (
            |ct, f| {
                handshake(ct, f, 0);
                ct.process(&f.out(seg(ACK | FIN, 1001, 5001, 0)), 0, 0, false, None);
            },
            TimeoutClass::TcpFinWait,
        ),
        (
            |ct, f| {
                handshake(ct, f, 0);
                ct.process(&f.out(seg(ACK | FIN, 1001, 5001, 0)), 0, 0, false, None);
                ct.process(&f.back(seg(FIN | ACK, 5001, 1002, 0)), 0, 0, false, None);
            },
            TimeoutClass::TcpTimeWait,
        ),
        (
            |ct, _| {
                ct.process(&CtPacket::udp(v4(1), 1, v4(2), 2), 0, 0, true, None);
            },
            TimeoutClass::UdpFirst,
        ),
        (
            |ct, _| {
                ct.process(&CtPacket::udp(v4(1), 1, v4(2), 2), 0, 0, true, None);
                ct.process(&CtPacket::udp(v4(1), 1, v4(2), 2), 0, 0, true, None);
            },
            TimeoutClass::UdpSingle,
        ),
        (
            |ct, _| {
                ct.process(
                    &CtPacket::icmp_echo(v4(1), v4(2), 1, true),
                    0,
                    0,
                    true,
                    None,
                );
            },
            TimeoutClass::IcmpFirst,
        ),
    ];
    for (setup, class) in cases {
        let ct = ct();
        setup(&ct, &f);
        let t = to.get(class);
        assert_eq!(ct.expire(t - 1, 1000), 0, "{class:?} too early");
        assert_eq!(ct.expire(t, 1000), 1, "{class:?} not expired");
    }
}

#[test]
fn lookups_treat_expired_entries_as_gone() {
    let ct = ct();
    let out = CtPacket::udp(v4(1), 1, v4(2), 2);
    ct.process(&out, 0, 0, true, None);
    // No expire() call: the lookup itself notices.
    assert_eq!(ct.process(&out, 0, 60_000, true, None).state, NEW);
    assert_eq!(ct.len(), 1);
}

#[test]
fn expiry_is_incremental() {
    let ct = ct();
    for p in 0..1000 {
        ct.process(&CtPacket::udp(v4(1), p, v4(2), 53), 0, 0, true, None);
    }
    // Entries still live cost one look per list head, then stop.
    assert_eq!(ct.expire(1000, 5), 0);
    let mut rounds = 0;
    while !ct.is_empty() {
        let n = ct.expire(60_000, 64);
        assert!(n <= 64);
        rounds += 1;
    }
    assert!(rounds >= 1000 / 64);
}

#[test]
fn global_and_zone_limits() {
    let ct = ConnTrack::new(CtConfig {
        max_conns: 5,
        ..CtConfig::default()
    });
    ct.set_zone_limit(7, 2);
    for p in 0..2 {
        let v = ct.process(&CtPacket::udp(v4(1), p, v4(2), 53), 7, 0, true, None);
        assert_eq!(v.drop, None);
    }
    let v = ct.process(&CtPacket::udp(v4(1), 9, v4(2), 53), 7, 0, true, None);
    assert_eq!(v.drop, Some(DropReason::CtZoneFull));
    for p in 0..3 {
        let v = ct.process(&CtPacket::udp(v4(1), p, v4(2), 53), 8, 0, true, None);
        assert_eq!(v.drop, None);
    }
    let v = ct.process(&CtPacket::udp(v4(1), 99, v4(2), 53), 8, 0, true, None);
    assert_eq!(v.drop, Some(DropReason::CtFull));
    assert_eq!((ct.len(), ct.zone_len(7), ct.zone_len(8)), (5, 2, 3));
    // Expiry frees room.
    ct.expire(60_000, 100);
    let v = ct.process(&CtPacket::udp(v4(1), 99, v4(2), 53), 8, 60_000, true, None);
    assert_eq!(v.drop, None);
}

#[test]
fn commit_sets_mark_and_label() {
    let ct = ct();
    let out = CtPacket::udp(v4(1), 1, v4(2), 2);
    let exec = CtExec {
        mark: Some((0xab, 0xff)),
        label: Some((1 << 100 | 5, u128::MAX)),
    };
    let v = ct.process_exec(&out, 0, 0, true, None, &exec);
    assert_eq!((v.mark, v.label), (0xab, 1 << 100 | 5));
    let back = CtPacket::udp(v4(2), 2, v4(1), 1);
    let v = ct.process(&back, 0, 1, false, None);
    assert_eq!((v.mark, v.label), (0xab, 1 << 100 | 5));
    // A masked update keeps the other bits.
    let exec = CtExec {
        mark: Some((0x100, 0xf00)),
        label: None,
    };
    assert_eq!(ct.process_exec(&out, 0, 2, true, None, &exec).mark, 0x1ab);
}

/// Labels live in a side slab: a freed label slot must not leak into the
/// connection that takes the entry slot or the label slot next.
#[test]
fn label_slots_are_freed_and_reused() {
    let ct = ct();
    let a = CtPacket::udp(v4(1), 1, v4(2), 2);
    let labelled = CtExec {
        mark: None,
        label: Some((7, u128::MAX)),
    };
    assert_eq!(ct.process_exec(&a, 0, 0, true, None, &labelled).label, 7);
    // Clearing the label gives its slot back; the entry reads zero.
    let clear = CtExec {
        mark: None,
        label: Some((0, u128::MAX)),
    };
    assert_eq!(ct.process_exec(&a, 0, 1, true, None, &clear).label, 0);
    assert_eq!(ct.process_exec(&a, 0, 2, true, None, &labelled).label, 7);
    let late = 10_000_000;
    assert_eq!(ct.expire(late, 100), 1);
    let b = CtPacket::udp(v4(3), 1, v4(2), 2);
    assert_eq!(ct.process(&b, 0, late, true, None).label, 0);
    let other = CtExec {
        mark: None,
        label: Some((9 << 64, 0xf << 64)),
    };
    let c = CtPacket::udp(v4(4), 1, v4(2), 2);
    assert_eq!(
        ct.process_exec(&c, 0, late, true, None, &other).label,
        9 << 64
    );
    let back = CtPacket::udp(v4(2), 2, v4(3), 1);
    assert_eq!(ct.process(&back, 0, late, false, None).label, 0);
}

#[test]
fn ipv4_entry_size() {
    assert_eq!(std::mem::size_of::<table::Conn<[u8; 4]>>(), 80);
    assert_eq!(std::mem::size_of::<table::Conn<[u8; 16]>>(), 112);
}

#[test]
fn heap_per_ipv4_connection() {
    let ct = ct();
    let n = 200_000u32;
    for i in 0..n {
        let c = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        ct.process(&CtPacket::udp(c, 1000, v4(2), 53), 0, 0, true, None);
    }
    let per = ct.heap_bytes() as f64 / n as f64;
    assert!(per <= 128.0, "{per} bytes per connection");
}

/// With DNAT most replies are indexed in another shard as an alias, which
/// costs its own slot; the total must still fit the same budget.
#[test]
fn heap_per_ipv4_dnat_connection() {
    let ct = ct();
    let n = 200_000u32;
    let dnat = NatSpec::Dst(NatRange::addr_port(v4(200), 8080));
    for i in 0..n {
        let c = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let v = ct.process(&CtPacket::udp(c, 1000, v4(2), 53), 0, 0, true, Some(&dnat));
        assert_eq!(v.drop, None);
    }
    let per = ct.heap_bytes() as f64 / n as f64;
    assert!(per <= 128.0, "{per} bytes per connection");
}

/// Two threads drive opposite directions of the same connections, half of
/// them through DNAT (so their replies are found through another shard).
#[test]
fn two_threads_drive_opposite_directions() {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    const N: usize = 3000;
    let ct = Arc::new(ct());
    let stage: Arc<Vec<AtomicU8>> = Arc::new((0..N).map(|_| AtomicU8::new(0)).collect());
    let vip = v4(100);
    let dnat = NatSpec::Dst(NatRange::addr_port(v4(200), 8080));
    let client = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i as u32));
    let (ct1, st1) = (ct.clone(), stage.clone());
    let a = std::thread::spawn(move || {
        for i in 0..N {
            let nat = (i % 2 == 1).then_some(&dnat);
            let syn = CtPacket::tcp(client(i), 40000, vip, 80, seg(SYN, 1000, 0, 0));
            let v = ct1.process(&syn, 0, 0, true, nat);
            assert_eq!(v.state & ct_state::NEW, ct_state::NEW);
            st1[i].store(1, Ordering::Release);
        }
        for i in 0..N {
            while st1[i].load(Ordering::Acquire) < 2 {
                std::thread::yield_now();
            }
            let nat = (i % 2 == 1).then_some(&dnat);
            let ack = CtPacket::tcp(client(i), 40000, vip, 80, seg(ACK, 1001, 5001, 0));
            let v = ct1.process(&ack, 0, 0, true, nat);
            assert!(v.has(ct_state::EST), "{i}: {v:?}");
        }
    });
    let (ct2, st2) = (ct.clone(), stage.clone());
    let b = std::thread::spawn(move || {
        for i in 0..N {
            while st2[i].load(Ordering::Acquire) < 1 {
                std::thread::yield_now();
            }
            let (from, port, nat) = if i % 2 == 1 {
                (v4(200), 8080, Some(NatSpec::Existing))
            } else {
                (vip, 80, None)
            };
            let sa = CtPacket::tcp(from, port, client(i), 40000, seg(SYN | ACK, 5000, 1001, 0));
            let v = ct2.process(&sa, 0, 0, true, nat.as_ref());
            assert_eq!(v.state & EST_RPL, EST_RPL, "{i}: {v:?}");
            if i % 2 == 1 {
                let rw = v.nat.expect("reply translated");
                assert_eq!((rw.outer.src, rw.outer.sport), (vip, 80));
            }
            st2[i].store(2, Ordering::Release);
        }
    });
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(ct.len(), N);
}

#[test]
fn refresh_within_requeue_window_is_lazy_but_never_early() {
    let ct = ct();
    let out = CtPacket::udp(v4(1), 1, v4(2), 2);
    ct.process(&out, 0, 0, true, None);
    ct.process(&out, 0, 1, true, None); // udp_single from t=1
    ct.process(&out, 0, 900, true, None); // same class, not requeued
    let deadline = 900 + Timeouts::default().get(TimeoutClass::UdpSingle);
    // Not removed before its real deadline...
    assert_eq!(ct.expire(deadline - 1, 100), 0);
    assert_eq!(
        ct.process(&out, 0, deadline - 1, false, None).state & ct_state::INV,
        0
    );
    assert_eq!(ct.len(), 1);
    // ...and removed by the time the requeue slack has passed.
    let ct2 = ConnTrack::new(CtConfig::default());
    ct2.process(&out, 0, 0, true, None);
    ct2.process(&out, 0, 1, true, None);
    ct2.process(&out, 0, 900, true, None);
    assert_eq!(ct2.expire(deadline + table::REQUEUE_MS, 100), 1);
}
