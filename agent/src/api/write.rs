//! The controller's allocations written to the API server, and the
//! bookkeeping that keeps a controller from contradicting itself while its
//! own writes travel back through the watch.
//!
//! What is written, and how (the API server owns everything else):
//!
//! | patch | request |
//! |---|---|
//! | annotations of a Namespace or Pod | `PATCH` of the object, `application/merge-patch+json`, `{"metadata":{"annotations":{...}}}` |
//! | a LoadBalancer Service's ingress | `PATCH .../services/NAME/status`, `{"status":{"loadBalancer":{"ingress":[{"ip":...}]}}}` |
//! | ClusterIP, NodePort, node binding | not written: the API server allocates ClusterIPs and NodePorts, the scheduler binds pods |
//!
//! A merge patch (RFC 7386) of annotations touches only the keys it
//! names, so another controller's annotations are never overwritten, and
//! sending the same patch twice is harmless. Every write names the field
//! manager `oxvs-agent`.
//!
//! The allocator is a pure function of the store, and the store lags the
//! writes by one watch event. Without care, a pass between a write and its
//! event would see the object unallocated and could give its address to
//! another object first in key order. So the patches sent are kept (the
//! *overlay*) and laid over a copy of the store, with
//! [`crate::alloc::restore`]'s "only where missing" rule, before each
//! pass; an overlay entry goes once the store shows its values (or the
//! object is gone).

use crate::alloc::{self, Patch};
use crate::config::Config;
use crate::object::{Kind, ObjectKey};
use crate::store::{Event, Store};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, PatchParams};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The field manager named on every write.
pub const FIELD_MANAGER: &str = "oxvs-agent";

/// One API write: a merge patch of an object or of its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The object.
    pub object: ObjectKey,
    /// `true`: the `status` subresource.
    pub status: bool,
    /// The merge patch.
    pub body: Value,
}

/// What [`writes`] will not send in API mode, with the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The patch.
    pub patch: Patch,
    /// Why.
    pub why: &'static str,
}

fn merge_into(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                merge_into(d.entry(k).or_insert(Value::Null), v);
            }
        }
        (d, s) => *d = s,
    }
}

/// The requests that write `patches`: one per object and subresource,
/// patches of one object merged, in key order.
pub fn writes(patches: &[Patch]) -> (Vec<Write>, Vec<Skipped>) {
    let mut out: BTreeMap<(ObjectKey, bool), Value> = BTreeMap::new();
    let mut skipped = Vec::new();
    for p in patches {
        let Ok(key) = ObjectKey::parse(p.object()) else {
            continue;
        };
        let (status, body) = match p {
            Patch::Annotate { annotations, .. }
                if matches!(key.kind, Kind::Namespace | Kind::Pod) =>
            {
                (false, json!({"metadata": {"annotations": annotations}}))
            }
            Patch::Ingress { ip, .. } if key.kind == Kind::Service => {
                let ingress = match ip {
                    Some(ip) => json!([{"ip": ip.to_string()}]),
                    None => Value::Null,
                };
                (
                    true,
                    json!({"status": {"loadBalancer": {"ingress": ingress}}}),
                )
            }
            Patch::ClusterIp { .. } => {
                skipped.push(Skipped {
                    patch: p.clone(),
                    why: "the API server allocates ClusterIPs",
                });
                continue;
            }
            Patch::NodePort { .. } => {
                skipped.push(Skipped {
                    patch: p.clone(),
                    why: "the API server allocates NodePorts",
                });
                continue;
            }
            Patch::Schedule { .. } => {
                skipped.push(Skipped {
                    patch: p.clone(),
                    why: "the scheduler binds pods",
                });
                continue;
            }
            _ => {
                skipped.push(Skipped {
                    patch: p.clone(),
                    why: "not an object the controller writes",
                });
                continue;
            }
        };
        merge_into(
            out.entry((key, status))
                .or_insert_with(|| Value::Object(Map::new())),
            body,
        );
    }
    let writes = out
        .into_iter()
        .map(|((object, status), body)| Write {
            object,
            status,
            body,
        })
        .collect();
    (writes, skipped)
}

/// Sends one write.
pub async fn send(client: &kube::Client, w: &Write) -> kube::Result<()> {
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = kube::api::Patch::Merge(&w.body);
    let ns = w.object.namespace.as_str();
    let name = w.object.name.as_str();
    match (w.object.kind, w.status) {
        (Kind::Namespace, false) => {
            Api::<Namespace>::all(client.clone())
                .patch(name, &pp, &patch)
                .await?;
        }
        (Kind::Pod, false) => {
            Api::<Pod>::namespaced(client.clone(), ns)
                .patch(name, &pp, &patch)
                .await?;
        }
        (Kind::Service, true) => {
            Api::<Service>::namespaced(client.clone(), ns)
                .patch_status(name, &pp, &patch)
                .await?;
        }
        (kind, status) => {
            return Err(kube::Error::Service(
                format!("oxvs-agent writes no {kind:?} (status: {status})").into(),
            ))
        }
    }
    Ok(())
}

