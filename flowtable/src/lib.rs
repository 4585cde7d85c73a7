//! The decision half of oxvs: given a packet's headers, what happens to it.
//!
//! A packet is parsed once into a [`FlowKey`] ([`mod@extract`]). The key is looked
//! up in a per-core exact-match cache ([`emc`]), then in the megaflow table
//! ([`megaflow`], tuple-space search over masked keys), and on a miss it is
//! "upcalled": [`xlate`] walks the OpenFlow-style [`classifier`] tables of a
//! [`bridge::Bridge`], collects flat datapath actions and records which key
//! bits the walk consulted; that mask and those actions become a new megaflow.
//!
//! This crate is pure logic ("sans-IO"): no sockets, no threads, no clock
//! reads; callers pass `now` in milliseconds. It never depends on libc or on
//! the datapath crate, so everything here runs in unit tests and benches.

#![forbid(unsafe_code)]

pub mod action;
pub mod drop;
pub mod field;
pub mod flow_match;
pub mod key;
pub mod port;
pub mod rule;

pub use action::{Action, DpAction, GroupType, RejectHow, RejectReply, SubField, Verdict};
pub use drop::DropReason;
pub use field::Field;
pub use flow_match::Match;
pub use key::{FlowKey, FlowMask, KEY_WORDS};
pub use port::PortNo;
pub use rule::{Bucket, FlowSpec, GroupSpec, Rule};
pub mod bridge;
pub mod cache_check;
pub mod classifier;
pub mod conjunction;
pub mod emc;
pub mod extract;
pub mod group;
pub mod journal;
pub mod mac;
pub mod megaflow;
pub mod tunnel;
pub mod xlate;

pub use bridge::{Bridge, Change, FlowFilter, RuleError};
pub use extract::{extract, Layout};
pub use xlate::{translate, TraceEvent, XlateOut};
#[cfg(test)]
mod conjunction_tests;
pub mod conntrack;
#[cfg(test)]
mod group_hash_tests;
pub mod maglev;
