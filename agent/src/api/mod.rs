//! API mode: the Kubernetes API server as the agent's input, and the
//! controller's allocations written back to it.
//!
//! The same store and compiler as manifest mode; only the source of events
//! differs. The pieces:
//!
//! * [`connect`] builds a `kube` client from a kubeconfig file or from the
//!   pod's service account (in-cluster);
//! * [`watch`] lists and watches one resource kind with resource versions,
//!   bookmarks and a relist on `410 Gone`, and turns what it sees into store
//!   events ([`watch::feed`]): a relist replaces the kind's contents, so a
//!   deletion missed while the watch was down is still seen;
//! * [`write`] turns the controller's [`crate::alloc::Patch`]es into API
//!   writes: merge patches of annotations, and the Service status
//!   subresource for LoadBalancer ingress. Never `spec.clusterIP`, nodePorts
//!   or `spec.nodeName`: the API server and the scheduler own those;
//! * [`lease`] is leader election through a `coordination.k8s.io/v1` Lease,
//!   client-go's algorithm, so only one controller writes at a time;
//! * [`policy`] makes the compiler's AdminNetworkPolicy and
//!   BaselineAdminNetworkPolicy types (`policy.networking.k8s.io/v1alpha1`
//!   custom resources) watchable with the same machinery;
//! * [`run`] puts it together: the watchers feed one store, the node role
//!   syncs the switch from it, the controller role (when leader) allocates.
//!
//! We use the `kube` client (its `Api`, typed requests and watch-event
//! decoding) but not `kube-runtime`'s watcher: our loop is small, and
//! keeping it ours makes every resource version it sends visible to the
//! tests, which run it against a wire-format test server (no API server
//! can run on the development machines).

pub mod cli;
pub mod lease;
pub mod policy;
pub mod run;
pub mod watch;
pub mod write;

use std::path::PathBuf;

/// Where the API server is and how to authenticate to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, the
    /// token and CA under `/var/run/secrets/kubernetes.io/serviceaccount`.
    InCluster,
}

/// A client for the API server named by `source`.
pub async fn connect(source: &Source) -> Result<kube::Client, String> {
    let config = match source {
        Source::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        Source::InCluster => {
            kube::Config::incluster().map_err(|e| format!("in-cluster configuration: {e}"))?
        }
    };
    kube::Client::try_from(config).map_err(|e| format!("API client: {e}"))
}
