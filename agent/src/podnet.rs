//! The node role's pod-network socket: `oxvs-cni`'s `{"type": "oxvs"}`
//! IPAM asks here for the address the controller wrote on a Pod
//! (`oxvs.io/ip`, `oxvs.io/gateway`, `oxvs.io/mac`), the protocol of
//! [`ctl::podnet`]. The answers are a table computed from the store after
//! every reload ([`answers`]) and swapped in whole, so the server thread
//! never reads the store itself and never waits for a sync: a question is
//! answered at once, from the latest manifests, "pending" included.

use crate::alloc::{self, pod_ip, POD_GATEWAY, POD_IP, POD_MAC, SUBNET};
use crate::net::{mac_for, Cidr};
use crate::object::annotation;
use crate::store::Store;
use crate::wake::Wake;
use ctl::podnet::{read_request, write_answer, PodAnswer};
use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The answer for every pod the store holds, by (namespace, name).
pub type Answers = BTreeMap<(String, String), PodAnswer>;

/// What the socket says about each pod of `store`.
pub fn answers(store: &Store) -> Answers {
    let mut out = Answers::new();
    for p in store.pods() {
        let ns = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = p.metadata.name.clone().unwrap_or_default();
        let node = alloc::pod_node(p).map(str::to_string);
        // A pod that reports its address (`status.podIP`) keeps it and gets
        // no annotations from the controller: its answer is that address in
        // its namespace's subnet, with the subnet's gateway and the MAC the
        // controller would have written.
        let reported = (annotation(&p.metadata, POD_IP).is_none())
            .then(|| pod_ip(p))
            .flatten()
            .and_then(|ip| {
                let sub = store
                    .namespace(&ns)
                    .and_then(|n| annotation(&n.metadata, SUBNET))
                    .and_then(|s| s.parse::<Cidr>().ok())
                    .filter(|sub| sub.contains(ip))?;
                Some((ip, sub))
            });
        let a = match (annotation(&p.metadata, POD_IP), pod_ip(p), reported) {
            (Some(cidr), Some(_), _) => PodAnswer {
                ip: Some(cidr.to_string()),
                gateway: annotation(&p.metadata, POD_GATEWAY).map(str::to_string),
                mac: annotation(&p.metadata, POD_MAC).map(str::to_string),
                node,
                pending: None,
            },
            (None, _, Some((ip, sub))) => PodAnswer {
                ip: Some(format!("{ip}/{}", sub.len)),
                gateway: Some(sub.nth(1).to_string()),
                mac: Some(mac_for(ip)),
                node,
                pending: None,
            },
            _ => PodAnswer {
                pending: Some(format!(
                    "Pod {ns}/{name} has no address yet (its namespace has no subnet, or the pod block is full)"
                )),
                node,
                ..Default::default()
            },
        };
        out.insert((ns, name), a);
    }
    out
}

/// The answer for one pod.
pub fn answer(table: &Answers, namespace: &str, name: &str) -> PodAnswer {
    table
        .get(&(namespace.to_string(), name.to_string()))
        .cloned()
        .unwrap_or_else(|| PodAnswer {
            pending: Some(format!("no Pod {namespace}/{name} yet")),
            ..Default::default()
        })
}

