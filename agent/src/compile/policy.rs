//! Policy into flows: the resolved rules of every NetworkPolicy,
//! AdminNetworkPolicy and BaselineAdminNetworkPolicy ([`crate::policy`])
//! become one node's tables 50-52 (egress, at the source pod's node) and
//! 60-62 (ingress, at the destination pod's node).
//!
//! | table | tier | hit | miss |
//! |---|---|---|---|
//! | 50 / 60 | AdminNetworkPolicy | Allow → 60 / 65, Deny → drop, Pass → 51 / 61 | 51 / 61 |
//! | 51 / 61 | NetworkPolicy | allow → 60 / 65; isolated pod → drop | 52 / 62 |
//! | 52 / 62 | BaselineAdminNetworkPolicy | Allow → 60 / 65, Deny → drop | 60 / 65 |
//!
//! Only a connection's first packet is judged: tables 50 and 60 pass
//! `ct_state=-new+trk` (replies, established and related packets) first,
//! as Antrea does, so a rule that starts denying leaves established
//! connections alone until they end. Egress is skipped for packets that
//! did not come from a local pod (gateway, tunnel: their sender's node
//! enforced it); ingress is skipped for the node's own traffic to its pods
//! (from the gateway and not load-balanced), as the NetworkPolicy API
//! documentation allows.
//!
//! Each rule is a conjunctive match (Antrea's scheme, ovs-fields(7)):
//! clause 1 the subject pods (`nw_src` with reg0 "from a local pod" for
//! egress, `nw_dst` for ingress), clause 2 the peers (`nw_dst` / `nw_src`:
//! pod addresses and prefixes), clause 3 the ports (`tcp,tp_dst=V/M`);
//! a clause that would match everything is left out, and a rule with a
//! single clause is an ordinary flow per subject. The `conj_id` flow
//! carries the verdict and the policy's cookie. So a rule costs
//! subjects + peers + ports flows, never subjects × peers, and rules that
//! share an address at one priority share its flow (one more
//! `conjunction(...)` action). Named ports split a rule by the port
//! numbers the destination pods declare under the name: for ingress the
//! subjects are grouped, for egress the peer pods.
//!
//! Priorities: AdminNetworkPolicy and BaselineAdminNetworkPolicy rules get
//! one priority each, `60000 - rank`, so the first matching rule wins;
//! NetworkPolicy rules all allow and share priority 200 (single-clause
//! rules 210), isolation drops sit at 100. Conjunction ids are a hash of
//! the rule (owner, direction, index, named-port group), so adding a
//! policy does not renumber the others' flows and the sync sends only the
//! difference.

use super::{table as t, Cx};
use crate::cookie::{cookie, fnv1a, Category};
use crate::net::Cidr;
use crate::object::ObjectKey;
use crate::policy::arith::port_masks;
use crate::policy::model::{
    resolve_named, Dir, Peers, PodInfo, PolicyRule, Ports, Proto, Tier, View,
};
use crate::policy::types::Action;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// The priority of the first AdminNetworkPolicy / BaselineAdminNetworkPolicy rule.
pub const ADMIN_TOP: u16 = 60000;
/// NetworkPolicy conjunctions.
pub const NP_CONJ: u16 = 200;
/// NetworkPolicy single-clause rules.
pub const NP_HARD: u16 = 210;
/// NetworkPolicy isolation drops.
pub const NP_ISOLATED: u16 = 100;
/// Replies, established and related packets pass.
pub const ESTABLISHED: u16 = 65000;
/// Traffic that the table does not judge (not from a local pod; the node's own).
pub const NOT_JUDGED: u16 = 64000;

/// What decided: a policy rule, an isolation, or the pipeline's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `AdminNetworkPolicy`, `NetworkPolicy`, `BaselineAdminNetworkPolicy`.
    pub tier: &'static str,
    /// The policy, `Kind/ns/name`.
    pub policy: String,
    /// The rule: `ingress[0] "name"`, or `isolated (no rule allows)`.
    pub rule: String,
    /// `Allow`, `Deny`, `Pass`.
    pub action: &'static str,
}

