//! Service ports and their endpoints, read the way kube-proxy reads them.
//!
//! Endpoints come from the EndpointSlices labelled
//! `kubernetes.io/service-name` (the first address of each endpoint, the
//! slice port whose name and protocol match the Service port's). A Service
//! with a selector and no slice at all gets them from its Pods instead, as
//! the EndpointSlice controller would write them (manifest mode has no such
//! controller): a named `targetPort` is resolved per Pod from its container
//! ports, so two Pods may serve one Service port on different ports.
//!
//! Conditions as kube-proxy reads them: an unset `ready` is ready, an unset
//! `serving` is `ready`; the usable endpoints are the ready ones, or, when
//! none is ready, the serving-and-terminating ones (so a rolling update
//! never leaves a Service with nothing).

use crate::alloc::{host_network, pod_ip, pod_node};
use crate::object::{label, selects};
use crate::store::Store;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// A transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// From the API's spelling (`TCP` when unset).
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The flow syntax's protocol keyword.
    pub fn flow(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// The API's spelling.
    pub fn api(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

/// One endpoint of one Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The address.
    pub ip: Ipv4Addr,
    /// The port traffic goes to.
    pub port: u16,
    /// The node it runs on, if known.
    pub node: Option<String>,
    /// The Pod behind it, if known (namespace, name).
    pub pod: Option<(String, String)>,
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
}

/// The endpoints traffic may go to: the ready ones, else the serving and
/// terminating ones.
pub fn usable<'a>(eps: impl IntoIterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = eps.clone().into_iter().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.into_iter()
        .filter(|e| e.serving && e.terminating)
        .collect()
}

/// The endpoints of port `sp` of Service `svc`, sorted and without
/// duplicates.
pub fn endpoints(store: &Store, svc: &Service, sp: &ServicePort) -> Vec<Endpoint> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let slices: Vec<&EndpointSlice> = store
        .endpoint_slices()
        .filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == ns
                && label(&s.metadata, "kubernetes.io/service-name") == Some(name)
        })
        .collect();
    let pods: Vec<&Pod> = store
        .pods()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .collect();
    endpoints_from(svc, sp, &slices, &pods)
}

