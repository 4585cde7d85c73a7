//! The control thread's side of the XDP fast path: which entries the
//! kernel holds, why each is right, and keeping them right.
//!
//! Poll threads offer flow keys (`ToControl::Offer`): the key of a packet
//! whose upcall installs a megaflow or that the EMC takes in, the first
//! megaflow hit of each exact key, and a sample of EMC hits (so a flow
//! whose entry was flushed comes back). The control thread, which owns the master bridge,
//! translates each offered key again against the current rules and, when
//! `afxdp::fastpath::offload` can express the result, inserts the entry.
//! Because every insertion happens here, against the master bridge, and
//! every change to the bridge happens here too, coherence is one rule:
//! **when the bridge's version moves, every entry the change may affect is
//! removed before anything else happens on this thread**
//! ([`FastPath::sync`]), in particular before the control socket
//! acknowledges the change. An offer made under old rules arriving later
//! is translated under the new ones. Which entries a change affects is
//! what the megaflows' revalidation uses: after rule changes only, the
//! entries whose translation looked up a table the bridge's journal says
//! changed; after a group, port, MAC table or tunnel route change, all of
//! them. The poll threads re-offer what is still hot.
//!
//! Conntrack: a flow whose first pass ends in `ct(table=...)` is followed
//! through its passes (`compose`) when every connection it meets is an
//! established TCP or answered UDP or ICMP echo one, and the entry does the whole path:
//! rewrites, each connection's NAT, the last pass's output. The entry keeps
//! the connections it stands on ([`flowtable::conntrack::ConnRef`]): while
//! any entry holds one, its TCP tracking re-learns the sequence space from
//! each segment that does reach the table (the FIN, a segment whose entry
//! went); each tick credits the entry's traffic to the connection's
//! timeout and removes the entry if a connection went (expired, flushed),
//! left the established state or changed its mark or label since;
//! `flush-conntrack` runs that check before it answers.
//! Translations that learn (`normal`'s MAC learning, `learn(...)`) are
//! refused too, so MAC ageing and learned rules' timeouts see every packet.
//!
//! Once a second ([`FastPath::tick`]) the entries' packet, byte and
//! last-use counters, kept by the program, are folded into the rules that
//! produced them (`dump-flows` counts fast-path packets, idle timeouts see
//! the traffic), and entries idle for [`IDLE_MS`] are evicted.
//!
//! While `oxvs-ctl capture` runs on a port, the port is out of the fast
//! path (`capture`): its entries, as input and as output, are removed
//! before the capture starts copying, and no offer for it is taken until
//! it ends, so every packet it receives or is sent passes the poll threads
//! that copy them.
//!
//! `ports` keeps the program's maps of interfaces and outputs in step with
//! the ports the poll threads hold; `report` is `dump-fastpath`, the
//! `revalidate --check` audit and the exit totals.

use crate::afxdp::fastpath::{
    offload, tunnel_of, FastPathMaps, FpCounter, FpKey, FpPort, OffloadEnv, OffloadTunnel,
    TUNNEL_SLOTS,
};
use crate::afxdp::sys::monotonic_ns;
use encap::Template;
use flowtable::journal::TableSet;
use flowtable::{Bridge, DpAction, Field, FlowKey, PortNo, Rule};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

mod capture;
pub(crate) mod compose;
mod ports;
mod report;

use compose::{compose, Held, NoPath};
use flowtable::conntrack::{ConnRef, ConnTrack};

/// Entries the kernel map holds by default (`[switch] fast_path_entries`).
pub const DEFAULT_ENTRIES: u32 = 65_536;
/// Entries unused this long are evicted (the megaflows' idle time).
pub const IDLE_MS: u64 = 10_000;
/// Refused keys remembered per rules version, so a flow the fast path
/// cannot take is not translated again for every sample.
const MAX_REFUSED: usize = 65_536;

/// One entry in the kernel and what it came from.
struct Offloaded {
    key: FlowKey,
    /// The tables its translation looked up.
    tables: TableSet,
    actions: Vec<DpAction>,
    rules: Vec<Arc<Rule>>,
    /// The connections its path went through.
    conns: Vec<Held>,
    /// The port it sends to (the uplink for a Geneve push).
    out_port: PortNo,
    /// Counters as last read from the kernel.
    packets: u64,
    bytes: u64,
    used_ms: u64,
}

