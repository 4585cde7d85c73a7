//! The incremental compiler: the node's rules kept as fragments, each the
//! output of one part of the compile for one owner, and only the
//! fragments a change affects compiled again — kube-proxy's "partial
//! syncs for what changed" on top of the pure compiler, whose output it
//! must always equal (a property test in `compile/tests.rs` compares it
//! with a full [`super::compile`] after random sequences of changes).
//!
//! Fragments, in the order the full compile runs its parts (which decides
//! who owns a flow two parts produce: the first, as [`RuleSet::flow`]
//! does; a group: the last):
//!
//! | fragment | what | compiled again when |
//! |---|---|---|
//! | pipeline | the fixed tables | anything of the node's context changes (the node's name, its ports, the config, a Node object): everything is compiled again |
//! | pods | namespaces' gateways and SNAT, every pod's route | a Namespace, or a Pod other than in its labels |
//! | one per Service | frontends, groups, endpoint DNAT | the Service, one of its EndpointSlices, a pod of its namespace; every Service when a pod address appears, goes or moves (DNAT rules name the pod that owns the address) |
//! | policy | tables 50-62 | a policy, a Namespace, a Pod |
//!
//! A pod's label change therefore recompiles the policy fragment and the
//! Services of its namespace; an EndpointSlice change recompiles one
//! Service. The merged set is kept in place: every flow key records which
//! fragments produce it, so replacing a fragment touches only its own
//! keys, and the flows whose winner changed are the difference to send
//! ([`Update::plan`]) — no comparison of the whole set at all.

use super::{policy, services, CompileError, Cx, Index, NodeView, PortMap};
use crate::object::{Kind, ObjectKey};
use crate::rules::{Flow, FlowKey, Group, RuleSet};
use crate::store::Event;
use crate::sync::Plan;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// One fragment of the compiled set, ordered as the full compile runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Frag {
    Pipeline,
    Pods,
    Service(ObjectKey),
    Policy,
}

/// What the fragments were compiled for; a change of any of it starts over.
#[derive(Clone, Debug, PartialEq)]
struct Context {
    node: String,
    ports: PortMap,
    config: String,
}

/// What one pod contributes outside its labels, to tell a label-only
/// change from the rest.
#[derive(Clone, Debug, PartialEq)]
struct PodFacts {
    /// The pod without its labels (and resource version).
    rest: serde_json::Value,
    /// Its address.
    ip: Option<std::net::Ipv4Addr>,
}

fn pod_facts(o: &crate::object::Object) -> Option<PodFacts> {
    let crate::object::Object::Pod(p) = o else {
        return None;
    };
    let mut p = p.clone();
    p.metadata.labels = None;
    p.metadata.resource_version = None;
    p.metadata.managed_fields = None;
    Some(PodFacts {
        ip: crate::alloc::pod_ip(&p),
        rest: serde_json::to_value(&p).unwrap_or_default(),
    })
}

fn flow_key(f: &Flow) -> FlowKey {
    (f.table, std::cmp::Reverse(f.priority), f.m.clone())
}

/// The incremental compiler of one node.
#[derive(Default)]
pub struct Incremental {
    context: Option<Context>,
    frags: BTreeMap<Frag, RuleSet>,
    /// Flow key → the fragments producing it, in fragment order.
    holders: HashMap<FlowKey, Vec<Frag>>,
    /// Group id → the fragments producing it, in fragment order.
    group_holders: HashMap<u32, Vec<Frag>>,
    merged: RuleSet,
    pods: HashMap<ObjectKey, PodFacts>,
    /// EndpointSlice → the Service it belonged to at the last compile.
    slice_owner: HashMap<ObjectKey, ObjectKey>,
    /// The policy selections of the last policy compile.
    selections: Option<crate::policy::model::SelectCache>,
    /// Pods whose labels changed since the last policy compile.
    relabelled: Vec<(String, String)>,
    /// Compiles since start: full, partial.
    pub counts: (u64, u64),
}

