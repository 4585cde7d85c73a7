//! The controller role in API mode against a wire-format API server: the
//! Lease election, and the allocations written back as merge patches of
//! annotations and the Service status subresource — never `spec.clusterIP`.

mod apiserver;
mod common;

use agent::alloc::{self, SNAT_IP, SUBNET};
use agent::api::lease::{Elector, Role, Timing};
use agent::api::run::{serve, Options};
use agent::object::{Kind, Object};
use apiserver::{ApiServer, Request};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn to_value(o: &Object) -> Value {
    o.to_json()
}

fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_millis(50),
    }
}

fn lease_puts(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/leases/"))
        .collect()
}

#[tokio::test]
async fn leader_election_acquires_renews_and_a_second_candidate_waits_for_expiry() {
    let api = ApiServer::start().await;
    let client = api.client();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut a = Elector::new(
        "agent-a",
        "kube-system",
        "oxvs-controller",
        Timing::default(),
    );
    let mut b = Elector::new(
        "agent-b",
        "kube-system",
        "oxvs-controller",
        Timing::default(),
    );

    // a finds no Lease and creates it.
    let r = a
        .try_acquire_or_renew(&client, at(0), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(r, Role::Leader);
    assert!(a.is_leader(at(0)));
    let reqs = api.requests();
    let post = reqs.iter().find(|r| r.method == "POST").expect("a create");
    assert_eq!(
        post.path,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    );
    let body = post.json();
    assert_eq!(body["spec"]["holderIdentity"], "agent-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(body["spec"]["leaseTransitions"], 0);
    assert!(
        body["spec"]["renewTime"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    assert!(body["spec"]["acquireTime"].is_string());

    // b sees it held and waits.
    let r = b
        .try_acquire_or_renew(&client, at(1), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        r,
        Role::Follower {
            holder: Some("agent-a".into())
        }
    );
    assert!(
        lease_puts(&api.requests()).is_empty(),
        "a follower writes nothing"
    );

    // a renews: a PUT carrying the resourceVersion it read.
    let rv_before = api.get("Lease", "kube-system", "oxvs-controller").unwrap()["metadata"]
        ["resourceVersion"]
        .clone();
    let r = a
        .try_acquire_or_renew(&client, at(5), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(r, Role::Leader);
    let reqs = api.requests();
    let puts = lease_puts(&reqs);
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].path,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/oxvs-controller"
    );
    let body = puts[0].json();
    assert_eq!(
        body["metadata"]["resourceVersion"], rv_before,
        "optimistic concurrency"
    );
    assert_eq!(body["spec"]["holderIdentity"], "agent-a");
    assert_eq!(body["spec"]["leaseTransitions"], 0);

    // b saw the record change at 6 s: it waits a full lease from then,
    // even though its own clock could call the lease old sooner.
    let r = b
        .try_acquire_or_renew(&client, at(6), Timestamp::now())
        .await
        .unwrap();
    assert!(matches!(r, Role::Follower { .. }));
    let r = b
        .try_acquire_or_renew(&client, at(20), Timestamp::now())
        .await
        .unwrap();
    assert!(matches!(r, Role::Follower { .. }), "6 + 15 > 20");
    assert_eq!(lease_puts(&api.requests()).len(), 1);

    // a has stopped renewing; at 21 s b takes over.
    let r = b
        .try_acquire_or_renew(&client, at(21), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(r, Role::Leader);
    let l = api.get("Lease", "kube-system", "oxvs-controller").unwrap();
    assert_eq!(l["spec"]["holderIdentity"], "agent-b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);

    // a missed its renew deadline and knows it is not the leader; when it
    // tries again it finds b and follows.
    assert!(!a.is_leader(at(21)));
    let r = a
        .try_acquire_or_renew(&client, at(22), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        r,
        Role::Follower {
            holder: Some("agent-b".into())
        }
    );
}

#[tokio::test]
async fn a_write_from_a_stale_read_is_refused_and_the_writer_follows() {
    let api = ApiServer::start().await;
    let client = api.client();
    let t0 = Instant::now();
    let mut a = Elector::new(
        "agent-a",
        "kube-system",
        "oxvs-controller",
        Timing::default(),
    );
    a.try_acquire_or_renew(&client, t0, Timestamp::now())
        .await
        .unwrap();
    // c read the lease, then a renewed before c wrote: c's PUT carries the
    // old resourceVersion and the API server answers 409 Conflict.
    let stale: Lease =
        serde_json::from_value(api.get("Lease", "kube-system", "oxvs-controller").unwrap())
            .unwrap();
    a.try_acquire_or_renew(&client, t0 + Duration::from_secs(2), Timestamp::now())
        .await
        .unwrap();
    let mut c = Elector::new(
        "agent-c",
        "kube-system",
        "oxvs-controller",
        Timing::default(),
    );
    let later = t0 + Duration::from_secs(100);
    c.decide(Some(&stale), t0, Timestamp::now());
    let agent::api::lease::Decision::Update(l) = c.decide(Some(&stale), later, Timestamp::now())
    else {
        panic!("c would take over the lease it read")
    };
    let api_l: kube::Api<Lease> = kube::Api::namespaced(client.clone(), "kube-system");
    let err = api_l
        .replace("oxvs-controller", &Default::default(), &l)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    assert_eq!(
        api.get("Lease", "kube-system", "oxvs-controller").unwrap()["spec"]["holderIdentity"],
        "agent-a"
    );
}

/// The small cluster as an API server would hold it before our controller
/// ran: ClusterIPs, NodePorts and node bindings set (the API server and the
/// scheduler did that), none of our annotations, no LoadBalancer ingress.
fn seed(api: &ApiServer, c: &agent::app::Cluster) {
    for o in c.store.iter().filter(|o| o.kind() != Kind::Deployment) {
        let mut v = to_value(o);
        if let Some(a) = v["metadata"]["annotations"].as_object_mut() {
            a.retain(|k, _| !k.starts_with("oxvs.io/"));
        }
        if let Some(st) = v.get_mut("status").and_then(Value::as_object_mut) {
            st.remove("loadBalancer");
        }
        api.put(v);
    }
}

#[tokio::test]
async fn the_controller_writes_annotations_and_lb_status_as_merge_patches_and_never_the_cluster_ip()
{
    let c = common::small();
    let api = ApiServer::start().await;
    seed(&api, &c);
    let seeded = api.rv();
    let o = Options {
        cni_socket: None,
        config: c.config.clone(),
        node: None,
        socket: PathBuf::from("/nonexistent"),
        controller: true,
        identity: "agent-a".into(),
        lease: ("kube-system".into(), "oxvs-controller".into()),
        timing: timing(),
        min_sync: Duration::from_millis(100),
    };
    let task = tokio::spawn(serve(api.client(), o));

    // Wait until every allocation manifest mode made is on the API's objects.
    let want = alloc::saved_state(&c.store);
    let annotated = |api: &ApiServer| {
        want.iter().all(|p| match p {
            alloc::Patch::Annotate {
                object,
                annotations,
            } => {
                let k = agent::object::ObjectKey::parse(object).unwrap();
                let v = api.get(k.kind.name(), &k.namespace, &k.name);
                annotations.iter().all(|(a, val)| {
                    v.as_ref()
                        .and_then(|v| v["metadata"]["annotations"][a].as_str())
                        == Some(val)
                })
            }
            alloc::Patch::Ingress { object, ip } => {
                let k = agent::object::ObjectKey::parse(object).unwrap();
                let v = api.get("Service", &k.namespace, &k.name).unwrap();
                v["status"]["loadBalancer"]["ingress"][0]["ip"].as_str()
                    == ip.map(|i| i.to_string()).as_deref()
            }
            _ => true,
        })
    };
    for _ in 0..500 {
        if annotated(&api) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        annotated(&api),
        "API mode allocates what manifest mode does"
    );
    // Let a few more passes run: they must write nothing new.
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();

    let reqs = api.requests();
    // It held the lease before writing.
    let first_patch = reqs.iter().position(|r| r.method == "PATCH").unwrap();
    let lease = reqs
        .iter()
        .position(|r| r.method == "POST" && r.path.contains("/leases"))
        .unwrap();
    assert!(lease < first_patch);
    let patches: Vec<&Request> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    for p in &patches {
        assert_eq!(
            p.headers["content-type"], "application/merge-patch+json",
            "{}",
            p.path
        );
        assert_eq!(p.q("fieldManager"), Some("oxvs-agent"));
        assert!(!p.body.contains("clusterIP"), "{}: {}", p.path, p.body);
        assert!(!p.body.contains("nodePort"), "{}: {}", p.path, p.body);
        assert!(!p.body.contains("nodeName"), "{}: {}", p.path, p.body);
    }
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/services/")),
        "no Service is replaced"
    );
    // One patch per object: the controller's own writes are not repeated
    // while their watch events are on the way.
    let mut paths: Vec<&str> = patches.iter().map(|p| p.path.as_str()).collect();
    let n = paths.len();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n, "{paths:#?}");

    let dev = patches
        .iter()
        .find(|p| p.path == "/api/v1/namespaces/development")
        .expect("the namespace is patched");
    let body = dev.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "only metadata: {body}");
    let ann = body["metadata"]["annotations"].as_object().unwrap();
    assert!(
        ann.contains_key(SUBNET) && ann.contains_key(SNAT_IP),
        "{body}"
    );

    let pod_patch = patches
        .iter()
        .find(|p| p.path.starts_with("/api/v1/namespaces/development/pods/"))
        .expect("pods are patched");
    assert!(pod_patch.json()["metadata"]["annotations"][alloc::POD_IP].is_string());

    let lb: Vec<&&Request> = patches
        .iter()
        .filter(|p| p.path.ends_with("/status"))
        .collect();
    assert!(!lb.is_empty(), "a LoadBalancer Service's status is written");
    for p in lb {
        assert!(p.path.starts_with("/api/v1/namespaces/") && p.path.contains("/services/"));
        let b = p.json();
        assert_eq!(b.as_object().unwrap().len(), 1, "only status: {b}");
        assert!(
            b["status"]["loadBalancer"]["ingress"][0]["ip"].is_string(),
            "{b}"
        );
    }
    // And the API server's ClusterIPs are what they were.
    for s in c.store.services() {
        let ns = s.metadata.namespace.as_deref().unwrap();
        let name = s.metadata.name.as_deref().unwrap();
        let v = api.get("Service", ns, name).unwrap();
        assert_eq!(
            v["spec"]["clusterIP"].as_str(),
            s.spec.as_ref().unwrap().cluster_ip.as_deref()
        );
    }
    assert!(api.rv() > seeded);
}

#[tokio::test]
async fn a_standby_controller_writes_nothing() {
    let c = common::small();
    let api = ApiServer::start().await;
    seed(&api, &c);
    // Someone else holds the lease and keeps renewing it.
    let client = api.client();
    let mut other = Elector::new(
        "agent-a",
        "kube-system",
        "oxvs-controller",
        Timing::default(),
    );
    other
        .try_acquire_or_renew(&client, Instant::now(), Timestamp::now())
        .await
        .unwrap();
    let o = Options {
        cni_socket: None,
        config: c.config.clone(),
        node: None,
        socket: PathBuf::from("/nonexistent"),
        controller: true,
        identity: "agent-b".into(),
        lease: ("kube-system".into(), "oxvs-controller".into()),
        timing: timing(),
        min_sync: Duration::from_millis(100),
    };
    let task = tokio::spawn(serve(api.client(), o));
    api.wait_for("b reading the lease twice", |r| {
        r.iter()
            .filter(|q| q.method == "GET" && q.path.contains("/leases/"))
            .count()
            >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    task.abort();
    let reqs = api.requests();
    assert!(
        !reqs.iter().any(|r| r.method == "PATCH"),
        "a follower does not allocate"
    );
    assert!(lease_puts(&reqs).is_empty());
}

/// The binary itself: `oxvs-agent run --kubeconfig FILE --config FILE
/// --controller` against the server allocates the namespaces.
#[tokio::test]
async fn the_binary_in_api_mode_allocates_through_a_kubeconfig() {
    let c = common::small();
    let api = ApiServer::start().await;
    seed(&api, &c);
    let dir = std::env::temp_dir().join(format!("oxvs-api-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = api.kubeconfig(&dir);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oxvs-agent"))
        .args(["run", "--kubeconfig"])
        .arg(&kc)
        .arg("--config")
        .arg(common::fixture().join("cluster.toml"))
        .args([
            "--controller",
            "--identity",
            "bin-test",
            "--lease-namespace",
            "oxvs",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("oxvs-agent starts");
    let mut done = false;
    for _ in 0..1000 {
        let ns = api.get("Namespace", "", "production");
        if ns.is_some_and(|n| n["metadata"]["annotations"][SUBNET].is_string()) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(done, "the namespace got its subnet");
    let l = api
        .get("Lease", "oxvs", "oxvs-controller")
        .expect("the lease");
    assert_eq!(l["spec"]["holderIdentity"], "bin-test");
    assert!(api
        .requests()
        .iter()
        .all(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer test-token")));
}

/// The node role in API mode answers oxvs-cni: "pending" until the
/// controller's annotation is on the Pod (through the watch), then the
/// address, gateway and MAC it wrote.
#[tokio::test]
async fn the_node_role_answers_oxvs_cni_from_the_watched_annotations() {
    let c = common::small();
    let api = ApiServer::start().await;
    seed(&api, &c);
    let pod = c
        .store
        .pods()
        .find(|p| p.metadata.namespace.as_deref() == Some("frontend"))
        .or_else(|| c.store.pods().next())
        .expect("the fixture has pods");
    let req = ctl::podnet::PodRequest {
        namespace: pod.metadata.namespace.clone().unwrap(),
        name: pod.metadata.name.clone().unwrap(),
    };
    let dir = std::env::temp_dir().join(format!("oxvs-api-cni-{}", std::process::id()));
    let sock = dir.join("agent.sock");
    let o = Options {
        cni_socket: Some(sock.clone()),
        config: c.config.clone(),
        node: Some("node1".into()),
        socket: PathBuf::from("/nonexistent/oxvsd.sock"),
        controller: true,
        identity: "agent-a".into(),
        lease: ("kube-system".into(), "oxvs-controller".into()),
        timing: timing(),
        min_sync: Duration::from_millis(50),
    };
    let task = tokio::spawn(serve(api.client(), o));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answers = Vec::new();
    let answer = loop {
        let s = sock.clone();
        let r = req.clone();
        let a =
            tokio::task::spawn_blocking(move || ctl::podnet::query(&s, &r, Duration::from_secs(2)))
                .await
                .unwrap();
        if let Ok(a) = a {
            if a.ip.is_some() {
                break a;
            }
            answers.push(a);
        }
        assert!(
            Instant::now() < deadline,
            "no address for {req:?} within 20 s; answers: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    // What the controller wrote on the Pod is what the socket says.
    let written = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&format!("/pods/{}", req.name)))
        .map(|r| r.body)
        .collect::<Vec<_>>()
        .join("\n");
    let ip = answer.ip.clone().unwrap();
    assert!(written.contains(&ip), "{ip} not in the PATCHes: {written}");
    assert!(written.contains(answer.mac.as_deref().unwrap()));
    assert!(answer.gateway.is_some() && answer.pending.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
