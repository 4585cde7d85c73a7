//! `oxvs-agent trace`: a connection's first packet through the compiled
//! rules of the nodes it crosses, with the switch's own classifier
//! (`flowtable::translate`, the code oxvsd runs — not a second evaluator),
//! and which policy rule decided.
//!
//! The packet enters at the source pod's port on the source pod's node,
//! where egress is judged (tables 50-52). If it leaves through the Geneve
//! tunnel it enters the destination node from the tunnel port with the
//! inner packet as it left, and ingress is judged there (tables 60-62);
//! a pod on the same node is judged for both in one walk. Every pass after
//! a `ct(table=...)` is followed as `ofproto/trace` does (a new
//! connection). The rules that ran in the policy tables are looked up in
//! the compile's [`Explain`] table (by `conj_id`, or by table, priority and
//! cookie) to name the policy and rule.
//!
//! [`Lab`] compiles once; [`Lab::trace`] answers any number of probes, so
//! a whole 9 × 9 × 6 matrix costs one compile.

use crate::alloc::{pod_ip, pod_node};
use crate::app::offline_ports;
use crate::compile::policy::{Decision, Explain, ESTABLISHED, NOT_JUDGED};
use crate::compile::{compile_explained, node_ips, table as t, NodeView, PortMap};
use crate::config::Config;
use crate::object::Object;
use crate::sim::Sim;
use crate::store::Store;
use ctl::ofp::parse_packet;
use flowtable::action::DpAction;
use flowtable::field::{ct_state, Field};
use flowtable::rule::Rule;
use flowtable::{translate, FlowKey};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

/// The cluster configuration `trace` uses without `--config`: the model of
/// the conformance suites (pod block 10.244.0.0/16, a /24 per namespace).
pub const DEFAULT_CONFIG: &str = "[cluster]\npod_cidr = \"10.244.0.0/16\"\n";

/// Nodes made up when the manifests have no Node objects (and the config
/// names none): pods without `spec.nodeName` are spread over them, so
/// traces cross the overlay as well as stay on one node.
pub const DEFAULT_NODES: [(&str, &str); 2] = [("node1", "192.168.77.1"), ("node2", "192.168.77.2")];

/// The source port of traced packets.
const SPORT: u16 = 40000;

/// One node, compiled and loaded into the classifier.
struct NodeLab {
    sim: Sim,
    explain: Explain,
    ports: PortMap,
    ip: Ipv4Addr,
}

/// A compiled cluster.
pub struct Lab {
    /// The objects, allocated.
    pub store: Store,
    /// The configuration.
    pub config: Config,
    nodes: BTreeMap<String, NodeLab>,
}

/// One probe, as `--probes` lines give it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Probe {
    /// `ns/pod`.
    pub from: String,
    /// `ns/pod` or an IPv4 address.
    pub to: String,
    /// `tcp`, `udp`, `sctp` or `icmp` (any case).
    pub proto: String,
    /// The destination port (ignored for ICMP).
    #[serde(default)]
    pub port: u16,
}

/// One direction's judgement.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Half {
    /// `allow`, `deny`, or `n/a` (not judged: the destination is not a pod).
    pub verdict: String,
    /// The node that judged.
    pub node: String,
    /// The policy that decided, `Kind/ns/name`, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The rule that decided, e.g. `ingress[0] "name"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Its action (`Allow`, `Deny`) or the pipeline's reason.
    pub reason: String,
    /// Every policy rule that matched on the way (a `Pass` before the
    /// decision shows here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

/// A probe's answer.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Answer {
    /// `allow` or `deny`.
    pub verdict: String,
    /// Egress at the source pod's node.
    pub egress: Half,
    /// Ingress at the destination pod's node.
    pub ingress: Half,
    /// Where the packet ended (`delivered to port 11 on node2`, a drop reason).
    pub outcome: String,
}

impl Answer {
    /// Whether the connection is allowed.
    pub fn allowed(&self) -> bool {
        self.verdict == "allow"
    }
}

/// What one walk through a node saw.
struct Walk {
    rules: Vec<Arc<Rule>>,
    end: End,
}

