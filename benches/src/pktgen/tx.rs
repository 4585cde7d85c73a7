//! `tx`: send stamped frames as fast as possible or at a held rate, and
//! count the frames that come back.
//!
//! Per iteration the loop reads the clock once, asks the token bucket how
//! many packets may go (all of a batch when unlimited), writes that many
//! frames from the templates into UMEM frames from the pool and queues
//! them with `send`, then `flush`es (one publish, `sendto` kicks as the
//! ring asks, completions back into the pool) and drains what arrived. A
//! refused `send` (TX ring full) ends the batch: that is back-pressure, the
//! frame goes back to the pool and is retried, not dropped.
//!
//! UMEM frames keep their bytes between uses, so the loop remembers which
//! flow's frame each UMEM frame last held and writes only the sequence
//! number and checksum into a frame that already holds the right flow; a
//! frame that was used for receiving is marked as holding none.

use super::args::TxOpts;
use super::frame::{self, FrameSpec, Templates};
use super::meter::Meter;
use super::port::{self, IfCounters};
use super::rate::TokenBucket;
use super::report::{rates, round3};
use super::seq::SeqCheck;
use datapath::buf::{Batch, FramePool, BATCH};
use datapath::port::xsk::{Rings, XskPort};
use datapath::port::NetPort;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// UMEM frames: the TX ring, the fill ring and slack for the free list.
const POOL_FRAMES: usize = 4096;
/// Ring slots (each of the four rings).
const RING: u32 = 2048;
/// Frames kept in the fill ring to receive frames coming back.
const FILL: u32 = 512;
/// Below this wait the loop spins rather than sleeps (a sleep here wakes
/// up some 60 µs late).
const SLEEP_MIN: Duration = Duration::from_micros(200);
/// How much earlier than due a sleep ends, for its wake-up latency.
const SLEEP_SLACK: Duration = Duration::from_micros(60);
/// Most time spent after the run finishing transmissions and collecting
/// frames still on their way back.
const LINGER: Duration = Duration::from_millis(300);
/// The linger ends early after this long with nothing in flight or arriving.
const QUIET: Duration = Duration::from_millis(50);
/// Bursts of returning frames taken per iteration at most.
const RX_BURSTS: usize = 16;
/// A UMEM frame holding no flow's frame.
const NO_FLOW: u32 = u32::MAX;

/// Frames that came back.
struct Back {
    packets: u64,
    bytes: u64,
    other: u64,
    check: SeqCheck,
    batch: Batch,
}

impl Back {
    /// Takes what arrived (a few bursts at most) and returns the frames to
    /// the pool; returns how many arrived.
    fn drain(&mut self, port: &mut XskPort, pool: &mut FramePool, tags: &mut [u32]) -> usize {
        let mut got = 0;
        for _ in 0..RX_BURSTS {
            port.rx_burst(pool, &mut self.batch);
            for d in self.batch.as_slice() {
                self.packets += 1;
                self.bytes += u64::from(d.len);
                match frame::stamp(pool.data(d)) {
                    Some(st) => self.check.check(st),
                    None => self.other += 1,
                }
                tags[d.frame as usize] = NO_FLOW;
                pool.free(*d);
            }
            got += self.batch.len;
            if self.batch.len < BATCH {
                break;
            }
        }
        got
    }
}

/// A run id from the clock and the PID (never 0).
fn fresh_run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let x = (t ^ u64::from(std::process::id()).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 32) as u32).max(1)
}