/// The rule → policy table of one node's compile, for `trace` and `flows`.
#[derive(Clone, Debug, Default)]
pub struct Explain {
    /// By `conj_id`.
    pub conj: HashMap<u32, Decision>,
    /// By (table, priority, cookie) of single-clause rules and isolation drops.
    pub flows: HashMap<(u8, u16, u64), Decision>,
    /// Conjunction ids of each policy.
    pub ids: BTreeMap<String, BTreeSet<u32>>,
    /// Counters for the figures: rules compiled, clause memberships.
    pub conj_actions: usize,
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
        Action::Pass => "Pass",
    }
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Admin => "AdminNetworkPolicy",
        Tier::Net => "NetworkPolicy",
        Tier::Baseline => "BaselineAdminNetworkPolicy",
    }
}

/// The table of a tier in a direction.
pub fn table_of(tier: Tier, dir: Dir) -> u8 {
    match (dir, tier) {
        (Dir::Egress, Tier::Admin) => t::EGRESS_POLICY,
        (Dir::Egress, Tier::Net) => t::EGRESS_NP,
        (Dir::Egress, Tier::Baseline) => t::EGRESS_BASELINE,
        (Dir::Ingress, Tier::Admin) => t::INGRESS_POLICY,
        (Dir::Ingress, Tier::Net) => t::INGRESS_NP,
        (Dir::Ingress, Tier::Baseline) => t::INGRESS_BASELINE,
    }
}

/// Where an allowed packet goes next.
fn after(dir: Dir) -> u8 {
    match dir {
        Dir::Egress => t::INGRESS_POLICY,
        Dir::Ingress => t::COMMIT,
    }
}

fn verdict(rule: &PolicyRule) -> String {
    match rule.action {
        Action::Allow => format!("goto_table:{}", after(rule.dir)),
        Action::Pass => format!("goto_table:{}", table_of(Tier::Net, rule.dir)),
        Action::Deny => deny(rule.log, &rule.owner),
    }
}

fn deny(log: bool, owner: &ObjectKey) -> String {
    if !log {
        return "drop".into();
    }
    // log(name=...) takes 1-48 characters of A-Z a-z 0-9 _ . / : -.
    let name: String = format!("{}/{}", owner.namespace, owner.name)
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_./:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("log(name={name}),drop")
}

fn subject_match(dir: Dir, p: &PodInfo<'_>) -> String {
    match dir {
        Dir::Egress => format!("ip,reg0=0x1/0xf,nw_src={}", p.ip),
        Dir::Ingress => format!("ip,nw_dst={}", p.ip),
    }
}

fn peer_field(dir: Dir) -> &'static str {
    match dir {
        Dir::Egress => "nw_dst",
        Dir::Ingress => "nw_src",
    }
}

fn cidr_text(c: &Cidr) -> String {
    if c.len == 32 {
        c.addr.to_string()
    } else {
        c.to_string()
    }
}

