//! The node role's side of a sync: the switch's rules kept in step with
//! the compiled set, with the last applied set kept in memory.
//!
//! At start (and after any error: a failed request, a restarted switch)
//! the syncer reads the switch's whole `dump-flows`/`dump-groups` and
//! compares the compiled set with it ([`crate::sync::plan`]), so a
//! restarted agent that finds its rules in place sends nothing and never
//! disturbs traffic. Once a bundle went through, the set it produced is
//! remembered, and later syncs compare the new compile with that set
//! ([`crate::sync::plan_between`]): both sides are the compiler's own
//! canonical text keyed by (table, priority, match), so a sync costs a
//! merge of two sorted maps, not parsing ~100 000 dumped lines.
//!
//! What keeps the memory honest: each in-memory sync first asks the
//! switch for its per-table flow counts (`dump-tables`, a few hundred
//! bytes) and compares them with the remembered set's (learned
//! session-affinity rules, table 41, do not count). A switch that
//! restarted, or whose rules someone else changed in number, fails the
//! check and gets the full comparison. A change that keeps the counts
//! (someone rewrote an action by hand) is found by the full comparison at
//! the next restart or error, as kube-proxy's periodic full syncs would;
//! `--full-every` style resyncs are left to the caller.

use crate::compile::table;
use crate::endpoints::{stale_udp, udp_backends};
use crate::rules::RuleSet;
use crate::store::Store;
use crate::sync::{parse_dump_tables, plan, plan_between, Installed, Plan};
use ctl::client::call;
use ctl::proto::Command;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

/// Sync state of one switch.
#[derive(Debug, Default)]
pub struct Syncer {
    /// The set the switch has, as far as we know, when the caller gives
    /// whole sets ([`Syncer::sync`]).
    last: Option<RuleSet>,
    /// Flows per table the switch has, as far as we know (`None`: ask it
    /// for everything).
    counts: Option<BTreeMap<u8, usize>>,
    /// Full comparisons done (dump read and parsed).
    pub full: u64,
    /// In-memory comparisons done.
    pub fast: u64,
}

fn err(e: ctl::client::ClientError) -> String {
    e.to_string()
}

fn without_learned(mut m: BTreeMap<u8, usize>) -> BTreeMap<u8, usize> {
    m.remove(&table::AFFINITY);
    m.retain(|_, n| *n > 0);
    m
}

impl Syncer {
    /// Forgets what the switch has: the next sync reads its dump.
    pub fn invalidate(&mut self) {
        self.last = None;
        self.counts = None;
    }

    /// Whether the next sync may compare in memory.
    pub fn warm(&self) -> bool {
        self.counts.is_some()
    }

    /// Whether the switch's per-table counts are what we applied.
    fn counts_agree(&self, socket: &Path) -> Result<bool, String> {
        let Some(want) = &self.counts else {
            return Ok(false);
        };
        let text = call(socket, Command::DumpTables).map_err(err)?;
        Ok(&without_learned(parse_dump_tables(&text)) == want)
    }

    /// One sync of the switch at `socket` to `rules`: compare (with the
    /// set applied last when warm, else with the switch's dump), then
    /// send only the difference as one bundle. Any error makes it cold.
    pub fn sync(&mut self, socket: &Path, rules: RuleSet) -> Result<String, String> {
        let last = self.last.take();
        let r = self.apply(socket, &rules, |_| {
            last.as_ref().map(|l| plan_between(l, &rules))
        });
        if r.is_ok() {
            self.last = Some(rules);
        }
        r
    }

    /// One sync when the caller already knows the difference from the
    /// set it compiled last ([`crate::compile::incremental`]): `delta` is
    /// sent when warm; when cold, `rules` is compared with the dump.
    pub fn sync_delta(
        &mut self,
        socket: &Path,
        rules: &RuleSet,
        delta: Plan,
    ) -> Result<String, String> {
        self.last = None;
        self.apply(socket, rules, |_| Some(delta))
    }

    fn apply(
        &mut self,
        socket: &Path,
        rules: &RuleSet,
        fast: impl FnOnce(&RuleSet) -> Option<Plan>,
    ) -> Result<String, String> {
        let r = self.apply_inner(socket, rules, fast);
        self.counts = match &r {
            Ok(_) => Some(without_learned(rules.table_counts())),
            Err(_) => None,
        };
        r
    }

    fn apply_inner(
        &mut self,
        socket: &Path,
        rules: &RuleSet,
        fast: impl FnOnce(&RuleSet) -> Option<Plan>,
    ) -> Result<String, String> {
        let fast = if self.counts_agree(socket)? {
            fast(rules)
        } else {
            None
        };
        let how = if fast.is_some() { "memory" } else { "dump" };
        let p: Plan = match fast {
            Some(p) => {
                self.fast += 1;
                p
            }
            None => {
                self.full += 1;
                let flows = call(socket, Command::DumpFlows { filter: None }).map_err(err)?;
                let groups = call(socket, Command::DumpGroups).map_err(err)?;
                let show = call(socket, Command::Show).map_err(err)?;
                let have = Installed::parse(&flows, &groups, &show)?;
                plan(rules, &have)?
            }
        };
        if p.is_empty() {
            return Ok(format!(
                "in step: {} flows, {} groups, nothing sent (compared with {how})",
                rules.flow_count(),
                rules.group_count()
            ));
        }
        if !p.bundle.is_empty() {
            call(
                socket,
                Command::AddFlows {
                    text: p.bundle.clone(),
                    bundle: true,
                },
            )
            .map_err(err)?;
        }
        for id in &p.stale_groups {
            call(
                socket,
                Command::DelGroups {
                    filter: Some(format!("group_id={id}")),
                    bundle: true,
                },
            )
            .map_err(err)?;
        }
        Ok(format!(
            "synced: +{} -{} flows, {} groups changed, {} removed (now {} flows, {} groups; compared with {how})",
            p.added,
            p.removed,
            p.groups,
            p.stale_groups.len(),
            rules.flow_count(),
            rules.group_count()
        ))
    }
}

/// After a sync: the conntrack entries of the UDP endpoints no Service
/// uses any more are deleted (kube-proxy does the same), so a client's
/// next datagram is balanced again instead of following its old entry to
/// an endpoint that is gone. `last` is the set at the previous sync (none
/// at start: a restarted agent does not know what went while it was down,
/// and those entries expire). Returns a log line per flush.
pub fn flush_stale_udp(
    store: &Store,
    socket: &Path,
    last: &mut Option<BTreeSet<(Ipv4Addr, u16)>>,
) -> Vec<String> {
    let now = udp_backends(store);
    let mut out = Vec::new();
    if let Some(before) = last.as_ref() {
        for args in stale_udp(before, &now, crate::compile::ZONE) {
            let line = args.join(" ");
            out.push(match call(socket, Command::FlushConntrack { args }) {
                Ok(answer) => format!("flush-conntrack {line}: {}", answer.trim()),
                Err(e) => format!("flush-conntrack {line}: {e}"),
            });
        }
    }
    *last = Some(now);
    out
}
