//! Synthetic policies over [`crate::synth`]'s clusters, for the figures in
//! BENCHMARKS.md: the 1 000 policies with mixed selectors over
//! 10 000 pods. Namespaces get `team` (10 teams) and `env` (prod/dev)
//! labels, pods a `tier` (web/api/db) beside their `app`; then, per
//! namespace in turn, NetworkPolicies of eight shapes (default deny,
//! same-namespace podSelector, namespaceSelector AND podSelector with
//! matchExpressions, egress with an endPort range and an ipBlock with
//! except, ingress from an ipBlock, NotIn/Exists expressions, a
//! cross-namespace app peer, DNS egress), and a few AdminNetworkPolicies
//! (Deny, Allow, Pass) and the BaselineAdminNetworkPolicy.

use super::types::{
    Action, AdminNetworkPolicy, AdminNetworkPolicySpec, BaselineAdminNetworkPolicy,
    BaselineAdminNetworkPolicySpec, NamespacedPod, Peer, Port, PortNumber, Rule, Subject,
};
use crate::object::{Kind, Object};
use crate::store::{Event, Store};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: None,
    }
}

fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        }]),
    }
}

fn port(proto: &str, p: i32, end: Option<i32>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(proto.into()),
        port: Some(IntOrString::Int(p)),
        end_port: end,
    }
}

fn pods(ns: Option<LabelSelector>, pods: Option<LabelSelector>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: ns,
        pod_selector: pods,
        ip_block: None,
    }
}

fn block(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: (!except.is_empty()).then(|| except.iter().map(|s| s.to_string()).collect()),
        }),
        ..Default::default()
    }
}

/// The `k`-th NetworkPolicy of namespace `ns` (number `i` of the cluster).
fn network_policy(ns: &str, i: usize, k: usize, apps: usize) -> NetworkPolicy {
    let app = format!("app{}", (i * 7 + k) % apps);
    let mut spec = NetworkPolicySpec {
        pod_selector: Some(sel(&[("app", &app)])),
        ..Default::default()
    };
    let ingress = |from: Vec<NetworkPolicyPeer>, ports: Vec<NetworkPolicyPort>| {
        Some(vec![NetworkPolicyIngressRule {
            from: Some(from),
            ports: (!ports.is_empty()).then_some(ports),
        }])
    };
    match k % 8 {
        0 => {
            spec.pod_selector = Some(LabelSelector::default());
            spec.policy_types = Some(vec!["Ingress".into()]);
        }
        1 => {
            spec.ingress = ingress(
                vec![pods(None, Some(sel(&[("tier", "web")])))],
                vec![port("TCP", 8080, None)],
            )
        }
        2 => {
            spec.pod_selector = Some(sel(&[("tier", "db")]));
            let team = format!("team{}", i % 10);
            spec.ingress = ingress(
                vec![pods(
                    Some(sel(&[("team", &team)])),
                    Some(expr("tier", "In", &["api", "web"])),
                )],
                vec![port("TCP", 5432, None), port("TCP", 6379, None)],
            );
        }
        3 => {
            spec.policy_types = Some(vec!["Egress".into()]);
            spec.egress = Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![pods(
                        Some(sel(&[("env", "prod")])),
                        Some(sel(&[("tier", "api")])),
                    )]),
                    ports: Some(vec![port("TCP", 8000, Some(8099))]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![block(
                        "172.16.0.0/12",
                        &["172.16.1.0/24", "172.17.0.0/16"],
                    )]),
                    ports: Some(vec![port("TCP", 443, None)]),
                },
            ]);
        }
        4 => spec.ingress = ingress(vec![block("172.16.0.0/12", &["172.31.0.0/16"])], vec![]),
        5 => {
            spec.pod_selector = Some(expr("tier", "NotIn", &["db"]));
            spec.ingress = ingress(
                vec![pods(
                    Some(expr("env", "Exists", &[])),
                    Some(sel(&[("app", &app)])),
                )],
                vec![port("TCP", 80, None), port("UDP", 53, None)],
            );
        }
        6 => {
            let peer_app = format!("app{}", (i + k) % apps);
            spec.ingress = ingress(
                vec![pods(
                    Some(LabelSelector::default()),
                    Some(sel(&[("app", &peer_app)])),
                )],
                vec![port("TCP", 9000, Some(9010))],
            );
        }
        _ => {
            spec.policy_types = Some(vec!["Egress".into()]);
            spec.egress = Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![pods(
                    Some(sel(&[("kubernetes.io/metadata.name", "kube-system")])),
                    Some(sel(&[("k8s-app", "kube-dns")])),
                )]),
                ports: Some(vec![port("UDP", 53, None), port("TCP", 53, None)]),
            }]);
        }
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("np{k}")),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(spec),
    }
}

