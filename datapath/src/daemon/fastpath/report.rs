//! What the fast path shows: `dump-fastpath`, its part of
//! `revalidate --check`, and the totals logged at exit.

use super::compose::{compose, NoPath};
use super::{FastPath, Tunnels};
use crate::afxdp::fastpath::{offload, FpCounter, FpEntry};
use flowtable::{Bridge, Field, FlowKey, FlowMask};

impl FastPath {
    /// `revalidate --check`'s part: every entry translated again against
    /// `br` and offloaded again, compared with what the kernel holds
    /// (counters aside). A line per entry the current rules would not
    /// produce.
    pub fn check(&self, br: &Bridge, now_ms: u64) -> String {
        let mut bad = Vec::new();
        for (fk, o) in &self.entries {
            let path = compose(br, self.ct.as_deref(), &o.key, now_ms);
            let want = path
                .as_ref()
                .ok()
                .and_then(|p| offload(&o.key, &p.actions, &Tunnels(&self.tunnels)))
                .map(|(_, e)| e);
            let have = self.maps.get(fk).ok().flatten();
            let same = match (want, have) {
                (Some(w), Some(h)) => without_counters(w) == without_counters(h),
                _ => false,
            };
            if !same {
                let m = flowtable::Match {
                    key: o.key,
                    mask: shown_mask(&o.key),
                    conj_id: None,
                };
                bad.push(format!(
                    "fastpath: {}: installed {}, the rules now say {}",
                    ctl::ofp::format_match(&m, &br.ports),
                    ctl::odp::format_dp_actions(&o.actions),
                    match &path {
                        Ok(p) => ctl::odp::format_dp_actions(&p.actions),
                        Err(NoPath::Rules) => "nothing the fast path can take".into(),
                        Err(NoPath::Conntrack) => "a connection no longer established".into(),
                    }
                ));
            }
        }
        let mut s = format!(
            "fast path entries checked: {}, mismatches: {}\n",
            self.entries.len(),
            bad.len()
        );
        for l in bad {
            s += &l;
            s.push('\n');
        }
        s
    }

    /// Logs the whole run's counters (at exit), one `key=value` each.
    pub fn log_totals(&self) {
        let s = &self.stats;
        let c = |k: FpCounter| s.program[k as usize];
        let seen: u64 = s.program.iter().sum::<u64>() - c(FpCounter::Error);
        tracing::info!(
            fastpath_hit = c(FpCounter::Hit),
            fastpath_miss = c(FpCounter::Miss),
            fastpath_seen = seen,
            fastpath_inserted = s.inserted,
            fastpath_refused = s.refused,
            fastpath_flushed = s.flushed,
            fastpath_evicted = s.evicted,
            fastpath_ct_removed = s.ct_removed,
            fastpath_errors = s.errors,
            "fast path stopped"
        );
    }

    /// `dump-fastpath`: one line per entry, like `dump-megaflows`.
    pub fn dump(&self, br: &Bridge, now_ms: u64) -> String {
        let mut lines: Vec<String> = self
            .entries
            .values()
            .map(|o| {
                let m = flowtable::Match {
                    key: o.key,
                    mask: shown_mask(&o.key),
                    conj_id: None,
                };
                // An entry through conntrack says on how many connections
                // it stands (its key has no ct fields: the first pass's).
                let conns = match o.conns.len() {
                    0 => String::new(),
                    n => format!(", conntrack:{n}"),
                };
                // An echo's identifier is in the entry's key but in no
                // field of the match: two pings between the same hosts
                // would print alike.
                let echo = match o.key.echo_id() {
                    0 => String::new(),
                    id => format!(", echo_id:{id}"),
                };
                format!(
                    "{}, packets:{}, bytes:{}, used:{:.3}s{echo}{conns}, actions:{}\n",
                    ctl::ofp::format_match(&m, &br.ports),
                    o.packets,
                    o.bytes,
                    now_ms.saturating_sub(o.used_ms) as f64 / 1000.0,
                    ctl::odp::format_dp_actions(&o.actions)
                )
            })
            .collect();
        lines.sort();
        lines.concat()
    }
}

/// The fields a fast-path key holds, for printing an entry's exact match
/// (tunnel fields only for Geneve arrivals, TCP flags only for TCP).
fn shown_mask(k: &FlowKey) -> FlowMask {
    let mut m = FlowMask::default();
    let mut fields = vec![
        Field::InPort,
        Field::DlSrc,
        Field::DlDst,
        Field::DlType,
        Field::NwProto,
        Field::NwTos,
        Field::NwTtl,
        Field::TpSrc,
        Field::TpDst,
    ];
    if k.get(Field::TunDst) != 0 {
        fields.extend([Field::TunId, Field::TunSrc, Field::TunDst]);
    }
    if k.get(Field::VlanTci) != 0 {
        fields.push(Field::VlanTci);
    }
    if k.get(Field::DlType) == 0x86dd {
        fields.extend([Field::Ipv6Src, Field::Ipv6Dst, Field::Ipv6Label]);
    } else {
        fields.extend([Field::NwSrc, Field::NwDst]);
    }
    if k.get(Field::NwProto) == 6 {
        fields.push(Field::TcpFlags);
    }
    for f in fields {
        m.set_field(f);
    }
    m
}

/// An entry as `offload` makes it: the counters the program keeps zeroed.
fn without_counters(mut e: FpEntry) -> FpEntry {
    e.packets = 0;
    e.bytes = 0;
    e.used_ns = 0;
    e
}
