//! Per-flow sequence checking of received generator frames.
//!
//! Each flow remembers the next sequence number it expects and a 64-bit
//! window of the numbers just below it (the anti-replay window of RFC 4303
//! §3.4.3, for the same reason: to tell a late frame from a duplicate in
//! constant time and space). A number above the expected one counts the
//! skipped numbers as lost; a number below it, not yet seen, was reordered
//! and un-counts one loss; one already seen is a duplicate. A frame older
//! than the window counts as reordered (it cannot be told from a duplicate).
//!
//! Frames lost after a flow's last received frame cannot be seen here; the
//! sender's count tells those. Counters cover every run seen: a new run id
//! starts every flow afresh, and a frame of a run already left behind is
//! counted as stale, not checked. All state is allocated up front, so
//! checking allocates nothing.

use super::frame::Stamp;

/// Runs remembered as finished, so their stragglers count as stale.
const OLD_RUNS: usize = 16;
/// Width of the window below the expected number.
const WINDOW: u64 = 64;

/// What the checks found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqCounts {
    /// Generator frames checked (stale ones excluded).
    pub pktgen: u64,
    /// Sequence numbers skipped and not (yet) arrived late.
    pub lost: u64,
    /// Frames that arrived after a higher number of their flow.
    pub reordered: u64,
    /// Frames whose number had already been seen.
    pub duplicate: u64,
    /// Frames of an earlier run, after a newer one started.
    pub stale: u64,
    /// Distinct (run, flow) pairs seen.
    pub flows: u64,
    /// Distinct runs seen.
    pub runs: u64,
}

#[derive(Clone, Copy, Default)]
struct FlowSeq {
    /// The next number expected; 0 until the first frame.
    next: u64,
    /// Bit `i` set: number `next - 1 - i` has been seen.
    window: u64,
}

/// The checker.
pub struct SeqCheck {
    run: Option<u32>,
    old_runs: Vec<u32>,
    flows: Vec<FlowSeq>,
    /// Flows with state in the current run, so a new run resets only those.
    touched: Vec<u16>,
    counts: SeqCounts,
}

impl Default for SeqCheck {
    fn default() -> Self {
        SeqCheck::new()
    }
}

impl SeqCheck {
    /// A checker for every possible flow index.
    pub fn new() -> SeqCheck {
        SeqCheck {
            run: None,
            old_runs: Vec::with_capacity(OLD_RUNS),
            flows: vec![FlowSeq::default(); 1 << 16],
            touched: Vec::with_capacity(1 << 16),
            counts: SeqCounts::default(),
        }
    }

    /// What has been found so far.
    pub fn counts(&self) -> SeqCounts {
        self.counts
    }

    /// Checks one frame's stamp.
    #[inline]
    pub fn check(&mut self, st: Stamp) {
        if self.run != Some(st.run_id) && !self.switch_run(st.run_id) {
            self.counts.stale += 1;
            return;
        }
        self.counts.pktgen += 1;
        let f = &mut self.flows[st.flow as usize];
        if f.next == 0 && f.window == 0 {
            self.counts.flows += 1;
            self.touched.push(st.flow);
        }
        if st.seq >= f.next {
            let gap = st.seq - f.next;
            self.counts.lost += gap;
            f.window = if gap + 1 >= WINDOW {
                1
            } else {
                (f.window << (gap + 1)) | 1
            };
            f.next = st.seq.saturating_add(1);
            return;
        }
        let age = f.next - 1 - st.seq;
        if age < WINDOW {
            let bit = 1u64 << age;
            if f.window & bit != 0 {
                self.counts.duplicate += 1;
                return;
            }
            f.window |= bit;
        }
        self.counts.reordered += 1;
        self.counts.lost = self.counts.lost.saturating_sub(1);
    }

    /// Makes `run` current unless it is a run already left behind; returns
    /// whether it is current now. Rare (once per run), so it may scan.
    #[cold]
    fn switch_run(&mut self, run: u32) -> bool {
        if self.old_runs.contains(&run) {
            return false;
        }
        if let Some(old) = self.run.replace(run) {
            if self.old_runs.len() == OLD_RUNS {
                self.old_runs.remove(0);
            }
            self.old_runs.push(old);
        }
        for &f in &self.touched {
            self.flows[f as usize] = FlowSeq::default();
        }
        self.touched.clear();
        self.counts.runs += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[(u16, u64)]) -> SeqCounts {
        let mut c = SeqCheck::new();
        for &(flow, seq) in seqs {
            c.check(Stamp {
                run_id: 1,
                flow,
                seq,
            });
        }
        c.counts()
    }

    #[test]
    fn in_order_flows_count_nothing_bad() {
        let seqs: Vec<_> = (0..1000).map(|i| ((i % 4) as u16, i / 4)).collect();
        let c = run(&seqs);
        assert_eq!(
            c,
            SeqCounts {
                pktgen: 1000,
                flows: 4,
                runs: 1,
                ..SeqCounts::default()
            }
        );
    }

    #[test]
    fn gaps_late_frames_and_duplicates_are_told_apart() {
        // 0 1 _ _ 4 3 3 5: two skipped, one of them arrives late, then again.
        let c = run(&[(0, 0), (0, 1), (0, 4), (0, 3), (0, 3), (0, 5)]);
        assert_eq!((c.lost, c.reordered, c.duplicate), (1, 1, 1));
        // A flow that starts late lost its first numbers.
        let c = run(&[(7, 5), (7, 6)]);
        assert_eq!((c.lost, c.reordered, c.duplicate), (5, 0, 0));
        // A frame far older than the window is late, not a duplicate.
        let c = run(&[(1, 0), (1, 1000), (1, 500)]);
        assert_eq!((c.lost, c.reordered, c.duplicate), (998, 1, 0));
        // A gap wider than the window still tracks duplicates after it.
        let c = run(&[(1, 0), (1, 100), (1, 100), (1, 99)]);
        assert_eq!((c.lost, c.reordered, c.duplicate), (98, 1, 1));
    }

    #[test]
    fn flows_are_independent() {
        let c = run(&[(0, 0), (1, 0), (0, 1), (1, 1), (1, 2), (0, 2)]);
        assert_eq!((c.lost, c.reordered, c.flows), (0, 0, 2));
    }

    #[test]
    fn a_new_run_starts_afresh_and_the_old_one_goes_stale() {
        let mut c = SeqCheck::new();
        let st = |run_id, seq| Stamp {
            run_id,
            flow: 3,
            seq,
        };
        c.check(st(1, 0));
        c.check(st(1, 1));
        c.check(st(2, 0));
        c.check(st(1, 2));
        c.check(st(2, 1));
        let k = c.counts();
        assert_eq!(
            (k.pktgen, k.stale, k.lost, k.runs, k.flows),
            (4, 1, 0, 2, 2)
        );
    }
}
