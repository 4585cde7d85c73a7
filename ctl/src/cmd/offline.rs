//! The commands that need no daemon: `trace --flows FILE` and `parse-flows`,
//! which load a flow file into a bridge of their own.

use crate::ofp::{format_group, format_rule, parse_packet};
use crate::trace::{load_bridge, render};
use flowtable::PortNo;

/// `trace --flows FILE [--port NAME=NO]... PACKET`.
pub fn trace(
    text: &str,
    file: &str,
    ports: &[(String, PortNo)],
    packet: &str,
) -> Result<String, String> {
    let br = load_bridge(text, ports).map_err(|e| format!("{file}: {e}"))?;
    let key = parse_packet(packet, &br.ports).map_err(|e| format!("packet: {e}"))?;
    Ok(render(&br, &key, &br.ports))
}

/// `parse-flows FILE`: the file's groups and rules in canonical form.
pub fn parse_flows(text: &str, file: &str, ports: &[(String, PortNo)]) -> Result<String, String> {
    let br = load_bridge(text, ports).map_err(|e| format!("{file}: {e}"))?;
    let mut out = String::new();
    for g in br.groups.iter() {
        out.push_str(&format_group(&g.spec, &br.ports));
        out.push('\n');
    }
    let mut rules: Vec<_> = br.cls.rules().collect();
    rules.sort_by_key(|r| (r.table, std::cmp::Reverse(r.priority)));
    for r in rules {
        out.push_str(&format_rule(r, 0, &br.ports));
        out.push('\n');
    }
    Ok(out)
}
