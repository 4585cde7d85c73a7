//! The per-packet half of [`ConnTrack`]: look up, update, commit (ICMP
//! errors branch off to the RELATED path in `related.rs`).
//!
//! Every lookup takes one shard lock (two in turn when it follows a NAT
//! alias), and a commit with NAT into another shard takes two in shard
//! order. Nothing here allocates.

use super::frag::FragKey;
use super::nat::{Candidates, NatSpec};
use super::offload::{F_OFFLOADED, F_RESYNC};
use super::table::{Alias, Conn, Found, Table, F_DNAT, F_REMOTE, F_SEEN_REPLY, F_SNAT};
use super::tcp::{self, Update};
use super::timeout::TimeoutClass;
use super::types::{
    ct_state::*, proto, CtAddr, CtPacket, CtVerdict, Fragment, FragmentL4, HeaderRewrite,
    NatRewrite, Tuple,
};
use super::{ConnTrack, CtExec, Family, Shard};
use crate::DropReason;
use std::sync::MutexGuard;

/// The outcome of a key lookup.
pub(super) enum Lookup<'a> {
    /// Entry `idx` of the locked shard; `reply` if the reply tuple matched.
    Hit(MutexGuard<'a, Shard>, u32, bool),
    /// No entry; the key's own shard is locked.
    Miss(MutexGuard<'a, Shard>, usize, u64),
    /// Something stale was cleaned up; look again.
    Retry,
}

/// ICMP types that carry a quoted packet: RFC 792 destination unreachable,
/// source quench, redirect, time exceeded, parameter problem; RFC 4443 §3
/// destination unreachable, packet too big, time exceeded, parameter
/// problem.
pub(super) fn is_icmp_error(p: &CtPacket) -> bool {
    match p.proto {
        proto::ICMP => matches!(p.icmp_type, 3 | 4 | 5 | 11 | 12),
        proto::ICMPV6 => matches!(p.icmp_type, 1..=4),
        _ => false,
    }
}

pub(super) fn is_icmp(proto_: u8) -> bool {
    proto_ == proto::ICMP || proto_ == proto::ICMPV6
}

/// Echo request (`Some(true)`), echo reply (`Some(false)`) or neither.
pub(super) fn echo_kind(p: &CtPacket) -> Option<bool> {
    match (p.proto, p.icmp_type) {
        (proto::ICMP, 8) | (proto::ICMPV6, 128) => Some(true),
        (proto::ICMP, 0) | (proto::ICMPV6, 129) => Some(false),
        _ => None,
    }
}

/// TCP and UDP: two independent ports, either of which NAT may move.
fn movable_ports(proto_: u8) -> bool {
    matches!(proto_, proto::TCP | proto::UDP)
}

pub(super) fn has_ports(proto_: u8) -> bool {
    matches!(proto_, proto::TCP | proto::UDP) || is_icmp(proto_)
}

/// The rewrite that makes a packet travelling `reply`-wards on `c` look as
/// the other end expects.
pub(super) fn rewrite_for<A: Family>(c: &Conn<A>, reply: bool) -> HeaderRewrite {
    let t = if reply { c.orig } else { c.reply() };
    HeaderRewrite {
        src: t.dst.to_ip(),
        dst: t.src.to_ip(),
        sport: t.dport,
        dport: t.sport,
    }
}

pub(super) fn nat_bits(flags: u8) -> u8 {
    (if flags & F_SNAT != 0 { SNAT } else { 0 }) | (if flags & F_DNAT != 0 { DNAT } else { 0 })
}

impl ConnTrack {
    /// Runs `ct(zone=zone[, commit][, nat...])` on `pkt` at `now_ms`.
    ///
    /// `nat`: `None` leaves addresses alone; [`NatSpec::Existing`] translates
    /// packets of connections already NATed; `Src`/`Dst` also set up NAT
    /// for a connection committed by this call.
    pub fn process(
        &self,
        pkt: &CtPacket,
        zone: u16,
        now_ms: u64,
        commit: bool,
        nat: Option<&NatSpec>,
    ) -> CtVerdict {
        self.process_exec(pkt, zone, now_ms, commit, nat, &CtExec::default())
    }

    /// [`ConnTrack::process`] with `exec(set_field:...)` applied to the
    /// connection when `commit` is set.
    ///
    /// Fragments (`frag.rs`): a first fragment is tracked like a whole
    /// packet and its L4 fields remembered under its datagram's key. A
    /// later fragment whose first was seen is tracked with those fields, so
    /// it gets its connection's state, mark, label and NAT, and the verdict
    /// carries them ([`CtVerdict::fragment_l4`]); it never moves TCP
    /// sequence tracking and never commits a connection. One whose first was
    /// not seen is `+inv`.
    pub fn process_exec(
        &self,
        pkt: &CtPacket,
        zone: u16,
        now_ms: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> CtVerdict {
        match pkt.frag {
            Fragment::Whole => self.dispatch(pkt, zone, now_ms, commit, nat, exec),
            // Tracked by addresses alone: nothing to learn or hand on.
            _ if !has_ports(pkt.proto) => self.dispatch(pkt, zone, now_ms, commit, nat, exec),
            Fragment::First { id } => {
                let v = self.dispatch(pkt, zone, now_ms, commit, nat, exec);
                // Echo and TCP/UDP only: a fragmented ICMP error is not
                // tracked, so its later fragments have nothing to find.
                if !is_icmp(pkt.proto) || echo_kind(pkt).is_some() {
                    let l4 = FragmentL4 {
                        sport: pkt.sport,
                        dport: pkt.dport,
                        icmp_type: pkt.icmp_type,
                        icmp_code: pkt.icmp_code,
                    };
                    self.frags.remember(&frag_key(pkt, zone, id), l4, now_ms);
                }
                v
            }
            Fragment::Later { id } => {
                let Some(l4) = self.frags.find(&frag_key(pkt, zone, id), now_ms) else {
                    return CtVerdict::invalid();
                };
                let p = CtPacket {
                    sport: l4.sport,
                    dport: l4.dport,
                    icmp_type: l4.icmp_type,
                    icmp_code: l4.icmp_code,
                    ..*pkt
                };
                let mut v = self.dispatch(&p, zone, now_ms, commit, nat, exec);
                if !v.has(INV) {
                    v.fragment_l4 = Some(l4);
                }
                v
            }
        }
    }

    fn dispatch(
        &self,
        pkt: &CtPacket,
        zone: u16,
        now_ms: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> CtVerdict {
        match (<[u8; 4]>::from_ip(pkt.src), <[u8; 4]>::from_ip(pkt.dst)) {
            (Some(s), Some(d)) => self.run(pkt, s, d, zone, now_ms, commit, nat, exec),
            _ => match (<[u8; 16]>::from_ip(pkt.src), <[u8; 16]>::from_ip(pkt.dst)) {
                (Some(s), Some(d)) => self.run(pkt, s, d, zone, now_ms, commit, nat, exec),
                _ => CtVerdict::invalid(),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run<A: Family>(
        &self,
        pkt: &CtPacket,
        src: A,
        dst: A,
        zone: u16,
        now: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> CtVerdict {
        if is_icmp_error(pkt) {
            return self.related::<A>(pkt, zone, now, nat);
        }
        if is_icmp(pkt.proto) && echo_kind(pkt).is_none() {
            // Only echo is tracked as a connection of its own.
            return CtVerdict::invalid();
        }
        let (sport, dport) = if has_ports(pkt.proto) {
            (pkt.sport, pkt.dport)
        } else {
            (0, 0)
        };
        let t = Tuple {
            src,
            dst,
            sport,
            dport,
        };
        // At most a stale entry or two are cleaned before a real answer.
        for _ in 0..4 {
            match self.lookup::<A>(zone, pkt.proto, &t, now) {
                Lookup::Retry => continue,
                Lookup::Hit(g, idx, reply) => {
                    match self.update::<A>(g, idx, reply, pkt, now, commit, nat, exec) {
                        Some(v) => return v,
                        None => continue,
                    }
                }
                Lookup::Miss(g, s, h) => {
                    return self.create::<A>(g, s, h, &t, pkt, zone, now, commit, nat, exec)
                }
            }
        }
        CtVerdict::invalid()
    }

    pub(super) fn lookup<A: Family>(
        &self,
        zone: u16,
        proto_: u8,
        t: &Tuple<A>,
        now: u64,
    ) -> Lookup<'_> {
        let h = t.hash(zone, proto_, self.cfg.seed);
        let s = Self::shard_of(h);
        let mut g = self.lock(s);
        match A::table(&mut g).find(h, zone, proto_, t) {
            None => Lookup::Miss(g, s, h),
            Some(Found::Conn { idx, reply }) => {
                if A::table(&mut g).conn(idx).expires <= now {
                    self.kill::<A>(g, s, idx);
                    return Lookup::Retry;
                }
                Lookup::Hit(g, idx, reply)
            }
            Some(Found::Alias(ai)) => {
                let a = *A::table(&mut g).alias(ai);
                drop(g);
                let home = a.home_shard as usize;
                let mut g = self.lock(home);
                let table = A::table(&mut g);
                if table.is_live(a.home_idx) && table.conn(a.home_idx).gen == a.home_gen {
                    if table.conn(a.home_idx).expires <= now {
                        self.kill::<A>(g, home, a.home_idx);
                        return Lookup::Retry;
                    }
                    return Lookup::Hit(g, a.home_idx, true);
                }
                // The entry went away between our two locks; its remover
                // deletes the alias, or we do if we get there first.
                drop(g);
                let mut g = self.lock(s);
                let table = A::table(&mut g);
                if table.find(h, zone, proto_, t) == Some(Found::Alias(ai))
                    && table.alias(ai).home_gen == a.home_gen
                {
                    table.remove_alias(ai, h);
                }
                Lookup::Retry
            }
        }
    }

    /// Removes entry `idx` of shard `s` (whose lock `g` is), and its alias.
    fn kill<A: Family>(&self, mut g: MutexGuard<'_, Shard>, s: usize, idx: u32) {
        let c = A::table(&mut g).remove(idx);
        drop(g);
        self.release(c.zone);
        if c.flags & F_REMOTE != 0 {
            self.remove_alias::<A>(s, &super::Gone::of(idx, &c));
        }
    }

    /// Updates an existing entry. `None` means the entry was removed (a TCP
    /// reopen) and the packet should be looked up again.
    #[allow(clippy::too_many_arguments)]
    fn update<A: Family>(
        &self,
        mut g: MutexGuard<'_, Shard>,
        idx: u32,
        reply: bool,
        pkt: &CtPacket,
        now: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> Option<CtVerdict> {
        let to = &self.cfg.timeouts;
        let table: &mut Table<A> = A::table(&mut g);
        let c = table.conn_mut(idx);
        let mut state = EST;
        let later = matches!(pkt.frag, Fragment::Later { .. });
        let class = match c.proto {
            // A later fragment holds no TCP header: the connection's state
            // is what its first fragment left, and nothing moves.
            proto::TCP if later => None,
            proto::TCP => match tcp_update(c, reply as usize, &pkt.tcp) {
                Update::Valid(class) => Some(class),
                Update::Loose => None,
                Update::Invalid => return Some(CtVerdict::invalid()),
                Update::Reopen => {
                    let s = Self::shard_of(c.orig.hash(c.zone, c.proto, self.cfg.seed));
                    self.kill::<A>(g, s, idx);
                    return None;
                }
            },
            p => {
                if reply {
                    c.flags |= F_SEEN_REPLY;
                } else if c.flags & F_SEEN_REPLY == 0 {
                    state = NEW;
                }
                let seen = c.flags & F_SEEN_REPLY != 0;
                Some(match (is_icmp(p), seen) {
                    (true, false) => TimeoutClass::IcmpFirst,
                    (true, true) => TimeoutClass::IcmpReply,
                    (false, false) => TimeoutClass::UdpSingle,
                    (false, true) => TimeoutClass::UdpMultiple,
                })
            }
        };
        if commit {
            apply_exec(table, idx, exec);
        }
        let c = table.conn(idx);
        let mut v = CtVerdict::bare(state | if reply { RPL } else { 0 });
        v.mark = c.mark;
        v.label = table.label(c);
        if nat.is_some() && c.flags & (F_SNAT | F_DNAT) != 0 {
            v.state |= nat_bits(c.flags);
            v.nat = Some(NatRewrite {
                outer: rewrite_for(c, reply),
                inner: None,
            });
        }
        if let Some(class) = class {
            table.refresh(idx, class, Table::<A>::deadline(to, class, now));
        }
        Some(v)
    }

    /// A packet with no entry: `new` if it may start one, committed if asked.
    #[allow(clippy::too_many_arguments)]
    fn create<A: Family>(
        &self,
        mut g: MutexGuard<'_, Shard>,
        s: usize,
        h: u64,
        t: &Tuple<A>,
        pkt: &CtPacket,
        zone: u16,
        now: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> CtVerdict {
        if matches!(pkt.frag, Fragment::Later { .. }) {
            // A later fragment never starts a connection: had its first
            // fragment been committed, the lookup would have found it. It
            // is new, as that first fragment was.
            drop(g);
            return self.preview_nat::<A>(t, zone, pkt.proto, nat);
        }
        let (class, peers) = match pkt.proto {
            proto::TCP if tcp::valid_new(&pkt.tcp) => {
                (TimeoutClass::TcpSynSent, tcp::new_conn(&pkt.tcp))
            }
            proto::TCP => return CtVerdict::invalid(),
            p if is_icmp(p) => {
                if echo_kind(pkt) != Some(true) {
                    // A reply without a request.
                    return CtVerdict::invalid();
                }
                (TimeoutClass::IcmpFirst, Default::default())
            }
            _ => (TimeoutClass::UdpFirst, Default::default()),
        };
        if !commit {
            drop(g);
            return self.preview_nat::<A>(t, zone, pkt.proto, nat);
        }
        if let Err(reason) = self.reserve(zone) {
            let mut v = CtVerdict::bare(NEW);
            v.drop = Some(reason);
            return v;
        }
        let deadline = Table::<A>::deadline(&self.cfg.timeouts, class, now);
        let mut c = Conn::new(zone, pkt.proto, *t);
        c.tcp = peers;
        let (range, src_nat) = match nat {
            Some(NatSpec::Src(r)) => (r, true),
            Some(NatSpec::Dst(r)) => (r, false),
            _ => {
                // The reverse tuple hashes to this same shard.
                let table = A::table(&mut g);
                if table.find(h, zone, pkt.proto, &c.reply()).is_some() {
                    drop(g);
                    self.release(zone);
                    return CtVerdict::invalid();
                }
                let idx = table.insert(c, class, deadline, h, h);
                return self.new_verdict(table, idx, exec);
            }
        };
        let Some(cands) =
            Candidates::new(t, range, src_nat, movable_ports(pkt.proto), self.cfg.seed)
        else {
            drop(g);
            self.release(zone);
            let mut v = CtVerdict::bare(NEW);
            v.drop = Some(DropReason::CtNatExhausted);
            return v;
        };
        c.flags |= if src_nat { F_SNAT } else { F_DNAT };
        let mut home = Some(g);
        for r in cands {
            let r = fix_ports(r, pkt.proto, src_nat);
            let hr = r.hash(zone, pkt.proto, self.cfg.seed);
            let sr = Self::shard_of(hr);
            if sr == s {
                let Some(g) = home.as_mut() else { break };
                let table = A::table(g);
                if table.find(hr, zone, pkt.proto, &r).is_none() {
                    c.set_reply(r);
                    let idx = table.insert(c, class, deadline, h, hr);
                    return self.new_verdict(table, idx, exec);
                }
                continue;
            }
            // Locks are taken in shard order. Holding the home shard, a
            // higher one may simply be locked; a lower one only if it is
            // free right now, else both are dropped and retaken in order,
            // and the home shard must be checked again.
            let Some(held) = home.take() else { break };
            let (mut gh, mut gr, retaken) = if s < sr {
                (held, self.lock(sr), false)
            } else {
                match self.shards[sr].0.try_lock() {
                    Ok(gr) => (held, gr, false),
                    Err(_) => {
                        drop(held);
                        let b = self.lock(sr);
                        (self.lock(s), b, true)
                    }
                }
            };
            if retaken && A::table(&mut gh).find(h, zone, pkt.proto, t).is_some() {
                // Another thread committed this same tuple while no lock
                // was held; let the packet be seen again as a retransmit.
                drop((gh, gr));
                self.release(zone);
                return CtVerdict::invalid();
            }
            if A::table(&mut gr).find(hr, zone, pkt.proto, &r).is_none() {
                c.set_reply(r);
                c.flags |= F_REMOTE;
                let th = A::table(&mut gh);
                let idx = th.insert(c, class, deadline, h, hr);
                let gen = th.conn(idx).gen;
                let v = self.new_verdict(th, idx, exec);
                A::table(&mut gr).insert_alias(
                    Alias {
                        tuple: r,
                        home_idx: idx,
                        home_gen: gen,
                        home_shard: s as u16,
                        zone,
                        proto: pkt.proto,
                    },
                    hr,
                );
                return v;
            }
            drop(gr);
            home = Some(gh);
        }
        drop(home);
        self.release(zone);
        let mut v = CtVerdict::bare(NEW);
        v.drop = Some(DropReason::CtNatExhausted);
        v
    }

    /// `ct(nat(...))` without `commit` on a new connection: as in OVS, the
    /// packet is translated (to the first tuple free right now) but nothing
    /// is stored, so the next packet may be translated differently.
    fn preview_nat<A: Family>(
        &self,
        t: &Tuple<A>,
        zone: u16,
        proto_: u8,
        nat: Option<&NatSpec>,
    ) -> CtVerdict {
        let (range, src_nat) = match nat {
            Some(NatSpec::Src(r)) => (r, true),
            Some(NatSpec::Dst(r)) => (r, false),
            _ => return CtVerdict::bare(NEW),
        };
        let Some(cands) = Candidates::new(t, range, src_nat, movable_ports(proto_), self.cfg.seed)
        else {
            return CtVerdict::bare(NEW);
        };
        for r in cands {
            let r = fix_ports(r, proto_, src_nat);
            let hr = r.hash(zone, proto_, self.cfg.seed);
            let mut g = self.lock(Self::shard_of(hr));
            if A::table(&mut g).find(hr, zone, proto_, &r).is_none() {
                let mut c = Conn::new(zone, proto_, *t);
                c.flags = if src_nat { F_SNAT } else { F_DNAT };
                c.set_reply(r);
                return self.verdict_of(&c, 0);
            }
        }
        CtVerdict::bare(NEW)
    }

    /// Applies `exec` to new entry `idx` of `table` and gives its verdict.
    fn new_verdict<A: Family>(&self, table: &mut Table<A>, idx: u32, exec: &CtExec) -> CtVerdict {
        apply_exec(table, idx, exec);
        let c = table.conn(idx);
        self.verdict_of(c, table.label(c))
    }

    /// The verdict of new connection `c` whose label is `label`.
    fn verdict_of<A: Family>(&self, c: &Conn<A>, label: u128) -> CtVerdict {
        let mut v = CtVerdict::bare(NEW | nat_bits(c.flags));
        v.mark = c.mark;
        v.label = label;
        if c.flags & (F_SNAT | F_DNAT) != 0 {
            v.nat = Some(NatRewrite {
                outer: rewrite_for(c, false),
                inner: None,
            });
        }
        v
    }
}

/// The fragment table's key of datagram `id` of `pkt` at a `ct` in `zone`.
fn frag_key(pkt: &CtPacket, zone: u16, id: u32) -> FragKey {
    let bits = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().to_bits(),
        std::net::IpAddr::V6(a) => a.to_bits(),
    };
    FragKey {
        src: bits(pkt.src),
        dst: bits(pkt.dst),
        id,
        zone,
        proto: pkt.proto,
        v6: pkt.src.is_ipv6(),
    }
}

/// A candidate reply tuple adjusted to the protocol: echo has a single
/// identifier, which both "ports" carry; protocols without ports have none.
fn fix_ports<A: Family>(mut r: Tuple<A>, proto_: u8, src_nat: bool) -> Tuple<A> {
    if is_icmp(proto_) {
        if src_nat {
            r.sport = r.dport;
        } else {
            r.dport = r.sport;
        }
    } else if !has_ports(proto_) {
        r.sport = 0;
        r.dport = 0;
    }
    r
}

/// Applies a TCP segment from side `side` of `c`, first re-learning that
/// side's sequence space if the fast path carried segments this table
/// never saw (see `offload.rs`).
fn tcp_update<A: CtAddr>(c: &mut Conn<A>, side: usize, t: &super::types::TcpInfo) -> Update {
    if c.flags & (F_OFFLOADED | F_RESYNC[side]) != 0 {
        tcp::resync(&mut c.tcp, side, t);
        c.flags &= !F_RESYNC[side];
    }
    tcp::update(&mut c.tcp, side, t)
}

fn apply_exec<A: Family>(table: &mut Table<A>, idx: u32, exec: &CtExec) {
    if let Some((v, m)) = exec.mark {
        let c = table.conn_mut(idx);
        c.mark = (c.mark & !m) | (v & m);
    }
    if let Some((v, m)) = exec.label {
        let cur = table.label(table.conn(idx));
        table.set_label(idx, (cur & !m) | (v & m));
    }
}
