//! Steady state allocates nothing: once every flow has its megaflow (and
//! many their EMC entry), thousands of batches go through parse, lookup,
//! rewrite and output without a single call into the allocator; the same
//! holds for conntrack with recirculation, and for `reject` and `log`
//! (answers built, log records deduped, recorded and rate-limited; handing
//! records to the control thread happens outside the counted part, as the
//! poll loop does it between batches).
//!
//! Only the test's own thread is counted: the test harness allocates on its
//! other threads (printing another test's result, say) whenever it likes,
//! and the pipeline under test runs on the caller's thread. The tests
//! still take turns, since the counter is shared.

use datapath::policy_log::PolicyLog;
use datapath::{MemDatapath, PmdConfig};
use etherparse::PacketBuilder;
use oxvs_tests::{datapath, ipv4_fragments, Pkt};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

struct Counting;

thread_local! {
    // Const-initialised with no destructor: reading it never allocates,
    // so the allocator itself may read it.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread's allocations are being counted.
fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

/// Starts or stops counting this thread's allocations.
fn count(on: bool) {
    COUNTING.with(|c| c.set(on));
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the only
// addition is a relaxed counter increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_does_not_allocate() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flows = "\
table=0,priority=100,in_port=1,actions=load:0x7->NXM_NX_REG0[],resubmit(,1)
table=1,priority=100,ip,reg0=7,nw_dst=10.244.2.0/24,actions=mod_dl_dst:02:00:00:00:02:02,mod_nw_tos:8,output:2
table=1,priority=90,ip,reg0=7,actions=output:2,output:3
";
    // Default config: the EMC inserts 1 in 100, so both tiers get hits.
    let mut dp = datapath(3, flows, Default::default());
    let pkts: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            let dst = if i % 2 == 0 {
                [10, 244, 2, 3]
            } else {
                [10, 244, 3, 3]
            };
            Pkt::tcp([10, 244, 1, 2], dst, 20000 + i, 80).build(18)
        })
        .collect();
    let round = |dp: &mut datapath::MemDatapath| {
        for p in &pkts {
            assert!(dp.inject(1, p));
        }
        dp.run_until_idle(0);
        dp.discard_tx();
    };
    for _ in 0..4 {
        round(&mut dp);
    }
    let warm = dp.pmd.stats;
    ALLOCS.store(0, Ordering::SeqCst);
    count(true);
    for _ in 0..2000 {
        round(&mut dp);
    }
    count(false);
    let n = ALLOCS.load(Ordering::SeqCst);
    let s = dp.pmd.stats;
    assert_eq!(s.upcall, warm.upcall, "no new upcalls in steady state");
    assert!(
        s.emc_hit > warm.emc_hit && s.megaflow_hit > warm.megaflow_hit,
        "both tiers exercised: {s:?}"
    );
    assert!(
        s.tx_copies > warm.tx_copies,
        "the two-output flow copied packets"
    );
    assert_eq!(n, 0, "allocations in steady state");
}

const REJECT_FLOWS: &str = "\
priority=100,tcp,nw_dst=10.244.1.6,tp_dst=80,actions=log(name=deny-web),reject
priority=100,icmp,nw_dst=10.244.1.6,actions=log(name=deny-ping),reject(icmp)
priority=100,udp,nw_dst=10.244.1.6,actions=log(name=drop-udp),drop
";

fn reject_frames() -> Vec<Vec<u8>> {
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let (src, dst) = ([10, 244, 1, 5], [10, 244, 1, 6]);
    let mut out = Vec::new();
    for i in 0..16u16 {
        let mut f = Vec::new();
        eth()
            .ipv4(src, dst, 64)
            .tcp(30000 + i, 80, 1, 1000)
            .syn()
            .write(&mut f, &[])
            .unwrap();
        out.push(f);
        let mut f = Vec::new();
        eth()
            .ipv4(src, dst, 64)
            .icmpv4_echo_request(i, 1)
            .write(&mut f, &[0; 56])
            .unwrap();
        out.push(f);
        let mut f = Vec::new();
        eth()
            .ipv4(src, dst, 64)
            .udp(30000 + i, 53)
            .write(&mut f, &[0; 20])
            .unwrap();
        out.push(f);
    }
    out
}

#[test]
fn reject_and_log_do_not_allocate() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut dp = MemDatapath::new(1024, PmdConfig::default());
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    let file =
        ctl::ofp::parse_flow_file(REJECT_FLOWS, &dp.bridge.ports).unwrap_or_else(|e| panic!("{e}"));
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).unwrap();
    // A low rate and a short window, so that every outcome of the log
    // (recorded, deduped, rate-limited) happens while counting.
    dp.pmd.policy_log = PolicyLog::new(50, 100);
    let pkts = reject_frames();
    let mut records = Vec::with_capacity(datapath::policy_log::BUFFER);
    let mut round = |dp: &mut MemDatapath, now_ms: u64| {
        for p in &pkts {
            assert!(dp.inject(1, p));
        }
        dp.run_until_idle(now_ms);
        dp.discard_tx();
        dp.pmd.policy_log.take(&mut records);
        records.clear();
    };
    for t in 0..4 {
        round(&mut dp, t);
    }
    let warm = dp.pmd.stats;
    ALLOCS.store(0, Ordering::SeqCst);
    count(true);
    for t in 0..2000 {
        round(&mut dp, 10 + t * 7);
    }
    count(false);
    let n = ALLOCS.load(Ordering::SeqCst);
    let s = dp.pmd.stats;
    assert_eq!(s.upcall, warm.upcall, "no new upcalls in steady state");
    assert!(s.reject_sent >= warm.reject_sent + 2000 * 32, "{s:?}");
    assert!(s.log_records > warm.log_records, "{s:?}");
    assert!(s.log_deduped > warm.log_deduped, "{s:?}");
    assert!(s.log_rate_limited > warm.log_rate_limited, "{s:?}");
    assert_eq!(n, 0, "allocations in steady state");
}

