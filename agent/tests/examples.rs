//! The deployment manifests of `examples/kubernetes` and the systemd units
//! of `examples/systemd`: every YAML document parses (serde_norway, the
//! crate's YAML reader) into its Kubernetes type, the config parses, the
//! commands parse with the agent's own argument parser, and the RBAC rules
//! grant exactly what the agent's requests need — the requests recorded by
//! the wire-format API server while each role runs, each mapped to the
//! (API group, resource, verb) an API server's authorizer would check.

mod apiserver;
mod common;

use agent::api::run::{serve, Options};
use agent::config::Config;
use agent::object::Kind;
use apiserver::{ApiServer, Request};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every document of every file of examples/kubernetes, as JSON.
fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            out.push((f.file_name().unwrap().to_string_lossy().to_string(), v));
        }
    }
    out
}

fn one<T: serde::de::DeserializeOwned>(docs: &[(String, Value)], kind: &str, name: &str) -> T {
    let (_, v) = docs
        .iter()
        .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

type Grant = (String, String, String);

fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// What an authorizer checks for a request: API group, resource (with
/// subresource), verb.
fn attributes(r: &Request) -> Grant {
    let seg: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match seg.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => panic!("{}", r.path),
    };
    // rest: [res], [res, name], [res, name, sub], or namespaces/NS/...
    let rest: &[&str] = match rest {
        ["namespaces", _, res, tail @ ..] if *res != "status" => {
            let mut v = vec![*res];
            v.extend(tail);
            return attrs(group, &v, r);
        }
        other => other,
    };
    attrs(group, rest, r)
}

fn attrs(group: &str, rest: &[&str], r: &Request) -> Grant {
    let (resource, named) = match rest {
        [res] => (res.to_string(), false),
        [res, _] => (res.to_string(), true),
        [res, _, sub] => (format!("{res}/{sub}"), true),
        _ => panic!("{}", r.path),
    };
    let verb = match (r.method.as_str(), named) {
        ("GET", false) if r.is_watch() => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => panic!("{} {}", r.method, r.path),
    };
    (group.to_string(), resource, verb.to_string())
}

fn container<'a>(spec: &'a PodSpec, name: &str) -> &'a Container {
    spec.containers.iter().find(|c| c.name == name).unwrap()
}

/// The arguments after `run`, with `$(VAR)` given a value.
fn run_args(c: &Container) -> Vec<String> {
    let cmd = c.command.clone().unwrap();
    assert_eq!(cmd[..2], ["oxvs-agent", "run"]);
    cmd[2..]
        .iter()
        .map(|a| a.replace("$(NODE_NAME)", "node1"))
        .collect()
}

#[test]
fn the_manifests_parse_into_their_kubernetes_types() {
    let docs = documents();
    let _: Namespace = one(&docs, "Namespace", "oxvs-system");
    let _: ServiceAccount = one(&docs, "ServiceAccount", "oxvs-node");
    let _: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", "oxvs-controller");
    let _: RoleBinding = one(&docs, "RoleBinding", "oxvs-controller-lease");
    for (file, d) in &docs {
        let kind = d["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        assert!(
            d["apiVersion"].is_string(),
            "{file}: {kind} without apiVersion"
        );
        if !matches!(kind, "Namespace" | "ClusterRole" | "ClusterRoleBinding") {
            assert_eq!(d["metadata"]["namespace"], "oxvs-system", "{file}: {kind}");
        }
    }

    // The ConfigMap: the agent's config, the switch's template, the conflist.
    let cm: ConfigMap = one(&docs, "ConfigMap", "oxvs-config");
    let data = cm.data.unwrap();
    let cfg = Config::parse(&data["cluster.toml"]).expect("cluster.toml parses");
    assert_eq!(cfg.service_cidr.to_string(), "10.244.240.0/20");
    let oxvsd: toml::Table = toml::from_str(
        &data["oxvsd.toml.in"]
            .replace("@NODE_IP@", "192.168.77.1")
            .replace("@UPLINK@", "eth0"),
    )
    .expect("the switch config is TOML");
    let ports = oxvsd["port"].as_array().unwrap();
    let nos: Vec<i64> = ports
        .iter()
        .map(|p| p["no"].as_integer().unwrap())
        .collect();
    assert!(
        nos.contains(&i64::from(cfg.gateway_port)) && nos.contains(&i64::from(cfg.tunnel_port))
    );
    assert_eq!(
        oxvsd["switch"]["socket"].as_str(),
        Some(ctl::client::DEFAULT_SOCKET)
    );
    let conflist: Value = serde_json::from_str(&data["10-oxvs.conflist"]).unwrap();
    assert_eq!(conflist["plugins"][0]["type"], "oxvs-cni");
    assert_eq!(
        conflist["plugins"][0]["socket"],
        ctl::client::DEFAULT_SOCKET
    );
    assert_eq!(conflist["plugins"][0]["mtu"], cfg.mtu);

    // The DaemonSet: privileged on the host network, the three host mounts.
    let ds: DaemonSet = one(&docs, "DaemonSet", "oxvs-node");
    let spec = ds.spec.template.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.service_account_name.as_deref(), Some("oxvs-node"));
    let host_paths: BTreeSet<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
        .collect();
    for p in ["/run/oxvs", "/opt/cni/bin", "/etc/cni/net.d"] {
        assert!(host_paths.contains(p), "{p} mounted: {host_paths:?}");
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let privileged = c.security_context.as_ref().and_then(|s| s.privileged);
        assert_eq!(privileged, Some(true), "{} privileged", c.name);
    }
    let agent = container(&spec, "agent");
    let a = agent::api::cli::parse(&run_args(agent)).expect("the agent's command parses");
    assert_eq!(a.source, agent::api::Source::InCluster);
    assert_eq!(a.node.as_deref(), Some("node1"));
    assert!(!a.controller, "the node role never writes");
    assert_eq!(a.socket, Path::new(ctl::client::DEFAULT_SOCKET));
    let env = agent.env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "NODE_NAME"
        && e.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path
            == "spec.nodeName"));

    // The Deployment: the controller role, told its pod name and namespace.
    let d: Deployment = one(&docs, "Deployment", "oxvs-controller");
    let dspec = d.spec;
    assert!(dspec.replicas.unwrap() >= 2, "a standby");
    let pspec = dspec.template.spec.unwrap();
    assert_eq!(
        pspec.service_account_name.as_deref(),
        Some("oxvs-controller")
    );
    let c = container(&pspec, "controller");
    let a = agent::api::cli::parse(&run_args(c)).expect("the controller's command parses");
    assert!(a.controller && a.node.is_none());
    let names: BTreeSet<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(names.contains("POD_NAME") && names.contains("POD_NAMESPACE"));
}

