//! `trace`: run one described packet through a set of rules and show every
//! table visited, the rule that matched, the datapath actions and the
//! megaflow that would be installed — `ovs-appctl ofproto/trace` for oxvs.
//!
//! The offline form loads the rules from a flow file into a fresh bridge; the
//! live form (later) asks a running oxvsd. Both print through [`render`].

use crate::odp::format_dp_actions;
use crate::ofp::{format_actions, format_match, parse_flow_file, PortNames};
use flowtable::action::Action;
use flowtable::action::FROZEN_WORDS;
use flowtable::bridge::Bridge;
use flowtable::conntrack::NatSpec;
use flowtable::field::ct_state;
use flowtable::field::{dl_type, Field};
use flowtable::port::is_reserved;
use flowtable::{translate, DpAction, FlowKey, FlowMask, Match, PortNo, TraceEvent};
use std::collections::BTreeSet;

/// Loads a flow file into a new bridge. `ports` names the bridge's ports;
/// when empty, every port number the file mentions becomes a port named
/// `pN`, which is what an offline trace of a file usually wants.
pub fn load_bridge(text: &str, ports: &[(String, PortNo)]) -> Result<Bridge, String> {
    let mut br = Bridge::default();
    for (name, no) in ports {
        br.add_port(*no, name);
    }
    let file = parse_flow_file(text, &br.ports).map_err(|e| e.to_string())?;
    if ports.is_empty() {
        let mut seen = BTreeSet::new();
        for (_, _, spec) in &file.flows {
            let (p, m) = spec.m.get(Field::InPort);
            if m != 0 {
                seen.insert(p as PortNo);
            }
            collect_ports(&spec.actions, &mut seen);
        }
        for (_, g) in &file.groups {
            for b in &g.buckets {
                collect_ports(&b.actions, &mut seen);
                seen.extend(b.watch_port);
            }
        }
        for p in seen.into_iter().filter(|p| !is_reserved(*p)) {
            br.add_port(p, &format!("p{p}"));
        }
    }
    let (changes, lines) = crate::load::file_changes(&file);
    br.apply(&changes, 0)
        .map_err(|(i, e)| format!("line {}: {e}", lines[i]))?;
    Ok(br)
}

fn collect_ports(actions: &[Action], seen: &mut BTreeSet<PortNo>) {
    for a in actions {
        match *a {
            Action::Output(p) => {
                seen.insert(p);
            }
            Action::Resubmit {
                in_port: Some(p), ..
            } => {
                seen.insert(p);
            }
            _ => {}
        }
    }
}

/// The match that prints a packet key: every non-zero field plus the
/// protocol fields, which are meaningful even when zero.
pub fn packet_match(key: &FlowKey) -> Match {
    let mut mask = FlowMask::default();
    let dl = key.get(Field::DlType) as u16;
    let ip = dl == dl_type::IPV4 || dl == dl_type::IPV6;
    for f in Field::all() {
        let meaningful = match f.prereq() {
            flowtable::field::Prereq::None => true,
            _ => ip || dl == dl_type::ARP,
        };
        if meaningful && (key.get(f) != 0 || f == Field::DlType || (ip && f == Field::NwProto)) {
            mask.set_field(f);
        }
    }
    Match {
        key: key.masked(&mask),
        mask,
        conj_id: None,
    }
}

/// How many passes a trace follows (the datapath's limit).
const MAX_PASSES: usize = 6;

/// Traces `key` through `br` and renders the result. A `ct(table=T)`
/// is followed into its next pass, as `ofproto/trace` does, with the
/// packet assumed to start a new connection (`ct_state=new|trk`, plus
/// `snat`/`dnat` and the first address of the range when it commits with
/// NAT), the rewrites before the `ct` applied, and registers, metadata,
/// zone and the `exec` mark and label carried over.
pub fn render(br: &Bridge, key: &FlowKey, names: &dyn PortNames) -> String {
    let mut out = String::new();
    let mut key = *key;
    for pass in 0..MAX_PASSES {
        let x = render_pass(br, &key, names, &mut out);
        let Some(next) = next_pass(&key, &x.actions) else {
            break;
        };
        let id = next.get(Field::RecircId);
        out.push_str(&format!(
            "\n{rule}\nrecirc({id:#x}) - resume conntrack with ct_state={}\n{rule}\n\n",
            state_text(next.get(Field::CtState) as u8),
            rule = "=".repeat(79)
        ));
        if pass + 1 == MAX_PASSES {
            out.push_str("recirculation limit reached, dropping\n");
        }
        key = next;
    }
    out
}

/// Applies a datapath action that rewrites packet fields (MACs, addresses,
/// ARP fields, ports, TTL, TOS) to `k`, as the packet would be rewritten;
/// false, and `k` unchanged, for any other action. Shared by the tracers
/// that follow a packet through translated actions.
pub fn apply_set(k: &mut FlowKey, a: &DpAction) -> bool {
    match a {
        DpAction::SetEthSrc(m) => k.set(Field::DlSrc, mac_value(m)),
        DpAction::SetEthDst(m) => k.set(Field::DlDst, mac_value(m)),
        DpAction::SetIpv4Src(v) => k.set(Field::NwSrc, u32::from_be_bytes(*v).into()),
        DpAction::SetIpv4Dst(v) => k.set(Field::NwDst, u32::from_be_bytes(*v).into()),
        DpAction::SetIpv6Src(v) => k.set(Field::Ipv6Src, u128::from_be_bytes(*v)),
        DpAction::SetIpv6Dst(v) => k.set(Field::Ipv6Dst, u128::from_be_bytes(*v)),
        DpAction::SetArp {
            op,
            sha,
            spa,
            tha,
            tpa,
        } => {
            k.set(Field::NwProto, (*op).into());
            k.set(Field::ArpSha, mac_value(sha));
            k.set(Field::NwSrc, u32::from_be_bytes(*spa).into());
            k.set(Field::ArpTha, mac_value(tha));
            k.set(Field::NwDst, u32::from_be_bytes(*tpa).into());
        }
        DpAction::SetTpSrc(p) => k.set(Field::TpSrc, (*p).into()),
        DpAction::SetTpDst(p) => k.set(Field::TpDst, (*p).into()),
        DpAction::SetTtl(t) => k.set(Field::NwTtl, (*t).into()),
        DpAction::SetTos(t) => k.set(Field::NwTos, (*t).into()),
        _ => return false,
    }
    true
}