/// The result of one [`Incremental::update`].
#[derive(Debug, Default)]
pub struct Update {
    /// Flows whose winner changed: (before, after).
    pub flows: Vec<(Option<Flow>, Option<Flow>)>,
    /// Groups that changed: (before, after).
    pub groups: Vec<(Option<Group>, Option<Group>)>,
    /// Whether everything was compiled again.
    pub full: bool,
}

impl Update {
    /// The difference as a sync plan, the same as
    /// [`crate::sync::plan_between`] of the sets before and after.
    pub fn plan(&self) -> Plan {
        let mut p = Plan::default();
        for (before, after) in &self.groups {
            match (before, after) {
                (_, Some(g)) => {
                    p.bundle.push_str(&g.text);
                    p.bundle.push('\n');
                    p.groups += 1;
                }
                (Some(g), None) => p.stale_groups.push(g.id),
                (None, None) => {}
            }
        }
        let mut adds = String::new();
        for (before, after) in &self.flows {
            p.flow_change(&mut adds, before.as_ref(), after.as_ref());
        }
        p.bundle.push_str(&adds);
        p
    }
}

/// What a batch of events makes dirty.
#[derive(Default)]
struct Dirty {
    all: bool,
    pods: bool,
    policy: bool,
    all_services: bool,
    namespaces: bool,
    services: BTreeSet<ObjectKey>,
    service_namespaces: BTreeSet<String>,
}

impl Incremental {
    /// The rules as of the last update.
    pub fn rules(&self) -> &RuleSet {
        &self.merged
    }

    /// Brings the rules up to date with `v` after `events` (the store
    /// events applied since the last update, in order). The first update,
    /// and any after the node's context changed, compiles everything.
    pub fn update(&mut self, v: NodeView<'_>, events: &[Event]) -> Result<Update, CompileError> {
        let r = self.update_inner(v, events);
        if r.is_err() {
            // The events are consumed; start over at the next update.
            self.context = None;
        }
        r
    }

    fn update_inner(&mut self, v: NodeView<'_>, events: &[Event]) -> Result<Update, CompileError> {
        let context = Context {
            node: v.node.to_string(),
            ports: v.ports.clone(),
            config: format!("{:?}", v.config),
        };
        let mut dirty = self.dirty(events);
        if self.context.as_ref() != Some(&context) {
            dirty.all = true;
        }
        if dirty.all {
            dirty.pods = true;
            dirty.policy = true;
            dirty.all_services = true;
        }
        let svcs = self.services_to_compile(v, &dirty);
        // A few Services need the slices and pods of their namespaces only.
        let only: Option<BTreeSet<String>> =
            (!dirty.all_services).then(|| svcs.iter().map(|k| k.namespace.clone()).collect());
        let ix = Index::within(v.store, v.config, only.as_ref());
        let node_ip = *ix
            .node_ips
            .get(v.node)
            .ok_or_else(|| CompileError::NoNodeIp(v.node.to_string()))?;
        let mut cx = Cx {
            v,
            ix,
            node_ip,
            node_key: ObjectKey::new(Kind::Node, "", v.node),
            out: RuleSet::default(),
            explain: policy::Explain::default(),
            select_seed: None,
            keep_selections: true,
            select_out: None,
        };
        let mut up = Update {
            full: dirty.all,
            ..Update::default()
        };
        let mut touched: BTreeMap<FlowKey, Option<Flow>> = BTreeMap::new();
        let mut touched_groups: BTreeMap<u32, Option<Group>> = BTreeMap::new();
        let mut todo: Vec<(Frag, RuleSet)> = Vec::new();
        if dirty.all {
            self.context = Some(context);
            self.pods = v
                .store
                .pods()
                .map(|p| crate::object::Object::Pod(p.clone()))
                .filter_map(|o| Some((o.key(), pod_facts(&o)?)))
                .collect();
            self.slice_owner.clear();
            for s in v.store.endpoint_slices() {
                let o = crate::object::Object::EndpointSlice(s.clone());
                if let Some(svc) = crate::object::label(o.meta(), SERVICE_NAME) {
                    let key = o.key();
                    let svc = ObjectKey::new(Kind::Service, &key.namespace, svc);
                    self.slice_owner.insert(key, svc);
                }
            }
            // Every old fragment goes; the new ones replace them.
            for f in self.frags.keys().cloned().collect::<Vec<_>>() {
                todo.push((f, RuleSet::default()));
            }
            super::pipeline::compile(&mut cx);
            todo.push((Frag::Pipeline, std::mem::take(&mut cx.out)));
        }
        if dirty.pods {
            super::pods::compile(&mut cx);
            todo.push((Frag::Pods, std::mem::take(&mut cx.out)));
        }
        for key in svcs {
            if let Some(crate::object::Object::Service(svc)) = v.store.get(&key) {
                services::service(&mut cx, svc);
            }
            todo.push((Frag::Service(key), std::mem::take(&mut cx.out)));
        }
        if dirty.policy {
            // Only labels changed since the last policy compile: start
            // from its selections, corrected for those pods.
            let seed = self.selections.take();
            if let (Some(c), false) = (seed, dirty.all || dirty.pods || dirty.namespaces) {
                cx.select_seed = Some((c, std::mem::take(&mut self.relabelled)));
            }
            self.relabelled.clear();
            policy::compile(&mut cx);
            self.selections = cx.select_out.take();
            todo.push((Frag::Policy, std::mem::take(&mut cx.out)));
        }
        if !dirty.all {
            self.counts.1 += 1;
        } else {
            self.counts.0 += 1;
        }
        for (f, rules) in todo {
            self.replace(f, rules, &mut touched, &mut touched_groups);
        }
        self.settle(touched, touched_groups, &mut up);
        Ok(up)
    }

