//! `oxvs-pktgen`: a load generator, receiver and reflector on our own AF_XDP
//! port, fast enough that the switch under test, not the generator, is the
//! limit.
//!
//! One process drives one [`XskPort`](datapath::port::xsk::XskPort) on one
//! queue of one interface, usually a pod's `eth0` inside its network
//! namespace, from a single thread (optionally pinned). Three modes:
//!
//! * `tx` sends UDP/IPv4 frames of a fixed size over a number of flows
//!   (distinct UDP source ports), each stamped with a run id, its flow and a
//!   per-flow sequence number ([`frame`]), as fast as possible or at a rate
//!   held by a token bucket ([`rate`]); it also counts the frames that come
//!   back to it, so a reflector or a switch loop can be measured end to end.
//! * `rx` counts what arrives and checks the stamps: per-flow sequence gaps,
//!   late and duplicate frames ([`seq`]).
//! * `reflect` sends every frame straight back with its MAC addresses
//!   swapped: the I/O ceiling a switch on the same veth can be held against.
//!
//! The packet path follows the house rules: frames are built once per flow
//! as templates and only the sequence number and the UDP checksum are
//! patched per packet; no allocation, lock, `format!` or system call per
//! packet (the clock is read once per batch; `sendto` kicks and `poll`
//! belong to the port's `flush` and to idle periods). Everything that talks
//! to the kernel goes through `datapath`'s safe AF_XDP API, so this module
//! forbids `unsafe`.

#![forbid(unsafe_code)]

pub mod args;
pub mod frame;
pub mod meter;
pub mod port;
pub mod rate;
pub mod report;
pub mod rx;
pub mod seq;
pub mod tx;
