//! The commands of `oxvs-agent`: `compile`, `get`, `flows`, `run` (the
//! controller and node roles against a running oxvsd), and kubectl's
//! `apply -f`, `delete -f` and `delete namespace` over the manifest
//! directory.

use agent::app::{default_state, offline_ports, switch_ports, write_state, Cluster};
use agent::compile::incremental::Incremental;
use agent::compile::{compile, compile_explained, node_ips, NodeView, PortMap};
use agent::cookie::{object_bits, OBJECT_MASK};
use agent::kubectl;
use agent::object::ObjectKey;
use agent::podnet::{self, Answers};
use agent::show;
use agent::store::Event;
use agent::syncer::{flush_stale_udp, Syncer};
use agent::wake::{self, Wake};
use ctl::client::call;
use ctl::proto::Command;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "\
usage: oxvs-agent COMMAND --config FILE --manifests DIR [OPTIONS]

  compile --node N                 print node N's rules (groups, then flows)
  get pods|services|namespaces [-o wide] [-n NS]
                                   the objects with their allocations, as kubectl shows them
  flows KIND/NS/NAME [--node N] [--socket S]   (KIND also NetworkPolicy, AdminNetworkPolicy/NAME)
                                   the rules of one object: compiled (every node, or N),
                                   or as installed on the switch at S (dump-flows by cookie)
  run [--controller] [--node N [--socket S] [--cni-socket P]] [--watch MS] [--interval MS]
      [--min-sync MS] [--once]
                                   --controller: save the allocations (the state file) as the
                                   cluster's one controller; --node: the node role, keeping oxvsd's
                                   rules in step with the manifests (re-read on change: inotify, and
                                   a look every --watch MS, default 1000; switch ports every
                                   --interval MS, default 1000, and every 5 ms from oxvs-cni's
                                   question for a pod until its port is there), sending only
                                   differences, one bundle each, never
                                   two closer than --min-sync MS (default 20), and answering
                                   oxvs-cni for pod addresses on P (default /run/oxvs/agent.sock)
  apply -f FILE | delete -f FILE | delete namespace NAME | label pod NAME K=V|K- [-n NS]
                                   kubectl's changes, made to the manifest directory
                                   (--manifests DIR only)

  trace --from NS/POD --to NS/POD|IP [--proto P] [--port N] [--json] | --probes FILE
                                   a connection's first packet through the compiled rules
                                   (egress at the source node, ingress at the destination):
                                   verdict and the policy rule that decided (--config optional)

  --state FILE   allocations saved by `run --controller` (default DIR/.oxvs-state.json)

  run --kubeconfig FILE|--in-cluster --config FILE [--node N] [--socket S] [--controller]
                                   API mode instead of manifests (oxvs-agent run --help)
";

struct Opts {
    config: Option<PathBuf>,
    manifests: Option<PathBuf>,
    state: Option<PathBuf>,
    node: Option<String>,
    socket: Option<PathBuf>,
    cni_socket: Option<PathBuf>,
    file: Option<PathBuf>,
    namespace: Option<String>,
    controller: bool,
    wide: bool,
    interval: u64,
    watch: u64,
    min_sync: u64,
    once: bool,
    rest: Vec<String>,
}

/// Parses the options of `cmd`. `-n` is the namespace for `get` (kubectl's
/// spelling) and the node elsewhere.
fn parse(cmd: &str, args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        config: None,
        manifests: None,
        state: None,
        node: None,
        socket: None,
        cni_socket: None,
        file: None,
        namespace: None,
        controller: false,
        wide: false,
        interval: 1000,
        watch: 1000,
        min_sync: 20,
        once: false,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--config" | "-c" => o.config = Some(val(a)?.into()),
            "--manifests" | "-m" => o.manifests = Some(val(a)?.into()),
            "--state" => o.state = Some(val(a)?.into()),
            "-n" if cmd == "get" || cmd == "label" => o.namespace = Some(val(a)?),
            "--node" | "-n" => o.node = Some(val(a)?),
            "--socket" | "-s" => o.socket = Some(val(a)?.into()),
            "--cni-socket" => o.cni_socket = Some(val(a)?.into()),
            "-f" | "--filename" => o.file = Some(val(a)?.into()),
            "--namespace" => o.namespace = Some(val(a)?),
            "--controller" => o.controller = true,
            "--interval" => {
                o.interval = val(a)?
                    .parse()
                    .map_err(|_| "--interval takes milliseconds")?
            }
            "--watch" => o.watch = val(a)?.parse().map_err(|_| "--watch takes milliseconds")?,
            "--min-sync" => {
                o.min_sync = val(a)?
                    .parse()
                    .map_err(|_| "--min-sync takes milliseconds")?
            }
            "--once" => o.once = true,
            "-o" => match val(a)?.as_str() {
                "wide" => o.wide = true,
                other => return Err(format!("-o {other}: only -o wide is supported")),
            },
            "-owide" | "--wide" => o.wide = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => o.rest.push(a.clone()),
        }
    }
    Ok(o)
}

