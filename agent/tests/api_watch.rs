//! The API-mode reflector against a wire-format API server on 127.0.0.1:
//! list then watch from the list's version, bookmarks, `410 Gone` both ways
//! it comes, and changes reaching the store and the compiled rules.

mod apiserver;
mod common;

use agent::api::watch::{self, feed, Change, Reflector, Step, Update};
use agent::compile::{compile, NodeView};
use agent::object::{Kind, Object, ObjectKey};
use agent::store::{Event, Store};
use apiserver::{ApiServer, Gone};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

fn pod(ns: &str, name: &str, ip: &str) -> Value {
    json!({"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                        "labels": {"app": "web"}},
           "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox"}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

fn to_value(o: &Object) -> Value {
    o.to_json()
}

fn update(kind: Kind, step: Step<Pod>) -> Option<Update> {
    let change = match step {
        Step::Listed(items) => Change::Listed(items.into_iter().map(Object::Pod).collect()),
        Step::Applied(p) => Change::Applied(Object::Pod(p)),
        Step::Deleted(p) => Change::Deleted(Object::Pod(p).key()),
        _ => return None,
    };
    Some(Update { kind, change })
}

async fn step(r: &mut Reflector<Pod>) -> Step<Pod> {
    tokio::time::timeout(Duration::from_secs(10), r.step())
        .await
        .expect("a step within 10 s")
        .expect("the step succeeds")
}

#[tokio::test]
async fn lists_then_watches_from_the_list_version_and_resumes_from_a_bookmark() {
    let api = ApiServer::start().await;
    api.put(pod("dev", "a", "10.244.0.2"));
    api.put(pod("dev", "b", "10.244.0.3"));
    let list_rv = api.rv();
    let mut r = Reflector::<Pod>::new(api.client());
    let mut store = Store::default();

    let Step::Listed(items) = step(&mut r).await else {
        panic!("lists first")
    };
    assert_eq!(items.len(), 2);
    feed(&mut store, update(Kind::Pod, Step::Listed(items)).unwrap());
    let list = &api.requests()[0];
    assert_eq!(
        (list.method.as_str(), list.path.as_str()),
        ("GET", "/api/v1/pods")
    );
    assert!(!list.is_watch());
    assert_eq!(list.q("limit"), Some("500"), "paged");
    assert_eq!(
        list.q("resourceVersion"),
        None,
        "a consistent read, not from a cache"
    );

    let Step::Watching(v) = step(&mut r).await else {
        panic!("then watches")
    };
    assert_eq!(v, list_rv.to_string());
    let w = &api.requests()[1];
    assert!(w.is_watch());
    assert_eq!(w.path, "/api/v1/pods");
    assert_eq!(w.q("resourceVersion"), Some(list_rv.to_string().as_str()));
    assert_eq!(w.q("allowWatchBookmarks"), Some("true"));
    assert_eq!(w.q("timeoutSeconds"), Some("290"));

    // An ADDED event reaches the store.
    let rv_c = api.put(pod("dev", "c", "10.244.0.4"));
    let s = step(&mut r).await;
    assert!(matches!(&s, Step::Applied(p) if p.metadata.name.as_deref() == Some("c")));
    let ev = feed(&mut store, update(Kind::Pod, s).unwrap());
    assert_eq!(ev.len(), 1);
    assert_eq!(r.version(), Some(rv_c.to_string().as_str()));

    // Other kinds move the global version; a bookmark carries it to us.
    api.put(json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "prod"}}));
    api.put(json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "test"}}));
    let now = api.rv();
    assert!(now > rv_c);
    api.bookmark("Pod");
    let Step::Bookmark(b) = step(&mut r).await else {
        panic!("bookmark")
    };
    assert_eq!(b, now.to_string());
    assert_eq!(r.counters.bookmarks, 1);

    // The server ends the watch (its timeout); the reconnect resumes from
    // the bookmark's version, not the last pod's, and lists nothing again.
    api.close_watches("Pod");
    assert!(matches!(step(&mut r).await, Step::Ended));
    let Step::Watching(v) = step(&mut r).await else {
        panic!("watches again")
    };
    assert_eq!(v, now.to_string());
    let reqs = api.requests();
    let last = reqs.last().unwrap();
    assert!(last.is_watch());
    assert_eq!(last.q("resourceVersion"), Some(now.to_string().as_str()));
    assert_eq!(
        reqs.iter().filter(|q| !q.is_watch()).count(),
        1,
        "one list only"
    );

    // MODIFIED and DELETED.
    let mut changed = pod("dev", "a", "10.244.0.2");
    changed["metadata"]["labels"]["app"] = json!("db");
    api.put(changed);
    let s = step(&mut r).await;
    feed(&mut store, update(Kind::Pod, s).unwrap());
    api.delete("Pod", "dev", "b");
    let s = step(&mut r).await;
    assert!(matches!(s, Step::Deleted(_)));
    let ev = feed(&mut store, update(Kind::Pod, s).unwrap());
    assert_eq!(
        ev,
        vec![Event::Delete(ObjectKey::new(Kind::Pod, "dev", "b"))]
    );
    let names: Vec<_> = store
        .pods()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let a = store.pod("dev", "a").unwrap();
    assert_eq!(a.metadata.labels.as_ref().unwrap()["app"], "db");
}

