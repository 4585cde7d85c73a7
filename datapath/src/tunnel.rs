//! Geneve in the datapath: decapsulation of what arrives on an uplink, and
//! encapsulation when translation sent a packet to a tunnel port.
//!
//! Receive: a batch from an uplink is checked packet by packet
//! ([`encap::decap`]); a valid Geneve packet for the local address of one of
//! the bridge's tunnel ports has its descriptor advanced past the outer
//! headers (no copy) and re-enters the pipeline on that tunnel port, with
//! the VNI, outer addresses and mapped options in its flow key
//! ([`TunnelKey`]). Anything else is dropped and counted under a named
//! reason: malformed Geneve, a control packet (the O bit, RFC 8926 §3.4),
//! an outer destination that no tunnel port has, a VNI that no tunnel port
//! of that address takes (a port with a fixed `key` takes only that one),
//! or an unknown critical option (RFC 8926 §3.5).
//!
//! Transmit: `TunnelPush` names the tunnel port, the VNI and the remote
//! VTEP. The outer Ethernet/IP/UDP/Geneve header is an [`encap::Template`]
//! built once per remote from the bridge's tunnel routes (which the control
//! thread learns from the kernel's routes and neighbours) and cached in the
//! poll thread until the routes change; per packet only lengths, the UDP
//! source port, the IPv4 id and checksums are patched, in the frame's
//! headroom. The template derives the source port from the inner frame's
//! 5-tuple itself ([`encap::inner_flow_hash`]), never from the flow cache's
//! hash, which covers TCP flags and conntrack state and so would scatter
//! one connection over several underlay paths. A remote without a route is dropped,
//! counted and reported so the control thread resolves it. A packet that
//! would not fit the underlay MTU is answered with ICMP "fragmentation
//! needed" (IPv4 with DF) or "Packet Too Big" (IPv6) to the sender.

use crate::buf::{FramePool, PacketDesc};
use encap::mtu::Underlay;
use encap::{DecapConfig, DecapError, Options, PerPacket, Template, TunnelConfig};
use flowtable::tunnel::{TunnelKey, TUN_METADATA_SLOTS};
use flowtable::{Bridge, DropReason, PortNo};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// How long a poll thread waits before asking again about the same
/// unresolved remote.
const RESOLVE_EVERY_MS: u64 = 500;

/// One remote's outer header and where it leaves.
struct Entry {
    dst: [u8; 16],
    tpl: Template,
    out: PortNo,
    mtu: u16,
    underlay: Underlay,
}

/// A poll thread's tunnel state: cached templates and the remotes it
/// needs resolved.
#[derive(Default)]
pub struct TunnelState {
    /// Templates, with an index by remote and the last one used: a batch
    /// of one flow goes to one remote, so most lookups end at `mru`.
    entries: Vec<Entry>,
    index: HashMap<[u8; 16], usize>,
    mru: usize,
    routes_version: u64,
    opts: Options,
    ip_id: u16,
    asked: HashMap<IpAddr, u64>,
    want: Vec<IpAddr>,
    decap_cfg: DecapConfig,
    /// Decap's scratch (the options buffer is 252 bytes: filled in place
    /// rather than returned by value).
    meta: encap::TunnelMeta,
}

/// The metadata a `TunnelMetadata` action set for the next push.
#[derive(Clone, Copy, Default)]
pub struct PendingMetadata {
    /// Values by slot.
    pub md: [u64; TUN_METADATA_SLOTS],
    /// Which slots were set (bit N = slot N).
    pub set: u8,
}

/// What a push needs to know about the packet beyond its bytes.
pub struct PushCtx {
    /// The tunnel port.
    pub port: PortNo,
    /// VNI.
    pub vni: u32,
    /// Remote VTEP, IPv4 as mapped IPv6.
    pub dst: [u8; 16],
    /// The current time, for rate-limiting resolution requests.
    pub now_ms: u64,
}

/// The outcome of a push that did not produce a packet to send.
pub enum PushError {
    /// Drop the packet for this reason.
    Drop(DropReason),
    /// Too big for the underlay: tell the sender this inner MTU.
    TooBig(u16),
}

