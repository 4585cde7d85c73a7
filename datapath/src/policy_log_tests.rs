//! Dedupe, rate limit and line format of the policy log, over real frames
//! parsed by `extract`.

use super::*;
use etherparse::PacketBuilder;
use flowtable::{extract, FlowKey};

fn tcp(sport: u16) -> (Vec<u8>, Layout) {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 5], [10, 244, 2, 7], 64)
        .tcp(sport, 80, 1, 1000)
        .syn();
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    let mut k = FlowKey::default();
    let lay = extract(&f, 1, &mut k).unwrap();
    (f, lay)
}

fn ping(id: u16) -> (Vec<u8>, Layout) {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 5], [10, 244, 2, 7], 64)
        .icmpv4_echo_request(id, 1);
    let mut f = Vec::new();
    b.write(&mut f, &[0; 56]).unwrap();
    let mut k = FlowKey::default();
    let lay = extract(&f, 1, &mut k).unwrap();
    (f, lay)
}

fn taken(l: &mut PolicyLog) -> Vec<LogRecord> {
    let mut v = Vec::new();
    l.take(&mut v);
    v
}

#[test]
fn one_record_per_tuple_per_window() {
    let mut l = PolicyLog::new(100, 1000);
    let (f, lay) = tcp(40000);
    assert_eq!(l.record(0, 3, Verdict::Reject, &f, &lay), Logged::Recorded);
    for t in [1, 10, 999] {
        assert_eq!(l.record(t, 3, Verdict::Reject, &f, &lay), Logged::Deduped);
    }
    // Another connection (source port) is another line.
    let (g, lay2) = tcp(40001);
    assert_eq!(l.record(5, 3, Verdict::Reject, &g, &lay2), Logged::Recorded);
    // Another rule name or verdict too.
    assert_eq!(l.record(6, 4, Verdict::Reject, &f, &lay), Logged::Recorded);
    assert_eq!(l.record(7, 3, Verdict::Drop, &f, &lay), Logged::Recorded);
    // After the window the tuple logs again.
    assert_eq!(
        l.record(1000, 3, Verdict::Reject, &f, &lay),
        Logged::Recorded
    );
    let recs = taken(&mut l);
    assert_eq!(recs.len(), 5);
    let r = recs[0];
    assert_eq!((r.sport, r.dport, r.proto, r.len), (40000, 80, 6, 40));
    assert_eq!(r.src, IpAddr::V4(Ipv4Addr::new(10, 244, 1, 5)));
    assert!(l.is_empty());
}

#[test]
fn echo_identifier_separates_pings() {
    let mut l = PolicyLog::new(100, 10_000);
    let (a, la) = ping(7);
    let (b, lb) = ping(8);
    assert_eq!(l.record(0, 0, Verdict::Drop, &a, &la), Logged::Recorded);
    assert_eq!(l.record(1, 0, Verdict::Drop, &a, &la), Logged::Deduped);
    assert_eq!(l.record(2, 0, Verdict::Drop, &b, &lb), Logged::Recorded);
    let recs = taken(&mut l);
    assert_eq!(recs[0].sport, 7);
    let line = format_line(&recs[0], "deny-ping", 0);
    assert_eq!(
        line,
        "1970-01-01T00:00:00.000Z name=deny-ping verdict=Drop proto=ICMP \
         src=10.244.1.5 dst=10.244.2.7 len=84 icmp_id=7"
    );
}

#[test]
fn token_bucket_limits_lines_per_second() {
    let mut l = PolicyLog::new(5, 60_000);
    let mut got = 0;
    let mut limited = 0;
    for p in 0..20u16 {
        let (f, lay) = tcp(30000 + p);
        match l.record(0, 1, Verdict::Drop, &f, &lay) {
            Logged::Recorded => got += 1,
            Logged::Limited => limited += 1,
            o => panic!("{o:?}"),
        }
    }
    assert_eq!((got, limited), (5, 15));
    // A limited tuple was not remembered: it logs once tokens return
    // (200 ms at 5 lines per second is one token).
    let (f, lay) = tcp(30019);
    assert_eq!(l.record(100, 1, Verdict::Drop, &f, &lay), Logged::Limited);
    assert_eq!(l.record(200, 1, Verdict::Drop, &f, &lay), Logged::Recorded);
    assert_eq!(taken(&mut l).len(), 6);
}

#[test]
fn the_buffer_is_bounded() {
    let mut l = PolicyLog::new(100_000, 60_000);
    let mut limited = 0;
    for p in 0..(BUFFER as u16 + 10) {
        let (f, lay) = tcp(1000 + p);
        if l.record(0, 1, Verdict::Drop, &f, &lay) == Logged::Limited {
            limited += 1;
        }
    }
    assert_eq!(limited, 10);
    assert_eq!(taken(&mut l).len(), BUFFER);
}

#[test]
fn non_ip_is_not_logged() {
    let mut l = PolicyLog::new(100, 1000);
    let f = [0u8; 60];
    let lay = Layout {
        l3: 14,
        l4: 0,
        proto: 0,
    };
    assert_eq!(l.record(0, 1, Verdict::Drop, &f, &lay), Logged::NotIp);
}

#[test]
fn lines_format_times_and_v6_ports() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    // 2000-02-29 12:34:56.789 UTC, a leap day.
    assert_eq!(rfc3339(951_827_696_789), "2000-02-29T12:34:56.789Z");
    let r = LogRecord {
        time_ms: 0,
        name: 0,
        verdict: Verdict::Reject,
        proto: 6,
        src: "fd00::1".parse().unwrap(),
        dst: "fd00::2".parse().unwrap(),
        sport: 1234,
        dport: 443,
        len: 60,
    };
    assert_eq!(
        format_line(&r, "n", 1_000),
        "1970-01-01T00:00:01.000Z name=n verdict=Reject proto=TCP \
         src=[fd00::1]:1234 dst=[fd00::2]:443 len=60"
    );
}