async fn missed_deletion_is_seen_after_410(gone: Gone) {
    let api = ApiServer::start().await;
    api.set_gone(gone);
    api.put(pod("dev", "a", "10.244.0.2"));
    api.put(pod("dev", "b", "10.244.0.3"));
    let mut r = Reflector::<Pod>::new(api.client());
    let mut store = Store::default();
    let s = step(&mut r).await;
    feed(&mut store, update(Kind::Pod, s).unwrap());
    assert!(matches!(step(&mut r).await, Step::Watching(_)));
    let old = r.version().unwrap().to_string();

    // Pod b goes while the watch is down, and the history is compacted.
    api.delete_unseen("Pod", "dev", "b");
    api.put(pod("dev", "d", "10.244.0.5"));
    let mut saw_expired = false;
    for _ in 0..4 {
        match step(&mut r).await {
            Step::Expired => {
                saw_expired = true;
                break;
            }
            Step::Ended | Step::Watching(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_expired, "410 Gone seen");
    assert_eq!(r.counters.expired, 1);
    assert_eq!(r.version(), None, "the next step lists");
    let reqs = api.requests();
    let resumed = reqs.last().unwrap();
    assert!(resumed.is_watch());
    assert_eq!(resumed.q("resourceVersion"), Some(old.as_str()));

    let s = step(&mut r).await;
    assert!(matches!(&s, Step::Listed(items) if items.len() == 2));
    let ev = feed(&mut store, update(Kind::Pod, s).unwrap());
    assert!(
        ev.contains(&Event::Delete(ObjectKey::new(Kind::Pod, "dev", "b"))),
        "the deletion missed during the gap: {ev:?}"
    );
    assert!(store.pod("dev", "d").is_some());
    assert!(store.pod("dev", "b").is_none());
    let reqs = api.requests();
    let relist = reqs.last().unwrap();
    assert!(!relist.is_watch());
    assert_eq!(relist.path, "/api/v1/pods");
    // And the watch resumes from the new list's version.
    let Step::Watching(v) = step(&mut r).await else {
        panic!("watches")
    };
    assert_eq!(v, api.rv().to_string());
}

#[tokio::test]
async fn a_410_error_event_relists_and_a_deletion_missed_in_the_gap_is_seen() {
    missed_deletion_is_seen_after_410(Gone::Event).await;
}

#[tokio::test]
async fn an_http_410_on_the_watch_request_relists_too() {
    missed_deletion_is_seen_after_410(Gone::Http).await;
}

#[tokio::test]
async fn an_expiry_in_the_middle_of_a_watch_relists() {
    let api = ApiServer::start().await;
    api.put(pod("dev", "a", "10.244.0.2"));
    let mut r = Reflector::<Pod>::new(api.client());
    step(&mut r).await;
    step(&mut r).await;
    api.expire("Pod");
    assert!(matches!(step(&mut r).await, Step::Expired));
    assert!(matches!(step(&mut r).await, Step::Listed(_)));
    assert_eq!(r.counters.lists, 2);
}

#[tokio::test]
async fn a_relist_replaces_only_its_own_kind() {
    let mut store = Store::default();
    let c = common::small();
    store.replace(c.store.iter().cloned().collect());
    let services = store.services().count();
    let ev = feed(
        &mut store,
        Update {
            kind: Kind::Pod,
            change: Change::Listed(Vec::new()),
        },
    );
    assert!(ev
        .iter()
        .all(|e| matches!(e, Event::Delete(k) if k.kind == Kind::Pod)));
    assert_eq!(store.pods().count(), 0);
    assert_eq!(store.services().count(), services);
}

/// The small cluster as an API server would hold it (allocated, since the
/// controller ran), watched by all eight reflectors (the five kinds and
/// the three policy kinds): the store compiles to the same rules as
/// manifest mode, and a new EndpointSlice reaches them.
#[tokio::test]
async fn an_endpointslice_added_through_the_api_reaches_the_nodes_rules() {
    let c = common::small();
    let api = ApiServer::start().await;
    for o in c.store.iter().filter(|o| o.kind() != Kind::Deployment) {
        api.put(to_value(o));
    }
    let dir = tempdir();
    let client = agent::api::connect(&agent::api::Source::Kubeconfig(api.kubeconfig(&dir)))
        .await
        .expect("kubeconfig client");
    let (tx, mut rx) = mpsc::channel(64);
    let tasks = watch::spawn_all(&client, &tx, true);
    let mut store = Store::default();
    let mut listed = std::collections::BTreeSet::new();
    while listed.len() < 8 {
        let u = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(u.change, Change::Listed(_)) {
            listed.insert(u.kind);
        }
        feed(&mut store, u);
    }
    let auth = api.requests()[0].headers.get("authorization").cloned();
    assert_eq!(
        auth.as_deref(),
        Some("Bearer test-token"),
        "the kubeconfig's token"
    );
    let rules = |store: &Store| {
        let ports = agent::app::offline_ports(store, "node1");
        compile(NodeView {
            store,
            config: &c.config,
            node: "node1",
            ports: &ports,
        })
        .unwrap()
        .text()
    };
    let before = rules(&store);
    assert_eq!(
        before,
        common::node(&c, "node1").rules.text(),
        "same rules as manifest mode"
    );
    assert!(!before.contains("10.244.1.250"));

    // Wait for every watch to be open, then add a ready endpoint to the
    // Service `legacy`, whose only slice has no ready endpoint.
    while api.open_watches() < 8 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.put(json!({
        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": "legacy-2", "namespace": "production",
                     "labels": {"kubernetes.io/service-name": "legacy"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.250"], "nodeName": "node2",
                       "conditions": {"ready": true}}]
    }));
    let u = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.kind, Kind::EndpointSlice);
    assert_eq!(feed(&mut store, u).len(), 1);
    let after = rules(&store);
    assert!(
        after.contains("10.244.1.250"),
        "the new endpoint is in node1's rules"
    );
    assert!(
        !after.contains("10.244.1.200"),
        "a ready endpoint displaces the serving-terminating one"
    );
    for t in tasks {
        t.abort();
    }
}

