//! What the XDP fast path asks of the table (`offload.rs`): verdicts
//! without side effects, tolerant tracking while it holds a connection,
//! timeouts fed by its traffic.

use super::tests::{seg, v4};
use super::*;
use std::net::IpAddr;
use tcp_flags::*;

const NONE: CtExec = CtExec {
    mark: None,
    label: None,
};

fn vip() -> IpAddr {
    v4(100)
}

fn backend() -> IpAddr {
    v4(200)
}

fn dnat() -> NatSpec {
    NatSpec::Dst(NatRange::addr_port(backend(), 8080))
}

/// Client 10.0.0.1:40000 to the VIP's port 80, DNATed to the backend's
/// 8080, handshake done at `now`; client ISN 1000, server ISN 5000.
fn established(ct: &ConnTrack, now: u64) {
    let out = |t| CtPacket::tcp(v4(1), 40000, vip(), 80, t);
    let back = |t| CtPacket::tcp(backend(), 8080, v4(1), 40000, t);
    ct.process(&out(seg(SYN, 1000, 0, 0)), 0, now, true, Some(&dnat()));
    assert_eq!(
        ct.offload_verdict(
            &out(seg(ACK, 1001, 0, 0)),
            0,
            now,
            false,
            Some(&NatSpec::Existing),
            &NONE
        ),
        None,
        "a half-open connection is not offered"
    );
    ct.process(
        &back(seg(SYN | ACK, 5000, 1001, 0)),
        0,
        now,
        false,
        Some(&NatSpec::Existing),
    );
    ct.process(
        &out(seg(ACK, 1001, 5001, 0)),
        0,
        now,
        false,
        Some(&NatSpec::Existing),
    );
}

#[test]
fn verdict_is_what_process_says_and_changes_nothing() {
    let ct = ConnTrack::new(CtConfig::default());
    established(&ct, 0);
    let nat = Some(NatSpec::Existing);
    for (pkt, reply) in [
        (
            CtPacket::tcp(v4(1), 40000, vip(), 80, seg(ACK, 1001, 5001, 10)),
            false,
        ),
        (
            CtPacket::tcp(backend(), 8080, v4(1), 40000, seg(ACK, 5001, 1011, 10)),
            true,
        ),
    ] {
        let (v, r) = ct
            .offload_verdict(&pkt, 0, 1, false, nat.as_ref(), &NONE)
            .expect("established");
        // Asking twice gives the same, and tracks nothing.
        assert_eq!(
            ct.offload_verdict(&pkt, 0, 1, false, nat.as_ref(), &NONE),
            Some((v, r))
        );
        let p = ct.process(&pkt, 0, 1, false, nat.as_ref());
        assert_eq!(v, p, "reply {reply}");
        assert_eq!(v.has(ct_state::RPL), reply);
        assert!(v.has(ct_state::DNAT) && v.nat.is_some());
    }
    // Without `nat` in the action: no rewrite, as `process` says.
    let pkt = CtPacket::tcp(v4(1), 40000, vip(), 80, seg(ACK, 1011, 5011, 0));
    let (v, _) = ct.offload_verdict(&pkt, 0, 2, false, None, &NONE).unwrap();
    assert_eq!(v, ct.process(&pkt, 0, 2, false, None));
    // Another zone has no such connection.
    assert_eq!(ct.offload_verdict(&pkt, 7, 2, false, None, &NONE), None);
}

#[test]
fn udp_after_a_reply_and_exec_only_if_it_changes_nothing() {
    let ct = ConnTrack::new(CtConfig::default());
    let out = CtPacket::udp(v4(1), 5000, v4(2), 53);
    let back = CtPacket::udp(v4(2), 53, v4(1), 5000);
    ct.process(&out, 0, 0, true, None);
    assert_eq!(
        ct.offload_verdict(&out, 0, 0, false, None, &NONE),
        None,
        "no reply yet"
    );
    ct.process(&back, 0, 0, false, None);
    assert!(ct.offload_verdict(&out, 0, 0, false, None, &NONE).is_some());
    let set = |v| CtExec {
        mark: Some((v, 0x1)),
        label: None,
    };
    // The connection's mark is 0: setting bit 0 to 0 changes nothing,
    // to 1 would.
    assert!(ct
        .offload_verdict(&out, 0, 0, true, None, &set(0))
        .is_some());
    assert_eq!(ct.offload_verdict(&out, 0, 0, true, None, &set(1)), None);
    assert_eq!(
        ct.offload_verdict(&out, 0, 0, false, None, &set(1))
            .map(|(v, _)| v.mark),
        Some(0),
        "exec runs only with commit"
    );
}

