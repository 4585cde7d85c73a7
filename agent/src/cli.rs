//! The commands of `oxvs-agent`: `compile`, `get`, `flows` and `run` (the
//! node role against a running oxvsd).

use agent::app::{default_state, offline_ports, ports_from_list, write_state, Cluster};
use agent::compile::{compile, compile_explained, node_ips, NodeView, PortMap};
use agent::cookie::{object_bits, OBJECT_MASK};
use agent::object::ObjectKey;
use agent::show;
use agent::sync::{plan, Installed};
use ctl::client::call;
use ctl::proto::Command;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "\
usage: oxvs-agent COMMAND --config FILE --manifests DIR [OPTIONS]

  compile --node N                 print node N's rules (groups, then flows)
  get pods|services|namespaces [-o wide]
                                   the objects with their allocations, as kubectl shows them
  flows KIND/NS/NAME [--node N] [--socket S]   (KIND also NetworkPolicy, AdminNetworkPolicy/NAME)
                                   the rules of one object: compiled (every node, or N),
                                   or as installed on the switch at S (dump-flows by cookie)
  run --node N [--socket S] [--interval MS] [--min-sync MS] [--once]
                                   node role: keep oxvsd's rules in step with the manifests
                                   (re-read on change), sending only differences, one bundle each

  trace --from NS/POD --to NS/POD|IP [--proto P] [--port N] [--json] | --probes FILE
                                   a connection's first packet through the compiled rules
                                   (egress at the source node, ingress at the destination):
                                   verdict and the policy rule that decided (--config optional)

  --state FILE   allocations saved by `run` (default DIR/.oxvs-state.json)

  run --kubeconfig FILE|--in-cluster --config FILE [--node N] [--socket S] [--controller]
                                   API mode instead of manifests (oxvs-agent run --help)
";

struct Opts {
    config: Option<PathBuf>,
    manifests: Option<PathBuf>,
    state: Option<PathBuf>,
    node: Option<String>,
    socket: Option<PathBuf>,
    wide: bool,
    interval: u64,
    min_sync: u64,
    once: bool,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        config: None,
        manifests: None,
        state: None,
        node: None,
        socket: None,
        wide: false,
        interval: 1000,
        min_sync: 1000,
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
            "--node" | "-n" => o.node = Some(val(a)?),
            "--socket" | "-s" => o.socket = Some(val(a)?.into()),
            "--interval" => {
                o.interval = val(a)?
                    .parse()
                    .map_err(|_| "--interval takes milliseconds")?
            }
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
    let o = parse(&args[1..])?;
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
            for p in &c.pending {
                out += &format!("# pending: {p}\n");
            }
            Ok(out)
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

fn switch_ports(socket: &Path) -> Option<PortMap> {
    let json = call(socket, Command::ListPorts { json: true }).ok()?;
    ports_from_list(&json).ok()
}

/// One sync: compile, compare with the switch, send the difference.
fn sync_once(c: &Cluster, node: &str, socket: &Path, ports: &PortMap) -> Result<String, String> {
    let rules = compile(NodeView {
        store: &c.store,
        config: &c.config,
        node,
        ports,
    })
    .map_err(|e| e.to_string())?;
    let flows = call(socket, Command::DumpFlows { filter: None }).map_err(|e| e.to_string())?;
    let groups = call(socket, Command::DumpGroups).map_err(|e| e.to_string())?;
    let show = call(socket, Command::Show).map_err(|e| e.to_string())?;
    let have = Installed::parse(&flows, &groups, &show)?;
    let p = plan(&rules, &have)?;
    if p.is_empty() {
        return Ok(format!(
            "in step: {} flows, {} groups, nothing sent",
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
        .map_err(|e| e.to_string())?;
    }
    for id in &p.stale_groups {
        call(
            socket,
            Command::DelGroups {
                filter: Some(format!("group_id={id}")),
                bundle: true,
            },
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(format!(
        "synced: +{} -{} flows, {} groups changed, {} removed (now {} flows, {} groups)",
        p.added,
        p.removed,
        p.groups,
        p.stale_groups.len(),
        rules.flow_count(),
        rules.group_count()
    ))
}

fn run_node(o: &Opts) -> Result<String, String> {
    let node = o.node()?.to_string();
    let socket = o
        .socket
        .clone()
        .unwrap_or_else(|| ctl::client::DEFAULT_SOCKET.into());
    let dir = o.manifests.clone().ok_or("--manifests DIR is needed")?;
    let state = o.state_path();
    let mut cluster = o.load()?;
    let mut seen = fingerprint(&dir);
    let mut ports: Option<PortMap> = None;
    let mut dirty = true;
    let mut last_sync: Option<Instant> = None;
    loop {
        let now_ports = switch_ports(&socket);
        if now_ports != ports {
            ports = now_ports;
            dirty = true;
        }
        let fp = fingerprint(&dir);
        if fp != seen {
            seen = fp;
            match cluster.reload(&dir, &state) {
                Ok(()) => {
                    if !cluster.events.is_empty() {
                        log(&format!(
                            "manifests changed: {} events",
                            cluster.events.len()
                        ));
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
            if let Err(e) = write_state(&state, &cluster.store) {
                log(&format!("allocations not saved: {e}"));
            }
            for p in &cluster.pending {
                log(&format!("pending: {p}"));
            }
            let empty = PortMap::new();
            match sync_once(&cluster, &node, &socket, ports.as_ref().unwrap_or(&empty)) {
                Ok(msg) => {
                    log(&msg);
                    dirty = false;
                }
                Err(e) => log(&format!("sync failed, will retry: {e}")),
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
        std::thread::sleep(Duration::from_millis(o.interval));
    }
}