/// A NetworkPolicy that arrives as a watch event changes the compiled
/// rules: the incremental compiler (what `run` uses) picks it up from the
/// store event, and its result equals a full compile.
#[tokio::test]
async fn a_network_policy_added_by_a_watch_event_changes_the_rules() {
    let c = common::small();
    let api = ApiServer::start().await;
    for o in c.store.iter().filter(|o| o.kind() != Kind::Deployment) {
        api.put(to_value(o));
    }
    let (tx, mut rx) = mpsc::channel(64);
    let tasks = watch::spawn_all(&api.client(), &tx, true);
    let mut store = Store::default();
    let mut listed = std::collections::BTreeSet::new();
    while listed.len() < 8 {
        let u = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(u.change, Change::Listed(_)) {
            listed.insert(u.kind);
        }
        feed(&mut store, u);
    }
    // A node with a pod of `production`.
    let node = store
        .pods()
        .filter(|p| p.metadata.namespace.as_deref() == Some("production"))
        .find_map(|p| agent::alloc::pod_node(p).map(str::to_string))
        .expect("a production pod on some node");
    let ports = agent::app::offline_ports(&store, &node);
    let mut inc = agent::compile::incremental::Incremental::default();
    macro_rules! view {
        ($store:expr) => {
            NodeView {
                store: $store,
                config: &c.config,
                node: &node,
                ports: &ports,
            }
        };
    }
    inc.update(view!(&store), &[]).unwrap();
    let before = inc.rules().clone();
    while api.open_watches() < 8 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.put(json!({
        "kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": "deny-ingress", "namespace": "production"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }));
    let u = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.kind, Kind::NetworkPolicy);
    let events = feed(&mut store, u);
    assert_eq!(events.len(), 1);
    let up = inc.update(view!(&store), &events).unwrap();
    assert!(!up.full, "only the policy fragment");
    let full = compile(view!(&store)).unwrap();
    assert_eq!(inc.rules(), &full);
    assert_ne!(inc.rules(), &before);
    let owner = agent::object::ObjectKey::new(Kind::NetworkPolicy, "production", "deny-ingress");
    let c = agent::cookie::cookie(&owner, agent::cookie::Category::Policy);
    let isolation: Vec<_> = full
        .flows()
        .filter(|f| f.cookie == c && f.table == 61 && f.actions == "drop")
        .collect();
    assert!(!isolation.is_empty(), "an isolation drop of the new policy");
    assert!(up.plan().bundle.contains(&format!("cookie={c:#x}")));
    for t in tasks {
        t.abort();
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "oxvs-api-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
