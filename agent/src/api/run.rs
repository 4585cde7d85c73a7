//! API mode put together: the reflectors feed one store; the node role
//! keeps the switch in step with it; the controller role, while it holds
//! the Lease, allocates and writes the allocations back.
//!
//! Nothing is compiled or allocated until every kind has been listed once
//! (kube-proxy's "caches synced"): a node that synced from a store holding
//! Services but no EndpointSlices yet would remove every endpoint's rules
//! for a moment, and a controller that allocated before seeing all Pods
//! could hand out an address already in use.
//!
//! Syncs are rate-limited (`min_sync`, kube-proxy's `minSyncPeriod`) and
//! sent as one bundle each ([`crate::sync`]); controller passes run after
//! store changes and on every election tick, so a failed write is retried.

use super::lease::{Elector, Role, Timing};
use super::watch::{self, Change, Update};
use super::write::Controller;
use crate::app::switch_ports;
use crate::compile::incremental::Incremental;
use crate::compile::{NodeView, PortMap};
use crate::config::Config;
use crate::object::Kind;
use crate::podnet::{self, Answers};
use crate::store::Event;
use crate::store::Store;
use crate::syncer::Syncer;
use crate::wake::Wake;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// What `oxvs-agent run` in API mode was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cluster configuration.
    pub config: Config,
    /// Node role: this node's name (`None`: no node role).
    pub node: Option<String>,
    /// The switch's control socket (node role).
    pub socket: PathBuf,
    /// Where the node role answers oxvs-cni for pod addresses
    /// ([`crate::podnet`]; `None`: not served).
    pub cni_socket: Option<PathBuf>,
    /// Controller role (leader-elected).
    pub controller: bool,
    /// Our identity for the Lease.
    pub identity: String,
    /// The Lease's namespace and name.
    pub lease: (String, String),
    /// Election timing; its retry period is also the loop's tick.
    pub timing: Timing,
    /// Never two syncs closer than this.
    pub min_sync: Duration,
}

/// The policy kinds the node role also lists before compiling (a node
/// that compiled before seeing its NetworkPolicies would let everything
/// through for a moment). A policy CRD the server does not serve counts
/// as listed, empty.
pub const POLICY_KINDS: [Kind; 3] = [
    Kind::NetworkPolicy,
    Kind::AdminNetworkPolicy,
    Kind::BaselineAdminNetworkPolicy,
];

/// The kinds that must be listed before anything is compiled.
pub const KINDS: [Kind; 5] = [
    Kind::Node,
    Kind::Namespace,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
];

