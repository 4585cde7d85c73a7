//! The conntrack bench's new-connection loop (`ct_new_conn` in
//! `benches/conntrack.rs`) as a plain program, for instruction and cache-miss
//! counts that do not depend on what else the machine runs:
//!
//! ```text
//! cargo build --release -p oxvs-benches --example ct_churn
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
//!     --cache-sim=yes --LL=16777216,16,64 target/release/examples/ct_churn 8 300000 100000
//! ```
//!
//! Arguments: SYNs per simulated millisecond (8 gives a steady state of
//! about 240 000 entries, 64 about 1.9 million), SYNs before measuring, and
//! SYNs measured. Divide the counts callgrind reports by the last.

use flowtable::conntrack::{ConnTrack, CtConfig, NatSpec};
use oxvs_benches::ct::{churn_step, dnat};
use std::time::Instant;

/// SYNs `from..to`, expiring as the bench does.
#[inline(never)]
fn churn(ct: &ConnTrack, nat: &NatSpec, per_ms: u32, from: u32, to: u32) {
    for i in from..to {
        churn_step(ct, nat, per_ms, i);
    }
}

/// The part callgrind counts.
#[inline(never)]
fn measured(ct: &ConnTrack, nat: &NatSpec, per_ms: u32, from: u32, to: u32) {
    churn(ct, nat, per_ms, from, to);
}

fn arg(n: usize, default: u32) -> u32 {
    match std::env::args().nth(n) {
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("argument {n}: not a number: {a}");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() {
    let (per_ms, warm, count) = (arg(1, 8), arg(2, 300_000), arg(3, 100_000));
    let ct = ConnTrack::new(CtConfig {
        max_conns: 4_000_000,
        ..CtConfig::default()
    });
    let nat = dnat();
    churn(&ct, &nat, per_ms, 1, warm + 1);
    let t = Instant::now();
    measured(&ct, &nat, per_ms, warm + 1, warm + 1 + count);
    let el = t.elapsed();
    println!(
        "{count} new connections with {} live: {:.0} ns each ({:.0} k/s)",
        ct.len(),
        el.as_nanos() as f64 / count as f64,
        count as f64 / el.as_secs_f64() / 1e3
    );
}
