//! Conntrack: new connections per second through `ct(commit, nat(dst=...))`,
//! packets per second of established connections, and lookups with one
//! million entries present (one thread, then two at once), each beside a
//! naive peer (std `HashMap` behind one `Mutex`) measured in the same run.
//! Before the benches run, a counting allocator measures the heap bytes per
//! connection and prints them.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowtable::conntrack::{tcp_flags::*, ConnTrack, CtConfig, CtPacket, NatSpec, TcpInfo};
use oxvs_benches::ct::{churn_step, client, dnat, syn, vip};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts live heap bytes so bytes per entry can be measured, not guessed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counter is a side
// effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MILLION: u32 = 1_000_000;

fn ack(c: IpAddr, cp: u16, s: IpAddr, sp: u16, seq: u32, ackn: u32) -> CtPacket {
    let t = TcpInfo {
        flags: ACK,
        seq,
        ack: ackn,
        window: 65535,
        wscale: None,
        payload_len: 0,
    };
    CtPacket::tcp(c, cp, s, sp, t)
}

fn udp(i: u32) -> CtPacket {
    CtPacket::udp(client(i), 5000, vip(), 53)
}

/// A spread-out permutation of `0..n` so lookups do not walk memory in
/// insertion order.
fn scatter(i: u64, n: u32) -> u32 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32 % n
}

/// Zone, protocol, addresses and ports.
type NaiveKey = (u16, u8, IpAddr, IpAddr, u16, u16);

/// The naive peer's state: tuple to entry index, and entries (last seen).
type NaiveTable = (HashMap<NaiveKey, u32>, Vec<(u64, u8)>);

/// The naive peer: one lock, one std map from tuple to entry index.
#[derive(Default)]
struct Naive {
    inner: Mutex<NaiveTable>,
}

impl Naive {
    fn process(&self, p: &CtPacket, now: u64, commit: bool, dnat_to: Option<IpAddr>) -> u8 {
        let mut g = self.inner.lock().unwrap();
        let (map, entries) = &mut *g;
        let k = (0u16, p.proto, p.src, p.dst, p.sport, p.dport);
        if let Some(&i) = map.get(&k) {
            entries[i as usize].0 = now;
            return 0x22;
        }
        if !commit {
            return 0x21;
        }
        let i = entries.len() as u32;
        entries.push((now, 0));
        map.insert(k, i);
        let r = (
            0u16,
            p.proto,
            dnat_to.unwrap_or(p.dst),
            p.src,
            p.dport,
            p.sport,
        );
        map.insert(r, i);
        0x21
    }
}

fn report_bytes_per_entry() {
    let cfg = CtConfig {
        max_conns: 4_000_000,
        ..CtConfig::default()
    };
    type Make = fn(u32) -> (CtPacket, Option<NatSpec>);
    let cases: [(&str, Make); 3] = [
        ("ipv4 udp, no nat", |i| (udp(i), None)),
        ("ipv4 tcp, dnat", |i| (syn(i), Some(dnat()))),
        ("ipv6 udp, no nat", |i| {
            let a = IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | i as u128));
            (
                CtPacket::udp(a, 5000, IpAddr::V6(Ipv6Addr::LOCALHOST), 53),
                None,
            )
        }),
    ];
    for (name, mk) in cases {
        let before = LIVE.load(Ordering::Relaxed);
        let ct = ConnTrack::new(cfg);
        let fixed = LIVE.load(Ordering::Relaxed) - before;
        for i in 0..MILLION {
            let (p, nat) = mk(i);
            ct.process(&p, 0, 0, true, nat.as_ref());
        }
        let total = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "conntrack bytes/entry ({name}, {} entries): {:.1} heap incl. fixed {} KiB zone counters, {:.1} without; table's own count {:.1}",
            ct.len(),
            total as f64 / ct.len() as f64,
            fixed / 1024,
            (total - fixed) as f64 / ct.len() as f64,
            ct.heap_bytes() as f64 / ct.len() as f64,
        );
    }
}

