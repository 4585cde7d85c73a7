//! Flow lines (`table=10,priority=100,ip,nw_dst=10.244.1.0/24,actions=...`)
//! and packet descriptions for `trace` (`in_port=1,tcp,tp_dst=80`).
//!
//! A line is split into items; every item before the first `actions=` is a
//! rule key (`table`, `priority`, `cookie`, timeouts, `out_port`), a protocol
//! shorthand (`ip`, `tcp6`, ...) or `field=value`, and everything after
//! `actions=` is the action list. The match is built field by field with a
//! conflict check (two items that disagree on a bit are an error, two that
//! agree are fine), then the prerequisites are checked once the whole match is
//! known, because `tp_dst=80,tcp` is as valid as `tcp,tp_dst=80`. Each field
//! remembers the column of the item that first set it so that a missing
//! prerequisite is reported where the user wrote the field.

use super::actions::{self, Cx};
use super::conj;
use super::error::{fail, Fail, Res};
use super::fields::{self, Need};
use super::file::FlowCommand;
use super::lexer::{self, Item};
use super::{value, ParseError, PortNames};
use flowtable::field::dl_type;
use flowtable::flow_match::PrereqError;
use flowtable::rule::N_TABLES;
use flowtable::{Field, FlowKey, FlowSpec, Match};
use std::collections::BTreeMap;

/// Protocol shorthands: the `dl_type` and, for L4 ones, `nw_proto` they set.
const SHORTHANDS: [(&str, u16, Option<u8>); 12] = [
    ("ip", dl_type::IPV4, None),
    ("ipv6", dl_type::IPV6, None),
    ("arp", dl_type::ARP, None),
    ("tcp", dl_type::IPV4, Some(6)),
    ("udp", dl_type::IPV4, Some(17)),
    ("sctp", dl_type::IPV4, Some(132)),
    ("icmp", dl_type::IPV4, Some(1)),
    ("igmp", dl_type::IPV4, Some(2)),
    ("tcp6", dl_type::IPV6, Some(6)),
    ("udp6", dl_type::IPV6, Some(17)),
    ("sctp6", dl_type::IPV6, Some(132)),
    ("icmp6", dl_type::IPV6, Some(58)),
];

/// Why the shorthands below are refused.
const MPLS_OR_RARP: &str = "oxvs does not parse MPLS or RARP";

/// Shorthands `ovs-ofctl` knows that `flowtable` cannot represent.
const UNSUPPORTED_SHORTHANDS: [&str; 3] = ["rarp", "mpls", "mplsm"];

/// The rule keys that are not match fields.
const RULE_KEYS: [&str; 6] = [
    "table",
    "priority",
    "cookie",
    "idle_timeout",
    "hard_timeout",
    "out_port",
];

/// The TTL `ovs-appctl ofproto/trace` gives an IP packet that names none.
const DEFAULT_TTL: u128 = 64;

/// Builds a [`Match`] item by item, remembering where each field was set.
pub(crate) struct MatchBuilder {
    m: Match,
    /// Column (byte offset) of the first item that set each field.
    first: BTreeMap<Field, usize>,
    /// Spellings that imply a protocol (`tcp_dst`), checked at the end.
    needs: Vec<(Need, String, usize)>,
    /// Whether masks are refused (a packet description).
    packet: bool,
}

impl MatchBuilder {
    pub(crate) fn new(packet: bool) -> MatchBuilder {
        MatchBuilder {
            m: Match::any(),
            first: BTreeMap::new(),
            needs: Vec::new(),
            packet,
        }
    }

    /// Adds `field == value` under `mask`, refusing a disagreement with bits
    /// already matched.
    fn add(&mut self, f: Field, value: u128, mask: u128, pos: usize, name: &str) -> Res<()> {
        let (old_value, old_mask) = self.m.get(f);
        let value = value & mask;
        if (old_value ^ value) & old_mask & mask != 0 {
            return fail(
                pos,
                format!("{name} conflicts with an earlier value of {f}"),
            );
        }
        // Match::set_masked rewrites the whole field from the value given, so
        // pass it the merged value to keep bits set by earlier items
        // (`dl_vlan=5,dl_vlan_pcp=3` share vlan_tci).
        self.m
            .set_masked(f, (old_value & !mask) | value, old_mask | mask);
        self.first.entry(f).or_insert(pos);
        Ok(())
    }

