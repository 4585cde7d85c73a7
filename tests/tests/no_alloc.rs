//! Steady state allocates nothing: once every flow has its megaflow (and
//! many their EMC entry), thousands of batches go through parse, lookup,
//! rewrite and output without a single call into the allocator.

use oxvs_tests::{datapath, Pkt};
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

#[test]
fn steady_state_does_not_allocate() {
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
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..2000 {
        round(&mut dp);
    }
    COUNTING.store(false, Ordering::SeqCst);
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