fn new_connections(c: &mut Criterion) {
    report_bytes_per_entry();
    let mut g = c.benchmark_group("ct_new_conn");
    g.throughput(Throughput::Elements(1));
    let nat = dnat();
    // `churn_step` settles the table near 240 000 entries (about 30 MB, near
    // this machine's last-level cache) or 1 920 000 (about 235 MB, far
    // beyond it).
    for (name, per_ms) in [("syn_commit_dnat", 8u32), ("syn_commit_dnat_1.9m_live", 64)] {
        let ct = ConnTrack::new(CtConfig {
            max_conns: 4_000_000,
            ..CtConfig::default()
        });
        let mut i = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                churn_step(&ct, &nat, per_ms, i)
            })
        });
    }
    // The same without expiry: the table is replaced every 2 M SYNs, as the
    // naive peer's map is, to separate creation from removal costs.
    let mut fresh = ConnTrack::new(CtConfig {
        max_conns: 4_000_000,
        ..CtConfig::default()
    });
    let mut k = 0u32;
    g.bench_function("syn_commit_dnat_no_expiry", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            if k % (2 * MILLION) == 0 {
                fresh = ConnTrack::new(*fresh.config());
            }
            black_box(fresh.process(&syn(k), 0, 0, true, Some(&nat)))
        })
    });
    let naive = Naive::default();
    let to = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)));
    let mut j = 0u32;
    g.bench_function("naive_mutex_hashmap_syn_commit", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            if j % (2 * MILLION) == 0 {
                *naive.inner.lock().unwrap() = Default::default();
            }
            black_box(naive.process(&syn(j), 0, true, to))
        })
    });
    g.finish();
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_established");
    g.throughput(Throughput::Elements(1));
    const N: u32 = 10_000;
    let ct = ConnTrack::new(CtConfig::default());
    let s = vip();
    for k in 0..N {
        let cl = client(k);
        ct.process(
            &CtPacket::tcp(
                cl,
                4000,
                s,
                80,
                TcpInfo {
                    flags: SYN,
                    seq: 1000,
                    ack: 0,
                    window: 65535,
                    wscale: Some(7),
                    payload_len: 0,
                },
            ),
            0,
            0,
            true,
            None,
        );
        ct.process(
            &CtPacket::tcp(
                s,
                80,
                cl,
                4000,
                TcpInfo {
                    flags: SYN | ACK,
                    seq: 5000,
                    ack: 1001,
                    window: 65535,
                    wscale: Some(7),
                    payload_len: 0,
                },
            ),
            0,
            0,
            true,
            None,
        );
        ct.process(&ack(cl, 4000, s, 80, 1001, 5001), 0, 0, true, None);
    }
    let mut i = 0u64;
    g.bench_function("ack_both_directions_10k_conns", |b| {
        b.iter(|| {
            i += 1;
            let k = scatter(i, N);
            let p = if i & 1 == 0 {
                ack(client(k), 4000, s, 80, 1001, 5001)
            } else {
                ack(s, 80, client(k), 4000, 5001, 1001)
            };
            black_box(ct.process(&p, 0, 1, false, None))
        })
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_lookup_1m_present");
    g.throughput(Throughput::Elements(1));
    let ct = ConnTrack::new(CtConfig::default());
    let naive = Naive::default();
    for k in 0..MILLION {
        ct.process(&udp(k), 0, 0, true, None);
        naive.process(&udp(k), 0, true, None);
    }
    let mut i = 0u64;
    g.bench_function("oxvs_sharded", |b| {
        b.iter(|| {
            i += 1;
            black_box(ct.process(&udp(scatter(i, MILLION)), 0, 1, false, None))
        })
    });
    let mut i = 0u64;
    g.bench_function("naive_mutex_hashmap", |b| {
        b.iter(|| {
            i += 1;
            black_box(naive.process(&udp(scatter(i, MILLION)), 1, false, None))
        })
    });
    // The same two tables with two threads looking up at once: the sharded
    // table lets them run side by side, the naive one serialises them.
    g.bench_function("oxvs_sharded_2_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, |i| ct.process(&udp(i), 0, 1, false, None).state))
    });
    g.bench_function("naive_mutex_hashmap_2_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, |i| naive.process(&udp(i), 1, false, None)))
    });
    g.finish();
}

/// Runs `iters` lookups split over two scoped threads; returns wall time.
fn two_threads(iters: u64, f: impl Fn(u32) -> u8 + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let f = &f;
            s.spawn(move || {
                for i in 0..iters / 2 {
                    black_box(f(scatter(i * 2 + t, MILLION)));
                }
            });
        }
    });
    start.elapsed()
}

criterion_group!(benches, new_connections, established, lookups);
criterion_main!(benches);