/// What the fast path has done since the switch started.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastPathStats {
    /// The program's counters, summed over CPUs, in `FpCounter::ALL` order.
    pub program: [u64; FpCounter::ALL.len()],
    /// Entries in the kernel now.
    pub entries: usize,
    /// Entries inserted.
    pub inserted: u64,
    /// Offered keys whose translation the fast path cannot express.
    pub refused: u64,
    /// Offered keys not inserted because the map was full.
    pub full: u64,
    /// Entries removed because the rules (or ports, groups, MACs, routes)
    /// changed.
    pub flushed: u64,
    /// Entries evicted for being idle.
    pub evicted: u64,
    /// Entries standing on connections (through `ct`) now.
    pub ct_entries: usize,
    /// Offered keys whose connection was not yet one to carry (not
    /// established, not answered, or a ping whose identifier NAT moved):
    /// not remembered as refused.
    pub ct_refused: u64,
    /// Entries removed because a connection they stood on went, closed, or
    /// changed its mark or label.
    pub ct_removed: u64,
    /// Map operations the kernel refused.
    pub errors: u64,
    /// The port a `capture` runs on, whose entries are withheld.
    pub captured: Option<PortNo>,
    /// Entries removed because a capture started on their input or output.
    pub capture_flushed: u64,
    /// Offered keys not taken because a capture runs on their input or
    /// output: not remembered as refused, so they go in once it ends.
    pub capture_refused: u64,
}

/// Fast-path packets and bytes of one port, in and out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPathPort {
    /// Packets that entered on the port and took an entry.
    pub rx_packets: u64,
    /// Their bytes (as they arrived).
    pub rx_bytes: u64,
    /// Packets an entry sent out of the port.
    pub tx_packets: u64,
    /// Their bytes (as they arrived).
    pub tx_bytes: u64,
}

/// One remote's template in the tunnel map.
struct Tunnel {
    port: PortNo,
    remote: [u8; 16],
    tpl: Template,
    uplink: PortNo,
    mtu: u16,
}

/// The fast path's state on the control thread.
pub struct FastPath {
    maps: Arc<FastPathMaps>,
    capacity: usize,
    /// The bridge's (rules, other) versions the entries were translated
    /// under.
    version: (u64, u64),
    entries: HashMap<FpKey, Offloaded>,
    refused: HashSet<FpKey>,
    /// Template slots (slot = index); emptied with the entries.
    tunnels: Vec<Tunnel>,
    /// DEVMAP contents: OpenFlow port -> ifindex.
    outputs: BTreeMap<PortNo, u32>,
    /// Interfaces running the program: ifindex -> what it is.
    ifaces: BTreeMap<u32, FpPort>,
    /// The tunnel port and IPv4 VTEP Geneve arrivals on an uplink enter.
    uplink_tunnel: Option<(PortNo, [u8; 4])>,
    /// Asks the kernel which interfaces take redirected frames.
    netlink: Option<crate::sys::netlink::Netlink>,
    /// Outputs found unable to take them, (port, ifindex), said once.
    no_redirect: HashSet<(PortNo, u32)>,
    /// Counters.
    pub stats: FastPathStats,
    /// Per-port fast-path traffic.
    pub ports: BTreeMap<PortNo, FastPathPort>,
    /// The connection table `ct` passes are followed through.
    ct: Option<Arc<ConnTrack>>,
    /// How many entries stand on each connection.
    held: HashMap<ConnRef, u32>,
}

impl FastPath {
    /// The fast path over `maps` (holding at most `capacity` entries) for
    /// a bridge now at `br`'s versions; Geneve arrivals on uplinks enter
    /// `uplink_tunnel` when given.
    pub fn new(
        maps: Arc<FastPathMaps>,
        capacity: u32,
        br: &Bridge,
        uplink_tunnel: Option<(PortNo, [u8; 4])>,
    ) -> FastPath {
        FastPath {
            maps,
            capacity: capacity as usize,
            version: (br.rules_version(), br.other_version()),
            entries: HashMap::new(),
            refused: HashSet::new(),
            tunnels: Vec::new(),
            outputs: BTreeMap::new(),
            ifaces: BTreeMap::new(),
            uplink_tunnel,
            netlink: None,
            no_redirect: HashSet::new(),
            stats: FastPathStats::default(),
            ports: BTreeMap::new(),
            ct: None,
            held: HashMap::new(),
        }
    }

