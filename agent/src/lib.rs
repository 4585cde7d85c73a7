//! oxvs-agent: Kubernetes objects become a node's oxvs rules.
//!
//! The seed's model (NSX-T's NCP) on oxvs: a namespace gets a subnet of the
//! pod block and a SNAT address, a pod an address of its namespace's subnet,
//! a Service a ClusterIP from the last /20 of the block and, as a
//! LoadBalancer, an address from the external pool. The pieces, in the
//! order data flows through them:
//!
//! * [`manifest`] reads YAML as `kubectl apply -f` does, into
//! * [`store`], the latest objects, fed by events (a watcher can feed it);
//! * [`alloc`] is the controller role: pure allocation functions whose
//!   results are written onto the objects, so they survive restarts;
//! * [`compile`] is pure: objects + [`config`] + node name → [`rules`];
//! * [`sync`] compares them with what oxvsd has and sends the difference
//!   as one bundle over the control socket ([`ctl::client`]);
//! * [`sim`] runs packets through compiled rules with the switch's own
//!   classifier, for tests and tracing; [`show`] prints kubectl-shaped tables.
//!
//! Depends on `ctl` (syntax, protocol) and `flowtable` (the classifier for
//! [`sim`]); never on `datapath`. No unsafe code.

#![forbid(unsafe_code)]

pub mod alloc;
pub mod api;
pub mod app;
pub mod compile;
pub mod config;
pub mod cookie;
pub mod deploy;
pub mod endpoints;
pub mod iptables;
pub mod kubectl;
pub mod manifest;
pub mod net;
pub mod object;
pub mod podnet;
pub mod policy;
pub mod rules;
pub mod show;
pub mod sim;
pub mod store;
pub mod sync;
pub mod syncer;
pub mod synth;
pub mod trace;
pub mod wake;
