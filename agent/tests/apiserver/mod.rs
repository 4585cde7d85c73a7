//! A small Kubernetes API server for tests of the API-mode client, on
//! 127.0.0.1: plain HTTP/1.1 on a tokio listener, one request per
//! connection (`Connection: close`), the JSON shapes of the API reference.
//!
//! It keeps objects per resource (`pods`, `services`, ...) with one global
//! resourceVersion counter, as etcd does, and a log of changes so that a
//! WATCH from version N replays what came after N and then streams live
//! changes as chunked newline-delimited `{"type":...,"object":...}`.
//! Versions older than the compaction point are answered `410 Gone`: as an
//! `ERROR` event carrying a `Status` (the watch cache's way) or as the HTTP
//! status of the request, as the test chooses. BOOKMARKs go only to watches
//! that asked for them (`allowWatchBookmarks=true`).
//!
//! Writes follow the API's rules where the client depends on them: PATCH
//! takes only `application/merge-patch+json` (RFC 7386) and touches `status`
//! only through the `/status` subresource; PUT must carry the current
//! `metadata.resourceVersion` (else `409 Conflict`); POST of an existing
//! name is `409 AlreadyExists`. Every request is recorded for the test.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// A resource the server knows: (plural, group/version, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("nodes", "v1", "Node", false),
    ("namespaces", "v1", "Namespace", false),
    ("pods", "v1", "Pod", true),
    ("services", "v1", "Service", true),
    (
        "endpointslices",
        "discovery.k8s.io/v1",
        "EndpointSlice",
        true,
    ),
    ("leases", "coordination.k8s.io/v1", "Lease", true),
    (
        "adminnetworkpolicies",
        "policy.networking.k8s.io/v1alpha1",
        "AdminNetworkPolicy",
        false,
    ),
    (
        "baselineadminnetworkpolicies",
        "policy.networking.k8s.io/v1alpha1",
        "BaselineAdminNetworkPolicy",
        false,
    ),
    (
        "networkpolicies",
        "networking.k8s.io/v1",
        "NetworkPolicy",
        true,
    ),
];

fn resource(plural: &str) -> Option<(&'static str, &'static str, &'static str, bool)> {
    RESOURCES.iter().copied().find(|r| r.0 == plural)
}

fn plural_of(kind: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.2 == kind)
        .unwrap_or_else(|| panic!("unknown kind {kind}"))
        .0
}

/// How `410 Gone` is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// HTTP 200, then an `ERROR` event with a Status of code 410.
    Event,
    /// HTTP 410 with a Status body.
    Http,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// GET, PATCH, PUT, POST...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: String,
}

impl Request {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// Whether this is a watch.
    pub fn is_watch(&self) -> bool {
        matches!(
            self.query.get("watch").map(String::as_str),
            Some("true" | "1")
        )
    }
    /// A query parameter.
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }
}

type Key = (String, String, String);

#[derive(Clone, Debug)]
struct Logged {
    rv: u64,
    plural: String,
    namespace: String,
    type_: &'static str,
    object: Value,
}

#[derive(Clone, Debug)]
enum Live {
    Event(Logged),
    Bookmark { plural: String, rv: u64 },
    Close { plural: String },
    Expire { plural: String },
}

struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Logged>,
    compacted: u64,
    gone: Gone,
    requests: Vec<Request>,
    open_watches: usize,
}

/// The server.
#[derive(Clone)]
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Live>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

enum Target {
    Collection {
        plural: String,
        namespace: Option<String>,
    },
    Object {
        key: Key,
        status: bool,
    },
}

