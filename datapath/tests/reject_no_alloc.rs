//! `reject` and `log` on the packet path allocate nothing: once the
//! megaflows exist, thousands of rejected and logged packets (answers built,
//! log records deduped, recorded and rate-limited) go through without a
//! call into the allocator. Handing records to the control thread happens
//! outside the counted part, as the poll loop does it between batches.

use datapath::policy_log::PolicyLog;
use datapath::{MemDatapath, PmdConfig};
use etherparse::PacketBuilder;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the only
// addition is a relaxed counter increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
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
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FLOWS: &str = "\
priority=100,tcp,nw_dst=10.244.1.6,tp_dst=80,actions=log(name=deny-web),reject
priority=100,icmp,nw_dst=10.244.1.6,actions=log(name=deny-ping),reject(icmp)
priority=100,udp,nw_dst=10.244.1.6,actions=log(name=drop-udp),drop
";

fn frames() -> Vec<Vec<u8>> {
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
    let mut dp = MemDatapath::new(1024, PmdConfig::default());
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    let file = ctl::ofp::parse_flow_file(FLOWS, &dp.bridge.ports).unwrap_or_else(|e| panic!("{e}"));
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).unwrap();
    // A low rate and a short window, so that every outcome of the log
    // (recorded, deduped, rate-limited) happens while counting.
    dp.pmd.policy_log = PolicyLog::new(50, 100);
    let pkts = frames();
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
    COUNTING.store(true, Ordering::SeqCst);
    for t in 0..2000 {
        round(&mut dp, 10 + t * 7);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    let s = dp.pmd.stats;
    assert_eq!(s.upcall, warm.upcall, "no new upcalls in steady state");
    assert!(s.reject_sent >= warm.reject_sent + 2000 * 32, "{s:?}");
    assert!(s.log_records > warm.log_records, "{s:?}");
    assert!(s.log_deduped > warm.log_deduped, "{s:?}");
    assert!(s.log_rate_limited > warm.log_rate_limited, "{s:?}");
    assert_eq!(n, 0, "allocations in steady state");
}
