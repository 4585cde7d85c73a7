//! List and watch one kind, the way the API concepts page describes it
//! ("Efficient detection of changes"): LIST gives the objects and the
//! collection's `resourceVersion`; WATCH from that version gives every
//! change after it; each event's object carries the version to resume
//! from, and BOOKMARK events (asked for with `allowWatchBookmarks=true`)
//! advance it when nothing of ours changed, so a reconnect after a quiet
//! hour does not ask for a version the server has compacted away.
//!
//! When the version is too old the server answers `410 Gone`, either as
//! the HTTP status of the watch request or as an `ERROR` event whose
//! object is a `Status` with `code: 410` (the watch cache does the
//! latter). Both mean the same: the history is gone, list again. The new
//! listing replaces the kind's contents in the store ([`feed`]), so an
//! object deleted while we were not watching is deleted here too.
//!
//! [`Reflector::step`] does one thing (a list, opening a watch, one event)
//! and returns what happened, so tests can drive it one step at a time;
//! [`Reflector::run`] loops over it with backoff on errors and sends the
//! results to the agent's loop.

use crate::object::{Kind, Object, ObjectKey};
use crate::policy::types::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use crate::store::{Event, Store};
use futures_util::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;
use tokio::sync::mpsc;

/// A kind the agent watches into its store.
pub trait Watched:
    Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static
{
    /// The store's kind.
    const KIND: Kind;
    /// The object, for the store.
    fn into_object(self) -> Object;
}

macro_rules! watched {
    ($ty:ty, $kind:ident) => {
        impl Watched for $ty {
            const KIND: Kind = Kind::$kind;
            fn into_object(self) -> Object {
                Object::$kind(self)
            }
        }
    };
}
watched!(Node, Node);
watched!(Namespace, Namespace);
watched!(Pod, Pod);
watched!(Service, Service);
watched!(EndpointSlice, EndpointSlice);
watched!(NetworkPolicy, NetworkPolicy);
watched!(AdminNetworkPolicy, AdminNetworkPolicy);
watched!(BaselineAdminNetworkPolicy, BaselineAdminNetworkPolicy);

/// What one step saw.
#[derive(Debug)]
pub enum Step<K> {
    /// A complete listing (the first, or the one after `410 Gone`).
    Listed(Vec<K>),
    /// An object was added or modified.
    Applied(K),
    /// An object was deleted (its last state).
    Deleted(K),
    /// A watch was opened from this resource version.
    Watching(String),
    /// A bookmark moved the resource version here.
    Bookmark(String),
    /// `410 Gone`: the next step lists again.
    Expired,
    /// The server ended the watch (its timeout); the next step resumes it
    /// from the last version seen.
    Ended,
}

/// Counters of one reflector, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Complete listings (pages count once).
    pub lists: u64,
    /// Watch requests opened.
    pub watches: u64,
    /// ADDED, MODIFIED and DELETED events.
    pub events: u64,
    /// BOOKMARK events.
    pub bookmarks: u64,
    /// `410 Gone`, either way it came.
    pub expired: u64,
}

/// What a reflector can watch: any resource with typed metadata (the
/// store's kinds, and the policy custom resources of [`super::policy`]).
pub trait Listable:
    Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + 'static
{
}
impl<K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + 'static> Listable
    for K
{
}

/// The list-then-watch state machine of one kind.
pub struct Reflector<K: Listable> {
    api: Api<K>,
    /// The version to resume from; `None`: list first.
    version: Option<String>,
    stream: Option<BoxStream<'static, kube::Result<WatchEvent<K>>>>,
    /// The server-side timeout asked of each watch, in seconds.
    pub watch_timeout: u32,
    /// LIST page size (`limit`); pages are followed with `continue`.
    pub page_size: u32,
    /// What it has done.
    pub counters: Counters,
}

fn version_of<K: Resource>(o: &K) -> Option<String> {
    o.meta().resource_version.clone()
}

impl<K: Listable> Reflector<K> {
    /// A reflector over every object of the kind (all namespaces).
    pub fn new(client: kube::Client) -> Reflector<K> {
        Reflector::with_api(Api::all(client))
    }

    /// A reflector over `api` (a namespace's objects, say).
    pub fn with_api(api: Api<K>) -> Reflector<K> {
        Reflector {
            api,
            version: None,
            stream: None,
            watch_timeout: 290,
            page_size: 500,
            counters: Counters::default(),
        }
    }