impl TunnelState {
    /// Remotes that packets wanted and that have no route yet; the caller
    /// passes them to the control thread.
    pub fn take_unresolved(&mut self, out: &mut Vec<IpAddr>) {
        out.append(&mut self.want);
    }

    /// Encapsulates `pkt` in place; on success returns the uplink to send
    /// it on.
    pub fn push(
        &mut self,
        br: &Bridge,
        pool: &mut FramePool,
        pkt: &mut PacketDesc,
        md: &PendingMetadata,
        cx: &PushCtx,
    ) -> Result<PortNo, PushError> {
        if self.routes_version != br.tunnel_routes.version() {
            self.entries.clear();
            self.index.clear();
            self.routes_version = br.tunnel_routes.version();
        }
        let i = match self.entries.get(self.mru) {
            Some(e) if e.dst == cx.dst => self.mru,
            _ => match self.index.get(&cx.dst) {
                Some(&i) => i,
                None => {
                    let remote = match Ipv6Addr::from(cx.dst).to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(Ipv6Addr::from(cx.dst)),
                    };
                    let Some(e) = build(br, cx.port, remote, cx.dst) else {
                        self.ask(remote, cx.now_ms);
                        return Err(PushError::Drop(DropReason::TunnelNoRoute));
                    };
                    self.entries.push(e);
                    self.index.insert(cx.dst, self.entries.len() - 1);
                    self.entries.len() - 1
                }
            },
        };
        self.mru = i;
        let e = &self.entries[i];
        self.opts.clear();
        if md.set != 0 {
            for (slot, tlv) in br.tlv.slots.iter().enumerate() {
                let Some(tlv) = tlv else { continue };
                if md.set & (1 << slot) == 0 {
                    continue;
                }
                let bytes = md.md[slot].to_be_bytes();
                let len = (tlv.len as usize).min(8);
                if self
                    .opts
                    .push(tlv.class, tlv.ty, &bytes[8 - len..])
                    .is_err()
                {
                    return Err(PushError::Drop(DropReason::BadRewrite));
                }
            }
        }
        if !encap::mtu::fits(pkt.len as usize, e.mtu, e.underlay, self.opts.len()) {
            let inner = encap::mtu::pod_mtu(e.mtu, e.underlay, self.opts.len());
            return Err(PushError::TooBig(inner));
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let per = PerPacket {
            vni: cx.vni,
            options: &self.opts,
            ip_id: self.ip_id,
            oam: false,
        };
        let frame = pool.frame_mut(pkt);
        match e.tpl.push(frame, pkt.off as usize, pkt.len as usize, &per) {
            Ok((off, len)) => {
                pkt.off = off as u16;
                pkt.len = len as u16;
                Ok(e.out)
            }
            Err(_) => Err(PushError::Drop(DropReason::BadRewrite)),
        }
    }

    fn ask(&mut self, remote: IpAddr, now_ms: u64) {
        let due = self
            .asked
            .get(&remote)
            .is_none_or(|&t| now_ms >= t + RESOLVE_EVERY_MS);
        if due {
            if self.asked.len() > 4096 {
                self.asked.clear();
            }
            self.asked.insert(remote, now_ms);
            self.want.push(remote);
        }
    }