    /// The Services to compile again: the named ones, those of the named
    /// namespaces, or all (with those that had a fragment and are gone).
    fn services_to_compile(&self, v: NodeView<'_>, dirty: &Dirty) -> BTreeSet<ObjectKey> {
        let mut svcs: BTreeSet<ObjectKey> = dirty.services.clone();
        let wanted = |ns: &str| dirty.all_services || dirty.service_namespaces.contains(ns);
        svcs.extend(self.frags.keys().filter_map(|f| match f {
            Frag::Service(k) if wanted(&k.namespace) => Some(k.clone()),
            _ => None,
        }));
        for svc in v.store.services() {
            let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
            if wanted(ns) {
                svcs.insert(ObjectKey::new(
                    Kind::Service,
                    ns,
                    svc.metadata.name.as_deref().unwrap_or(""),
                ));
            }
        }
        svcs
    }

    /// What `events` make dirty (and the pod facts brought up to date).
    fn dirty(&mut self, events: &[Event]) -> Dirty {
        let mut d = Dirty::default();
        for ev in events {
            let key = match ev {
                Event::Apply(o) => o.key(),
                Event::Delete(k) => k.clone(),
            };
            match key.kind {
                Kind::Node => d.all = true,
                // The compiler reads the Pods a Deployment expands into,
                // which come as events of their own.
                Kind::Deployment => {}
                Kind::Namespace => {
                    d.namespaces = true;
                    d.pods = true;
                    d.policy = true;
                    d.service_namespaces.insert(key.name.clone());
                }
                Kind::NetworkPolicy
                | Kind::AdminNetworkPolicy
                | Kind::BaselineAdminNetworkPolicy => d.policy = true,
                Kind::Service => {
                    d.services.insert(key);
                }
                Kind::EndpointSlice => {
                    if let Some(old) = self.slice_owner.remove(&key) {
                        d.services.insert(old);
                    }
                    if let Event::Apply(o) = ev {
                        if let Some(svc) = crate::object::label(o.meta(), SERVICE_NAME) {
                            let svc = ObjectKey::new(Kind::Service, &key.namespace, svc);
                            self.slice_owner.insert(key.clone(), svc.clone());
                            d.services.insert(svc);
                        }
                    }
                }
                Kind::Pod => {
                    d.policy = true;
                    self.relabelled
                        .push((key.namespace.clone(), key.name.clone()));
                    d.service_namespaces.insert(key.namespace.clone());
                    let new = match ev {
                        Event::Apply(o) => pod_facts(o),
                        Event::Delete(_) => None,
                    };
                    let old = match &new {
                        Some(n) => self.pods.insert(key.clone(), n.clone()),
                        None => self.pods.remove(&key),
                    };
                    if old != new {
                        d.pods = true;
                    }
                    if old.as_ref().map(|f| f.ip) != new.as_ref().map(|f| f.ip) {
                        d.all_services = true;
                    }
                }
            }
        }
        d
    }

