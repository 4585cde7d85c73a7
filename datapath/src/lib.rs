//! The oxvs datapath: where packets meet the rules.
//!
//! [`pipeline`] is the batch pipeline of one poll thread (parse, EMC,
//! megaflow, upcall, execute); [`exec`] applies datapath actions to bytes;
//! [`buf`] holds frames in a UMEM-shaped pool; [`port`] has the port types
//! and [`memdp`] assembles an in-memory datapath for tests and benches.
//!
//! This is the only crate that will touch the kernel (AF_XDP, AF_PACKET);
//! everything in it so far is pure logic, and `unsafe` will live in the
//! AF_XDP module alone.

#![deny(unsafe_code)]

pub mod afxdp;
pub mod buf;
pub mod daemon;
pub mod exec;
pub mod memdp;
pub mod pipeline;
pub mod port;
pub mod stats;
pub mod sys;

pub use buf::{Batch, FramePool, PacketDesc};
pub use memdp::MemDatapath;
pub use pipeline::{Pmd, PmdConfig, TxPorts};
