//! The XDP fast path: established flows forwarded inside the driver,
//! without the AF_XDP hop (issue 16). This module is the program, its maps
//! and their shared layout; `daemon::fastpath` fills it and keeps it coherent.
//!
//! The program runs on a pod port or an uplink. It parses Ethernet (one
//! 802.1Q tag), IPv4 without options or IPv6 without extension headers,
//! TCP, UDP, ICMP or ICMPv6, and on an uplink pops Geneve over IPv4 to the
//! local VTEP (outer source and VNI join the key); it looks the exact-match
//! [`FpKey`] up in a hash map and applies the [`FpEntry`]: MAC, IP address,
//! L4 port, TTL and TOS rewrites with incremental checksums, VLAN pop, push
//! or set, a Geneve push from a per-remote template, and the output through
//! a DEVMAP. Everything else goes where today's program sends it (the
//! queue's AF_XDP socket, or the kernel for an uplink's own traffic),
//! untouched, with a counter saying why: TCP SYN/FIN/RST, fragments, IP
//! options and extension headers, frames longer than the entry allows.
//!
//! Why an in-tree assembler rather than C compiled at build time: see
//! `afxdp::asm`. The program is generated in [`program`] (parse, lookup,
//! exits) and [`actions`] (the rewrites); the golden tests run it through
//! the kernel's verifier and `BPF_PROG_TEST_RUN` on every test build.
//!
//! Why the key is a projection of the flow key: it holds every field
//! `flowtable::extract` derives from the packets the program parses, so an
//! entry built from a packet's `FlowKey` ([`FpKey::from_flow_key`]) takes
//! exactly the packets that would translate the same way, whatever the
//! megaflow's mask, and the Geneve source port (a function of the whole
//! flow key's hash) can be computed once, when the entry is built.

mod actions;
mod key;
pub mod layout;
mod maps;
mod offload;
pub mod program;
#[cfg(test)]
mod tests;

pub use layout::{act, FpCounter, FpEntry, FpKey, FpPort, FpTunnel, GENEVE4_LEN};
pub use maps::{FastPathMaps, PORT_SLOTS, TUNNEL_SLOTS};
pub use offload::{offload, OffloadEnv, OffloadTunnel};
pub use program::{assemble, ProgramMaps};

/// The tunnel template of `tpl` for the program, or `None` when the
/// program cannot push it (an IPv6 underlay, or a UDP checksum wanted over
/// IPv4: both need a sum over the whole payload).
pub fn tunnel_of(tpl: &encap::Template) -> Option<FpTunnel> {
    if tpl.is_ipv6() || tpl.udp_checksum() {
        return None;
    }
    let b = tpl.bytes();
    if b.len() != GENEVE4_LEN {
        return None;
    }
    let mut t = FpTunnel::default();
    t.hdr[..GENEVE4_LEN].copy_from_slice(b);
    // As `Template::new`: the IPv4 header's sum with length, id and
    // checksum zero (they are zero in the template bytes).
    t.ip_partial = wire::checksum::sum(&b[14..34]);
    Some(t)
}
