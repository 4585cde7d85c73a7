//! `trace`: run one described packet through a set of rules and show every
//! table visited, the rule that matched, the datapath actions and the
//! megaflow that would be installed — `ovs-appctl ofproto/trace` for oxvs.
//!
//! The offline form loads the rules from a flow file into a fresh bridge; the
//! live form (later) asks a running oxvsd. Both print through [`render`].

use crate::odp::format_dp_actions;
use crate::ofp::{format_actions, format_match, parse_flow_file, PortNames};
use flowtable::action::Action;
use flowtable::bridge::Bridge;
use flowtable::field::{dl_type, Field};
use flowtable::port::is_reserved;
use flowtable::{translate, FlowKey, FlowMask, Match, PortNo, TraceEvent};
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

/// Traces `key` through `br` and renders the result.
pub fn render(br: &Bridge, key: &FlowKey, names: &dyn PortNames) -> String {
    let mut events = Vec::new();
    let x = translate(br, key, Some(&mut events));
    let mut out = String::new();
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
    out
}