#[test]
fn the_systemd_units_name_the_binaries_and_known_flags() {
    let dir = examples().join("systemd");
    let oxvsd = std::fs::read_to_string(dir.join("oxvsd.service")).unwrap();
    assert!(oxvsd.contains("ExecStart=/usr/local/bin/oxvsd --config "));
    let agent = std::fs::read_to_string(dir.join("oxvs-agent.service")).unwrap();
    assert!(agent.contains("Requires=oxvsd.service"));
    let exec = agent
        .split("\nExecStart=")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .replace("\\\n", " ");
    let exec = exec.lines().next().unwrap();
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[..2], ["/usr/local/bin/oxvs-agent", "run"]);
    for w in &words[2..] {
        if w.starts_with("--") {
            assert!(
                ["--node", "--socket", "--config", "--manifests", "--state"].contains(w),
                "{w}"
            );
        }
    }
    // The API-mode alternative in the comment parses with the API-mode parser.
    let alt = agent
        .lines()
        .skip_while(|l| !l.contains("#   ExecStart="))
        .take(2)
        .map(|l| l.trim_start_matches('#').trim().trim_end_matches('\\'))
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<String> = alt
        .split_whitespace()
        .skip(2)
        .map(|w| w.replace("%H", "node1"))
        .collect();
    agent::api::cli::parse(&words).expect("the API-mode command parses");
}

async fn requests_of(controller: bool) -> Vec<Request> {
    let c = common::small();
    let api = ApiServer::start().await;
    for o in c.store.iter().filter(|o| o.kind() != Kind::Deployment) {
        let mut v = o.to_json();
        if let Some(a) = v["metadata"]["annotations"].as_object_mut() {
            a.retain(|k, _| !k.starts_with("oxvs.io/"));
        }
        if let Some(st) = v.get_mut("status").and_then(Value::as_object_mut) {
            st.remove("loadBalancer");
        }
        api.put(v);
    }
    let o = Options {
        cni_socket: None,
        config: c.config.clone(),
        node: (!controller).then(|| "node1".to_string()),
        socket: PathBuf::from("/nonexistent/oxvsd.sock"),
        controller,
        identity: "test".into(),
        lease: ("oxvs-system".into(), "oxvs-controller".into()),
        timing: agent::api::lease::Timing {
            retry_period: Duration::from_millis(50),
            ..Default::default()
        },
        min_sync: Duration::from_millis(50),
    };
    let task = tokio::spawn(serve(api.client(), o));
    // Two lease rounds (create, then update) and the writes, or the five
    // watches of the node role (eight, with the policies).
    api.wait_for("the role's requests", |r| {
        // The node role also watches the three policy kinds.
        let want = if controller { 5 } else { 8 };
        let watches = r.iter().filter(|q| q.is_watch()).count() >= want;
        if controller {
            watches
                && r.iter().any(|q| q.method == "PUT")
                && r.iter().any(|q| q.path.ends_with("/status"))
        } else {
            watches
        }
    })
    .await;
    task.abort();
    api.requests()
}

#[tokio::test]
async fn rbac_grants_exactly_what_each_roles_requests_need() {
    let docs = documents();
    let node: ClusterRole = one(&docs, "ClusterRole", "oxvs-node");
    let controller: ClusterRole = one(&docs, "ClusterRole", "oxvs-controller");
    let lease: Role = one(&docs, "Role", "oxvs-controller-lease");

    let node_granted = grants(node.rules.as_deref().unwrap());
    let node_used: BTreeSet<Grant> = requests_of(false).await.iter().map(attributes).collect();
    assert_eq!(node_used, node_granted, "node role: used vs granted");

    let mut ctl_granted = grants(controller.rules.as_deref().unwrap());
    ctl_granted.extend(grants(lease.rules.as_deref().unwrap()));
    let reqs = requests_of(true).await;
    for r in reqs.iter().filter(|r| r.path.contains("/leases")) {
        assert!(
            r.path.contains("/namespaces/oxvs-system/"),
            "the Role covers {}",
            r.path
        );
    }
    let ctl_used: BTreeSet<Grant> = reqs.iter().map(attributes).collect();
    assert_eq!(ctl_used, ctl_granted, "controller role: used vs granted");
}