impl Opts {
    fn load(&self) -> Result<Cluster, String> {
        let config = self.config.as_ref().ok_or("--config FILE is needed")?;
        let manifests = self.manifests.as_ref().ok_or("--manifests DIR is needed")?;
        Cluster::load(config, manifests, &self.state_path())
    }

    fn state_path(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| default_state(self.manifests.as_deref().unwrap_or(Path::new("."))))
    }

    fn node(&self) -> Result<&str, String> {
        self.node
            .as_deref()
            .ok_or_else(|| "--node NAME is needed".to_string())
    }
}

/// Runs one command line; returns what to print.
pub fn run(args: &[String]) -> Result<String, String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.into());
    };
    // API mode (src/api): `run --kubeconfig FILE|--in-cluster ...`.
    if cmd == "run" && agent::api::cli::wanted(&args[1..]) {
        return agent::api::cli::run(&args[1..]);
    }
    let o = parse(cmd, &args[1..])?;
    match cmd.as_str() {
        "compile" => {
            let c = o.load()?;
            let node = o.node()?;
            let ports = offline_ports(&c.store, node);
            let rules = compile(NodeView {
                store: &c.store,
                config: &c.config,
                node,
                ports: &ports,
            })
            .map_err(|e| e.to_string())?;
            Ok(rules.text())
        }
        "get" => {
            let c = o.load()?;
            let what = o.rest.first().map(String::as_str).unwrap_or("");
            let mut out = match what {
                "pods" | "pod" | "po" => show::pods(&c.store, o.wide),
                "services" | "service" | "svc" => show::services(&c.store, o.wide),
                "namespaces" | "namespace" | "ns" => show::namespaces(&c.store, o.wide),
                _ => return Err("get pods|services|namespaces [-o wide]".into()),
            };
            if let Some(ns) = &o.namespace {
                // kubectl -n: the rows of that namespace (first column).
                out = out
                    .lines()
                    .enumerate()
                    .filter(|(i, l)| *i == 0 || l.split_whitespace().next() == Some(ns))
                    .map(|(_, l)| format!("{l}\n"))
                    .collect();
            }
            for p in &c.pending {
                out += &format!("# pending: {p}\n");
            }
            Ok(out)
        }
        "apply" => {
            let dir = o.manifests.as_ref().ok_or("--manifests DIR is needed")?;
            kubectl::apply(dir, o.file.as_ref().ok_or("apply -f FILE")?)
        }
        "delete" => {
            let dir = o.manifests.as_ref().ok_or("--manifests DIR is needed")?;
            match (o.rest.as_slice(), &o.file) {
                ([], Some(f)) => kubectl::delete_file(dir, f),
                ([kind, name], None)
                    if agent::object::Kind::parse(kind) == Some(agent::object::Kind::Namespace) =>
                {
                    kubectl::delete_namespace(dir, name)
                }
                _ => Err("delete -f FILE | delete namespace NAME".into()),
            }
        }
        "label" => {
            let dir = o.manifests.as_ref().ok_or("--manifests DIR is needed")?;
            let ns = o.namespace.as_deref().unwrap_or("default");
            match o.rest.as_slice() {
                [kind, name, changes @ ..]
                    if agent::object::Kind::parse(kind) == Some(agent::object::Kind::Pod) =>
                {
                    kubectl::label(dir, ns, name, changes)
                }
                _ => Err("label pod NAME KEY=VALUE|KEY- ... [-n NS]".into()),
            }
        }
        "flows" => flows(&o),
        // trace has options of its own (agent::trace::cli parses them).
        "trace" => agent::trace::cli(&args[1..]),
        "run" => run_node(&o),
        "help" | "-h" | "--help" => Ok(USAGE.into()),
        _ => Err(format!("unknown command {cmd:?}\n{USAGE}")),
    }
}