    /// Takes one match item: a shorthand or `field=value`.
    pub(crate) fn item(&mut self, item: &Item<'_>, ports: &dyn PortNames) -> Res<()> {
        let (key, value) = item.key_value();
        let Some((text, vpos)) = value else {
            if let Some((name, dl, proto)) = SHORTHANDS.iter().find(|(n, _, _)| *n == key) {
                self.add(Field::DlType, u128::from(*dl), 0xffff, item.pos, name)?;
                if let Some(p) = proto {
                    self.add(Field::NwProto, u128::from(*p), 0xff, item.pos, name)?;
                }
                return Ok(());
            }
            if UNSUPPORTED_SHORTHANDS.contains(&key) {
                return fail(
                    item.pos,
                    format!("{key} is not supported by oxvs: {MPLS_OR_RARP}"),
                );
            }
            if fields::lookup(key).is_some() || RULE_KEYS.contains(&key) || key == "conj_id" {
                return fail(item.pos, format!("{key} needs a value ({key}=...)"));
            }
            return fields::unknown(key, item.pos);
        };
        if key == "conj_id" {
            return self.conj_id(text, vpos, item.pos);
        }
        let Some(s) = fields::lookup(key) else {
            return fields::unknown(key, item.pos);
        };
        let v = fields::read(&s, key, text, vpos, ports)?;
        if let (true, Some(slash)) = (self.packet, v.slash) {
            return fail(
                slash,
                format!("a packet has exact values, so {key} cannot be masked"),
            );
        }
        self.add(s.field, v.value, v.mask, item.pos, key)?;
        if s.need != Need::Field {
            self.needs.push((s.need, key.to_string(), item.pos));
        }
        Ok(())
    }

    /// Takes `conj_id=N`, which is not a packet field (see `conj`).
    fn conj_id(&mut self, text: &str, vpos: usize, pos: usize) -> Res<()> {
        if self.packet {
            return fail(pos, "conj_id is not part of a packet");
        }
        let id = conj::parse_conj_id(text, vpos)?;
        if self.m.conj_id.is_some_and(|old| old != id) {
            return fail(pos, "conj_id conflicts with an earlier value of conj_id");
        }
        self.m.conj_id = Some(id);
        Ok(())
    }

    /// Checks prerequisites and returns the match.
    pub(crate) fn finish(self) -> Res<Match> {
        for (need, name, pos) in &self.needs {
            if !fields::satisfied(&self.m, *need) {
                return fail(
                    *pos,
                    format!("{name} requires {} in the match", fields::need_text(*need)),
                );
            }
        }
        if self.m.check_prereqs().is_ok() {
            return Ok(self.m);
        }
        // Find the failing field the way check_prereqs does, but with the
        // ND exception of fields::prereq_ok, and report where it was written.
        for field in Field::all() {
            if self.m.mask.get(field) != 0 && !fields::prereq_ok(&self.m, field) {
                let pos = self.first.get(&field).copied().unwrap_or(0);
                return fail(
                    pos,
                    PrereqError {
                        field,
                        needs: field.prereq(),
                    }
                    .to_string(),
                );
            }
        }
        Ok(self.m)
    }
}