fn log(msg: &str) {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("{}.{:03} oxvs-agent: {msg}", t.as_secs(), t.subsec_millis());
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs API mode until the process ends (or the task is aborted).
pub async fn serve(client: kube::Client, o: Options) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel::<Update>(1024);
    // The reflectors end with this function (an aborted task included).
    let _reflectors = AbortOnDrop(watch::spawn_all(&client, &tx, o.node.is_some()));
    drop(tx);
    let mut store = Store::default();
    // oxvs-cni's questions: answered from a table refreshed after every
    // change of Pods or Namespaces; each question that got an address
    // wakes this loop (the pod's port follows), which then asks the switch
    // for its ports every ATTACH_POLL until that port is there.
    let answers: Arc<RwLock<Answers>> = Arc::new(RwLock::new(Answers::new()));
    let (attach_tx, mut attach_rx) = mpsc::unbounded_channel::<(String, String)>();
    if let Some(path) = &o.cni_socket {
        let (wake_tx, wake_rx) = std::sync::mpsc::channel::<Wake>();
        podnet::serve(path, answers.clone(), Some(wake_tx))
            .map_err(|e| format!("pod-network socket {}: {e}", path.display()))?;
        std::thread::Builder::new()
            .name("podnet-wake".into())
            .spawn(move || {
                for w in wake_rx {
                    if let Wake::Attaching(ns, name) = w {
                        if attach_tx.send((ns, name)).is_err() {
                            break;
                        }
                    }
                }
            })
            .map_err(|e| format!("podnet-wake thread: {e}"))?;
        log(&format!("answering oxvs-cni on {}", path.display()));
    } else {
        drop(attach_tx);
    }
    let mut attaching: BTreeMap<(String, String), Instant> = BTreeMap::new();
    // The usable UDP endpoints at the last sync (their conntrack entries
    // are flushed when they go).
    let mut udp_backends = None;
    let mut listed: BTreeSet<Kind> = BTreeSet::new();
    let mut elector = o
        .controller
        .then(|| Elector::new(&o.identity, &o.lease.0, &o.lease.1, o.timing));
    let mut controller = Controller::default();
    let mut role: Option<Role> = None;
    let mut ports: Option<PortMap> = None;
    let mut node_dirty = true;
    let mut controller_dirty = true;
    let mut last_sync: Option<Instant> = None;
    let mut tick = tokio::time::interval(o.timing.retry_period.min(Duration::from_secs(1)));
    let mut last_elect: Option<Instant> = None;
    let needed = KINDS.len()
        + if o.node.is_some() {
            POLICY_KINDS.len()
        } else {
            0
        };
    let mut syncer = Syncer::default();
    let mut inc = Incremental::default();
    // Store events since the last compile.
    let mut pending: Vec<Event> = Vec::new();
    // After a failed sync, the next waits a second (not min_sync).
    let mut retry_at: Option<Instant> = None;
    loop {
        // A dirty node waits for min_sync, not for the next tick.
        let sync_in = match (node_dirty && listed.len() >= needed, last_sync) {
            (true, Some(t)) => o.min_sync.saturating_sub(t.elapsed()),
            (true, None) => Duration::ZERO,
            _ => Duration::from_secs(3600),
        }
        .max(retry_at.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        }));
        tokio::select! {
            _ = tokio::time::sleep(sync_in), if o.node.is_some() && node_dirty => {}
            u = rx.recv() => {
                let Some(u) = u else { return Err("every watch ended".into()) };
                match &u.change {
                    Change::Failed(e) => log(&format!("{:?}: {e} (retrying)", u.kind)),
                    Change::Expired => log(&format!("{:?}: 410 Gone, listing again", u.kind)),
                    Change::Listed(items) => {
                        listed.insert(u.kind);
                        log(&format!("{:?}: listed {} objects", u.kind, items.len()));
                    }
                    _ => {}
                }
                let kind = u.kind;
                let events = watch::feed(&mut store, u);
                if !events.is_empty() && matches!(kind, Kind::Pod | Kind::Namespace) && o.cni_socket.is_some() {
                    *answers.write().unwrap_or_else(|e| e.into_inner()) = podnet::answers(&store);
                }
                if !events.is_empty() {
                    if o.node.is_some() {
                        pending.extend(events);
                    }
                    node_dirty = true;
                    controller_dirty = true;
                }
            }
            Some(pod) = attach_rx.recv() => {
                if ports.as_ref().is_none_or(|p| !p.contains_key(&pod)) {
                    attaching.insert(pod, Instant::now());
                }
            }
            _ = tokio::time::sleep(ATTACH_POLL), if !attaching.is_empty() => {
                attaching.retain(|_, since| since.elapsed() < ATTACH_WAIT);
                if refresh_ports(&o.socket, &mut ports).await {
                    if let Some(p) = &ports {
                        attaching.retain(|pod, _| !p.contains_key(pod));
                    }
                    node_dirty = true;
                }
            }
            _ = tick.tick() => {
                if let Some(node) = &o.node {
                    if refresh_ports(&o.socket, &mut ports).await {
                        node_dirty = true;
                        log(&format!("node {node}: switch ports changed"));
                    }
                }
                if let Some(e) = elector.as_mut() {
                    let due = last_elect.is_none_or(|t| t.elapsed() >= o.timing.retry_period);
                    if due {
                        last_elect = Some(Instant::now());
                        let r = e
                            .try_acquire_or_renew(&client, Instant::now(), k8s_openapi::jiff::Timestamp::now())
                            .await;
                        match r {
                            Ok(r) => {
                                if role.as_ref() != Some(&r) {
                                    log(&format!("lease {}/{}: {r:?}", o.lease.0, o.lease.1));
                                }
                                role = Some(r);
                                controller_dirty = true;
                            }
                            Err(err) => log(&format!("lease {}/{}: {err}", o.lease.0, o.lease.1)),
                        }
                    }
                }
            }
        }
        if listed.len() < needed {
            continue;
        }
        let leader = elector
            .as_ref()
            .is_some_and(|e| e.is_leader(Instant::now()));
        if leader && controller_dirty {
            controller_dirty = false;
            let pass = controller.pass(&client, &store, &o.config).await;
            for w in &pass.writes {
                log(&format!(
                    "wrote {}{}: {}",
                    w.object,
                    if w.status { " status" } else { "" },
                    w.body
                ));
            }
            for (w, e) in &pass.failed {
                log(&format!("write of {} failed, will retry: {e}", w.object));
                controller_dirty = true;
            }
        }
        let due = last_sync.is_none_or(|t| t.elapsed() >= o.min_sync)
            && retry_at.is_none_or(|t| Instant::now() >= t);
        if let (Some(node), true, true) = (&o.node, node_dirty, due) {
            last_sync = Some(Instant::now());
            // Compiled and sent here, on the loop's thread: a warm sync is
            // the changed fragments and one bundle (milliseconds); only a
            // cold one (start, after an error) reads the switch's dump.
            let ports = ports.clone().unwrap_or_default();
            let view = NodeView {
                store: &store,
                config: &o.config,
                node,
                ports: &ports,
            };
            let r = inc
                .update(view, &pending)
                .map_err(|e| e.to_string())
                .and_then(|up| syncer.sync_delta(&o.socket, inc.rules(), up.plan()));
            pending.clear();
            match r {
                Ok(msg) => {
                    log(&msg);
                    node_dirty = false;
                    retry_at = None;
                    for line in crate::syncer::flush_stale_udp(&store, &o.socket, &mut udp_backends)
                    {
                        log(&line);
                    }
                }
                Err(e) => {
                    log(&format!("sync failed, will retry: {e}"));
                    retry_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}

/// Asks the switch at `socket` for its ports (on tokio's blocking pool);
/// true when they differ from `ports`, which then holds the new ones.
async fn refresh_ports(socket: &std::path::Path, ports: &mut Option<PortMap>) -> bool {
    let socket = socket.to_path_buf();
    let now = tokio::task::spawn_blocking(move || switch_ports(&socket))
        .await
        .ok()
        .flatten();
    if now == *ports {
        return false;
    }
    *ports = now;
    true
}

/// How often a pod's port is asked for after oxvs-cni got its address.
const ATTACH_POLL: Duration = Duration::from_millis(5);
/// How long a pod's port is awaited that way before the election tick's
/// port check takes over.
const ATTACH_WAIT: Duration = Duration::from_secs(5);