fn flows(o: &Opts) -> Result<String, String> {
    let key = ObjectKey::parse(o.rest.first().ok_or("flows KIND/NS/NAME")?)?;
    let bits = object_bits(&key);
    if let Some(socket) = &o.socket {
        let filter = format!("cookie={bits:#x}/{OBJECT_MASK:#x}");
        return call(
            socket,
            Command::DumpFlows {
                filter: Some(filter),
            },
        )
        .map_err(|e| e.to_string());
    }
    let c = o.load()?;
    let nodes: Vec<String> = match &o.node {
        Some(n) => vec![n.clone()],
        None => node_ips(&c.store, &c.config).into_keys().collect(),
    };
    let mut out = format!("# {key}: cookie={bits:#x}/{OBJECT_MASK:#x}\n");
    for node in nodes {
        let ports = offline_ports(&c.store, &node);
        let (rules, explain) = compile_explained(NodeView {
            store: &c.store,
            config: &c.config,
            node: &node,
            ports: &ports,
        })
        .map_err(|e| e.to_string())?;
        // A policy's clause flows may carry another policy's cookie (they
        // are shared): its conjunction ids find them.
        let mine = agent::compile::policy::policy_flows(&rules, &explain, &key);
        let mine = if mine.flow_count() > 0 {
            mine
        } else {
            rules.select(bits, OBJECT_MASK)
        };
        out += &format!(
            "# node {node}: {} flows, {} groups\n",
            mine.flow_count(),
            mine.group_count()
        );
        out += &mine.text();
    }
    Ok(out)
}

/// The newest modification time and the names of the manifest files: a
/// change in either means "re-read".
fn fingerprint(dir: &Path) -> (Option<SystemTime>, Vec<PathBuf>) {
    let files = agent::manifest::files(dir).unwrap_or_default();
    let newest = files
        .iter()
        .filter_map(|f| f.metadata().and_then(|m| m.modified()).ok())
        .max();
    (newest, files)
}

fn log(msg: &str) {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("{}.{:03} oxvs-agent: {msg}", t.as_secs(), t.subsec_millis());
}

/// One sync: compile what changed since the last sync (`pending`, the
/// store events), send the difference (or, when the switch's state is not
/// known, compare with its dump).
fn sync_once(
    c: &Cluster,
    node: &str,
    socket: &Path,
    ports: &PortMap,
    sync: &mut (Incremental, Syncer),
    pending: &mut Vec<Event>,
) -> Result<String, String> {
    let view = NodeView {
        store: &c.store,
        config: &c.config,
        node,
        ports,
    };
    let up = sync.0.update(view, pending).map_err(|e| e.to_string())?;
    pending.clear();
    sync.1.sync_delta(socket, sync.0.rules(), up.plan())
}

