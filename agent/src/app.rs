//! Manifest mode put together: configuration and manifests read, the saved
//! allocations restored, the controller run — what every command starts
//! from. The state file (`DIR/.oxvs-state.json` unless told otherwise)
//! stands in for the API server that would keep the allocations on the
//! objects: only `run` writes it.

use crate::alloc::{self, Patch};
use crate::compile::{PodPort, PortMap};
use crate::config::Config;
use crate::manifest;
use crate::store::{Event, Store};
use std::path::{Path, PathBuf};

/// A loaded cluster.
pub struct Cluster {
    /// The objects, with allocations.
    pub store: Store,
    /// The configuration.
    pub config: Config,
    /// What the controller could not allocate.
    pub pending: Vec<String>,
    /// The events the last load applied to the store.
    pub events: Vec<Event>,
}

/// The state file for a manifest directory.
pub fn default_state(manifests: &Path) -> PathBuf {
    manifests.join(".oxvs-state.json")
}

/// Reads saved allocations (none if the file does not exist).
pub fn read_state(path: &Path) -> Result<Vec<Patch>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the allocations the store carries (atomically: a temporary file
/// renamed over the old one).
pub fn write_state(path: &Path, store: &Store) -> Result<(), String> {
    let text =
        serde_json::to_string_pretty(&alloc::saved_state(store)).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Cluster {
    /// Loads config and manifests into a new store and allocates.
    pub fn load(config: &Path, manifests: &Path, state: &Path) -> Result<Cluster, String> {
        let config = Config::load(config)?;
        let mut c = Cluster {
            store: Store::default(),
            config,
            pending: Vec::new(),
            events: Vec::new(),
        };
        c.reload(manifests, state)?;
        Ok(c)
    }

    /// Re-reads the manifests into the store (as a relist: the events that
    /// take it to the new listing), restores saved allocations, allocates.
    pub fn reload(&mut self, manifests: &Path, state: &Path) -> Result<(), String> {
        let mut objects = manifest::load_dir(manifests).map_err(|e| e.to_string())?;
        let saved = read_state(state)?;
        // The saved allocations go onto the fresh objects before they enter
        // the store, so an unchanged object compares equal and makes no event.
        let mut scratch = Store::default();
        scratch.replace(std::mem::take(&mut objects));
        alloc::restore(&mut scratch, &saved);
        self.pending = alloc::reconcile(&mut scratch, &self.config).pending;
        self.events = self.store.replace(scratch.iter().cloned().collect());
        Ok(())
    }
}

/// Ports for an offline compile, when no switch says: this node's pods in
/// (namespace, name) order get ports 10, 11, ...
pub fn offline_ports(store: &Store, node: &str) -> PortMap {
    let mut out = PortMap::new();
    let mut next = 10;
    for p in store.pods() {
        if alloc::pod_node(p) != Some(node) || alloc::pod_ip(p).is_none() {
            continue;
        }
        let ns = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        out.insert(
            (ns, p.metadata.name.clone().unwrap_or_default()),
            PodPort {
                ofport: next,
                mac: None,
            },
        );
        next += 1;
    }
    out
}

/// Ports from oxvsd's `list-ports --format json`: those with the external
/// ids `k8s-pod-namespace` and `k8s-pod-name` (set by oxvs-cni).
pub fn ports_from_list(json: &str) -> Result<PortMap, String> {
    let list: Vec<ctl::proto::PortInfo> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = PortMap::new();
    for p in list {
        let (Some(ns), Some(name)) = (
            p.external_ids.get("k8s-pod-namespace"),
            p.external_ids.get("k8s-pod-name"),
        ) else {
            continue;
        };
        out.insert(
            (ns.clone(), name.clone()),
            PodPort {
                ofport: p.no,
                mac: p.external_ids.get("attached-mac").cloned(),
            },
        );
    }
    Ok(out)
}

/// The ports oxvs-cni attached on the switch at `socket` (`list-ports`),
/// or `None` when the switch does not answer.
pub fn switch_ports(socket: &std::path::Path) -> Option<PortMap> {
    let json = ctl::client::call(socket, ctl::proto::Command::ListPorts { json: true }).ok()?;
    ports_from_list(&json).ok()
}