/// The rule keys seen so far, to refuse contradictory repeats.
#[derive(Default)]
struct Seen(BTreeMap<&'static str, (u128, u128)>);

impl Seen {
    fn note(&mut self, key: &'static str, value: (u128, u128), pos: usize) -> Res<()> {
        match self.0.insert(key, value) {
            Some(old) if old != value => fail(pos, format!("conflicting values for {key}")),
            _ => Ok(()),
        }
    }
}

/// Applies one rule key to `spec`.
fn rule_key(
    spec: &mut FlowSpec,
    seen: &mut Seen,
    item: &Item<'_>,
    ports: &dyn PortNames,
) -> Res<bool> {
    let (key, Some((text, pos))) = item.key_value() else {
        return Ok(false);
    };
    let Some(key) = RULE_KEYS.iter().copied().find(|k| *k == key) else {
        return Ok(false);
    };
    let noted = match key {
        "table" => {
            let t = value::uint(text, pos, 8, key)?;
            if t >= N_TABLES as u128 {
                return fail(
                    pos,
                    format!(
                        "table {t} does not exist (tables are 0 to {})",
                        N_TABLES - 1
                    ),
                );
            }
            spec.table = t as u8;
            (t, 0)
        }
        "priority" => {
            spec.priority = value::uint(text, pos, 16, key)? as u16;
            (u128::from(spec.priority), 0)
        }
        "idle_timeout" => {
            spec.idle_timeout = value::uint(text, pos, 32, key)? as u32;
            (u128::from(spec.idle_timeout), 0)
        }
        "hard_timeout" => {
            spec.hard_timeout = value::uint(text, pos, 32, key)? as u32;
            (u128::from(spec.hard_timeout), 0)
        }
        "out_port" => {
            let p = value::port(text, pos, ports)?;
            spec.out_port = Some(p);
            (u128::from(p), 0)
        }
        _ => {
            let (v, m) = value::split_mask(text, pos);
            spec.cookie = value::uint(v, pos, 64, key)? as u64;
            spec.cookie_mask = match m {
                None => 0,
                Some(("-1", _)) => u64::MAX,
                Some((m, mpos)) => value::uint(m, mpos, 64, "cookie mask")? as u64,
            };
            (u128::from(spec.cookie), u128::from(spec.cookie_mask))
        }
    };
    seen.note(key, noted, item.pos)?;
    Ok(true)
}

/// Parses a flow line from byte `start` of `line` for command `cmd`.
pub(crate) fn parse_line(
    line: &str,
    start: usize,
    cmd: FlowCommand,
    ports: &dyn PortNames,
) -> Res<FlowSpec> {
    let items = lexer::split(&line[start..], start)?;
    let actions_at = items.iter().position(|i| i.key_value().0 == "actions");
    let (match_items, rest) = items.split_at(actions_at.unwrap_or(items.len()));
    let mut spec = FlowSpec::default();
    let mut seen = Seen::default();
    let mut b = MatchBuilder::new(false);
    for item in match_items {
        if !rule_key(&mut spec, &mut seen, item, ports)? {
            b.item(item, ports)?;
        }
    }
    spec.m = b.finish()?;
    let Some((first, more)) = rest.split_first() else {
        if cmd.takes_actions() {
            return fail(line.len(), "missing actions= (the action list comes last)");
        }
        return Ok(spec);
    };
    if !cmd.takes_actions() {
        return fail(first.pos, "delete commands do not take actions=");
    }
    let mut list: Vec<Item<'_>> = Vec::with_capacity(rest.len());
    if let (_, Some((text, pos))) = first.key_value() {
        if !text.is_empty() {
            list.push(Item { text, pos });
        }
    }
    list.extend_from_slice(more);
    let cx = Cx {
        table: Some(spec.table),
        m: Some(&spec.m),
        ports,
    };
    spec.actions = actions::parse(&list, &cx)?;
    Ok(spec)
}

/// Parses one flow line (`ovs-ofctl add-flow` syntax) into a [`FlowSpec`].
/// Errors are reported as line 1.
pub fn parse_flow(line: &str, ports: &dyn PortNames) -> Result<FlowSpec, ParseError> {
    parse_flow_command(line, FlowCommand::Add, ports)
}

/// Parses a flow line for a given command: like [`parse_flow`], except that
/// `delete` and `delete_strict` take no `actions=` (as in `ovs-ofctl
/// del-flows`), so a bare match is accepted for them.
pub fn parse_flow_command(
    line: &str,
    cmd: FlowCommand,
    ports: &dyn PortNames,
) -> Result<FlowSpec, ParseError> {
    parse_line(line, 0, cmd, ports).map_err(|e| e.at_line(line, 1))
}

/// Parses a packet description for `trace`: match syntax where every value
/// is exact, giving the [`FlowKey`] of one packet.
///
/// Flag syntax (`ct_state=+trk+est`, `tcp_flags=+syn`) sets the named bits
/// and leaves the rest clear; an explicit `/mask` is an error. As in
/// `ovs-appctl ofproto/trace`, an IP packet gets `nw_ttl=64` unless one is
/// given.
pub fn parse_packet(s: &str, ports: &dyn PortNames) -> Result<FlowKey, ParseError> {
    packet(s, ports).map_err(|e| e.at_line(s, 1))
}

fn packet(s: &str, ports: &dyn PortNames) -> Res<FlowKey> {
    let mut b = MatchBuilder::new(true);
    for item in lexer::split(s, 0)? {
        let key = item.key_value().0;
        if key == "actions" || RULE_KEYS.contains(&key) {
            return Err(Fail {
                pos: item.pos,
                message: format!("{key} is not part of a packet"),
            });
        }
        b.item(&item, ports)?;
    }
    let m = b.finish()?;
    let mut key = m.key;
    let ip = m.is_exact(Field::DlType, dl_type::IPV4.into())
        || m.is_exact(Field::DlType, dl_type::IPV6.into());
    if ip && m.mask.get(Field::NwTtl) == 0 {
        key.set(Field::NwTtl, DEFAULT_TTL);
    }
    Ok(key)
}