fn route(path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match seg.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let obj = |plural: &str, ns: &str, name: &str, status: bool| Target::Object {
        key: (plural.into(), ns.into(), name.into()),
        status,
    };
    Some(match rest {
        [plural] => Target::Collection {
            plural: plural.to_string(),
            namespace: None,
        },
        ["namespaces", name, "status"] => obj("namespaces", "", name, true),
        ["namespaces", ns, plural] => Target::Collection {
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
        },
        ["namespaces", ns, plural, name] => obj(plural, ns, name, false),
        ["namespaces", ns, plural, name, "status"] => obj(plural, ns, name, true),
        ["namespaces", name] => obj("namespaces", "", name, false),
        [plural, name] => obj(plural, "", name, false),
        [plural, name, "status"] => obj(plural, "", name, true),
        _ => return None,
    })
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores `obj` under `key` as a change of `type_`; returns the stored object.
    fn record(&mut self, key: Key, mut obj: Value, type_: &'static str) -> Logged {
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if type_ == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), obj.clone());
        }
        let l = Logged {
            rv,
            plural: key.0,
            namespace: key.1,
            type_,
            object: obj,
        };
        self.log.push(l.clone());
        l
    }

    fn list(&self, plural: &str, ns: Option<&str>) -> Value {
        let (_, gv, kind, _) = resource(plural).expect("known resource");
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((p, n, _), _)| p == plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, o)| {
                // Items of a list carry no kind or apiVersion.
                let mut o = o.clone();
                if let Some(m) = o.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                o
            })
            .collect();
        json!({"kind": format!("{kind}List"), "apiVersion": gv,
               "metadata": {"resourceVersion": self.rv.to_string()}, "items": items})
    }
}

fn event_line(type_: &str, object: &Value) -> String {
    let mut s = json!({"type": type_, "object": object}).to_string();
    s.push('\n');
    s
}

async fn respond(sock: &mut TcpStream, code: u16, body: &Value) {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(text.as_bytes()).await;
    let _ = sock.shutdown().await;
}

async fn chunk(sock: &mut TcpStream, data: &str) -> bool {
    let frame = format!("{:x}\r\n{data}\r\n", data.len());
    sock.write_all(frame.as_bytes()).await.is_ok() && sock.flush().await.is_ok()
}

