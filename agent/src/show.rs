//! `oxvs-agent get`: the objects in kubectl's column shape — pods with
//! their address and node, Services with ClusterIP, EXTERNAL-IP
//! (`<pending>` while the pool has nothing) and PORT(S) as
//! `80:30080/TCP`, namespaces with their subnet and SNAT address.

use crate::alloc::{self, cluster_ip, ingress_ip, pod_ip, pod_node, service_type};
use crate::endpoints::{endpoints, usable};
use crate::object::annotation;
use crate::store::Store;

/// Lays out rows under a header, columns padded to their widest cell plus
/// three spaces, as kubectl prints.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}", width = w[i] + 3));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

fn or_none(s: Option<String>) -> String {
    s.unwrap_or_else(|| "<none>".into())
}

/// `get pods`.
pub fn pods(store: &Store, wide: bool) -> String {
    let mut rows = Vec::new();
    for p in store.pods() {
        let status = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| {
                if pod_ip(p).is_some() && pod_node(p).is_some() {
                    "Running".into()
                } else {
                    "Pending".into()
                }
            });
        let mut r = vec![
            p.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            p.metadata.name.clone().unwrap_or_default(),
            status,
            or_none(pod_ip(p).map(|i| i.to_string())),
            or_none(pod_node(p).map(str::to_string)),
        ];
        if wide {
            r.push(or_none(
                annotation(&p.metadata, alloc::POD_MAC).map(str::to_string),
            ));
            r.push(or_none(
                annotation(&p.metadata, alloc::POD_GATEWAY).map(str::to_string),
            ));
        }
        rows.push(r);
    }
    let mut h = vec!["NAMESPACE", "NAME", "STATUS", "IP", "NODE"];
    if wide {
        h.extend(["MAC", "GATEWAY"]);
    }
    table(&h, &rows)
}

/// `get services`.
pub fn services(store: &Store, wide: bool) -> String {
    let mut rows = Vec::new();
    for s in store.services() {
        let ty = service_type(s).to_string();
        let spec = s.spec.clone().unwrap_or_default();
        let cip = match spec.cluster_ip.as_deref() {
            Some("None") => "None".to_string(),
            _ => or_none(cluster_ip(s).map(|i| i.to_string())),
        };
        let mut ext: Vec<String> = spec.external_ips.clone().unwrap_or_default();
        if ty == "LoadBalancer" {
            match ingress_ip(s) {
                Some(ip) => ext.push(ip.to_string()),
                None => ext.push("<pending>".into()),
            }
        }
        let ext = if ext.is_empty() {
            "<none>".to_string()
        } else {
            ext.join(",")
        };
        let ports: Vec<String> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                match p.node_port.filter(|n| *n > 0) {
                    Some(np) => format!("{}:{np}/{proto}", p.port),
                    None => format!("{}/{proto}", p.port),
                }
            })
            .collect();
        let mut r = vec![
            s.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            s.metadata.name.clone().unwrap_or_default(),
            ty,
            cip,
            ext,
            if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            },
        ];
        if wide {
            let sel = spec
                .selector
                .as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty());
            r.push(or_none(sel));
            let n: usize = spec
                .ports
                .iter()
                .flatten()
                .map(|p| usable(&endpoints(store, s, p)).len())
                .max()
                .unwrap_or(0);
            r.push(n.to_string());
        }
        rows.push(r);
    }
    let mut h = vec![
        "NAMESPACE",
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
    ];
    if wide {
        h.extend(["SELECTOR", "ENDPOINTS"]);
    }
    table(&h, &rows)
}

/// `get namespaces`.
pub fn namespaces(store: &Store, wide: bool) -> String {
    let mut rows = Vec::new();
    for n in store.namespaces() {
        let m = &n.metadata;
        let status = if m.deletion_timestamp.is_some() {
            "Terminating"
        } else {
            "Active"
        };
        let mut r = vec![
            m.name.clone().unwrap_or_default(),
            status.to_string(),
            or_none(annotation(m, alloc::SUBNET).map(str::to_string)),
            or_none(annotation(m, alloc::SNAT_IP).map(str::to_string)),
        ];
        if wide {
            r.push(or_none(annotation(m, alloc::SNAT_NODE).map(str::to_string)));
            let gw = annotation(m, alloc::SUBNET)
                .and_then(|s| s.parse::<crate::net::Cidr>().ok())
                .map(|c| c.nth(1).to_string());
            r.push(or_none(gw));
        }
        rows.push(r);
    }
    let mut h = vec!["NAME", "STATUS", "SUBNET", "SNAT-IP"];
    if wide {
        h.extend(["SNAT-NODE", "GATEWAY"]);
    }
    table(&h, &rows)
}