    /// The version a watch would resume from (`None`: it will list).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    fn expired(&mut self) -> Step<K> {
        self.version = None;
        self.stream = None;
        self.counters.expired += 1;
        Step::Expired
    }

    async fn list(&mut self) -> kube::Result<Step<K>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        let version = loop {
            let lp = ListParams {
                limit: Some(self.page_size),
                continue_token: token.take(),
                ..ListParams::default()
            };
            let page = self.api.list(&lp).await?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => token = Some(c),
                None => break page.metadata.resource_version.unwrap_or_default(),
            }
        };
        self.counters.lists += 1;
        self.version = Some(version);
        Ok(Step::Listed(items))
    }

    /// One step: list if there is no version, else open a watch if none is
    /// open, else wait for the watch's next event. An error leaves the
    /// state as it was (the caller backs off and steps again), except that
    /// a failed watch is reopened from the same version.
    pub async fn step(&mut self) -> kube::Result<Step<K>> {
        let Some(version) = self.version.clone() else {
            return self.list().await;
        };
        let Some(stream) = self.stream.as_mut() else {
            let wp = WatchParams {
                timeout: Some(self.watch_timeout),
                bookmarks: true,
                ..WatchParams::default()
            };
            return match self.api.watch(&wp, &version).await {
                Ok(s) => {
                    self.counters.watches += 1;
                    self.stream = Some(s.boxed());
                    Ok(Step::Watching(version))
                }
                Err(kube::Error::Api(s)) if s.code == 410 => Ok(self.expired()),
                Err(e) => Err(e),
            };
        };
        let ev = match stream.next().await {
            None => {
                self.stream = None;
                return Ok(Step::Ended);
            }
            Some(Err(e)) => {
                self.stream = None;
                return Err(e);
            }
            Some(Ok(ev)) => ev,
        };
        Ok(match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                self.counters.events += 1;
                self.version = version_of(&o).or(self.version.take());
                Step::Applied(o)
            }
            WatchEvent::Deleted(o) => {
                self.counters.events += 1;
                self.version = version_of(&o).or(self.version.take());
                Step::Deleted(o)
            }
            WatchEvent::Bookmark(b) => {
                self.counters.bookmarks += 1;
                self.version = Some(b.metadata.resource_version.clone());
                Step::Bookmark(b.metadata.resource_version)
            }
            WatchEvent::Error(s) if s.code == 410 => self.expired(),
            WatchEvent::Error(s) => {
                // Any other error ends this watch; it is reopened from the
                // same version.
                self.stream = None;
                return Err(kube::Error::Api(s));
            }
        })
    }
}

impl<K: Watched> Reflector<K> {
    /// Steps forever, sending what changes the store to `tx`, backing off
    /// (1 s doubling to 30 s) on errors; returns when `tx` is closed.
    pub async fn run(mut self, tx: mpsc::Sender<Update>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let update = match self.step().await {
                Ok(step) => {
                    backoff = Duration::from_secs(1);
                    match step {
                        Step::Listed(items) => Some(Change::Listed(
                            items.into_iter().map(Watched::into_object).collect(),
                        )),
                        Step::Applied(o) => Some(Change::Applied(o.into_object())),
                        Step::Deleted(o) => Some(Change::Deleted(o.into_object().key())),
                        Step::Expired => Some(Change::Expired),
                        Step::Watching(_) | Step::Bookmark(_) | Step::Ended => None,
                    }
                }
                Err(e) => {
                    // A kind the server does not serve (the policy CRDs not
                    // installed: 404 on the list) has no objects: say so,
                    // so the agent does not wait for it, and keep asking.
                    let missing = matches!(&e, kube::Error::Api(s) if s.code == 404)
                        && self.version.is_none();
                    if missing {
                        let u = Update {
                            kind: K::KIND,
                            change: Change::Listed(Vec::new()),
                        };
                        if tx.send(u).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx
                        .send(Update {
                            kind: K::KIND,
                            change: Change::Failed(e.to_string()),
                        })
                        .await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    None
                }
            };
            if let Some(change) = update {
                let u = Update {
                    kind: K::KIND,
                    change,
                };
                if tx.send(u).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A change to one kind, from its reflector to the agent's loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The kind.
    pub kind: Kind,
    /// What changed.
    pub change: Change,
}

/// What a reflector saw, as the store needs it.
// Made once per watch event and moved; not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The kind's complete contents.
    Listed(Vec<Object>),
    /// An object added or modified.
    Applied(Object),
    /// An object deleted.
    Deleted(ObjectKey),
    /// `410 Gone`: a listing follows.
    Expired,
    /// A request failed (retried with backoff); the message says why.
    Failed(String),
}

/// Applies one update to the store; returns the store events it made
/// (none when nothing changed). A listing replaces the contents of its
/// kind only ([`Store::replace`] over the other kinds plus the listing).
pub fn feed(store: &mut Store, u: Update) -> Vec<Event> {
    match u.change {
        Change::Listed(objects) => {
            let mut all: Vec<Object> = store
                .iter()
                .filter(|o| o.kind() != u.kind)
                .cloned()
                .collect();
            all.extend(objects.into_iter().filter(|o| o.kind() == u.kind));
            store.replace(all)
        }
        Change::Applied(o) => {
            let ev = Event::Apply(o);
            if store.apply(ev.clone()) {
                vec![ev]
            } else {
                Vec::new()
            }
        }
        Change::Deleted(k) => {
            let ev = Event::Delete(k);
            if store.apply(ev.clone()) {
                vec![ev]
            } else {
                Vec::new()
            }
        }
        Change::Expired | Change::Failed(_) => Vec::new(),
    }
}

/// Starts a reflector for each kind the compiler reads, all sending to
/// one channel: the five kinds of [`super::run::KINDS`], and with
/// `policies` the three policy kinds of [`super::run::POLICY_KINDS`]
/// (the node role's; the controller allocates without them).
pub fn spawn_all(
    client: &kube::Client,
    tx: &mpsc::Sender<Update>,
    policies: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(Reflector::<Node>::new(client.clone()).run(tx.clone())),
        tokio::spawn(Reflector::<Namespace>::new(client.clone()).run(tx.clone())),
        tokio::spawn(Reflector::<Pod>::new(client.clone()).run(tx.clone())),
        tokio::spawn(Reflector::<Service>::new(client.clone()).run(tx.clone())),
        tokio::spawn(Reflector::<EndpointSlice>::new(client.clone()).run(tx.clone())),
    ];
    if policies {
        tasks.extend([
            tokio::spawn(Reflector::<NetworkPolicy>::new(client.clone()).run(tx.clone())),
            tokio::spawn(Reflector::<AdminNetworkPolicy>::new(client.clone()).run(tx.clone())),
            tokio::spawn(
                Reflector::<BaselineAdminNetworkPolicy>::new(client.clone()).run(tx.clone()),
            ),
        ]);
    }
    tasks
}