    /// Follows `ct` passes through `ct` (without it, a flow through
    /// conntrack is never offloaded).
    pub fn set_conntrack(&mut self, ct: Arc<ConnTrack>) {
        self.ct = Some(ct);
    }

    /// The maps, for the programs attached to ports.
    pub fn maps(&self) -> &Arc<FastPathMaps> {
        &self.maps
    }

    /// Entries in the kernel now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the kernel holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Brings the entries in line with `br` before anything else may use
    /// them: when only rules changed and the bridge's journal covers every
    /// change since the entries were made, the entries whose translation
    /// looked up a changed table are removed (no other translation can have
    /// changed, the argument of the megaflows' revalidation); after any
    /// other change (groups, ports, MACs, routes) every entry is. Their last
    /// counters are folded into their rules first. True if any went.
    pub fn sync(&mut self, br: &Bridge, now_ms: u64) -> bool {
        let now = (br.rules_version(), br.other_version());
        if now == self.version {
            return false;
        }
        let changed = match self.version {
            (rules, other) if other == now.1 => br.tables_changed_since(rules),
            _ => None,
        };
        self.version = now;
        self.refused.clear();
        if changed.is_none() {
            // Templates follow the routes, which are part of the version.
            self.tunnels.clear();
        }
        let mono = monotonic_ns();
        let mut entries = std::mem::take(&mut self.entries);
        let mut removed = false;
        entries.retain(|fk, o| {
            if changed.as_ref().is_some_and(|c| !c.meets(&o.tables)) {
                return true;
            }
            if self.retire(fk, o, now_ms, mono) {
                self.stats.flushed += 1;
            }
            removed = true;
            false
        });
        self.entries = entries;
        self.count();
        removed
    }