/// The key of the pass after the first recirculating `ct` in `actions`,
/// as [`render`] follows it (also used by programs that trace packets
/// through compiled rules, such as oxvs-agent's model tests).
pub fn next_pass(key: &FlowKey, actions: &[DpAction]) -> Option<FlowKey> {
    let mut k = *key;
    for a in actions {
        if apply_set(&mut k, a) {
            continue;
        }
        if let DpAction::Ct(spec) = a {
            let Some(table) = spec.table else { continue };
            let first = Field::Metadata.word();
            k.w[first..first + FROZEN_WORDS].copy_from_slice(&spec.frozen);
            let mut state = ct_state::NEW | ct_state::TRK;
            // A new connection committed with NAT takes the first
            // address and port of the range (the datapath spreads them
            // by a hash, which a trace does not know).
            if spec.commit {
                match spec.nat {
                    Some(NatSpec::Dst(r)) => {
                        set_addr(&mut k, r.addr_min, false);
                        if r.port_min != 0 {
                            k.set(Field::TpDst, r.port_min.into());
                        }
                        state |= ct_state::DNAT;
                    }
                    Some(NatSpec::Src(r)) => {
                        set_addr(&mut k, r.addr_min, true);
                        if r.port_min != 0 {
                            k.set(Field::TpSrc, r.port_min.into());
                        }
                        state |= ct_state::SNAT;
                    }
                    _ => {}
                }
            }
            k.set(Field::CtState, state.into());
            k.set(Field::CtZone, spec.zone.into());
            let (mark, mm) = spec.exec.mark.unwrap_or((0, 0));
            k.set(Field::CtMark, (mark & mm).into());
            let (label, lm) = spec.exec.label.unwrap_or((0, 0));
            k.set(Field::CtLabel, label & lm);
            k.set(Field::RecircId, flowtable::xlate::recirc_id(table).into());
            return Some(k);
        }
    }
    None
}

/// `new|trk|dnat`, in `ct_state`'s bit order.
fn state_text(bits: u8) -> String {
    let names: Vec<&str> = ct_state::NAMES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect();
    names.join("|")
}

fn set_addr(k: &mut FlowKey, a: std::net::IpAddr, src: bool) {
    match (a, src) {
        (std::net::IpAddr::V4(v), true) => k.set(Field::NwSrc, u32::from(v).into()),
        (std::net::IpAddr::V4(v), false) => k.set(Field::NwDst, u32::from(v).into()),
        (std::net::IpAddr::V6(v), true) => k.set(Field::Ipv6Src, v.into()),
        (std::net::IpAddr::V6(v), false) => k.set(Field::Ipv6Dst, v.into()),
    }
}

fn mac_value(m: &[u8; 6]) -> u128 {
    m.iter().fold(0u128, |acc, b| acc << 8 | u128::from(*b))
}

/// Renders one pass and returns its translation.
fn render_pass(
    br: &Bridge,
    key: &FlowKey,
    names: &dyn PortNames,
    out: &mut String,
) -> flowtable::XlateOut {
    let mut events = Vec::new();
    let x = translate(br, key, Some(&mut events));
    out.push_str(&format!(
        "Flow: {}\n\n",
        format_match(&packet_match(key), names)
    ));
    out.push_str("bridge(\"br0\")\n-------------\n");
    for ev in &events {
        match ev {
            TraceEvent::Lookup {
                depth, table, rule, ..
            } => {
                let pad = "    ".repeat(*depth as usize);
                match rule {
                    Some(r) => {
                        let m = format_match(&r.m, names);
                        let m = if m.is_empty() {
                            String::new()
                        } else {
                            format!("{m}, ")
                        };
                        out.push_str(&format!(
                            "{pad}{table:>2}. {m}priority {}, cookie {:#x}\n",
                            r.priority, r.cookie
                        ));
                        out.push_str(&format!("{pad}    {}\n", format_actions(&r.actions, names)));
                    }
                    None => out.push_str(&format!("{pad}{table:>2}. No match.\n{pad}    drop\n")),
                }
            }
            TraceEvent::Note { depth, text } => {
                out.push_str(&format!(
                    "{}     >> {text}\n",
                    "    ".repeat(*depth as usize)
                ));
            }
        }
    }
    let mf = Match {
        key: key.masked(&x.mask),
        mask: x.mask,
        conj_id: None,
    };
    out.push_str(&format!("\nMegaflow: {}\n", format_match(&mf, names)));
    out.push_str(&format!(
        "Datapath actions: {}\n",
        format_dp_actions(&x.actions)
    ));
    x
}
