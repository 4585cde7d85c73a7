//! A token bucket that holds the sending rate without a system call per
//! packet: the sender asks, once per batch, how many packets the time
//! elapsed since the start allows, and sleeps when the next batch is far
//! enough away for a sleep to be worth its wake-up latency.
//!
//! Pure logic: the caller passes nanoseconds since its start. Credit is
//! computed from the start rather than accumulated per call, so rounding
//! never drifts; it is capped at a burst of about 2 ms of traffic (at least
//! two batches), and credit above the cap is forfeited, so a sender that
//! was descheduled reports the lower rate it achieved instead of catching
//! up with a line-rate burst.

/// Nanoseconds per second.
const NS: u128 = 1_000_000_000;

/// The bucket.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Packets sent plus credit forfeited: the tokens used up so far.
    used: u64,
}

impl TokenBucket {
    /// A bucket for `rate` packets per second (at least 1) for a sender of
    /// batches of `batch` packets.
    pub fn new(rate: u64, batch: u32) -> TokenBucket {
        let rate = rate.max(1);
        TokenBucket {
            rate,
            burst: (rate / 500).max(2 * u64::from(batch)),
            used: 0,
        }
    }

    /// Packets to send per wake-up: about a millisecond of traffic, between
    /// one and a batch.
    pub fn chunk(&self, batch: u32) -> u32 {
        (self.rate / 1000).clamp(1, u64::from(batch)) as u32
    }

    /// How many packets, at most `max`, may be sent `now_ns` after the start.
    #[inline]
    pub fn available(&mut self, now_ns: u64, max: u32) -> u32 {
        let due = (u128::from(now_ns) * u128::from(self.rate) / NS) as u64;
        let mut credit = due.saturating_sub(self.used);
        if credit > self.burst {
            self.used += credit - self.burst;
            credit = self.burst;
        }
        credit.min(u64::from(max)) as u32
    }

    /// Records `n` packets sent.
    #[inline]
    pub fn consume(&mut self, n: u32) {
        self.used += u64::from(n);
    }

    /// Nanoseconds from `now_ns` until `want` packets are available.
    pub fn wait_ns(&self, now_ns: u64, want: u32) -> u64 {
        let tokens = u128::from(self.used + u64::from(want));
        let at = (tokens * NS).div_ceil(u128::from(self.rate));
        (at as u64).saturating_sub(now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a bucket with a simulated clock that jumps `step_ns` at a time
    /// and sends whatever is available; returns the packets sent in `secs`.
    fn simulate(rate: u64, step_ns: u64, secs: u64) -> u64 {
        let mut b = TokenBucket::new(rate, 32);
        let mut sent = 0u64;
        let mut now = 0;
        while now < secs * 1_000_000_000 {
            let n = b.available(now, 32);
            b.consume(n);
            sent += u64::from(n);
            now += step_ns;
        }
        sent
    }

    #[test]
    fn the_rate_holds_whatever_the_polling_interval() {
        for (rate, step) in [
            (20_000, 1_000),
            (20_000, 700_000),
            (1_000_000, 10_000),
            (7, 3_000_000),
        ] {
            let sent = simulate(rate, step, 2);
            let want = 2 * rate;
            assert!(
                sent.abs_diff(want) <= 32 + rate / 500,
                "rate {rate} step {step}: {sent} of {want}"
            );
        }
    }

    #[test]
    fn a_stall_forfeits_credit_beyond_the_burst() {
        let mut b = TokenBucket::new(1_000_000, 32);
        // 100 ms without sending: only the 2 ms burst may go at once.
        assert_eq!(b.available(100_000_000, u32::MAX), 2_000);
        b.consume(2_000);
        assert_eq!(b.available(100_000_000, u32::MAX), 0);
        assert_eq!(b.available(100_001_000, u32::MAX), 1);
    }

    #[test]
    fn waits_say_when_a_chunk_is_due() {
        let mut b = TokenBucket::new(20_000, 32);
        assert_eq!(b.chunk(32), 20);
        assert_eq!(b.available(0, 32), 0);
        assert_eq!(b.wait_ns(0, 20), 1_000_000);
        assert_eq!(b.available(1_000_000, 32), 20);
        b.consume(20);
        assert_eq!(b.wait_ns(1_000_000, 20), 1_000_000);
        assert_eq!(TokenBucket::new(5_000_000, 64).chunk(64), 64);
        assert_eq!(TokenBucket::new(10, 64).chunk(64), 1);
    }
}
