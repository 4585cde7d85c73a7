//! `rx` and `reflect`: receive on one AF_XDP port, count and check what
//! arrives, and (reflect) send each frame straight back out of the same
//! port with its MAC addresses swapped.
//!
//! The reflector moves descriptors only: the received UMEM frame is the
//! transmitted one, its first twelve bytes swapped in place. It reads the
//! stamp too (a fixed-offset compare, no header walk), so its summary
//! means the same as `rx`'s; against the cost of the kernel's copy per
//! frame that read does not show.
//!
//! The loop spins while frames come and, after [`SPIN`] empty polls,
//! sleeps in `poll(2)` on the socket until a frame arrives, the next live
//! line is due or the run ends, so an idle receiver gives its core back
//! (two cores here are shared by the generator, the switch and this) and
//! still stops on time when nothing ever arrives.
//!
//! `seconds`, `pps` and `mbps` in the summary cover the active span, from
//! the first generator frame received to the last, and count generator
//! frames only, so a receiver started before its sender reports the
//! sender's rate, neither diluted by the wait nor stretched by a stray
//! neighbour solicitation before it. With no generator frames at all (say,
//! trafgen's) they cover every frame instead. `packets` and `bytes` count
//! every frame; `elapsed` is the whole run.

use super::args::Common;
use super::frame;
use super::meter::Meter;
use super::port;
use super::report::{rates, round3};
use super::seq::SeqCheck;
use datapath::buf::Batch;
use datapath::port::xsk::Rings;
use datapath::port::NetPort;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// UMEM frames: a full fill ring and a full TX ring.
const POOL_FRAMES: usize = 8192;
/// Ring slots; a deep fill ring rides out the times this thread is off
/// its core.
const RING: u32 = 4096;
/// Frames kept in the fill ring.
const FILL: u32 = 4096;
/// Empty polls before sleeping in `poll(2)`.
const SPIN: u32 = 256;
/// Longest sleep in `poll(2)`, in milliseconds.
const SLEEP_MAX_MS: u128 = 100;
/// Most time spent after the run letting reflected frames complete.
const LINGER: Duration = Duration::from_millis(100);

/// Runs `rx` (or `reflect`); returns the summary.
pub fn run(c: &Common, reflect: bool, stop: &AtomicBool) -> Result<Value, String> {
    let mode = if reflect { "reflect" } else { "rx" };
    port::enter(c)?;
    let (mut pool, mut port) = port::open(
        c,
        POOL_FRAMES,
        Rings {
            size: RING,
            fill: FILL,
        },
    )?;
    let if_before = port::if_counters(&c.dev);
    port::announce(
        mode,
        c,
        &port,
        format_args!("for {:.3} s", c.duration.as_secs_f64()),
    );
    let fd = port.poll_fd();

    let mut check = SeqCheck::new();
    let mut batch = Batch::default();
    let (mut packets, mut bytes, mut other) = (0u64, 0u64, 0u64);
    let (mut reflected, mut refused) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + c.duration;
    let mut any = Span::default();
    let mut ours = Span::default();
    let mut our_bytes = 0u64;
    let mut meter = Meter::new(mode, start, c.quiet);
    let mut idle = 0u32;
    let mut now = start;
    while now < end && !stop.load(Ordering::Relaxed) {
        port.rx_burst(&mut pool, &mut batch);
        if batch.len > 0 {
            any.see(now);
            idle = 0;
            let before = our_bytes;
            for d in batch.as_slice() {
                packets += 1;
                bytes += u64::from(d.len);
                match frame::stamp(pool.data(d)) {
                    Some(st) => {
                        check.check(st);
                        our_bytes += u64::from(d.len);
                    }
                    None => other += 1,
                }
                if !reflect {
                    pool.free(*d);
                    continue;
                }
                frame::swap_macs(pool.data_mut(d));
                if port.send(&mut pool, *d).is_ok() {
                    reflected += 1;
                } else {
                    pool.free(*d);
                    refused += 1;
                }
            }
            if our_bytes != before {
                ours.see(now);
            }
        } else {
            idle += 1;
        }
        port.flush(&mut pool);
        if meter.due(now) {
            let k = check.counts();
            meter.print(
                now,
                packets,
                bytes,
                format_args!("lost {} reordered {} other {other}", k.lost, k.reordered),
            );
        }
        if idle >= SPIN {
            idle = 0;
            let ms = end
                .min(meter.next())
                .saturating_duration_since(now)
                .as_millis();
            let ms = ms.clamp(1, SLEEP_MAX_MS) as i32;
            match fd {
                Some(fd) => {
                    // An error here (EINTR is already 0) would repeat every
                    // time; sleeping instead keeps the run's timing.
                    if datapath::sys::poll_readable(&[fd], ms).is_err() {
                        std::thread::sleep(Duration::from_millis(ms as u64));
                    }
                }
                None => std::thread::sleep(Duration::from_millis(ms as u64)),
            }
        }
        now = Instant::now();
    }
    let elapsed = now.duration_since(start).as_secs_f64();
    if reflect {
        let t = Instant::now();
        while port.frames_lent() > FILL as usize && t.elapsed() < LINGER {
            std::thread::sleep(Duration::from_millis(1));
            port.flush(&mut pool);
        }
    }

    let k = check.counts();
    let (seconds, (pps, mbps)) = if k.pktgen > 0 {
        let s = ours.seconds();
        (s, rates(k.pktgen, our_bytes, s))
    } else {
        let s = any.seconds();
        (s, rates(packets, bytes, s))
    };
    let stats = port.stats();
    let if_delta = port::if_counters(&c.dev)
        .zip(if_before)
        .map(|(a, b)| a.since(&b));
    let mut s = json!({
        "mode": mode,
        "packets": packets,
        "bytes": bytes,
        "seconds": round3(seconds),
        "elapsed": round3(elapsed),
        "pps": round3(pps),
        "mbps": round3(mbps),
        "lost": k.lost,
        "reordered": k.reordered,
        "duplicate": k.duplicate,
        "other": other,
        "pktgen": k.pktgen,
        "stale": k.stale,
        "flows": k.flows,
        "runs": k.runs,
        "rx_dropped": stats.rx_dropped,
        "if_rx_packets": if_delta.map(|d| d.rx_packets),
        "if_rx_dropped": if_delta.map(|d| d.rx_dropped),
        "port_mode": port.mode(),
    });
    if reflect {
        // The port counts refused sends as drops too; the interface adds
        // frames its peer could not take.
        let tx_dropped = stats.tx_dropped + if_delta.map_or(0, |d| d.tx_dropped);
        s["reflected"] = json!(reflected);
        s["tx_dropped"] = json!(tx_dropped);
        s["tx_refused"] = json!(refused);
    }
    Ok(s)
}

/// The first and last time frames arrived.
#[derive(Default)]
struct Span {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Span {
    #[inline]
    fn see(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn seconds(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        }
    }
}