enum End {
    Port(u32),
    Tunnel(Ipv4Addr, Box<FlowKey>),
    Drop(String),
}

impl Lab {
    /// Reads the manifests of `dir` (and the config, or [`DEFAULT_CONFIG`]),
    /// restores the allocations a running controller saved there
    /// (`DIR/.oxvs-state.json`, if any: the node a pod was scheduled to
    /// when it arrived, which a fresh allocation over today's objects need
    /// not repeat), allocates the rest, and compiles every node.
    pub fn load(config: Option<&Path>, dir: &Path) -> Result<Lab, String> {
        let objects = crate::manifest::load_dir(dir).map_err(|e| e.to_string())?;
        let config = match config {
            Some(p) => Config::load(p)?,
            None => Config::parse(DEFAULT_CONFIG)?,
        };
        let saved = crate::app::read_state(&crate::app::default_state(dir))?;
        Lab::build(config, objects, &saved)
    }

    /// Allocates `objects` and compiles every node.
    pub fn from_objects(config: Config, objects: Vec<Object>) -> Result<Lab, String> {
        Lab::build(config, objects, &[])
    }

    fn build(
        config: Config,
        mut objects: Vec<Object>,
        saved: &[crate::alloc::Patch],
    ) -> Result<Lab, String> {
        if !objects.iter().any(|o| matches!(o, Object::Node(_))) {
            let made_up: Vec<(String, Ipv4Addr)> = if config.node_ips.is_empty() {
                DEFAULT_NODES
                    .iter()
                    .map(|(n, ip)| (n.to_string(), ip.parse().unwrap_or(Ipv4Addr::LOCALHOST)))
                    .collect()
            } else {
                config
                    .node_ips
                    .iter()
                    .map(|(n, ip)| (n.clone(), *ip))
                    .collect()
            };
            for (name, ip) in made_up {
                objects.push(Object::Node(node_object(&name, ip)));
            }
        }
        let mut store = Store::default();
        store.replace(objects);
        crate::alloc::restore(&mut store, saved);
        crate::alloc::reconcile(&mut store, &config);
        let mut lab = Lab {
            store,
            config,
            nodes: BTreeMap::new(),
        };
        lab.compile()?;
        Ok(lab)
    }

    fn compile(&mut self) -> Result<(), String> {
        let ips = node_ips(&self.store, &self.config);
        let mut nodes = BTreeMap::new();
        for (name, ip) in ips {
            let ports = offline_ports(&self.store, &name);
            let (rules, explain) = compile_explained(NodeView {
                store: &self.store,
                config: &self.config,
                node: &name,
                ports: &ports,
            })
            .map_err(|e| e.to_string())?;
            let sim = Sim::new(&rules, &self.config, &ports, ip)?;
            nodes.insert(
                name,
                NodeLab {
                    sim,
                    explain,
                    ports,
                    ip,
                },
            );
        }
        self.nodes = nodes;
        Ok(())
    }

    /// Answers one probe.
    pub fn trace(&self, p: &Probe) -> Result<Answer, String> {
        self.trace_with(p, false)
    }