    /// Replaces fragment `f` by `new`, noting the keys whose winner may change.
    fn replace(
        &mut self,
        f: Frag,
        new: RuleSet,
        touched: &mut BTreeMap<FlowKey, Option<Flow>>,
        touched_groups: &mut BTreeMap<u32, Option<Group>>,
    ) {
        let old = self.frags.remove(&f).unwrap_or_default();
        if old == new {
            if new.flow_count() > 0 || new.group_count() > 0 {
                self.frags.insert(f, new);
            }
            return;
        }
        // Only the keys where the two differ: a fragment of 70 000 flows
        // of which one changed touches one key.
        let merged = &self.merged;
        let holders = &mut self.holders;
        old.diff_flows(&new, |before, after| {
            let (key, was, is) = match (before, after) {
                (Some(b), a) => (flow_key(b), true, a.is_some()),
                (None, Some(a)) => (flow_key(a), false, true),
                (None, None) => return,
            };
            if was != is {
                let h = holders.entry(key.clone()).or_default();
                match (is, h.binary_search(&f)) {
                    (true, Err(i)) => h.insert(i, f.clone()),
                    (false, Ok(i)) => {
                        h.remove(i);
                    }
                    _ => {}
                }
            }
            touched
                .entry(key.clone())
                .or_insert_with(|| merged.flow_map().get(&key).cloned());
        });
        for id in old.group_map().keys() {
            touched_groups
                .entry(*id)
                .or_insert_with(|| merged.group_map().get(id).cloned());
            if let Some(h) = self.group_holders.get_mut(id) {
                h.retain(|x| *x != f);
            }
        }
        for id in new.group_map().keys() {
            touched_groups
                .entry(*id)
                .or_insert_with(|| merged.group_map().get(id).cloned());
            let h = self.group_holders.entry(*id).or_default();
            if let Err(i) = h.binary_search(&f) {
                h.insert(i, f.clone());
            }
        }
        if new.flow_count() > 0 || new.group_count() > 0 {
            self.frags.insert(f, new);
        }
    }

    /// Sets each touched key to its winner's flow; records what changed.
    fn settle(
        &mut self,
        touched: BTreeMap<FlowKey, Option<Flow>>,
        touched_groups: BTreeMap<u32, Option<Group>>,
        up: &mut Update,
    ) {
        for (k, before) in touched {
            let winner = self
                .holders
                .get(&k)
                .and_then(|h| h.first())
                .and_then(|f| self.frags.get(f))
                .and_then(|r| r.flow_map().get(&k))
                .cloned();
            match &winner {
                Some(w) => {
                    self.merged.flow_map_mut().insert(k, w.clone());
                }
                None => {
                    self.holders.remove(&k);
                    self.merged.flow_map_mut().remove(&k);
                }
            }
            let same = match (&before, &winner) {
                (Some(a), Some(b)) => a.cookie == b.cookie && a.actions == b.actions,
                (None, None) => true,
                _ => false,
            };
            if !same {
                up.flows.push((before, winner));
            }
        }
        for (id, before) in touched_groups {
            let winner = self
                .group_holders
                .get(&id)
                .and_then(|h| h.last())
                .and_then(|f| self.frags.get(f))
                .and_then(|r| r.group_map().get(&id))
                .cloned();
            match &winner {
                Some(w) => {
                    self.merged.group_map_mut().insert(id, w.clone());
                }
                None => {
                    self.group_holders.remove(&id);
                    self.merged.group_map_mut().remove(&id);
                }
            }
            // The switch keeps no cookie on groups: only the text counts.
            if before.as_ref().map(|g| &g.text) != winner.as_ref().map(|g| &g.text) {
                up.groups.push((before, winner));
            }
        }
    }
}