fn run_node(o: &Opts) -> Result<String, String> {
    let node = o.node.clone();
    if node.is_none() && !o.controller {
        return Err("run needs --node NAME (node role), --controller, or both".into());
    }
    let socket = o
        .socket
        .clone()
        .unwrap_or_else(|| ctl::client::DEFAULT_SOCKET.into());
    let dir = o.manifests.clone().ok_or("--manifests DIR is needed")?;
    let state = o.state_path();
    let mut cluster = o.load()?;
    let answers: Arc<RwLock<Answers>> = Arc::new(RwLock::new(podnet::answers(&cluster.store)));
    // Wake-ups: the manifest directory's inotify watch, and oxvs-cni's
    // questions (a pod's port follows the answer).
    let (wake_tx, wake_rx) = std::sync::mpsc::channel();
    if let Err(e) = wake::watch_dir(&dir, wake_tx.clone()) {
        log(&format!(
            "no inotify watch on {} ({e}): looking every --watch {} ms only",
            dir.display(),
            o.watch
        ));
    }
    if node.is_some() {
        let path = o
            .cni_socket
            .clone()
            .unwrap_or_else(|| ctl::podnet::DEFAULT_AGENT_SOCKET.into());
        podnet::serve(&path, answers.clone(), Some(wake_tx.clone()))
            .map_err(|e| format!("pod-network socket {}: {e}", path.display()))?;
        log(&format!("answering oxvs-cni on {}", path.display()));
    }
    drop(wake_tx);
    let mut seen = fingerprint(&dir);
    let mut ports: Option<PortMap> = None;
    let mut dirty = true;
    let mut last_sync: Option<Instant> = None;
    let mut last_ports: Option<Instant> = None;
    let mut last_look = Instant::now();
    let mut look = false;
    // Pods whose address oxvs-cni was just given: their ports are asked for
    // every ATTACH_POLL until they appear (or ATTACH_WAIT has passed).
    let mut attaching: BTreeMap<(String, String), Instant> = BTreeMap::new();
    let mut sync = (Incremental::default(), Syncer::default());
    let mut pending: Vec<Event> = Vec::new();
    let mut udp_backends = None;
    loop {
        // Ports are a control-socket request: asked every --interval, and
        // every ATTACH_POLL while a pod's port is awaited; manifests are a
        // few stat calls: looked at on inotify's word and every --watch.
        attaching.retain(|_, since| since.elapsed() < ATTACH_WAIT);
        let port_due = last_ports.is_none_or(|t| {
            let every = if attaching.is_empty() {
                Duration::from_millis(o.interval)
            } else {
                ATTACH_POLL
            };
            t.elapsed() >= every
        });
        if node.is_some() && port_due {
            last_ports = Some(Instant::now());
            let now_ports = switch_ports(&socket);
            if now_ports != ports {
                if let Some(p) = &now_ports {
                    attaching.retain(|pod, _| !p.contains_key(pod));
                }
                ports = now_ports;
                dirty = true;
            }
        }
        let fp = if look || last_look.elapsed() >= Duration::from_millis(o.watch) {
            look = false;
            last_look = Instant::now();
            fingerprint(&dir)
        } else {
            seen.clone()
        };
        if fp != seen {
            seen = fp;
            match cluster.reload(&dir, &state) {
                Ok(()) => {
                    pending.extend(cluster.events.iter().cloned());
                    if !cluster.events.is_empty() {
                        log(&format!(
                            "manifests changed: {} events",
                            cluster.events.len()
                        ));
                        *answers.write().unwrap_or_else(|e| e.into_inner()) =
                            podnet::answers(&cluster.store);
                        dirty = true;
                    }
                }
                Err(e) => log(&format!(
                    "manifests not reloaded (keeping the last good ones): {e}"
                )),
            }
        }
        // kube-proxy's minSyncPeriod: never two syncs closer than min_sync.
        let due = last_sync.is_none_or(|t| t.elapsed() >= Duration::from_millis(o.min_sync));
        if dirty && due {
            // Only the controller writes the allocations: node roles compute
            // the same ones from the same objects and the saved state, but
            // several writers of one file would race.
            if o.controller {
                if let Err(e) = write_state(&state, &cluster.store) {
                    log(&format!("allocations not saved: {e}"));
                }
                for p in &cluster.pending {
                    log(&format!("pending: {p}"));
                }
            }
            match &node {
                Some(node) => {
                    let empty = PortMap::new();
                    let ports = ports.as_ref().unwrap_or(&empty);
                    match sync_once(&cluster, node, &socket, ports, &mut sync, &mut pending) {
                        Ok(msg) => {
                            log(&msg);
                            dirty = false;
                            for line in flush_stale_udp(&cluster.store, &socket, &mut udp_backends)
                            {
                                log(&line);
                            }
                        }
                        Err(e) => {
                            // Not a busy loop against a switch that is down:
                            // the retry waits the port interval.
                            log(&format!("sync failed, will retry: {e}"));
                            if !o.once {
                                std::thread::sleep(Duration::from_millis(o.interval));
                            }
                        }
                    }
                }
                None => {
                    pending.clear();
                    dirty = false;
                }
            }
            last_sync = Some(Instant::now());
        }
        if o.once && last_sync.is_some() {
            return if dirty {
                Err("sync failed".into())
            } else {
                Ok(String::new())
            };
        }
        // A burst of changes within --min-sync is coalesced into one
        // sync (kube-proxy's minSyncPeriod), taken as soon as it is due.
        let mut nap = Duration::from_millis(o.watch.max(1))
            .saturating_sub(last_look.elapsed())
            .max(Duration::from_millis(1));
        if let (true, Some(t)) = (dirty, last_sync) {
            let due_in = Duration::from_millis(o.min_sync).saturating_sub(t.elapsed());
            nap = nap.min(due_in.max(Duration::from_millis(1)));
        }
        if node.is_some() {
            let every = if attaching.is_empty() {
                Duration::from_millis(o.interval)
            } else {
                ATTACH_POLL
            };
            let port_in = last_ports.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()));
            nap = nap.min(port_in.max(Duration::from_millis(1)));
        }
        match wake_rx.recv_timeout(nap) {
            Ok(w) => {
                // Take every wake-up already queued: one look serves them all.
                for w in std::iter::once(w).chain(wake_rx.try_iter()) {
                    match w {
                        Wake::Manifests => look = true,
                        Wake::Attaching(ns, name) => {
                            if ports
                                .as_ref()
                                .is_none_or(|p| !p.contains_key(&(ns.clone(), name.clone())))
                            {
                                attaching.insert((ns, name), Instant::now());
                            }
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Nothing can wake the loop any more (no watch, no socket):
            // its timers still run it.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(nap),
        }
    }
}

/// How often a pod's port is asked for after oxvs-cni got its address.
const ATTACH_POLL: Duration = Duration::from_millis(5);
/// How long a pod's port is awaited that way before the ordinary
/// `--interval` takes over.
const ATTACH_WAIT: Duration = Duration::from_secs(5);