    /// Answers one probe; with `established` the packet is taken to belong
    /// to a connection conntrack already knows (`ct_state=+est+trk` after
    /// every `ct`), to show what a policy change does to it.
    pub fn trace_with(&self, p: &Probe, established: bool) -> Result<Answer, String> {
        let (sns, sname) = p
            .from
            .split_once('/')
            .ok_or_else(|| format!("--from {:?}: expected NAMESPACE/POD", p.from))?;
        let src = self
            .store
            .pod(sns, sname)
            .ok_or_else(|| format!("pod {} not found", p.from))?;
        let sip = pod_ip(src).ok_or_else(|| format!("pod {} has no address", p.from))?;
        let snode = pod_node(src).ok_or_else(|| format!("pod {} is not scheduled", p.from))?;
        let lab = self
            .nodes
            .get(snode)
            .ok_or_else(|| format!("node {snode} is not compiled"))?;
        let sport = lab
            .ports
            .get(&(sns.to_string(), sname.to_string()))
            .ok_or_else(|| format!("pod {} has no port", p.from))?;
        let dip: Ipv4Addr = match p.to.parse() {
            Ok(ip) => ip,
            Err(_) => {
                let (dns, dname) = p
                    .to
                    .split_once('/')
                    .ok_or_else(|| format!("--to {:?}: expected NAMESPACE/POD or an IP", p.to))?;
                let d = self
                    .store
                    .pod(dns, dname)
                    .ok_or_else(|| format!("pod {} not found", p.to))?;
                pod_ip(d).ok_or_else(|| format!("pod {} has no address", p.to))?
            }
        };
        let l4 = match p.proto.to_ascii_lowercase().as_str() {
            "icmp" => "icmp,icmp_type=8,icmp_code=0".to_string(),
            proto @ ("tcp" | "udp" | "sctp") => {
                format!("{proto},tp_src={SPORT},tp_dst={}", p.port)
            }
            other => return Err(format!("--proto {other}: expected tcp, udp, sctp or icmp")),
        };
        let text = format!(
            "in_port={},{l4},dl_src={},dl_dst={},nw_src={sip},nw_dst={dip},nw_ttl=64",
            sport.ofport,
            sport
                .mac
                .clone()
                .unwrap_or_else(|| crate::net::mac_for(sip)),
            crate::net::mac_for(sip) // any MAC: the switch routes on addresses
        );
        let key = parse_packet(&text, &()).map_err(|e| e.to_string())?;
        let first = walk(&lab.sim, key, established);
        let egress = judge(&first.rules, &lab.explain, Side::Egress, snode);
        let (ingress, outcome) = match &first.end {
            End::Tunnel(remote, inner) => {
                let Some((dnode, dlab)) = self.nodes.iter().find(|(_, n)| n.ip == *remote) else {
                    return Err(format!("tunnel to {remote}, which is no node"));
                };
                let mut k = **inner;
                // A fresh arrival: the inner packet as it left, from the
                // tunnel port, with the overlay's fields.
                let mut fresh = key;
                for f in [
                    Field::NwSrc,
                    Field::NwDst,
                    Field::TpSrc,
                    Field::TpDst,
                    Field::DlSrc,
                    Field::DlDst,
                ] {
                    fresh.set(f, k.get(f));
                }
                fresh.set(Field::InPort, u128::from(self.config.tunnel_port));
                fresh.set(Field::TunId, u128::from(self.config.vni));
                fresh.set(Field::TunSrc, u128::from(u32::from(lab.ip)));
                fresh.set(Field::TunDst, u128::from(u32::from(*remote)));
                k = fresh;
                let second = walk(&dlab.sim, k, established);
                let ing = judge(&second.rules, &dlab.explain, Side::Ingress, dnode);
                let out = match &second.end {
                    End::Port(p) => format!("delivered to port {p} on {dnode}"),
                    End::Tunnel(r, _) => format!("sent on to {r} from {dnode}"),
                    End::Drop(r) => format!("dropped on {dnode}: {r}"),
                };
                (ing, out)
            }
            End::Port(port) => {
                let out = format!("delivered to port {port} on {snode}");
                let to_pod = lab.ports.values().any(|pp| pp.ofport == *port);
                if to_pod {
                    (judge(&first.rules, &lab.explain, Side::Ingress, snode), out)
                } else {
                    (not_judged(snode), out)
                }
            }
            End::Drop(r) => {
                let out = format!("dropped on {snode}: {r}");
                if egress.verdict == "deny" {
                    (not_judged(snode), out)
                } else {
                    (judge(&first.rules, &lab.explain, Side::Ingress, snode), out)
                }
            }
        };
        let delivered = outcome.starts_with("delivered") || outcome.starts_with("sent");
        let ok = egress.verdict == "allow" && ingress.verdict != "deny" && delivered;
        Ok(Answer {
            verdict: if ok { "allow" } else { "deny" }.into(),
            egress,
            ingress,
            outcome,
        })
    }
}

