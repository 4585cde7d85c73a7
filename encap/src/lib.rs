//! Geneve encapsulation (RFC 8926) for oxvs, as pure logic.
//!
//! What it is for: everything the datapath needs to run Geneve tunnels,
//! without touching a socket. [`Template`] holds a tunnel's outer headers,
//! built once from a [`TunnelConfig`]; [`Template::push`] copies it into the
//! headroom in front of an inner Ethernet frame and patches the few fields
//! that vary per packet, the UDP source port among them, which it derives
//! from the inner flow alone ([`inner_flow_hash`]). [`decap_into`] validates an outer frame, fills a
//! reused [`TunnelMeta`] and returns where the inner frame lies, without
//! copying it ([`decap`] is the by-value form for tests and the slow path).
//! [`TlvMap`] turns option TLVs into numbered metadata slots and back, the
//! way OVS's `tun_metadata0..63` work. [`mtu`] answers "does it fit" and
//! builds the ICMP errors that tell a sender to use smaller packets.
//!
//! What it must not depend on: libc, `datapath`, `flowtable`. Its only
//! dependency is `wire`, so the whole tunnel logic is tested in memory and
//! fuzzed, and the datapath owns all I/O.
//!
//! Invariants: nothing on the packet path (`push`, `decap_into`, `TlvMap::decode`
//! and `TlvMap::encode`) allocates, formats or panics on any input; errors
//! are `Copy` enums whose variants name a drop counter. Options travel in
//! [`Options`], a fixed-capacity buffer sized for the largest option area
//! Geneve can express, so no packet needs the heap.
//!
//! Why a template: the outer Ethernet, IP, UDP and Geneve headers of a
//! tunnel are the same for every packet except for lengths, checksums, the
//! IPv4 identification, the UDP source port and the VNI and options. A
//! 50- or 70-byte copy and a handful of stores are cheaper than building the
//! headers field by field, and the IPv4 header checksum is finished from a
//! partial sum computed once.

#![forbid(unsafe_code)]

pub mod decap;
pub mod flow_hash;
pub mod mtu;
pub mod options;
pub mod template;
pub mod tlv;

pub use decap::{decap, decap_into, DecapConfig, DecapError, Decapped, TunnelMeta};
pub use flow_hash::{inner_flow_hash, ip_flow_hash};
pub use options::{Options, OptionsError};
pub use template::{EncapError, PerPacket, SrcPortRange, Template, TemplateError, TunnelConfig};
pub use tlv::{TlvEntry, TlvMap, TlvParseError, TlvParseErrorKind, TunMetadata, MAX_SLOTS};
pub use wire::geneve::PORT as GENEVE_PORT;
