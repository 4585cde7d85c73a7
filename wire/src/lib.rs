//! Zero-copy views of the packet headers that oxvs switches on.
//!
//! This is the leaf crate of the workspace: it depends on nothing, does no
//! I/O and never allocates. Each header is a view `XxxPacket<T: AsRef<[u8]>>`
//! over caller-owned bytes, in the style of smoltcp's `wire` module: a
//! private `field` module names the byte offsets, `new_checked` proves once
//! that every fixed field and every length the header claims lies inside the
//! buffer, and from then on the accessors are plain loads that cannot panic.
//! Setters are available when the buffer is also `AsMut<[u8]>`, so the
//! datapath can rewrite headers in place and patch checksums incrementally
//! (see [`checksum`]).
//!
//! Views are created on sub-slices (the IPv4 view over the Ethernet payload,
//! and so on), so an [`Error`] reports offsets relative to the slice it was
//! given; [`Error::at`] rebases it for callers that parse nested headers.
//!
//! Why views rather than parsed structs: a switch touches a handful of fields
//! of every packet and rewrites a few of them in place. Copying every header
//! into an owned struct would cost more than the lookups it feeds, and would
//! still need a second path to write the changes back.
//!
//! A view trusts `T::as_ref` to return the same slice every time it is
//! called, as every buffer type in this workspace does; a buffer type that
//! shrinks between calls can make an accessor panic (never misbehave
//! silently), because every access is still bounds-checked by Rust.

#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod geneve;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

mod bytes;
mod error;

#[cfg(test)]
mod crosscheck;
#[cfg(test)]
mod fixtures;

pub use arp::ArpPacket;
pub use error::{Error, ErrorKind, Layer};
pub use ethernet::{ethertype, EthernetFrame};
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::{ipproto, Ipv4Packet};
pub use ipv6::{Ipv6Frag, Ipv6Packet, Ipv6Upper};
pub use tcp::TcpPacket;
pub use udp::UdpPacket;
pub use vlan::VlanHeader;

/// An IEEE 802 MAC address, in the order its bytes appear on the wire.
pub type MacAddr = [u8; 6];
