//! Shared helpers of the end-to-end tests: packets described as plain
//! values and serialised by `etherparse` (an implementation independent of
//! ours, so expected bytes and checksums do not come from the code under
//! test), a loader that puts a flow file into an in-memory datapath, and
//! checks of the flow syntax (print-back, column errors).

use datapath::pipeline::PmdConfig;
use datapath::MemDatapath;
use etherparse::{PacketBuilder, VlanId};
use flowtable::PortNo;

pub mod reference;

/// The L4 part of a test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with ports (a SYN).
    Tcp(u16, u16),
    /// UDP with ports.
    Udp(u16, u16),
    /// ICMP echo request with id and sequence.
    IcmpEcho(u16, u16),
}

/// An Ethernet/IPv4 packet, optionally VLAN-tagged, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pkt {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// IPv4 source.
    pub src_ip: [u8; 4],
    /// IPv4 destination.
    pub dst_ip: [u8; 4],
    /// TTL.
    pub ttl: u8,
    /// The L4 header.
    pub l4: L4,
}

impl Pkt {
    /// A TCP SYN between two pod-range addresses.
    pub fn tcp(src_ip: [u8; 4], dst_ip: [u8; 4], sport: u16, dport: u16) -> Pkt {
        Pkt {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlan: None,
            src_ip,
            dst_ip,
            ttl: 64,
            l4: L4::Tcp(sport, dport),
        }
    }

    /// Serialises with etherparse; payload of `payload_len` counting bytes.
    pub fn build(&self, payload_len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let mut out = Vec::new();
        match self.vlan {
            Some(vid) => {
                let ip = eth.single_vlan(VlanId::try_new(vid).expect("vid")).ipv4(
                    self.src_ip,
                    self.dst_ip,
                    self.ttl,
                );
                match self.l4 {
                    L4::Tcp(s, d) => ip.tcp(s, d, 1000, 64240).syn().write(&mut out, &payload),
                    L4::Udp(s, d) => ip.udp(s, d).write(&mut out, &payload),
                    L4::IcmpEcho(id, seq) => {
                        ip.icmpv4_echo_request(id, seq).write(&mut out, &payload)
                    }
                }
            }
            None => {
                let ip = eth.ipv4(self.src_ip, self.dst_ip, self.ttl);
                match self.l4 {
                    L4::Tcp(s, d) => ip.tcp(s, d, 1000, 64240).syn().write(&mut out, &payload),
                    L4::Udp(s, d) => ip.udp(s, d).write(&mut out, &payload),
                    L4::IcmpEcho(id, seq) => {
                        ip.icmpv4_echo_request(id, seq).write(&mut out, &payload)
                    }
                }
            }
        }
        .expect("etherparse builds the packet");
        out
    }
}

/// An in-memory datapath with ports `1..=n_ports` (named `pN`) and the rules
/// of `flows` (ovs-ofctl add-flows syntax, groups allowed) applied.
pub fn datapath(n_ports: PortNo, flows: &str, cfg: PmdConfig) -> MemDatapath {
    let mut dp = MemDatapath::new(4096, cfg);
    for p in 1..=n_ports {
        dp.add_port(p, &format!("p{p}"));
    }
    let file = ctl::ofp::parse_flow_file(flows, &dp.bridge.ports).unwrap_or_else(|e| panic!("{e}"));
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0)
        .unwrap_or_else(|(i, e)| panic!("change {i}: {e}"));
    dp
}

/// Config with the EMC inserting every flow (deterministic tests).
pub fn always_emc() -> PmdConfig {
    PmdConfig {
        emc_inv_prob: 1,
        ..Default::default()
    }
}

/// Each flow parses, prints, and parses back to the same rule.
pub fn assert_prints_back(lines: &[&str]) {
    for l in lines {
        let spec = ctl::ofp::parse_flow(l, &()).unwrap_or_else(|e| panic!("{l}: {e}"));
        let text = ctl::ofp::format_flow_spec(&spec, &());
        let again = ctl::ofp::parse_flow(&text, &()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(spec, again, "{l} printed as {text}");
    }
}

/// Each flow is refused with a message containing its `want` and a column
/// past `min_column` (inside the action, not at the line's start).
pub fn assert_refused(cases: &[(&str, &str)], min_column: usize) {
    for (line, want) in cases {
        let e = ctl::ofp::parse_flow(line, &()).expect_err(line);
        assert!(e.to_string().contains(want), "{line}: {e}");
        assert!(e.column > min_column, "{line}: {e}");
    }
}

/// Cuts untagged IPv4 frame `whole` (no IP options) into fragments of at
/// most 1480 L4 bytes, as a 1500-byte MTU does, with identification `id`.
pub fn ipv4_fragments(whole: &[u8], id: u16) -> Vec<Vec<u8>> {
    const MAX: usize = 1480;
    let l4 = &whole[34..];
    let mut out = Vec::new();
    let mut from = 0;
    while from < l4.len() {
        let to = (from + MAX).min(l4.len());
        let mut f = whole[..34].to_vec();
        let flags = (from as u16 / 8) | if to < l4.len() { 0x2000 } else { 0 };
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[20..22].copy_from_slice(&flags.to_be_bytes());
        f[16..18].copy_from_slice(&(20 + (to - from) as u16).to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&l4[from..to]);
        out.push(f);
        from = to;
    }
    out
}