/// Serves `table` on `socket` (a stale socket file is replaced) from a
/// thread of its own; every connection gets one answer. Each question is
/// also told to `wake` (when given): the pod's port follows the answer.
pub fn serve(
    socket: &Path,
    table: Arc<RwLock<Answers>>,
    wake: Option<Sender<Wake>>,
) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::thread::Builder::new()
        .name("podnet".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                // A client that connects and says nothing must not stall
                // the next one for long.
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let Ok(req) = read_request(&mut BufReader::new(&conn)) else {
                    continue;
                };
                let a = {
                    let t = table.read().unwrap_or_else(|e| e.into_inner());
                    answer(&t, &req.namespace, &req.name)
                };
                let _ = write_answer(&mut &conn, &a);
                if let (Some(w), None) = (&wake, &a.pending) {
                    let _ = w.send(Wake::Attaching(req.namespace, req.name));
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Object;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn store() -> Store {
        let mut s = Store::default();
        let meta = |ns: Option<&str>, name: &str, ann: &[(&str, &str)]| ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(str::to_string),
            annotations: Some(
                ann.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        s.replace(vec![
            Object::Namespace(Namespace {
                metadata: meta(None, "dev", &[]),
                ..Default::default()
            }),
            Object::Pod(Pod {
                metadata: meta(
                    Some("dev"),
                    "web-0",
                    &[
                        (POD_IP, "10.244.1.2/24"),
                        (POD_GATEWAY, "10.244.1.1"),
                        (POD_MAC, "0a:58:0a:f4:01:02"),
                    ],
                ),
                ..Default::default()
            }),
            Object::Pod(Pod {
                metadata: meta(Some("dev"), "web-1", &[]),
                ..Default::default()
            }),
        ]);
        s
    }

    #[test]
    fn allocated_pending_and_unknown_pods() {
        let t = answers(&store());
        let a = answer(&t, "dev", "web-0");
        assert_eq!(a.ip.as_deref(), Some("10.244.1.2/24"));
        assert_eq!(a.gateway.as_deref(), Some("10.244.1.1"));
        assert_eq!(a.mac.as_deref(), Some("0a:58:0a:f4:01:02"));
        assert!(a.pending.is_none());
        assert!(answer(&t, "dev", "web-1")
            .pending
            .unwrap()
            .contains("no address yet"));
        assert_eq!(
            answer(&t, "dev", "web-9").pending.as_deref(),
            Some("no Pod dev/web-9 yet")
        );
    }

    #[test]
    fn a_pod_that_reports_its_address_gets_it_in_its_namespaces_subnet() {
        use k8s_openapi::api::core::v1::PodStatus;
        let mut s = store();
        let mut objs: Vec<Object> = s.iter().cloned().collect();
        for o in &mut objs {
            match o {
                Object::Namespace(n) => {
                    n.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(SUBNET.into(), "10.244.1.0/24".into());
                }
                Object::Pod(p) if p.metadata.name.as_deref() == Some("web-1") => {
                    p.status = Some(PodStatus {
                        pod_ip: Some("10.244.1.9".into()),
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }
        objs.push(Object::Pod(Pod {
            metadata: ObjectMeta {
                name: Some("elsewhere".into()),
                namespace: Some("dev".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ip: Some("10.9.9.9".into()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        s.replace(objs);
        let t = answers(&s);
        let a = answer(&t, "dev", "web-1");
        assert_eq!(a.ip.as_deref(), Some("10.244.1.9/24"));
        assert_eq!(a.gateway.as_deref(), Some("10.244.1.1"));
        assert_eq!(a.mac.as_deref(), Some("0a:58:0a:f4:01:09"));
        assert!(a.pending.is_none());
        // An address outside its namespace's subnet is not handed out.
        assert!(answer(&t, "dev", "elsewhere").pending.is_some());
    }

    #[test]
    fn the_socket_answers_from_the_latest_table() {
        let dir = std::env::temp_dir().join(format!("oxvs-agent-podnet-{}", std::process::id()));
        let sock = dir.join("agent.sock");
        let table = Arc::new(RwLock::new(Answers::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        serve(&sock, table.clone(), Some(tx)).unwrap();
        let req = ctl::podnet::PodRequest {
            namespace: "dev".into(),
            name: "web-0".into(),
        };
        let a = ctl::podnet::query(&sock, &req, Duration::from_secs(2)).unwrap();
        assert_eq!(a.pending.as_deref(), Some("no Pod dev/web-0 yet"));
        *table.write().unwrap() = answers(&store());
        let a = ctl::podnet::query(&sock, &req, Duration::from_secs(2)).unwrap();
        assert_eq!(a.ip.as_deref(), Some("10.244.1.2/24"));
        // Only the answer with an address announces a port to come.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(2)).unwrap(),
            Wake::Attaching("dev".into(), "web-0".into())
        );
        assert!(rx.try_recv().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
