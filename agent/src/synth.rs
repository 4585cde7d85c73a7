//! Synthetic clusters of any size, for the benchmark and the figures in
//! BENCHMARKS.md: `nodes` nodes, namespaces of `pods_per_ns` pods spread
//! round-robin over the nodes, Services of `endpoints_per_svc` endpoints
//! each (as EndpointSlices, the way an API server hands them over), a mix
//! of types: every 5th a NodePort, every 10th a LoadBalancer with
//! `externalTrafficPolicy: Local`, every 20th with session affinity.
//! Allocations are done by the controller, as in a real run.

use crate::alloc;
use crate::config::Config;
use crate::object::Object;
use crate::store::Store;
use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeStatus, ObjectReference, Pod, PodSpec, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The shape of a synthetic cluster.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Nodes.
    pub nodes: usize,
    /// Namespaces.
    pub namespaces: usize,
    /// Pods per namespace.
    pub pods_per_ns: usize,
    /// Services per namespace.
    pub svcs_per_ns: usize,
    /// Endpoints per Service.
    pub endpoints_per_svc: usize,
}

impl Shape {
    /// The issue's figure: 100 nodes, 10 000 pods, 2 000 Services, 20 000 endpoints.
    pub const ISSUE: Shape = Shape {
        nodes: 100,
        namespaces: 100,
        pods_per_ns: 100,
        svcs_per_ns: 20,
        endpoints_per_svc: 10,
    };
}

/// A config whose pool holds every LoadBalancer and SNAT address.
pub fn config() -> Config {
    Config::parse(
        "[cluster]\npod_cidr = \"10.0.0.0/8\"\nservice_cidr = \"10.255.0.0/16\"\nexternal_pool = [\"172.30.0.0/16\"]\n",
    )
    .expect("the synthetic config parses")
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

/// The objects of a cluster of shape `s`.
pub fn objects(s: Shape) -> Vec<Object> {
    let mut out = Vec::new();
    for n in 0..s.nodes {
        out.push(Object::Node(Node {
            metadata: meta(None, &format!("node{n}")),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: format!("192.168.{}.{}", n / 250, n % 250 + 1),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    let mut pod_no = 0;
    for i in 0..s.namespaces {
        let ns = format!("ns{i}");
        out.push(Object::Namespace(Namespace {
            metadata: meta(None, &ns),
            ..Default::default()
        }));
        for p in 0..s.pods_per_ns {
            let mut m = meta(Some(&ns), &format!("pod{p}"));
            m.labels = Some([("app".to_string(), format!("app{p}"))].into());
            out.push(Object::Pod(Pod {
                metadata: m,
                spec: Some(PodSpec {
                    node_name: Some(format!("node{}", pod_no % s.nodes)),
                    ..Default::default()
                }),
                status: None,
            }));
            pod_no += 1;
        }
        for v in 0..s.svcs_per_ns {
            let g = i * s.svcs_per_ns + v;
            let (ty, etp) = if g % 10 == 9 {
                ("LoadBalancer", Some("Local".to_string()))
            } else if g % 5 == 4 {
                ("NodePort", None)
            } else {
                ("ClusterIP", None)
            };
            out.push(Object::Service(Service {
                metadata: meta(Some(&ns), &format!("svc{v}")),
                spec: Some(ServiceSpec {
                    type_: Some(ty.into()),
                    external_traffic_policy: etp,
                    session_affinity: (g % 20 == 7).then(|| "ClientIP".into()),
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        target_port: Some(IntOrString::Int(8080)),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                status: None,
            }));
            let mut sm = meta(Some(&ns), &format!("svc{v}-1"));
            sm.labels =
                Some([("kubernetes.io/service-name".to_string(), format!("svc{v}"))].into());
            let endpoints = (0..s.endpoints_per_svc)
                .map(|e| {
                    let p = (v * s.endpoints_per_svc + e) % s.pods_per_ns;
                    Endpoint {
                        addresses: vec![], // filled in after allocation
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            ..Default::default()
                        }),
                        target_ref: Some(ObjectReference {
                            kind: Some("Pod".into()),
                            namespace: Some(ns.clone()),
                            name: Some(format!("pod{p}")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect();
            out.push(Object::EndpointSlice(EndpointSlice {
                metadata: sm,
                address_type: "IPv4".into(),
                endpoints: Some(endpoints),
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }));
        }
    }
    out
}

/// A store of shape `s`, allocated, with the slices' addresses and nodes
/// filled in from their pods.
pub fn store(s: Shape, cfg: &Config) -> Store {
    let mut st = Store::default();
    st.replace(objects(s));
    alloc::reconcile(&mut st, cfg);
    let mut slices: Vec<Object> = st
        .of_kind(crate::object::Kind::EndpointSlice)
        .cloned()
        .collect();
    for o in &mut slices {
        if let Object::EndpointSlice(sl) = o {
            for e in sl.endpoints.iter_mut().flatten() {
                let r = e
                    .target_ref
                    .as_ref()
                    .expect("every synthetic endpoint names its pod");
                let p = st.pod(
                    r.namespace.as_deref().unwrap_or(""),
                    r.name.as_deref().unwrap_or(""),
                );
                if let Some(p) = p {
                    e.addresses = alloc::pod_ip(p)
                        .map(|ip| vec![ip.to_string()])
                        .unwrap_or_default();
                    e.node_name = alloc::pod_node(p).map(str::to_string);
                }
            }
        }
    }
    for o in slices {
        st.apply(crate::store::Event::Apply(o));
    }
    st
}