#[test]
fn icmp_echo_after_a_reply_with_its_nat_and_errors_never() {
    let ct = ConnTrack::new(CtConfig::default());
    let nat = Some(NatSpec::Existing);
    // A ping to the VIP, DNATed to the backend; another one SNATed.
    let ping = CtPacket::icmp_echo(v4(1), vip(), 9, true);
    let to_vip = NatSpec::Dst(NatRange::addr(backend()));
    ct.process(&ping, 0, 0, true, Some(&to_vip));
    assert_eq!(
        ct.offload_verdict(&ping, 0, 0, false, nat.as_ref(), &NONE),
        None,
        "no reply yet"
    );
    let pong = CtPacket::icmp_echo(backend(), v4(1), 9, false);
    ct.process(&pong, 0, 1, false, nat.as_ref());
    let snat = NatSpec::Src(NatRange::addr(v4(50)));
    let out = CtPacket::icmp_echo(v4(2), v4(3), 77, true);
    ct.process(&out, 0, 1, true, Some(&snat));
    ct.process(
        &CtPacket::icmp_echo(v4(3), v4(50), 77, false),
        0,
        1,
        false,
        nat.as_ref(),
    );
    for (pkt, reply) in [
        (ping, false),
        (pong, true),
        (out, false),
        (CtPacket::icmp_echo(v4(3), v4(50), 77, false), true),
    ] {
        let (v, _) = ct
            .offload_verdict(&pkt, 0, 2, false, nat.as_ref(), &NONE)
            .expect("answered echo");
        // What process says, NAT included, and asking changed nothing.
        assert_eq!(v, ct.process(&pkt, 0, 2, false, nat.as_ref()));
        assert_eq!(v.has(ct_state::RPL), reply);
        let rw = v.nat.expect("translated").outer;
        assert_eq!((rw.sport, rw.dport), (pkt.sport, pkt.dport), "id kept");
    }
    // Another identifier is another connection, which does not exist.
    let other = CtPacket::icmp_echo(v4(1), vip(), 10, true);
    assert_eq!(
        ct.offload_verdict(&other, 0, 2, false, nat.as_ref(), &NONE),
        None
    );
    // An error quoting the echo is related, never offered.
    let quoted = InnerTuple {
        src: v4(1),
        dst: backend(),
        proto: proto::ICMP,
        sport: 9,
        dport: 9,
    };
    let err = CtPacket::icmp_error(backend(), v4(1), 3, 1, quoted);
    assert_eq!(
        ct.offload_verdict(&err, 0, 2, false, nat.as_ref(), &NONE),
        None
    );
}

#[test]
fn held_connection_resyncs_segments_the_table_never_saw() {
    for hold in [true, false] {
        let ct = ConnTrack::new(CtConfig::default());
        established(&ct, 0);
        let out = |t| CtPacket::tcp(v4(1), 40000, vip(), 80, t);
        let back = |t| CtPacket::tcp(backend(), 8080, v4(1), 40000, t);
        let nat = Some(NatSpec::Existing);
        let (_, r) = ct
            .offload_verdict(
                &out(seg(ACK, 1001, 5001, 0)),
                0,
                0,
                false,
                nat.as_ref(),
                &NONE,
            )
            .unwrap();
        if hold {
            assert!(ct.hold(r));
        }
        // 40 MB went each way in the kernel; then the client's FIN comes.
        let (c, s) = (
            1001u32.wrapping_add(40 << 20),
            5001u32.wrapping_add(40 << 20),
        );
        let fin = ct.process(&out(seg(FIN | ACK, c, s, 0)), 0, 1, false, nat.as_ref());
        if !hold {
            assert!(fin.has(ct_state::INV), "strict tracking sees a jump");
            continue;
        }
        assert!(fin.has(ct_state::EST) && !fin.has(ct_state::INV), "{fin:?}");
        let ack = ct.process(
            &back(seg(FIN | ACK, s, c + 1, 0)),
            0,
            1,
            false,
            nat.as_ref(),
        );
        assert!(ack.has(ct_state::EST) && !ack.has(ct_state::INV), "{ack:?}");
        // Closing: no longer steady, so the fast path lets go of it.
        assert_eq!(ct.offload_used(r, Some(1), 1), None);
    }
}

