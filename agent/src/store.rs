//! The store: the latest version of every object, by kind, namespace and
//! name — kube-rs's `reflector::Store`. Its only input is a stream of
//! [`Event`]s (apply or delete), so the manifest loader feeds it today and a
//! Kubernetes watcher can feed it tomorrow without the compiler noticing;
//! the compiler only ever reads a store, never the network.
//!
//! [`Store::replace`] turns a complete listing (a re-read manifest
//! directory, or a watcher's relist after `410 Gone`) into the events that
//! take the store there, the way kube-rs's watcher emits a restart.

use crate::object::{Kind, Object, ObjectKey};
use crate::policy::types::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::BTreeMap;

/// One change to the store.
// An event is made once per object change and moved into the store; the
// size of the Apply variant costs nothing worth a box at every call site.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The object was created or changed.
    Apply(Object),
    /// The object is gone.
    Delete(ObjectKey),
}

/// The latest objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Object>,
}

macro_rules! typed_iter {
    ($fn:ident, $kind:ident, $ty:ty) => {
        /// Every object of this kind, by namespace and name.
        pub fn $fn(&self) -> impl Iterator<Item = &$ty> + '_ {
            self.of_kind(Kind::$kind).filter_map(|o| match o {
                Object::$kind(x) => Some(x),
                _ => None,
            })
        }
    };
}

impl Store {
    /// Applies one event; says whether the store changed.
    pub fn apply(&mut self, ev: Event) -> bool {
        match ev {
            Event::Apply(o) => {
                let k = o.key();
                if self.objects.get(&k) == Some(&o) {
                    return false;
                }
                self.objects.insert(k, o);
                true
            }
            Event::Delete(k) => self.objects.remove(&k).is_some(),
        }
    }

    /// The events that make the store hold exactly `objects` (deletes
    /// first, then applies in key order), applied; returns them.
    pub fn replace(&mut self, objects: Vec<Object>) -> Vec<Event> {
        let want: BTreeMap<ObjectKey, Object> = objects.into_iter().map(|o| (o.key(), o)).collect();
        let mut events: Vec<Event> = self
            .objects
            .keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| Event::Delete(k.clone()))
            .collect();
        for (k, o) in want {
            if self.objects.get(&k) != Some(&o) {
                events.push(Event::Apply(o));
            }
        }
        for e in &events {
            self.apply(e.clone());
        }
        events
    }

    /// The object with this key.
    pub fn get(&self, k: &ObjectKey) -> Option<&Object> {
        self.objects.get(k)
    }

    /// Every object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Object> + '_ {
        self.objects.values()
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Object> + '_ {
        let start = ObjectKey {
            kind,
            namespace: String::new(),
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, o)| o)
    }

    typed_iter!(nodes, Node, Node);
    typed_iter!(namespaces, Namespace, Namespace);
    typed_iter!(pods, Pod, Pod);
    typed_iter!(services, Service, Service);
    typed_iter!(endpoint_slices, EndpointSlice, EndpointSlice);
    typed_iter!(network_policies, NetworkPolicy, NetworkPolicy);
    typed_iter!(
        admin_network_policies,
        AdminNetworkPolicy,
        AdminNetworkPolicy
    );
    typed_iter!(
        baseline_admin_network_policies,
        BaselineAdminNetworkPolicy,
        BaselineAdminNetworkPolicy
    );

    /// The Namespace called `name`.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        match self.get(&ObjectKey::new(Kind::Namespace, "", name)) {
            Some(Object::Namespace(n)) => Some(n),
            _ => None,
        }
    }

    /// The Pod `ns/name`.
    pub fn pod(&self, ns: &str, name: &str) -> Option<&Pod> {
        match self.get(&ObjectKey::new(Kind::Pod, ns, name)) {
            Some(Object::Pod(p)) => Some(p),
            _ => None,
        }
    }

    /// Mutable access for the controller's patches.
    pub fn get_mut(&mut self, k: &ObjectKey) -> Option<&mut Object> {
        self.objects.get_mut(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ns(name: &str) -> Object {
        Object::Namespace(Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn replace_emits_the_difference() {
        let mut s = Store::default();
        assert_eq!(s.replace(vec![ns("a"), ns("b")]).len(), 2);
        assert!(
            s.replace(vec![ns("a"), ns("b")]).is_empty(),
            "nothing changed"
        );
        let ev = s.replace(vec![ns("b"), ns("c")]);
        assert_eq!(
            ev,
            vec![
                Event::Delete(ObjectKey::new(Kind::Namespace, "", "a")),
                Event::Apply(ns("c"))
            ]
        );
        assert_eq!(s.namespaces().count(), 2);
        assert!(s.namespace("c").is_some());
    }
}