fn node_object(name: &str, ip: Ipv4Addr) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                address: ip.to_string(),
                type_: "InternalIP".into(),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn walk(sim: &Sim, mut key: FlowKey, established: bool) -> Walk {
    let mut rules = Vec::new();
    for _ in 0..8 {
        let x = translate(sim.bridge(), &key, None);
        rules.extend(x.rules.iter().cloned());
        if let Some(mut next) = ctl::trace::next_pass(&key, &x.actions) {
            if established {
                let s = next.get(Field::CtState) as u8;
                let s = (s & !ct_state::NEW) | ct_state::EST;
                next.set(Field::CtState, u128::from(s));
            }
            key = next;
            continue;
        }
        let end = x
            .actions
            .iter()
            .find_map(|a| match a {
                DpAction::Output(p) => Some(End::Port(*p)),
                DpAction::TunnelPush { dst, .. } => Some(End::Tunnel(
                    std::net::Ipv6Addr::from(*dst)
                        .to_ipv4_mapped()
                        .unwrap_or(Ipv4Addr::UNSPECIFIED),
                    Box::new(key),
                )),
                DpAction::Reject(_) => Some(End::Drop("rejected".into())),
                DpAction::Drop(r) => Some(End::Drop(format!("{r:?}"))),
                _ => None,
            })
            .unwrap_or(End::Drop("no output".into()));
        // The inner key as it left: apply the rewrites before the push.
        let end = match end {
            End::Tunnel(r, _) => {
                let mut k = key;
                for a in &x.actions {
                    match a {
                        DpAction::SetIpv4Src(v) => {
                            k.set(Field::NwSrc, u32::from_be_bytes(*v).into())
                        }
                        DpAction::SetIpv4Dst(v) => {
                            k.set(Field::NwDst, u32::from_be_bytes(*v).into())
                        }
                        DpAction::SetTpSrc(p) => k.set(Field::TpSrc, (*p).into()),
                        DpAction::SetTpDst(p) => k.set(Field::TpDst, (*p).into()),
                        DpAction::TunnelPush { .. } => break,
                        _ => {}
                    }
                }
                End::Tunnel(r, Box::new(k))
            }
            e => e,
        };
        return Walk { rules, end };
    }
    Walk {
        rules,
        end: End::Drop("recirculation limit".into()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Egress,
    Ingress,
}

fn not_judged(node: &str) -> Half {
    Half {
        verdict: "n/a".into(),
        node: node.into(),
        reason: "destination is not a pod".into(),
        ..Default::default()
    }
}

fn lookup(explain: &Explain, r: &Rule) -> Option<Decision> {
    if let Some(id) = r.m.conj_id {
        return explain.conj.get(&id).cloned();
    }
    explain.flows.get(&(r.table, r.priority, r.cookie)).cloned()
}

/// The judgement of one direction from the rules a walk ran.
fn judge(rules: &[Arc<Rule>], explain: &Explain, side: Side, node: &str) -> Half {
    let (lo, hi, next) = match side {
        Side::Egress => (t::EGRESS_POLICY, t::EGRESS_BASELINE, t::INGRESS_POLICY),
        Side::Ingress => (t::INGRESS_POLICY, t::INGRESS_BASELINE, t::COMMIT),
    };
    let mine: Vec<&Arc<Rule>> = rules
        .iter()
        .filter(|r| (lo..=hi).contains(&r.table))
        .collect();
    let passed = rules.iter().any(|r| r.table >= next);
    let mut h = Half {
        verdict: if passed { "allow" } else { "deny" }.into(),
        node: node.into(),
        ..Default::default()
    };
    let mut last: Option<Decision> = None;
    for r in &mine {
        if let Some(d) = lookup(explain, r) {
            h.path
                .push(format!("{} {} {}: {}", d.tier, d.policy, d.rule, d.action));
            last = Some(d);
        }
    }
    match last {
        Some(d) if d.action != "Pass" => {
            h.policy = Some(d.policy);
            h.rule = Some(d.rule);
            h.reason = d.action.into();
        }
        _ => {
            let first = mine.first();
            h.reason = match first.map(|r| r.priority) {
                Some(ESTABLISHED) => "established connection (only new connections are judged)",
                Some(NOT_JUDGED) => match side {
                    Side::Egress => "not from a local pod (judged at its own node)",
                    Side::Ingress => "from this node (the node may reach its pods)",
                },
                None => "the policy tables were not reached",
                _ if h.path.is_empty() => "no policy selects the pod (default allow)",
                _ => "passed; no NetworkPolicy or baseline rule applies (default allow)",
            }
            .into();
        }
    }
    h
}

/// `oxvs-agent trace` with its own options (so the main command table
/// stays as it is): one probe from the flags, or `--probes FILE`.
pub fn cli(args: &[String]) -> Result<String, String> {
    let mut config = None;
    let mut manifests = None;
    let mut probe = Probe {
        from: String::new(),
        to: String::new(),
        proto: "tcp".into(),
        port: 80,
    };
    let mut json = false;
    let mut probes = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--config" | "-c" => config = Some(val()?),
            "--manifests" | "-m" => manifests = Some(val()?),
            "--from" => probe.from = val()?,
            "--to" => probe.to = val()?,
            "--proto" => probe.proto = val()?,
            "--port" => {
                probe.port = val()?
                    .parse()
                    .map_err(|_| "--port takes a number 0-65535")?
            }
            "--json" => json = true,
            "--probes" => probes = Some(val()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("trace: unknown option {other:?}\n{USAGE}")),
        }
    }
    let manifests = manifests.ok_or("--manifests DIR is needed")?;
    let lab = Lab::load(config.as_deref().map(Path::new), Path::new(&manifests))?;
    if let Some(file) = probes {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
        } else {
            std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?
        };
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let answer = serde_json::from_str::<Probe>(line)
                .map_err(|e| format!("{file}:{}: {e}", i + 1))
                .and_then(|p| lab.trace(&p));
            let v = match answer {
                Ok(a) => serde_json::to_value(&a).map_err(|e| e.to_string())?,
                Err(e) => serde_json::json!({"verdict": "error", "error": e}),
            };
            out += &v.to_string();
            out.push('\n');
        }
        return Ok(out);
    }
    if probe.from.is_empty() || probe.to.is_empty() {
        return Err(format!(
            "trace needs --from and --to (or --probes FILE)\n{USAGE}"
        ));
    }
    let a = lab.trace(&probe)?;
    if json {
        return Ok(serde_json::to_string(&a).map_err(|e| e.to_string())? + "\n");
    }
    Ok(render(&probe, &a))
}