async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let mut headers = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2F", "/").replace("%3D", "="))
        })
        .collect();
    Some(Request {
        method,
        path: path.to_string(),
        query,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

impl ApiServer {
    /// Starts a server on 127.0.0.1 (a free port) in the current runtime.
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (live, _) = broadcast::channel(4096);
        let server = ApiServer {
            addr: listener.local_addr().expect("addr"),
            state: Arc::new(Mutex::new(State {
                rv: 100,
                objects: BTreeMap::new(),
                log: Vec::new(),
                compacted: 0,
                gone: Gone::Event,
                requests: Vec::new(),
                open_watches: 0,
            })),
            live,
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.handle(sock).await });
            }
        });
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube` client for it.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    /// A kubeconfig file naming this server, with a bearer token.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: agent\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: agent\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// How `410 Gone` is told from now on.
    pub fn set_gone(&self, g: Gone) {
        self.state.lock().unwrap().gone = g;
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Watches open right now.
    pub fn open_watches(&self) -> usize {
        self.state.lock().unwrap().open_watches
    }

    fn key_of(obj: &Value) -> Key {
        let plural = plural_of(obj["kind"].as_str().expect("kind"));
        let namespaced = resource(plural).expect("resource").3;
        let ns = if namespaced {
            obj["metadata"]["namespace"].as_str().unwrap_or("default")
        } else {
            ""
        };
        let name = obj["metadata"]["name"].as_str().expect("name");
        (plural.into(), ns.into(), name.into())
    }

    /// Creates or replaces an object (with `kind` and `apiVersion`), as
    /// another client would; watches see ADDED or MODIFIED.
    pub fn put(&self, obj: Value) -> u64 {
        let key = Self::key_of(&obj);
        let mut st = self.state.lock().unwrap();
        let t = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let l = st.record(key, obj, t);
        let _ = self.live.send(Live::Event(l.clone()));
        l.rv
    }

    /// Deletes an object; watches see DELETED.
    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        let plural = plural_of(kind);
        let ns = if resource(plural).unwrap().3 { ns } else { "" };
        let key: Key = (plural.into(), ns.into(), name.into());
        let obj = st.objects.get(&key).cloned().expect("exists");
        let l = st.record(key, obj, "DELETED");
        let _ = self.live.send(Live::Event(l));
    }

    /// Deletes an object while nobody watches: the open watches of its
    /// kind end, and the history is compacted past the deletion, so a
    /// client resuming from its old version is told `410 Gone`.
    pub fn delete_unseen(&self, kind: &str, ns: &str, name: &str) {
        let plural = plural_of(kind);
        {
            let mut st = self.state.lock().unwrap();
            let ns = if resource(plural).unwrap().3 { ns } else { "" };
            let key: Key = (plural.into(), ns.into(), name.into());
            let obj = st.objects.get(&key).cloned().expect("exists");
            st.record(key, obj, "DELETED");
            st.compacted = st.rv;
            st.log.clear();
        }
        let _ = self.live.send(Live::Close {
            plural: plural.into(),
        });
    }

    /// Sends a BOOKMARK at the current version to the kind's watches.
    pub fn bookmark(&self, kind: &str) {
        let rv = self.rv();
        let _ = self.live.send(Live::Bookmark {
            plural: plural_of(kind).into(),
            rv,
        });
    }

    /// Ends the kind's open watches (as the server's timeout does).
    pub fn close_watches(&self, kind: &str) {
        let _ = self.live.send(Live::Close {
            plural: plural_of(kind).into(),
        });
    }

    /// Compacts the history (every version so far is too old) and tells
    /// the kind's open watches with an `ERROR` 410 event.
    pub fn expire(&self, kind: &str) {
        {
            let mut st = self.state.lock().unwrap();
            st.compacted = st.rv;
            st.log.clear();
        }
        let _ = self.live.send(Live::Expire {
            plural: plural_of(kind).into(),
        });
    }

    /// An object as stored.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let plural = plural_of(kind);
        let ns = if resource(plural).unwrap().3 { ns } else { "" };
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Waits (up to 10 s) until `f` holds of the requests so far.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        for _ in 0..1000 {
            let r = self.requests();
            if f(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "timed out waiting for {what}; requests: {:#?}",
            self.requests()
        );
    }

    async fn handle(&self, mut sock: TcpStream) {
        let Some(req) = read_request(&mut sock).await else {
            return;
        };
        self.state.lock().unwrap().requests.push(req.clone());
        let Some(target) = route(&req.path) else {
            return respond(&mut sock, 404, &status(404, "NotFound", "no such path")).await;
        };
        if let (true, Target::Collection { plural, namespace }) =
            (req.method == "GET" && req.is_watch(), &target)
        {
            let (plural, namespace) = (plural.clone(), namespace.clone());
            return self.watch(sock, &req, plural, namespace).await;
        }
        let (code, body) = self.answer(&req, target);
        respond(&mut sock, code, &body).await
    }

    /// Every request but a watch: the status code and body.
    fn answer(&self, req: &Request, target: Target) -> (u16, Value) {
        let mut st = self.state.lock().unwrap();
        let (code, body, event) = match (req.method.as_str(), target) {
            ("GET", Target::Collection { plural, namespace }) => {
                (200, st.list(&plural, namespace.as_deref()), None)
            }
            ("GET", Target::Object { key, .. }) => match st.objects.get(&key) {
                Some(o) => (200, o.clone(), None),
                None => {
                    let msg = format!("{} \"{}\" not found", key.0, key.2);
                    (404, status(404, "NotFound", &msg), None)
                }
            },
            ("POST", Target::Collection { plural, namespace }) => {
                let mut obj = req.json();
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let ns = namespace.unwrap_or_default();
                let key: Key = (plural.clone(), ns.clone(), name.clone());
                if st.objects.contains_key(&key) {
                    let msg = format!("{plural} \"{name}\" already exists");
                    (409, status(409, "AlreadyExists", &msg), None)
                } else {
                    if !ns.is_empty() {
                        obj["metadata"]["namespace"] = json!(ns);
                    }
                    obj["metadata"]["uid"] = json!(format!("uid-{}", st.rv + 1));
                    let l = st.record(key, obj, "ADDED");
                    (201, l.object.clone(), Some(l))
                }
            }
            ("PUT", Target::Object { key, .. }) => {
                let obj = req.json();
                match st.objects.get(&key).cloned() {
                    None => (404, status(404, "NotFound", "not found"), None),
                    Some(cur) => {
                        let want = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
                        if !want.is_empty()
                            && Some(want) != cur["metadata"]["resourceVersion"].as_str()
                        {
                            let msg = format!(
                                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                                key.0, key.2
                            );
                            (409, status(409, "Conflict", &msg), None)
                        } else {
                            let l = st.record(key, obj, "MODIFIED");
                            (200, l.object.clone(), Some(l))
                        }
                    }
                }
            }
            ("PATCH", Target::Object { key, status: sub }) => {
                let ct = req.headers.get("content-type").cloned().unwrap_or_default();
                match st.objects.get(&key).cloned() {
                    _ if ct != "application/merge-patch+json" => {
                        let msg = format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json (got {ct})");
                        (415, status(415, "UnsupportedMediaType", &msg), None)
                    }
                    None => (404, status(404, "NotFound", "not found"), None),
                    Some(mut cur) => {
                        // The main resource ignores status; the subresource
                        // takes only status.
                        let patch = req.json();
                        let mut p = patch.clone();
                        if sub {
                            p = json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)});
                        } else if let Some(m) = p.as_object_mut() {
                            m.remove("status");
                        }
                        merge_patch(&mut cur, &p);
                        let l = st.record(key, cur, "MODIFIED");
                        (200, l.object.clone(), Some(l))
                    }
                }
            }
            _ => (405, status(405, "MethodNotAllowed", "not allowed"), None),
        };
        drop(st);
        if let Some(l) = event {
            let _ = self.live.send(Live::Event(l));
        }
        (code, body)
    }

    async fn watch(&self, mut sock: TcpStream, req: &Request, plural: String, ns: Option<String>) {
        let bookmarks = req.q("allowWatchBookmarks") == Some("true");
        let from: u64 = req
            .q("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let matches =
            |l: &Logged| l.plural == plural && ns.as_ref().is_none_or(|n| *n == l.namespace);
        let (backlog, mut rx, gone) = {
            let st = self.state.lock().unwrap();
            let gone = from < st.compacted;
            let backlog: Vec<Logged> = st
                .log
                .iter()
                .filter(|l| l.rv > from && matches(l))
                .cloned()
                .collect();
            (backlog, self.live.subscribe(), gone.then_some(st.gone))
        };
        let too_old = format!("too old resource version: {from} ({})", self.rv());
        if gone == Some(Gone::Http) {
            return respond(&mut sock, 410, &status(410, "Expired", &too_old)).await;
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let expired_line = event_line("ERROR", &status(410, "Expired", &too_old));
        if gone == Some(Gone::Event) {
            chunk(&mut sock, &expired_line).await;
            let _ = sock.write_all(b"0\r\n\r\n").await;
            return;
        }
        self.state.lock().unwrap().open_watches += 1;
        let mut ok = true;
        for l in backlog {
            ok &= chunk(&mut sock, &event_line(l.type_, &l.object)).await;
        }
        let (_, gv, kind, _) = resource(&plural).expect("resource");
        while ok {
            let Ok(live) = rx.recv().await else { break };
            match live {
                Live::Event(l) if matches(&l) && l.rv > from => {
                    ok = chunk(&mut sock, &event_line(l.type_, &l.object)).await;
                }
                Live::Bookmark { plural: p, rv } if p == plural && bookmarks => {
                    let obj = json!({"kind": kind, "apiVersion": gv,
                                     "metadata": {"resourceVersion": rv.to_string()}});
                    ok = chunk(&mut sock, &event_line("BOOKMARK", &obj)).await;
                }
                Live::Close { plural: p } if p == plural => break,
                Live::Expire { plural: p } if p == plural => {
                    chunk(&mut sock, &expired_line).await;
                    break;
                }
                _ => {}
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
        let _ = sock.shutdown().await;
        self.state.lock().unwrap().open_watches -= 1;
    }
}