fn port_matches(ranges: &[(Proto, u16, u16)]) -> Vec<String> {
    let mut out = Vec::new();
    for &(proto, lo, hi) in ranges {
        for (v, m) in port_masks(lo, hi) {
            out.push(match m {
                0 => proto.keyword().to_string(),
                0xffff => format!("{},tp_dst={v}", proto.keyword()),
                _ => format!("{},tp_dst={v:#x}/{m:#x}", proto.keyword()),
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One conjunction (or single-clause rule) of a rule.
struct Part {
    subjects: Vec<u32>,
    /// `None`: any peer.
    peers: Option<Vec<String>>,
    /// `None`: any port.
    ports: Option<Vec<String>>,
    /// Told apart in the conjunction id.
    tag: String,
}

/// Splits a rule into its parts on this node: numeric ports in one, each
/// group of destinations that resolve named ports alike in another.
fn parts(view: &View<'_>, rule: &PolicyRule, local: &[u32]) -> Vec<Part> {
    let field = peer_field(rule.dir);
    let peer_text = |pods: &[u32], cidrs: &[Cidr]| -> Vec<String> {
        let mut v: Vec<String> = pods
            .iter()
            .map(|&i| format!("ip,{field}={}", view.pods[i as usize].ip))
            .chain(cidrs.iter().map(|c| format!("ip,{field}={}", cidr_text(c))))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let peers = match &rule.peers {
        Peers::Any => None,
        Peers::Set { pods, cidrs } => Some(peer_text(pods, cidrs)),
    };
    let (ranges, named) = match &rule.ports {
        Ports::Any => {
            return vec![Part {
                subjects: local.to_vec(),
                peers,
                ports: None,
                tag: String::new(),
            }]
        }
        Ports::List { ranges, named } => (ranges, named),
    };
    let mut out = Vec::new();
    if !ranges.is_empty() {
        out.push(Part {
            subjects: local.to_vec(),
            peers: peers.clone(),
            ports: Some(port_matches(ranges)),
            tag: String::new(),
        });
    }
    if named.is_empty() {
        return out;
    }
    let exact = |set: &[(Proto, u16)]| -> Vec<(Proto, u16, u16)> {
        set.iter().map(|&(p, n)| (p, n, n)).collect()
    };
    let tag = |set: &[(Proto, u16)]| -> String {
        set.iter()
            .map(|(p, n)| format!("{}{n}", p.keyword()))
            .collect::<Vec<_>>()
            .join(",")
    };
    match rule.dir {
        // The destination is the subject: group the subjects.
        Dir::Ingress => {
            let mut groups: BTreeMap<Vec<(Proto, u16)>, Vec<u32>> = BTreeMap::new();
            for &s in local {
                let set = resolve_named(&view.pods[s as usize], named);
                if !set.is_empty() {
                    groups.entry(set).or_default().push(s);
                }
            }
            for (set, subjects) in groups {
                out.push(Part {
                    subjects,
                    peers: peers.clone(),
                    ports: Some(port_matches(&exact(&set))),
                    tag: tag(&set),
                });
            }
        }
        // The destination is the peer: group the peer pods (those a
        // selector names and those inside a prefix).
        Dir::Egress => {
            let candidates: Vec<u32> = match &rule.peers {
                Peers::Any => (0..view.pods.len() as u32).collect(),
                Peers::Set { pods, cidrs } => {
                    let mut v = pods.clone();
                    for c in cidrs {
                        v.extend(view.pods_within(c));
                    }
                    v.sort_unstable();
                    v.dedup();
                    v
                }
            };
            let mut groups: BTreeMap<Vec<(Proto, u16)>, Vec<u32>> = BTreeMap::new();
            for d in candidates {
                let set = resolve_named(&view.pods[d as usize], named);
                if !set.is_empty() {
                    groups.entry(set).or_default().push(d);
                }
            }
            for (set, dests) in groups {
                out.push(Part {
                    subjects: local.to_vec(),
                    peers: Some(peer_text(&dests, &[])),
                    ports: Some(port_matches(&exact(&set))),
                    tag: tag(&set),
                });
            }
        }
    }
    out
}

/// Clause flows being gathered: (table, priority, match) → cookie and
/// `conjunction(...)` actions.
type Clauses = BTreeMap<(u8, u16, String), (u64, Vec<(u32, u8, u8)>)>;

/// Conjunction ids: a hash of the rule, probed past collisions.
struct Ids {
    used: HashMap<u32, String>,
}

impl Ids {
    fn get(&mut self, text: String) -> u32 {
        let h = fnv1a(text.as_bytes());
        let mut id = ((h ^ (h >> 32)) as u32) & 0x7fff_ffff;
        loop {
            if id == 0 {
                id = 1;
            }
            match self.used.get(&id) {
                None => {
                    self.used.insert(id, text);
                    return id;
                }
                Some(t) if *t == text => return id,
                Some(_) => id = id.wrapping_add(1) & 0x7fff_ffff,
            }
        }
    }
}

pub(super) fn compile(cx: &mut Cx<'_>) {
    let view = View::new(cx.v.store, &cx.ix.node_ips);
    if let Some((cache, changed)) = cx.select_seed.take() {
        view.seed(cache, &changed);
    }
    let resolved = view.resolve(cx.v.store);
    let node = cx.v.node;
    let local: Vec<bool> = view.pods.iter().map(|p| p.node == Some(node)).collect();
    defaults(cx);
    let mut clauses = Clauses::new();
    let mut ids = Ids {
        used: HashMap::new(),
    };
    for rule in &resolved.rules {
        let subjects: Vec<u32> = rule
            .subjects
            .iter()
            .copied()
            .filter(|&i| local[i as usize])
            .collect();
        if subjects.is_empty() {
            continue;
        }
        let table = table_of(rule.tier, rule.dir);
        let (prio, hard_prio) = match rule.tier {
            Tier::Net => (NP_CONJ, NP_HARD),
            _ => {
                let p = ADMIN_TOP.saturating_sub(rule.rank.min(59_000) as u16);
                (p, p)
            }
        };
        let c = cookie(&rule.owner, Category::Policy);
        let cc = cookie(&rule.owner, Category::PolicyClause);
        let decision = Decision {
            tier: tier_name(rule.tier),
            policy: rule.owner.to_string(),
            rule: format!("{}[{}]", rule.dir.name(), rule.index)
                + &if rule.name.is_empty() {
                    String::new()
                } else {
                    format!(" \"{}\"", rule.name)
                },
            action: action_name(rule.action),
        };
        let actions = verdict(rule);
        for part in parts(&view, rule, &subjects) {
            let subj: Vec<String> = part
                .subjects
                .iter()
                .map(|&i| subject_match(rule.dir, &view.pods[i as usize]))
                .collect();
            let mut dims: Vec<Vec<String>> = vec![subj];
            dims.extend(part.peers);
            dims.extend(part.ports);
            if dims.iter().any(Vec::is_empty) {
                continue; // a clause no packet can satisfy
            }
            if dims.len() == 1 {
                for m in &dims[0] {
                    cx.out.flow(table, hard_prio, c, m.clone(), actions.clone());
                }
                cx.explain
                    .flows
                    .entry((table, hard_prio, c))
                    .or_insert_with(|| decision.clone());
                continue;
            }
            let id = ids.get(format!(
                "{}|{}|{}|{}",
                rule.owner,
                rule.dir.name(),
                rule.index,
                part.tag
            ));
            let n = dims.len() as u8;
            for (k, dim) in dims.iter().enumerate() {
                for m in dim {
                    let e = clauses
                        .entry((table, prio, m.clone()))
                        .or_insert_with(|| (cc, Vec::new()));
                    e.1.push((id, k as u8 + 1, n));
                }
            }
            cx.out
                .flow(table, prio, c, format!("conj_id={id},ip"), actions.clone());
            cx.explain.conj.insert(id, decision.clone());
            cx.explain
                .ids
                .entry(rule.owner.to_string())
                .or_default()
                .insert(id);
        }
    }
    for ((table, prio, m), (c, mut conj)) in clauses {
        conj.sort_unstable();
        conj.dedup();
        cx.explain.conj_actions += conj.len();
        let mut a = String::with_capacity(conj.len() * 24);
        for (i, (id, k, n)) in conj.iter().enumerate() {
            if i > 0 {
                a.push(',');
            }
            let _ = write!(a, "conjunction({id},{k}/{n})");
        }
        cx.out.flow(table, prio, c, m, a);
    }
    if cx.keep_selections {
        cx.select_out = Some(view.take_cache());
    }
    // NetworkPolicy isolation: a selected pod's connections that no rule
    // allowed stop here (and never reach the BaselineAdminNetworkPolicy).
    for (&(dir, pod), owners) in &resolved.isolated {
        if !local[pod as usize] {
            continue;
        }
        let (first, _) = &owners[0];
        let log = owners.iter().find(|(_, l)| *l).map(|(k, _)| k);
        let c = cookie(first, Category::Policy);
        let table = table_of(Tier::Net, dir);
        cx.out.flow(
            table,
            NP_ISOLATED,
            c,
            subject_match(dir, &view.pods[pod as usize]),
            match log {
                Some(k) => deny(true, k),
                None => "drop".into(),
            },
        );
        let names: Vec<String> = owners.iter().map(|(k, _)| k.to_string()).collect();
        cx.explain
            .flows
            .entry((table, NP_ISOLATED, c))
            .or_insert_with(|| Decision {
                tier: "NetworkPolicy",
                policy: first.to_string(),
                rule: format!(
                    "{} isolation (no rule of {} allows)",
                    dir.name(),
                    names.join(", ")
                ),
                action: "Deny",
            });
    }
}

/// The tables' fixed flows (the Node's pipeline cookie).
fn defaults(cx: &mut Cx<'_>) {
    let c = cookie(&cx.node_key, Category::Pipeline);
    let o = &mut cx.out;
    for (first, next) in [
        (t::EGRESS_POLICY, t::INGRESS_POLICY),
        (t::INGRESS_POLICY, t::COMMIT),
    ] {
        o.flow(
            first,
            ESTABLISHED,
            c,
            "ct_state=-new+trk,ip",
            format!("goto_table:{next}"),
        );
    }
    // Egress is judged at the source pod's node only.
    for src in [2, 3] {
        o.flow(
            t::EGRESS_POLICY,
            NOT_JUDGED,
            c,
            format!("ip,reg0={src:#x}/0xf"),
            format!("goto_table:{}", t::INGRESS_POLICY),
        );
    }
    // The node's own connections to its pods (kubelet probes) are allowed;
    // load-balanced ones from the gateway (external clients) are judged.
    o.flow(
        t::INGRESS_POLICY,
        NOT_JUDGED,
        c,
        "ct_mark=0/0x1,ip,reg0=0x2/0xf",
        format!("goto_table:{}", t::COMMIT),
    );
    for (table, next) in [
        (t::EGRESS_POLICY, t::EGRESS_NP),
        (t::EGRESS_NP, t::EGRESS_BASELINE),
        (t::EGRESS_BASELINE, t::INGRESS_POLICY),
        (t::INGRESS_POLICY, t::INGRESS_NP),
        (t::INGRESS_NP, t::INGRESS_BASELINE),
        (t::INGRESS_BASELINE, t::COMMIT),
    ] {
        o.flow(table, 0, c, "", format!("goto_table:{next}"));
    }
}

/// One policy's rules in a node's compiled set: those with its cookie and
/// the clause flows of its conjunctions (which may carry another policy's
/// cookie when the two share an address).
pub fn policy_flows(
    rules: &crate::rules::RuleSet,
    explain: &Explain,
    key: &ObjectKey,
) -> crate::rules::RuleSet {
    let bits = crate::cookie::object_bits(key);
    let ids = explain.ids.get(&key.to_string());
    let mut out = crate::rules::RuleSet::default();
    for f in rules.flows() {
        let mine = f.cookie & crate::cookie::OBJECT_MASK == bits
            || ids.is_some_and(|ids| {
                f.actions
                    .split("conjunction(")
                    .skip(1)
                    .filter_map(|s| s.split(',').next()?.parse::<u32>().ok())
                    .any(|id| ids.contains(&id))
            });
        if mine {
            out.flow(
                f.table,
                f.priority,
                f.cookie,
                f.m.clone(),
                f.actions.clone(),
            );
        }
    }
    out
}