#[test]
fn released_connection_resyncs_each_side_once_then_is_strict() {
    let ct = ConnTrack::new(CtConfig::default());
    established(&ct, 0);
    let out = |t| CtPacket::tcp(v4(1), 40000, vip(), 80, t);
    let back = |t| CtPacket::tcp(backend(), 8080, v4(1), 40000, t);
    let nat = Some(NatSpec::Existing);
    let (_, r) = ct
        .offload_verdict(
            &out(seg(ACK, 1001, 5001, 0)),
            0,
            0,
            false,
            nat.as_ref(),
            &NONE,
        )
        .unwrap();
    assert!(ct.hold(r));
    let line = |ct: &ConnTrack| ct.dump(None, 1, 10)[0].line();
    assert!(line(&ct).ends_with(",offloaded"), "{}", line(&ct));
    ct.unhold(r);
    assert!(!line(&ct).contains("offloaded"), "{}", line(&ct));
    let (c, s) = (1001u32.wrapping_add(1 << 30), 5001u32.wrapping_add(1 << 30));
    let v = ct.process(&out(seg(ACK, c, s, 100)), 0, 1, false, nat.as_ref());
    assert!(!v.has(ct_state::INV), "{v:?}");
    let v = ct.process(&back(seg(ACK, s, c + 100, 100)), 0, 1, false, nat.as_ref());
    assert!(!v.has(ct_state::INV), "{v:?}");
    // Both sides re-learned: a jump now is judged strictly again.
    let v = ct.process(
        &out(seg(ACK, c + (1 << 30), s + 100, 100)),
        0,
        1,
        false,
        nat.as_ref(),
    );
    assert!(v.has(ct_state::INV), "{v:?}");
}

#[test]
fn fast_path_traffic_keeps_the_connection_and_flush_ends_it() {
    let ct = ConnTrack::new(CtConfig::default());
    let out = CtPacket::udp(v4(1), 5000, v4(2), 53);
    ct.process(&out, 0, 0, true, None);
    ct.process(&CtPacket::udp(v4(2), 53, v4(1), 5000), 0, 0, false, None);
    let (_, r) = ct.offload_verdict(&out, 0, 0, false, None, &NONE).unwrap();
    let timeout = ct.config().timeouts.get(TimeoutClass::UdpMultiple);
    // The fast path carried a packet just before the timeout: the entry
    // lives a timeout past it.
    assert_eq!(
        ct.offload_used(r, Some(timeout - 1), timeout - 1),
        Some((0, 0))
    );
    assert_eq!(ct.expire(timeout + 10, 100), 0);
    assert_eq!(ct.offload_used(r, None, timeout + 10), Some((0, 0)));
    // Unused since: it times out, and the fast path is told so even
    // before the sweep.
    assert_eq!(ct.offload_used(r, None, 2 * timeout), None);
    // A flushed connection is gone for the fast path, and a new one in
    // its slot is not mistaken for it.
    let ct = ConnTrack::new(CtConfig::default());
    ct.process(&out, 0, 0, true, None);
    ct.process(&CtPacket::udp(v4(2), 53, v4(1), 5000), 0, 0, false, None);
    let (_, r) = ct.offload_verdict(&out, 0, 0, false, None, &NONE).unwrap();
    assert_eq!(ct.flush(&CtFilter::default()), 1);
    assert_eq!(ct.offload_used(r, None, 1), None);
    ct.process(&out, 0, 1, true, None);
    ct.process(&CtPacket::udp(v4(2), 53, v4(1), 5000), 0, 1, false, None);
    assert_eq!(
        ct.offload_used(r, None, 1),
        None,
        "same slot, new connection"
    );
    assert!(!ct.hold(r));
}