/// [`endpoints`] from the Service's slices and its namespace's pods, as
/// the compiler's index holds them.
pub fn endpoints_from(
    svc: &Service,
    sp: &ServicePort,
    slices: &[&EndpointSlice],
    pods: &[&Pod],
) -> Vec<Endpoint> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let proto = Proto::parse(sp.protocol.as_deref());
    let port_name = sp.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Proto::parse(p.protocol.as_deref()) == proto
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for e in slice.endpoints.iter().flatten() {
            let Some(ip) = e.addresses.first().and_then(|a| a.parse().ok()) else {
                continue;
            };
            let c = e.conditions.clone().unwrap_or_default();
            let ready = c.ready.unwrap_or(true);
            let pod = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .map(|r| {
                    (
                        r.namespace.clone().unwrap_or_else(|| ns.to_string()),
                        r.name.clone().unwrap_or_default(),
                    )
                });
            out.push(Endpoint {
                ip,
                port,
                node: e.node_name.clone(),
                pod,
                ready,
                serving: c.serving.unwrap_or(ready),
                terminating: c.terminating.unwrap_or(false),
            });
        }
    }
    let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
    if let (true, Some(sel)) = (slices.is_empty(), selector) {
        for p in pods {
            if selects(sel, p.metadata.labels.as_ref()) {
                if let Some(e) = pod_endpoint(p, sp) {
                    out.push(e);
                }
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    out
}

/// The endpoint Pod `p` gives Service port `sp`, as the EndpointSlice
/// controller would write it.
fn pod_endpoint(p: &Pod, sp: &ServicePort) -> Option<Endpoint> {
    if host_network(p) {
        return None;
    }
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Running");
    if matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let ip = pod_ip(p)?;
    let port = target_port(p, sp)?;
    // A pod without conditions (a manifest) is taken as running and ready.
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(true);
    let terminating = p.metadata.deletion_timestamp.is_some();
    Some(Endpoint {
        ip,
        port,
        node: pod_node(p).map(str::to_string),
        pod: Some((
            p.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            p.metadata.name.clone().unwrap_or_default(),
        )),
        ready: ready && !terminating,
        serving: ready,
        terminating,
    })
}

/// Every usable UDP endpoint (address, port) of every Service of `store`.
/// A UDP "connection" lives in conntrack for as long as packets keep
/// coming, so one DNATed to an endpoint that has gone would keep going
/// there; kube-proxy therefore deletes the conntrack entries of each UDP
/// endpoint it stops using ([`stale_udp`]).
pub fn udp_backends(store: &Store) -> BTreeSet<(Ipv4Addr, u16)> {
    let mut out = BTreeSet::new();
    for svc in store.services() {
        let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
        for sp in ports.into_iter().flatten() {
            if Proto::parse(sp.protocol.as_deref()) != Some(Proto::Udp) {
                continue;
            }
            let eps = endpoints(store, svc, sp);
            out.extend(usable(&eps).into_iter().map(|e| (e.ip, e.port)));
        }
    }
    out
}

/// The `flush-conntrack` arguments that delete the Service connections of
/// each UDP endpoint in `before` and not in `after`: in conntrack zone
/// `zone`, UDP, whose reply comes from the endpoint's address and port
/// (kube-proxy's `conntrack -D -p udp --reply-src ADDR`, narrowed to the
/// port).
pub fn stale_udp(
    before: &BTreeSet<(Ipv4Addr, u16)>,
    after: &BTreeSet<(Ipv4Addr, u16)>,
    zone: u16,
) -> Vec<Vec<String>> {
    before
        .difference(after)
        .map(|(ip, port)| {
            vec![
                format!("zone={zone}"),
                "ct_nw_proto=17".to_string(),
                format!("ct_nw_proto=17,ct_nw_src={ip},ct_tp_src={port}"),
            ]
        })
        .collect()
}

/// The port a Service port reaches on Pod `p`: a number as given, a name
/// looked up in the Pod's container ports (with the same protocol), or the
/// Service port itself when unset.
pub fn target_port(p: &Pod, sp: &ServicePort) -> Option<u16> {
    match &sp.target_port {
        None => u16::try_from(sp.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n > 0),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<u16>() {
                return Some(n);
            }
            let proto = Proto::parse(sp.protocol.as_deref());
            p.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name)
                        && Proto::parse(cp.protocol.as_deref()) == proto
                })
                .and_then(|cp| u16::try_from(cp.container_port).ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn store(yaml: &str) -> Store {
        let mut s = Store::default();
        s.replace(crate::manifest::parse(yaml, Path::new("test.yaml")).unwrap());
        s
    }

    const DNS: &str = "
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  clusterIP: 10.244.240.10
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 5353}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: kube-system
  labels: {kubernetes.io/service-name: dns}
addressType: IPv4
ports:
- {name: dns, port: 5353, protocol: UDP}
- {name: dns-tcp, port: 5353, protocol: TCP}
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
";

    #[test]
    fn a_udp_endpoint_that_goes_or_is_not_ready_is_flushed_and_tcp_is_not() {
        let before = udp_backends(&store(DNS));
        assert_eq!(
            before,
            BTreeSet::from([("10.244.1.5".parse().unwrap(), 5353)])
        );
        let two = format!("{DNS}- addresses: [10.244.1.6]\n  conditions: {{ready: true}}\n");
        let after_add = udp_backends(&store(&two));
        // An endpoint added flushes nothing.
        assert!(stale_udp(&before, &after_add, 65520).is_empty());
        // 10.244.1.5 not ready any more: its entries go, in the zone given,
        // matched on the reply's source (the endpoint after DNAT).
        let not_ready = two.replacen("{ready: true}", "{ready: false}", 1);
        let after = udp_backends(&store(&not_ready));
        assert_eq!(
            stale_udp(&after_add, &after, 65520),
            vec![vec![
                "zone=65520".to_string(),
                "ct_nw_proto=17".to_string(),
                "ct_nw_proto=17,ct_nw_src=10.244.1.5,ct_tp_src=5353".to_string(),
            ]]
        );
        // The arguments are ones flush-conntrack takes.
        for args in stale_udp(&after_add, &after, 65520) {
            ctl::ctflush::parse(&args).unwrap();
        }
        // A TCP-only Service has no UDP backends.
        let tcp = DNS.replace("protocol: UDP", "protocol: SCTP");
        assert!(udp_backends(&store(&tcp)).is_empty());
    }
}