fn render(p: &Probe, a: &Answer) -> String {
    let mut s = format!(
        "{} -> {} {}/{}: {}\n",
        p.from,
        p.to,
        p.proto.to_ascii_lowercase(),
        p.port,
        a.verdict.to_uppercase()
    );
    for (name, h) in [("egress", &a.egress), ("ingress", &a.ingress)] {
        s += &format!("  {name:7} at {}: {}", h.node, h.verdict);
        match (&h.policy, &h.rule) {
            (Some(pol), Some(rule)) => s += &format!(" by {pol} {rule} ({})\n", h.reason),
            _ => s += &format!(" ({})\n", h.reason),
        }
        if h.path.len() > 1 {
            for step in &h.path {
                s += &format!("           matched {step}\n");
            }
        }
    }
    s += &format!("  outcome: {}\n", a.outcome);
    s
}

/// Usage of `oxvs-agent trace`.
pub const USAGE: &str = "\
usage: oxvs-agent trace --manifests DIR [--config FILE]
         --from NS/POD --to NS/POD|IP [--proto tcp|udp|sctp|icmp] [--port N] [--json]
       oxvs-agent trace --manifests DIR [--config FILE] --probes FILE|-
         (one JSON object per line: {\"from\":..,\"to\":..,\"proto\":..,\"port\":..};
          one JSON answer per line)

  Without --config: pod block 10.244.0.0/16, a /24 per namespace; without Node
  objects, nodes node1 and node2 and pods spread over them. The allocations a
  running controller saved in DIR/.oxvs-state.json are kept.
";