/// Runs `tx`; returns the summary.
pub fn run(o: &TxOpts, stop: &AtomicBool) -> Result<Value, String> {
    let c = &o.common;
    port::enter(c)?;
    if datapath::sys::if_index(&c.dev).is_none() {
        return Err(format!("no interface {} in this network namespace", c.dev));
    }
    let src_mac = match o.src_mac {
        Some(m) => m,
        None => port::if_mac(&c.dev)?,
    };
    let run_id = o.run_id.unwrap_or_else(fresh_run_id);
    let templates = Templates::new(&FrameSpec {
        src_mac,
        dst_mac: o.dst_mac,
        src_ip: o.src_ip,
        dst_ip: o.dst_ip,
        size: o.size,
        flows: o.flows,
        run_id,
    });
    let (mut pool, mut port) = port::open(
        c,
        POOL_FRAMES,
        Rings {
            size: RING,
            fill: FILL,
        },
    )?;
    let if_before = port::if_counters(&c.dev);
    let rate = match o.rate {
        0 => "as fast as possible".to_string(),
        r => format!("{r} pps"),
    };
    port::announce(
        "tx",
        c,
        &port,
        format_args!(
            "{} flows of {} bytes, {rate}, run id {run_id:#010x}",
            o.flows, o.size
        ),
    );

    let mut tags = vec![NO_FLOW; pool.n_frames()];
    let mut seqs = vec![0u64; o.flows];
    let mut back = Back {
        packets: 0,
        bytes: 0,
        other: 0,
        check: SeqCheck::new(),
        batch: Batch::default(),
    };
    let mut bucket = (o.rate > 0).then(|| TokenBucket::new(o.rate, o.batch));
    let (size, len) = (o.size, o.size as u16);
    let (mut flow, mut sent, mut ring_full) = (0usize, 0u64, 0u64);

    let start = Instant::now();
    let end = start + c.duration;
    let mut meter = Meter::new("tx", start, c.quiet);
    let mut now = start;
    while now < end && !stop.load(Ordering::Relaxed) {
        let now_ns = now.duration_since(start).as_nanos() as u64;
        let (allowed, wait) = match bucket.as_mut() {
            None => (o.batch, 0),
            Some(b) => {
                let chunk = b.chunk(o.batch);
                match b.available(now_ns, o.batch) {
                    n if n >= chunk => (n, 0),
                    _ => (0, b.wait_ns(now_ns, chunk)),
                }
            }
        };
        let mut n = 0;
        while n < allowed {
            let Some(mut d) = pool.alloc() else { break };
            d.len = len;
            let tag = &mut tags[d.frame as usize];
            templates.write(flow, seqs[flow], pool.data_mut(&d), *tag != flow as u32);
            // The frame holds this flow's bytes now, sent or not.
            *tag = flow as u32;
            if port.send(&mut pool, d).is_err() {
                pool.free(d);
                ring_full += 1;
                break;
            }
            seqs[flow] += 1;
            flow += 1;
            if flow == o.flows {
                flow = 0;
            }
            n += 1;
        }
        if let Some(b) = bucket.as_mut() {
            b.consume(n);
        }
        sent += u64::from(n);
        port.flush(&mut pool);
        back.drain(&mut port, &mut pool, &mut tags);
        if meter.due(now) {
            let dropped = port.stats().tx_dropped.saturating_sub(ring_full);
            meter.print(
                now,
                sent,
                sent * size as u64,
                format_args!("dropped {dropped} back {}", back.packets),
            );
        }
        if wait > 0 {
            let wait = Duration::from_nanos(wait).min(end.saturating_duration_since(now));
            if wait >= SLEEP_MIN {
                std::thread::sleep(wait - SLEEP_SLACK);
            } else {
                std::hint::spin_loop();
            }
        }
        now = Instant::now();
    }
    let seconds = now.duration_since(start).as_secs_f64();

    let unsent = linger(&mut port, &mut pool, &mut back, &mut tags);
    let packets = sent - unsent;
    let bytes = packets * size as u64;
    let if_delta = port::if_counters(&c.dev)
        .zip(if_before)
        .map(|(a, b)| a.since(&b));
    let xsk_dropped = port.stats().tx_dropped.saturating_sub(ring_full);
    let tx_dropped = xsk_dropped + if_delta.map_or(0, |d| d.tx_dropped);
    let (pps, mbps) = rates(packets, bytes, seconds);
    let k = back.check.counts();
    Ok(json!({
        "mode": "tx",
        "packets": packets,
        "bytes": bytes,
        "seconds": round3(seconds),
        "pps": round3(pps),
        "mbps": round3(mbps),
        "tx_dropped": tx_dropped,
        "port_mode": port.mode(),
        "size": size,
        "flows": o.flows,
        "rate": o.rate,
        "run_id": run_id,
        "ring_full": ring_full,
        "unsent": unsent,
        "if_tx_packets": if_delta.map(|d: IfCounters| d.tx_packets),
        "rx_packets": back.packets,
        "rx_bytes": back.bytes,
        "rx_pktgen": k.pktgen,
        "rx_lost": k.lost,
        "rx_reordered": k.reordered,
        "rx_duplicate": k.duplicate,
        "rx_other": back.other,
    }))
}

/// After the run: lets the kernel finish what is in the TX ring and
/// collects frames still coming back, for up to [`LINGER`]; returns the
/// frames never transmitted.
fn linger(port: &mut XskPort, pool: &mut FramePool, back: &mut Back, tags: &mut [u32]) -> u64 {
    let start = Instant::now();
    let mut last_activity = start;
    loop {
        port.flush(pool);
        let now = Instant::now();
        if back.drain(port, pool, tags) > 0 {
            last_activity = now;
        }
        // After a flush the fill ring is topped up, so whatever else the
        // port holds is waiting to be transmitted.
        let in_flight = port.frames_lent().saturating_sub(FILL as usize) as u64;
        if in_flight > 0 {
            last_activity = now;
        }
        if now.duration_since(start) >= LINGER || now.duration_since(last_activity) >= QUIET {
            return in_flight;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
