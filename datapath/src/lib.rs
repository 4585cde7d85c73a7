//! The oxvs datapath: where packets meet the rules.
//!
//! [`pipeline`] is the batch pipeline of one poll thread (parse, EMC,
//! megaflow, upcall, execute); [`exec`] applies datapath actions to bytes;
//! [`buf`] holds frames in a UMEM-shaped pool; [`port`] has the port types
//! and [`memdp`] assembles an in-memory datapath for tests and benches.
//!
//! [`afxdp`] and [`port::xsk`] are the AF_XDP ports (our own BPF loader,
//! UMEM and rings), [`port::packet`] the AF_PACKET fallback, and [`daemon`]
//! is `oxvsd`: configuration, the poll thread, rule-set publication.
//!
//! This is the only crate that touches the kernel. `unsafe` is denied here
//! except in the three modules that speak the kernel ABI: [`afxdp`],
//! [`port::packet`] and [`sys`], where every block states its invariant.

#![deny(unsafe_code)]

pub mod afxdp;
pub mod buf;
pub mod daemon;
pub mod exec;
pub mod memdp;
pub mod pipeline;
pub mod policy_log;
pub mod port;
pub mod reject;
pub mod stats;
pub mod sys;
pub mod tunnel;

pub use buf::{Batch, FramePool, PacketDesc};
pub use memdp::MemDatapath;
pub use pipeline::{Pmd, PmdConfig, TxPorts};