/// The controller role's state between passes.
#[derive(Debug, Default)]
pub struct Controller {
    /// Patches sent whose effect the store does not show yet.
    pub overlay: Vec<Patch>,
}

/// One pass's result.
#[derive(Debug, Default)]
pub struct Pass {
    /// The writes sent (or tried).
    pub writes: Vec<Write>,
    /// Writes that failed, with the error.
    pub failed: Vec<(Write, String)>,
    /// What the allocator could not allocate.
    pub pending: Vec<String>,
    /// Patches not written in API mode.
    pub skipped: Vec<Skipped>,
}

impl Controller {
    /// Drops overlay entries whose object is gone or now carries the
    /// values (ours, or another writer's: [`alloc::restore`] only fills
    /// what is missing, and so does the overlay).
    fn prune(&mut self, store: &Store) {
        self.overlay.retain(|p| {
            let Ok(k) = ObjectKey::parse(p.object()) else {
                return false;
            };
            let Some(o) = store.get(&k) else {
                return false;
            };
            let mut one = Store::default();
            one.apply(Event::Apply(o.clone()));
            alloc::restore(&mut one, std::slice::from_ref(p));
            one.get(&k) != Some(o)
        });
    }

    /// The writes the next pass would send, from the store with the
    /// overlay laid over it; also what stays pending and what is skipped.
    pub fn plan(&mut self, store: &Store, cfg: &Config) -> (Vec<Write>, Vec<Patch>, Pass) {
        self.prune(store);
        let mut scratch = store.clone();
        alloc::restore(&mut scratch, &self.overlay);
        let a = alloc::reconcile(&mut scratch, cfg);
        let (writes, skipped) = writes(&a.patches);
        let pass = Pass {
            pending: a.pending,
            skipped,
            ..Pass::default()
        };
        (writes, a.patches, pass)
    }

    /// One controller pass: allocate over the store (and the overlay),
    /// send the writes; failed ones are retried by the next pass.
    pub async fn pass(&mut self, client: &kube::Client, store: &Store, cfg: &Config) -> Pass {
        let (writes, patches, mut pass) = self.plan(store, cfg);
        let mut ok_objects = Vec::new();
        for w in &writes {
            match send(client, w).await {
                Ok(()) => ok_objects.push(w.object.to_string()),
                Err(e) => pass.failed.push((w.clone(), e.to_string())),
            }
        }
        self.overlay.extend(
            patches
                .into_iter()
                .filter(|p| ok_objects.iter().any(|o| o == p.object())),
        );
        pass.writes = writes;
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn patches_of_one_object_merge_and_api_owned_fields_are_skipped() {
        let ns = "Namespace/dev".to_string();
        let patches = vec![
            Patch::Annotate {
                object: ns.clone(),
                annotations: [(alloc::SUBNET.into(), "10.244.0.0/24".into())].into(),
            },
            Patch::Annotate {
                object: ns.clone(),
                annotations: [(alloc::SNAT_IP.into(), "172.30.0.1".into())].into(),
            },
            Patch::ClusterIp {
                object: "Service/dev/web".into(),
                ip: Ipv4Addr::new(10, 244, 240, 2),
            },
            Patch::Ingress {
                object: "Service/dev/web".into(),
                ip: Some(Ipv4Addr::new(172, 30, 0, 2)),
            },
        ];
        let (w, skipped) = writes(&patches);
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].body,
            json!({"metadata": {"annotations": {"oxvs.io/subnet": "10.244.0.0/24", "oxvs.io/snat-ip": "172.30.0.1"}}})
        );
        assert!(!w[0].status);
        assert!(w[1].status);
        assert_eq!(
            w[1].body,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.2"}]}}})
        );
        assert_eq!(skipped.len(), 1);
    }

    fn ns(name: &str) -> crate::object::Object {
        crate::object::Object::Namespace(k8s_openapi::api::core::v1::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    /// A namespace created between our write and its watch event, earlier
    /// in key order, must not get the subnet just written.
    #[test]
    fn the_overlay_keeps_a_sent_allocation_until_the_store_shows_it() {
        let cfg = Config::parse("[cluster]\npod_cidr = \"10.244.0.0/16\"\n").unwrap();
        let mut store = Store::default();
        store.apply(Event::Apply(ns("zeta")));
        let mut c = Controller::default();
        let (w, patches, _) = c.plan(&store, &cfg);
        let subnet = |w: &[Write], name: &str| {
            w.iter()
                .find(|w| w.object.name == name)
                .map(|w| w.body["metadata"]["annotations"][alloc::SUBNET].clone())
        };
        let zeta = subnet(&w, "zeta").unwrap();
        c.overlay.extend(patches.clone()); // sent; the watch has not caught up
        store.apply(Event::Apply(ns("alpha")));
        let (w, _, _) = c.plan(&store, &cfg);
        assert_eq!(subnet(&w, "zeta"), None, "not written again");
        assert_ne!(subnet(&w, "alpha").unwrap(), zeta);
        // The watch event arrives: the overlay entry goes.
        alloc::apply(&mut store, &patches);
        c.plan(&store, &cfg);
        assert!(c.overlay.is_empty());
    }
}