fn anp(n: usize) -> AdminNetworkPolicy {
    let team = format!("team{}", n % 10);
    let rule = |name: &str, action, peer: Peer, ports: Option<Vec<Port>>| Rule {
        name: name.into(),
        action: Some(action),
        from: Some(vec![peer.clone()]),
        to: Some(vec![peer]),
        ports,
    };
    let spec = AdminNetworkPolicySpec {
        priority: n as i32 * 10,
        subject: if n % 2 == 0 {
            Subject {
                namespaces: Some(sel(&[("team", &team)])),
                pods: None,
            }
        } else {
            Subject {
                namespaces: None,
                pods: Some(NamespacedPod {
                    namespace_selector: sel(&[("env", "prod")]),
                    pod_selector: sel(&[("tier", "db")]),
                }),
            }
        },
        ingress: vec![
            rule(
                "deny-dev-db",
                Action::Deny,
                Peer {
                    namespaces: Some(sel(&[("env", "dev")])),
                    ..Default::default()
                },
                Some(vec![Port {
                    port_number: Some(PortNumber {
                        protocol: "TCP".into(),
                        port: 5432,
                    }),
                    ..Default::default()
                }]),
            ),
            rule(
                "pass-same-team",
                Action::Pass,
                Peer {
                    namespaces: Some(sel(&[("team", &team)])),
                    ..Default::default()
                },
                None,
            ),
        ],
        egress: vec![rule(
            "allow-monitoring",
            Action::Allow,
            Peer {
                pods: Some(NamespacedPod {
                    namespace_selector: sel(&[("kubernetes.io/metadata.name", "ns0")]),
                    pod_selector: sel(&[("app", "app1")]),
                }),
                ..Default::default()
            },
            None,
        )],
    };
    AdminNetworkPolicy {
        api_version: None,
        kind: None,
        metadata: ObjectMeta {
            name: Some(format!("anp{n}")),
            ..Default::default()
        },
        spec,
    }
}

fn banp() -> BaselineAdminNetworkPolicy {
    BaselineAdminNetworkPolicy {
        api_version: None,
        kind: None,
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        spec: BaselineAdminNetworkPolicySpec {
            subject: Subject {
                namespaces: Some(sel(&[("env", "prod")])),
                pods: None,
            },
            ingress: vec![Rule {
                name: "deny-from-dev".into(),
                action: Some(Action::Deny),
                from: Some(vec![Peer {
                    namespaces: Some(sel(&[("env", "dev")])),
                    ..Default::default()
                }]),
                to: None,
                ports: None,
            }],
            egress: vec![],
        },
    }
}

/// Labels the namespaces and pods of `st` and adds `n` policies: 9
/// AdminNetworkPolicies, the BaselineAdminNetworkPolicy, and NetworkPolicies
/// spread over the namespaces for the rest.
pub fn add(st: &mut Store, n: usize) {
    let mut changed = Vec::new();
    let mut apps = 1;
    let namespaces: Vec<String> = st
        .namespaces()
        .filter_map(|x| x.metadata.name.clone())
        .collect();
    for (i, o) in st.of_kind(Kind::Namespace).enumerate() {
        let mut o = o.clone();
        let team = format!("team{}", i % 10);
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        o.meta_mut()
            .labels
            .get_or_insert_with(Default::default)
            .extend(labels(&[("team", &team), ("env", env)]).unwrap_or_default());
        changed.push(o);
    }
    for (i, o) in st.of_kind(Kind::Pod).enumerate() {
        let mut o = o.clone();
        let tier = ["web", "api", "db"][i % 3];
        let l = o.meta_mut().labels.get_or_insert_with(Default::default);
        l.insert("tier".into(), tier.into());
        apps = apps.max(
            l.get("app")
                .and_then(|a| a.trim_start_matches("app").parse::<usize>().ok())
                .map_or(1, |a| a + 1),
        );
        changed.push(o);
    }
    for o in changed {
        st.apply(Event::Apply(o));
    }
    let admin = 9.min(n);
    for a in 0..admin {
        st.apply(Event::Apply(Object::AdminNetworkPolicy(anp(a))));
    }
    let mut left = n - admin;
    if left > 0 {
        st.apply(Event::Apply(Object::BaselineAdminNetworkPolicy(banp())));
        left -= 1;
    }
    let per_ns = left.div_ceil(namespaces.len().max(1));
    let mut made = 0;
    'outer: for k in 0..per_ns {
        for (i, ns) in namespaces.iter().enumerate() {
            if made == left {
                break 'outer;
            }
            st.apply(Event::Apply(Object::NetworkPolicy(network_policy(
                ns, i, k, apps,
            ))));
            made += 1;
        }
    }
}