    /// After `flush-conntrack`: removes every entry standing on a
    /// connection that is gone, before the flush is acknowledged.
    pub fn conntrack_changed(&mut self, now_ms: u64) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|fk, o| {
            if self.conns_ok(o, None, now_ms) {
                return true;
            }
            let mono = monotonic_ns();
            self.fold(fk, o, now_ms, mono);
            self.remove_for_conn(fk, o);
            false
        });
        self.entries = entries;
        self.count();
    }

    /// Whether every connection `o` stands on is still as it was made
    /// with, crediting them with the entry's traffic up to `used`.
    fn conns_ok(&self, o: &Offloaded, used: Option<u64>, now_ms: u64) -> bool {
        let Some(ct) = &self.ct else {
            return o.conns.is_empty();
        };
        o.conns
            .iter()
            .all(|h| ct.offload_used(h.conn, used, now_ms) == Some((h.mark, h.label)))
    }

    /// Removes `fk`, whose connection went or changed.
    fn remove_for_conn(&mut self, fk: &FpKey, o: &Offloaded) {
        if self.take_out(fk, o) {
            self.stats.ct_removed += 1;
        }
    }

    /// Removes `fk` while it may still carry traffic: its last counters
    /// are folded into its rules and connections first. Whether the
    /// kernel had it.
    fn retire(&mut self, fk: &FpKey, o: &mut Offloaded, now_ms: u64, mono: u64) -> bool {
        let used = self.fold(fk, o, now_ms, mono);
        self.conns_ok(o, used, now_ms);
        self.take_out(fk, o)
    }

    /// Takes `fk` out of the kernel and lets go of its connections.
    /// Whether the kernel had it; a refusal is counted as an error.
    fn take_out(&mut self, fk: &FpKey, o: &Offloaded) -> bool {
        let removed = match self.maps.remove(fk) {
            Ok(_) => true,
            Err(e) => {
                self.stats.errors += 1;
                tracing::warn!(error = %e, "fast path: cannot remove an entry");
                false
            }
        };
        self.forget(o);
        removed
    }

    /// `o` left the kernel: a connection no entry stands on any more goes
    /// back to strict tracking (after one re-learning per side).
    fn forget(&mut self, o: &Offloaded) {
        for h in &o.conns {
            if let Some(n) = self.held.get_mut(&h.conn) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&h.conn);
                    if let Some(ct) = &self.ct {
                        ct.unhold(h.conn);
                    }
                }
            }
        }
    }

    fn count(&mut self) {
        self.stats.entries = self.entries.len();
        self.stats.ct_entries = self
            .entries
            .values()
            .filter(|o| !o.conns.is_empty())
            .count();
    }

    /// Translates each offered key against `br` and inserts the entries
    /// the fast path can express.
    pub fn offer(&mut self, br: &Bridge, keys: &[FlowKey], now_ms: u64) {
        self.sync(br, now_ms);
        for key in keys {
            self.offer_one(br, key, now_ms);
            // An established TCP connection sends ACK and PSH|ACK segments,
            // two exact keys: both go in at once, so its segments do not
            // alternate between the fast and the slow path (and arrive out
            // of order) while the second waits for an offer of its own.
            // The sibling is translated like any key: right or refused.
            let flags = key.get(Field::TcpFlags);
            if key.get(Field::NwProto) == 6 && flags & !0x08 == 0x10 {
                let mut sibling = *key;
                sibling.set(Field::TcpFlags, flags ^ 0x08);
                self.offer_one(br, &sibling, now_ms);
            }
        }
        self.count();
    }

    /// Translates `key` and inserts its entry if the fast path can take it.
    fn offer_one(&mut self, br: &Bridge, key: &FlowKey, now_ms: u64) {
        let Some(fk) = FpKey::from_flow_key(key) else {
            return;
        };
        if self.entries.contains_key(&fk) || self.refused.contains(&fk) {
            return;
        }
        if self.is_captured(fk.in_port) {
            self.stats.capture_refused += 1;
            return;
        }
        if self.entries.len() >= self.capacity {
            self.stats.full += 1;
            return;
        }
        let path = match compose(br, self.ct.as_deref(), key, now_ms) {
            Ok(p) => Some(p),
            Err(NoPath::Rules) => None,
            Err(NoPath::Conntrack) => {
                // Asked again at a later offer, when the connection may
                // be established.
                self.stats.ct_refused += 1;
                return;
            }
        };
        let entry = path.as_ref().and_then(|p| {
            self.tunnel_for(br, &p.actions);
            offload(key, &p.actions, &Tunnels(&self.tunnels))
                .map(|(_, e)| e)
                .filter(|e| self.outputs.contains_key(&e.out_port))
        });
        if entry
            .as_ref()
            .is_some_and(|e| self.stats.captured == Some(e.out_port))
        {
            self.stats.capture_refused += 1;
            return;
        }
        let (Some(e), Some(p)) = (entry, path) else {
            self.stats.refused += 1;
            if self.refused.len() >= MAX_REFUSED {
                self.refused.clear();
            }
            self.refused.insert(fk);
            return;
        };
        if let Err(err) = self.maps.insert(&fk, &e) {
            self.stats.errors += 1;
            tracing::warn!(error = %err, "fast path: cannot insert an entry");
            return;
        }
        self.stats.inserted += 1;
        if let Some(ct) = &self.ct {
            for h in &p.conns {
                let n = self.held.entry(h.conn).or_insert(0);
                if *n == 0 {
                    ct.hold(h.conn);
                }
                *n += 1;
            }
        }
        self.entries.insert(
            fk,
            Offloaded {
                key: *key,
                tables: p.tables,
                actions: p.actions,
                rules: p.rules,
                conns: p.conns,
                out_port: e.out_port,
                packets: 0,
                bytes: 0,
                used_ms: now_ms,
            },
        );
    }

    /// Makes sure the template a `TunnelPush` in `actions` needs is in the
    /// tunnel map (one slot per remote).
    fn tunnel_for(&mut self, br: &Bridge, actions: &[DpAction]) {
        let Some(&DpAction::TunnelPush { port, dst, .. }) = actions.last() else {
            return;
        };
        if self
            .tunnels
            .iter()
            .any(|t| t.port == port && t.remote == dst)
            || self.tunnels.len() >= TUNNEL_SLOTS as usize
        {
            return;
        }
        let v6 = Ipv6Addr::from(dst);
        let remote = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
        let Some((tpl, uplink, mtu)) = crate::tunnel::template_for(br, port, remote) else {
            return;
        };
        let Some(fp) = tunnel_of(&tpl) else {
            return;
        };
        let slot = self.tunnels.len() as u32;
        if let Err(e) = self.maps.set_tunnel(slot, &fp) {
            self.stats.errors += 1;
            tracing::warn!(error = %e, "fast path: cannot write a tunnel template");
            return;
        }
        self.tunnels.push(Tunnel {
            port,
            remote: dst,
            tpl,
            uplink,
            mtu,
        });
    }

    /// Reads every entry's counters, folds them into the rules and the
    /// ports, evicts idle entries, and reads the program's counters.
    pub fn tick(&mut self, now_ms: u64) {
        let mono = monotonic_ns();
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|fk, o| {
            let used = self.fold(fk, o, now_ms, mono);
            if !self.conns_ok(o, used, now_ms) {
                self.remove_for_conn(fk, o);
                return false;
            }
            if now_ms.saturating_sub(o.used_ms) < IDLE_MS {
                return true;
            }
            if self.take_out(fk, o) {
                self.stats.evicted += 1;
            }
            false
        });
        self.entries = entries;
        self.count();
        self.read_counters();
    }

    /// Reads every entry's counters from the kernel now and folds them into
    /// the rules and the ports, as `tick` does once a second, so
    /// `dump-fastpath` shows what the entries counted up to the moment it
    /// was asked, as `ovs-appctl dpctl/dump-flows` does.
    pub fn read_entries(&mut self, now_ms: u64) {
        let mono = monotonic_ns();
        let mut entries = std::mem::take(&mut self.entries);
        for (fk, o) in entries.iter_mut() {
            self.fold(fk, o, now_ms, mono);
        }
        self.entries = entries;
    }

    /// Reads the program's counters (hits, misses, punts) from the kernel
    /// now. `tick` does it once a second; `pmd-stats` and `/metrics` do it
    /// before they answer, so counters read just after a transfer include
    /// all of it: a 100 MB upload through the fast path takes well under a
    /// second here, and counters up to a second old showed anything between
    /// none and all of its packets.
    pub fn read_counters(&mut self) {
        match self.maps.counters() {
            Ok(c) => self.stats.program = c,
            Err(_) => self.stats.errors += 1,
        }
    }

    /// Credits what entry `fk` counted since the last read to its rules
    /// and ports; returns when it was last used if it counted anything.
    fn fold(&mut self, fk: &FpKey, o: &mut Offloaded, now_ms: u64, mono_ns: u64) -> Option<u64> {
        let e = match self.maps.get(fk) {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(_) => {
                self.stats.errors += 1;
                return None;
            }
        };
        let packets = e.packets.saturating_sub(o.packets);
        let bytes = e.bytes.saturating_sub(o.bytes);
        if packets == 0 {
            return None;
        }
        let ago_ms = mono_ns.saturating_sub(e.used_ns) / 1_000_000;
        let used_ms = now_ms.saturating_sub(ago_ms);
        for r in &o.rules {
            r.stats.credit(packets, bytes, used_ms);
        }
        let rx = self.ports.entry(fk.in_port).or_default();
        rx.rx_packets += packets;
        rx.rx_bytes += bytes;
        let tx = self.ports.entry(e.out_port).or_default();
        tx.tx_packets += packets;
        tx.tx_bytes += bytes;
        o.packets = e.packets;
        o.bytes = e.bytes;
        o.used_ms = o.used_ms.max(used_ms);
        Some(used_ms)
    }
}

/// The templates the fast path holds, as `offload` asks for them.
struct Tunnels<'a>(&'a [Tunnel]);

impl OffloadEnv for Tunnels<'_> {
    fn tunnel(&self, port: PortNo, remote: [u8; 16]) -> Option<OffloadTunnel<'_>> {
        let (slot, t) = self
            .0
            .iter()
            .enumerate()
            .find(|(_, t)| t.port == port && t.remote == remote)?;
        Some(OffloadTunnel {
            slot: slot as u32,
            tpl: &t.tpl,
            uplink: t.uplink,
            mtu: t.mtu,
        })
    }
}