    /// Decapsulates one packet received on an uplink: on success the
    /// descriptor covers the inner frame, and the result names the tunnel
    /// port it enters on and its flow key's tunnel fields.
    pub fn decap(
        &mut self,
        br: &Bridge,
        bytes: &[u8],
        pkt: &mut PacketDesc,
    ) -> Result<(PortNo, TunnelKey), DropReason> {
        let meta = &mut self.meta;
        let (inner_off, inner_len) = encap::decap::decap_into(bytes, &self.decap_cfg, meta)
            .map_err(|e| match e {
                DecapError::CriticalUnknown => DropReason::GeneveCriticalOption,
                _ => DropReason::GeneveMalformed,
            })?;
        // RFC 8926 §3.4: "Tunnel endpoints MUST NOT forward the payload"
        // of a control packet. With no control message handler, the only
        // thing to do with one is to drop it, and count it.
        if meta.oam {
            return Err(DropReason::GeneveOam);
        }
        // A port with a fixed key receives that VNI only, one with a fixed
        // remote_ip that remote only (as in OVS).
        let port = br.ports.tunnel_for_rx(meta.dst, meta.src, meta.vni)?;
        let mut key = TunnelKey {
            id: meta.vni as u64,
            src: meta.src,
            dst: meta.dst,
            md: [0; TUN_METADATA_SLOTS],
        };
        for o in meta.options.iter() {
            match br.tlv.slot_of(o.class, o.typ) {
                Some(slot)
                    if br.tlv.slots[slot].is_some_and(|s| s.len as usize == o.data.len()) =>
                {
                    let mut v = 0u64;
                    for b in o.data.iter().take(8) {
                        v = v << 8 | *b as u64;
                    }
                    key.md[slot] = v;
                }
                // RFC 8926 §3.5: a tunnel endpoint that does not understand
                // an option with the critical bit set must drop the packet.
                _ if o.is_critical() => return Err(DropReason::GeneveCriticalOption),
                _ => {}
            }
        }
        pkt.off += inner_off as u16;
        pkt.len = inner_len as u16;
        Ok((port, key))
    }
}

/// The template for `remote` through tunnel port `port`, the uplink it
/// leaves by and that uplink's MTU, as a poll thread would build it: what
/// the XDP fast path copies into its tunnel map.
pub fn template_for(br: &Bridge, port: PortNo, remote: IpAddr) -> Option<(Template, PortNo, u16)> {
    let dst = match remote {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    build(br, port, remote, dst).map(|e| (e.tpl, e.out, e.mtu))
}

/// Builds the template for `remote` through tunnel port `port`.
fn build(br: &Bridge, port: PortNo, remote: IpAddr, dst: [u8; 16]) -> Option<Entry> {
    let t = br.ports.tunnel(port)?;
    let r = br.tunnel_routes.get(&remote)?;
    let cfg = TunnelConfig::new(r.src_mac, r.dst_mac, t.local, remote);
    let tpl = Template::new(&cfg).ok()?;
    Some(Entry {
        dst,
        underlay: if remote.is_ipv4() {
            Underlay::Ipv4
        } else {
            Underlay::Ipv6
        },
        tpl,
        out: r.port,
        mtu: r.mtu,
    })
}

/// Builds, in a fresh frame, the ICMP error that tells the sender of `pkt`
/// (an inner frame too big for the tunnel) the largest packet that fits:
/// "fragmentation needed" for IPv4 with DF, "Packet Too Big" for IPv6.
/// `None` when no error is due (IPv4 without DF, ICMP errors about ICMP
/// errors, ...) or no frame is free.
pub fn icmp_too_big(pool: &mut FramePool, pkt: &PacketDesc, mtu: u16) -> Option<PacketDesc> {
    // The builders check the original's IP lengths against its bytes, so
    // the whole packet is copied (a frame holds at most 3840 bytes; the
    // pool cannot lend the original and the reply at once). This path runs
    // once per too-big packet, and the sender lowers its MTU after it.
    let mut orig = [0u8; crate::buf::FRAME_SIZE - crate::buf::HEADROOM];
    let data = pool.data(pkt);
    let n = data.len().min(orig.len());
    orig[..n].copy_from_slice(&data[..n]);
    let orig = &orig[..n];
    let mut reply = pool.alloc()?;
    reply.len = (14 + 1280) as u16;
    let out = pool.data_mut(&reply);
    let built = match orig.get(12..14) {
        Some([0x08, 0x00]) => encap::mtu::frag_needed_v4(orig, mtu, None, out),
        Some([0x86, 0xdd]) => encap::mtu::packet_too_big_v6(orig, mtu as u32, None, out),
        _ => Err(encap::mtu::IcmpError::Malformed),
    };
    match built {
        Ok(len) => {
            reply.len = len as u16;
            Some(reply)
        }
        Err(_) => {
            pool.free(reply);
            None
        }
    }
}
