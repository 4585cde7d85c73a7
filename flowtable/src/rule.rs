//! Rules and groups as the control plane describes them ([`FlowSpec`],
//! [`GroupSpec`]) and as the classifier holds them ([`Rule`]).
//!
//! A [`Rule`] is shared (`Arc`) between the classifier and the megaflows
//! built from it; its counters are atomics so that whoever pushes megaflow
//! statistics can credit the rule without a lock.

use crate::action::{Action, GroupType};
use crate::flow_match::Match;
use crate::group::HashField;
use crate::port::PortNo;
use std::sync::atomic::{AtomicU64, Ordering};

/// OpenFlow's default priority.
pub const DEFAULT_PRIORITY: u16 = 32768;

/// Tables are numbered 0..=253, as in OpenFlow.
pub const N_TABLES: usize = 254;

/// A rule as written in a flow line, before it is installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    /// `table=`.
    pub table: u8,
    /// `priority=`.
    pub priority: u16,
    /// The match.
    pub m: Match,
    /// `cookie=`; with `cookie_mask` it selects rules for modify and delete.
    pub cookie: u64,
    /// `cookie=V/MASK` (0 when no mask was given).
    pub cookie_mask: u64,
    /// `idle_timeout=` seconds, 0 for none.
    pub idle_timeout: u32,
    /// `hard_timeout=` seconds, 0 for none.
    pub hard_timeout: u32,
    /// `out_port=` filter for modify and delete.
    pub out_port: Option<PortNo>,
    /// The actions; empty means drop.
    pub actions: Vec<Action>,
}

impl Default for FlowSpec {
    fn default() -> Self {
        FlowSpec {
            table: 0,
            priority: DEFAULT_PRIORITY,
            m: Match::any(),
            cookie: 0,
            cookie_mask: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            out_port: None,
            actions: Vec::new(),
        }
    }
}

/// The largest bucket id (OpenFlow 1.5's `OFPG_BUCKET_MAX`); the values
/// above it name positions (`first`, `last`, `all`) in group-mod commands.
pub const MAX_BUCKET_ID: u32 = 0xffff_ff00;

/// One bucket of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// `bucket_id:N` (OpenFlow 1.5): the bucket's name within its group,
    /// unique in the group and at most 0xffffff00. The parser assigns one to
    /// every bucket that names none, as OVS does.
    pub bucket_id: u32,
    /// Relative weight for select groups (the parser's default is 100, as
    /// in OVS).
    pub weight: u16,
    /// Port whose liveness the bucket follows, if any.
    pub watch_port: Option<PortNo>,
    /// The bucket's actions.
    pub actions: Vec<Action>,
}

/// A group as `add-group` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// `group_id=`.
    pub id: u32,
    /// `type=`.
    pub kind: GroupType,
    /// The buckets in order.
    pub buckets: Vec<Bucket>,
    /// `selection_method=hash,fields(...)`: what a select group hashes;
    /// `None` is the default (addresses and ports, or MACs).
    pub hash_fields: Option<Vec<HashField>>,
}

/// Packet and byte counters plus last use, shared with megaflows.
#[derive(Debug, Default)]
pub struct RuleStats {
    /// Packets that took this rule.
    pub packets: AtomicU64,
    /// Bytes of those packets.
    pub bytes: AtomicU64,
    /// Milliseconds (caller's clock) of the last packet, for idle timeouts.
    pub used_ms: AtomicU64,
}

impl RuleStats {
    /// Credits `packets` packets of `bytes` bytes seen at `now_ms`.
    pub fn credit(&self, packets: u64, bytes: u64, now_ms: u64) {
        if packets == 0 {
            return;
        }
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// An installed rule.
#[derive(Debug)]
pub struct Rule {
    /// Table it lives in.
    pub table: u8,
    /// Priority within the table.
    pub priority: u16,
    /// The match (prerequisites checked).
    pub m: Match,
    /// Controller-chosen identifier.
    pub cookie: u64,
    /// Idle timeout in seconds, 0 for none.
    pub idle_timeout: u32,
    /// Hard timeout in seconds, 0 for none.
    pub hard_timeout: u32,
    /// The actions (validated against ports, groups and tables).
    pub actions: Box<[Action]>,
    /// When it was added or last modified, caller's clock.
    pub created_ms: u64,
    /// Counters.
    pub stats: RuleStats,
    /// Whether the actions are `conjunction` actions: such a rule is a
    /// clause of a conjunctive match and never matches on its own.
    conjunctive: bool,
}

impl Rule {
    /// Makes a rule from its spec at time `now_ms`.
    pub fn new(spec: &FlowSpec, now_ms: u64) -> Rule {
        Rule {
            table: spec.table,
            priority: spec.priority,
            m: spec.m,
            cookie: spec.cookie,
            idle_timeout: spec.idle_timeout,
            hard_timeout: spec.hard_timeout,
            actions: spec.actions.clone().into_boxed_slice(),
            created_ms: now_ms,
            stats: RuleStats {
                used_ms: AtomicU64::new(now_ms),
                ..Default::default()
            },
            conjunctive: spec
                .actions
                .iter()
                .any(|a| matches!(a, Action::Conjunction { .. })),
        }
    }

    /// Whether the rule is a clause of a conjunctive match (its actions are
    /// `conjunction`s), which the classifier never returns as a match.
    #[inline]
    pub fn is_conjunctive(&self) -> bool {
        self.conjunctive
    }

    /// Whether a timeout has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        let hard =
            self.hard_timeout != 0 && now_ms >= self.created_ms + self.hard_timeout as u64 * 1000;
        let used = self.stats.used_ms.load(Ordering::Relaxed);
        let idle = self.idle_timeout != 0 && now_ms >= used + self.idle_timeout as u64 * 1000;
        hard || idle
    }

    /// Whether the rule sends packets to `port` (for `out_port=` filters).
    pub fn outputs_to(&self, port: PortNo) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Output(p) if *p == port))
    }
}
