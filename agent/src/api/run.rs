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
use crate::app::ports_from_list;
use crate::compile::{compile, NodeView, PortMap};
use crate::config::Config;
use crate::object::Kind;
use crate::store::Store;
use crate::sync::{plan, Installed};
use ctl::client::call;
use ctl::proto::Command;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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

/// The ports oxvs-cni attached on the switch at `socket`.
pub fn switch_ports(socket: &Path) -> Option<PortMap> {
    let json = call(socket, Command::ListPorts { json: true }).ok()?;
    ports_from_list(&json).ok()
}

/// One sync of the switch at `socket` to `node`'s rules compiled from
/// `store`: compare, then send only the difference as one bundle.
pub fn sync_node(
    store: &Store,
    config: &Config,
    node: &str,
    socket: &Path,
    ports: &PortMap,
) -> Result<String, String> {
    let rules = compile(NodeView {
        store,
        config,
        node,
        ports,
    })
    .map_err(|e| e.to_string())?;
    let s = |e: ctl::client::ClientError| e.to_string();
    let flows = call(socket, Command::DumpFlows { filter: None }).map_err(s)?;
    let groups = call(socket, Command::DumpGroups).map_err(s)?;
    let show = call(socket, Command::Show).map_err(s)?;
    let have = Installed::parse(&flows, &groups, &show)?;
    let p = plan(&rules, &have)?;
    if p.is_empty() {
        return Ok(format!(
            "in step: {} flows, nothing sent",
            rules.flow_count()
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
        .map_err(s)?;
    }
    for id in &p.stale_groups {
        call(
            socket,
            Command::DelGroups {
                filter: Some(format!("group_id={id}")),
                bundle: true,
            },
        )
        .map_err(s)?;
    }
    Ok(format!(
        "synced: +{} -{} flows, {} groups changed, {} removed",
        p.added,
        p.removed,
        p.groups,
        p.stale_groups.len()
    ))
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
    let _reflectors = AbortOnDrop(watch::spawn_all(&client, &tx));
    drop(tx);
    let mut store = Store::default();
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
    loop {
        tokio::select! {
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
                if !watch::feed(&mut store, u).is_empty() {
                    node_dirty = true;
                    controller_dirty = true;
                }
            }
            _ = tick.tick() => {
                if let Some(node) = &o.node {
                    let socket = o.socket.clone();
                    let now = tokio::task::spawn_blocking(move || switch_ports(&socket))
                        .await
                        .ok()
                        .flatten();
                    if now != ports {
                        ports = now;
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
        if listed.len() < KINDS.len() {
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
        let due = last_sync.is_none_or(|t| t.elapsed() >= o.min_sync);
        if let (Some(node), true, true) = (&o.node, node_dirty, due) {
            last_sync = Some(Instant::now());
            let (store, config, node, socket) = (
                store.clone(),
                o.config.clone(),
                node.clone(),
                o.socket.clone(),
            );
            let ports = ports.clone().unwrap_or_default();
            let r = tokio::task::spawn_blocking(move || {
                sync_node(&store, &config, &node, &socket, &ports)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            match r {
                Ok(msg) => {
                    log(&msg);
                    node_dirty = false;
                }
                Err(e) => log(&format!("sync failed, will retry: {e}")),
            }
        }
    }
}
