//! The live rate line, once a second on stderr: `tx 1.234 Mpps 0.632
//! Gbit/s ...`. The loops call [`Meter::due`] with the clock they already
//! read for the batch, so metering costs a comparison per batch; the line
//! is formatted only when a second has passed.

use std::time::{Duration, Instant};

/// Seconds between lines.
const PERIOD: Duration = Duration::from_secs(1);

/// Tracks the counters at the last line.
pub struct Meter {
    label: &'static str,
    quiet: bool,
    next: Instant,
    last_at: Instant,
    last_packets: u64,
    last_bytes: u64,
}

impl Meter {
    /// A meter whose first line comes a second after `start`; `quiet`
    /// suppresses the lines.
    pub fn new(label: &'static str, start: Instant, quiet: bool) -> Meter {
        Meter {
            label,
            quiet,
            next: start + PERIOD,
            last_at: start,
            last_packets: 0,
            last_bytes: 0,
        }
    }

    /// When the next line is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Whether a line is due at `now`.
    #[inline]
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Prints the rate since the last line, from running totals, with
    /// `extra` appended (e.g. `lost 0 other 3`).
    pub fn print(
        &mut self,
        now: Instant,
        packets: u64,
        bytes: u64,
        extra: std::fmt::Arguments<'_>,
    ) {
        let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let pps = (packets - self.last_packets) as f64 / secs;
        let bps = (bytes - self.last_bytes) as f64 * 8.0 / secs;
        if !self.quiet {
            eprintln!(
                "{} {:.3} Mpps {:.3} Gbit/s total {} {}",
                self.label,
                pps / 1e6,
                bps / 1e9,
                packets,
                extra
            );
        }
        self.last_at = now;
        self.last_packets = packets;
        self.last_bytes = bytes;
        while self.next <= now {
            self.next += PERIOD;
        }
    }
}
