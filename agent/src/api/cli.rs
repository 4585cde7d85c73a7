//! `oxvs-agent run --kubeconfig FILE|--in-cluster ...`: API mode's
//! arguments, and the runtime it runs in (a single-threaded tokio runtime:
//! the work is a handful of sockets, and syncs with the switch run on
//! tokio's blocking pool).

use super::lease::Timing;
use super::run::{serve, Options};
use super::{connect, Source};
use crate::config::Config;
use std::path::PathBuf;
use std::time::Duration;

/// The usage text of API mode.
pub const USAGE: &str = "\
usage: oxvs-agent run (--kubeconfig FILE | --in-cluster) --config FILE
                      [--node N [--socket S] [--cni-socket P]] [--controller] [OPTIONS]

  API mode: list and watch Nodes, Namespaces, Pods, Services and EndpointSlices.
  --node N          node role: keep the switch at S in step with node N's rules,
                    and answer oxvs-cni for pod addresses on --cni-socket P
                    (default /run/oxvs/agent.sock)
  --controller      controller role, leader-elected through a Lease: allocate and
                    write the allocations back (annotations, Service status)
  --identity ID     the Lease holder identity (default $POD_NAME, else HOST_PID)
  --lease-namespace NS  (default $POD_NAMESPACE, else kube-system)
  --lease-name NAME     (default oxvs-controller)
  --min-sync MS     never two syncs of the switch closer than this (default 20)
";

/// Whether `args` (after `run`) ask for API mode.
pub fn wanted(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--kubeconfig" || a == "--in-cluster")
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    /// Where the API server is.
    pub source: Source,
    /// The cluster configuration file.
    pub config: PathBuf,
    /// Node role.
    pub node: Option<String>,
    /// The switch's socket.
    pub socket: PathBuf,
    /// Where the node role answers oxvs-cni.
    pub cni_socket: PathBuf,
    /// Controller role.
    pub controller: bool,
    /// Lease holder identity.
    pub identity: String,
    /// Lease namespace.
    pub lease_namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// Minimum interval between syncs.
    pub min_sync: Duration,
}

fn default_identity() -> String {
    if let Ok(p) = std::env::var("POD_NAME") {
        if !p.is_empty() {
            return p;
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "oxvs-agent".into());
    format!("{host}_{}", std::process::id())
}

/// Parses the arguments after `run`.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut source = None;
    let mut config = None;
    let mut node = None;
    let mut socket = PathBuf::from(ctl::client::DEFAULT_SOCKET);
    let mut cni_socket = PathBuf::from(ctl::podnet::DEFAULT_AGENT_SOCKET);
    let mut controller = false;
    let mut identity = None;
    let mut lease_namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kube-system".into());
    let mut lease_name = "oxvs-controller".to_string();
    let mut min_sync = Duration::from_millis(20);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--kubeconfig" => source = Some(Source::Kubeconfig(val()?.into())),
            "--in-cluster" => source = Some(Source::InCluster),
            "--config" | "-c" => config = Some(PathBuf::from(val()?)),
            "--node" | "-n" => node = Some(val()?),
            "--socket" | "-s" => socket = val()?.into(),
            "--cni-socket" => cni_socket = val()?.into(),
            "--controller" => controller = true,
            "--identity" => identity = Some(val()?),
            "--lease-namespace" => lease_namespace = val()?,
            "--lease-name" => lease_name = val()?,
            "--min-sync" => {
                let ms: u64 = val()?
                    .parse()
                    .map_err(|_| "--min-sync takes milliseconds")?;
                min_sync = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("{other}: unknown in API mode\n{USAGE}")),
        }
    }
    let source = source.ok_or("--kubeconfig FILE or --in-cluster is needed")?;
    if node.is_none() && !controller {
        return Err(format!("--node N, --controller or both\n{USAGE}"));
    }
    Ok(Args {
        source,
        config: config.ok_or("--config FILE is needed")?,
        node,
        socket,
        cni_socket,
        controller,
        identity: identity.unwrap_or_else(default_identity),
        lease_namespace,
        lease_name,
        min_sync,
    })
}

/// Runs API mode; returns only on a fatal error.
pub fn run(args: &[String]) -> Result<String, String> {
    let a = parse(args)?;
    let config = Config::load(&a.config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        let client = connect(&a.source).await?;
        serve(
            client,
            Options {
                config,
                cni_socket: a.node.is_some().then_some(a.cni_socket),
                node: a.node,
                socket: a.socket,
                controller: a.controller,
                identity: a.identity,
                lease: (a.lease_namespace, a.lease_name),
                timing: Timing::default(),
                min_sync: a.min_sync,
            },
        )
        .await
    })?;
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_both_roles_and_refuses_neither() {
        let a = parse(&args(
            "--kubeconfig /k --config /c --node n1 --socket /s --controller --identity me",
        ))
        .unwrap();
        assert_eq!(a.source, Source::Kubeconfig("/k".into()));
        assert_eq!(a.node.as_deref(), Some("n1"));
        assert!(a.controller);
        assert_eq!(a.identity, "me");
        assert_eq!(a.cni_socket, PathBuf::from("/run/oxvs/agent.sock"));
        assert_eq!(a.lease_name, "oxvs-controller");
        let a = parse(&args("--in-cluster --config /c --controller")).unwrap();
        assert_eq!(a.source, Source::InCluster);
        assert!(a.node.is_none());
        assert!(parse(&args("--in-cluster --config /c")).is_err());
        assert!(parse(&args("--config /c --node n")).is_err());
        assert!(wanted(&args("--node n --in-cluster")));
        assert!(!wanted(&args("--node n --manifests d")));
    }
}