#[test]
fn conntrack_with_recirculation_does_not_allocate() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flows = "\
table=0,priority=10,ip,actions=ct(table=1,zone=3)
table=1,priority=20,ip,in_port=1,ct_state=+trk,actions=ct(commit,zone=3),output:2
table=1,priority=20,ip,in_port=2,ct_state=+trk+est,actions=output:1
";
    let mut dp = datapath(2, flows, Default::default());
    let mut out = Vec::new();
    let fwd: Vec<Vec<u8>> = (0..32u16)
        .map(|i| {
            let mut f = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([10, 244, 1, 2], [10, 244, 2, 3], 64)
                .udp(30000 + i, 53)
                .write(&mut f, &[0; 18])
                .unwrap();
            f
        })
        .collect();
    let back: Vec<Vec<u8>> = (0..32u16)
        .map(|i| {
            let mut f = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
                .ipv4([10, 244, 2, 3], [10, 244, 1, 2], 64)
                .udp(53, 30000 + i)
                .write(&mut f, &[0; 18])
                .unwrap();
            f
        })
        .collect();
    let round = |dp: &mut MemDatapath, now: u64| {
        for (a, b) in fwd.iter().zip(&back) {
            assert!(dp.inject(1, a));
            assert!(dp.inject(2, b));
        }
        dp.run_until_idle(now);
        dp.discard_tx();
    };
    for t in 0..4 {
        round(&mut dp, t);
    }
    out.push(dp.pmd.stats);
    ALLOCS.store(0, Ordering::SeqCst);
    count(true);
    for t in 0..2000 {
        round(&mut dp, 10 + t);
    }
    count(false);
    let n = ALLOCS.load(Ordering::SeqCst);
    let s = dp.pmd.stats;
    assert_eq!(s.upcall, out[0].upcall, "no new upcalls in steady state");
    assert!(s.recirc >= out[0].recirc + 2000 * 64, "{s:?}");
    assert_eq!(dp.pmd.ct.len(), 32);
    assert_eq!(n, 0, "allocations in steady state");
}

/// Fragmented datagrams both ways through `ct` and recirculation: the
/// fragment table's lookups and the ports written into the next pass's
/// key allocate nothing either.
#[test]
fn fragments_through_conntrack_do_not_allocate() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flows = "\
table=0,priority=10,ip,actions=ct(table=1,zone=3)
table=1,priority=20,udp,in_port=1,ct_state=+trk-inv,tp_dst=53,actions=ct(commit,zone=3),output:2
table=1,priority=20,ip,in_port=2,ct_state=+trk+est,actions=output:1
";
    let mut dp = datapath(2, flows, Default::default());
    let datagram = |src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, id: u16| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut f, &[7; 3000])
            .unwrap();
        ipv4_fragments(&f, id)
    };
    let (a, b) = ([10, 244, 1, 2], [10, 244, 2, 3]);
    let fwd: Vec<Vec<u8>> = (0..8u16)
        .flat_map(|i| datagram(a, 30000 + i, b, 53, i))
        .collect();
    let back: Vec<Vec<u8>> = (0..8u16)
        .flat_map(|i| datagram(b, 53, a, 30000 + i, 100 + i))
        .collect();
    let round = |dp: &mut MemDatapath, now: u64| {
        for f in &fwd {
            assert!(dp.inject(1, f));
        }
        dp.run_until_idle(now);
        for f in &back {
            assert!(dp.inject(2, f));
        }
        dp.run_until_idle(now);
        let sent = (dp.take_tx(2).len(), dp.take_tx(1).len());
        assert_eq!(sent, (24, 24), "every fragment both ways");
    };
    for t in 0..4 {
        round(&mut dp, t);
    }
    let warm = dp.pmd.stats;
    let frags = dp.pmd.ct.frag_stats();
    ALLOCS.store(0, Ordering::SeqCst);
    count(true);
    for t in 0..500 {
        for f in &fwd {
            assert!(dp.inject(1, f));
        }
        dp.run_until_idle(10 + t);
        for f in &back {
            assert!(dp.inject(2, f));
        }
        dp.run_until_idle(10 + t);
        dp.discard_tx();
    }
    count(false);
    let n = ALLOCS.load(Ordering::SeqCst);
    let s = dp.pmd.stats;
    assert_eq!(s.upcall, warm.upcall, "no new upcalls in steady state");
    let f = dp.pmd.ct.frag_stats();
    assert_eq!(
        f.later - frags.later,
        500 * 2 * 8 * 2 + 500 * 8 * 2,
        "{f:?}"
    );
    assert_eq!(f.orphans, 0);
    assert_eq!(n, 0, "allocations in steady state");
}
