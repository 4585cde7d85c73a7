//! What each control request does to the switch: [`handle`] runs one
//! [`Request`] against the [`ControlState`] and returns the [`Response`].
//!
//! It runs on the control thread, the only owner of the master bridge, so
//! requests are serialised without a lock and a request never sees another
//! half done. Every change request becomes one change list applied with
//! [`Bridge::apply`] to a copy of the bridge (cheap: tables are shared
//! copy-on-write); only when the whole list is valid and the result has been
//! persisted does the copy replace the master. The control thread publishes
//! one snapshot after the request, so packets see the old rules or the new
//! ones, never a mix: that is what `--bundle` promises, and every request
//! gets it.
//!
//! Text is parsed here, with the switch's port names, so errors carry the
//! line and column the user wrote.

use super::state::ControlState;
use ctl::ofp::{
    format_flow_spec, format_group, format_match, format_rule, parse_flow_command, parse_flow_file,
    parse_group, parse_packet, FlowCommand,
};
use ctl::proto::{Command, Failure, FailureKind, Request, Response, VERSION};
use flowtable::bridge::{Change, FlowFilter, ALL_TABLES};
use flowtable::{FlowSpec, Rule};
use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;

/// A request on its way to the control thread, with where to send the
/// answer. The control socket and the metrics listener make these; the
/// control thread answers each with [`handle`] (see [`answer`]).
#[derive(Debug)]
pub struct Call {
    /// The request.
    pub req: Request,
    /// Where the response goes (capacity 1; the caller waits on it).
    pub reply: SyncSender<Response>,
}

/// Runs `call` and sends the answer back; a caller that has gone away is
/// not an error.
pub fn answer(call: Call, st: &mut ControlState) {
    let _ = call.reply.send(handle(call.req, st));
}

/// Runs one request.
pub fn handle(req: Request, st: &mut ControlState) -> Response {
    if req.version != VERSION {
        return Response::Err(Failure::new(
            FailureKind::Version,
            format!(
                "protocol version {} is not the daemon's version {VERSION}",
                req.version
            ),
        ));
    }
    match run(req.cmd, st) {
        Ok(text) => Response::Ok(text),
        Err(f) => Response::Err(f),
    }
}

pub(super) fn parse_err(e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureKind::Parse, e.to_string())
}

/// `st` with the fast path's program counters as they are now, not as the
/// last tick read them.
fn live_counters(st: &mut ControlState) -> &ControlState {
    if let Some(f) = st.fast.as_mut() {
        f.read_counters();
    }
    st
}

fn run(cmd: Command, st: &mut ControlState) -> Result<String, Failure> {
    let ports = &st.bridge.ports;
    match cmd {
        Command::AddFlow { flow, .. } => {
            let spec = parse_flow_command(&flow, FlowCommand::Add, ports).map_err(parse_err)?;
            commit(st, &[Change::AddFlow(spec)], |_| String::new())
        }
        Command::AddFlows { text, .. } => {
            let file = parse_flow_file(&text, ports).map_err(parse_err)?;
            let (changes, lines) = ctl::load::file_changes(&file);
            commit(st, &changes, |i| format!("line {}: ", lines[i]))
        }
        Command::ModFlows { flow, strict, .. } => {
            let cmd = if strict {
                FlowCommand::ModifyStrict
            } else {
                FlowCommand::Modify
            };
            let spec = parse_flow_command(&flow, cmd, ports).map_err(parse_err)?;
            let f = filter(&spec, &flow, strict);
            commit(st, &[Change::ModifyFlows(f, spec.actions)], |_| {
                String::new()
            })
        }
        Command::DelFlows {
            filter: m, strict, ..
        } => {
            let f = parse_filter(m.as_deref(), strict, st)?;
            commit(st, &[Change::DeleteFlows(f)], |_| String::new())
        }
        Command::ReplaceFlows { text, .. } => {
            let d = diff(&text, st)?;
            let mut changes: Vec<Change> = d.groups.into_iter().map(Change::AddGroup).collect();
            let mut lines = vec![0; changes.len()];
            for r in &d.only_switch {
                changes.push(Change::DeleteFlows(FlowFilter {
                    table: r.table,
                    m: r.m,
                    priority: r.priority,
                    cookie: 0,
                    cookie_mask: 0,
                    out_port: None,
                    strict: true,
                }));
                lines.push(0);
            }
            for (line, spec) in d.only_file {
                changes.push(Change::AddFlow(spec));
                lines.push(line);
            }
            if changes.is_empty() {
                return Ok(String::new());
            }
            commit(st, &changes, |i| match lines[i] {
                0 => String::new(),
                n => format!("line {n}: "),
            })
        }
        Command::DiffFlows { text } => {
            let d = diff(&text, st)?;
            let ports = &st.bridge.ports;
            let mut out = String::new();
            for r in &d.only_switch {
                out += &format!("-{}\n", format_flow_spec(&rule_spec(r), ports));
            }
            for (_, s) in &d.only_file {
                out += &format!("+{}\n", format_flow_spec(s, ports));
            }
            Ok(out)
        }
        Command::DumpFlows { filter: m } => {
            let f = parse_filter(m.as_deref(), false, st)?;
            let mut rules = st.bridge.select(&f);
            rules.sort_by(|a, b| (a.table, b.priority).cmp(&(b.table, a.priority)));
            let now = st.now_ms();
            Ok(rules
                .iter()
                .map(|r| format_rule(r, now, &st.bridge.ports) + "\n")
                .collect())
        }
        Command::AddGroup { group, .. } => group_change(&group, true, st),
        Command::ModGroup { group, .. } => group_change(&group, false, st),
        Command::DelGroups { filter: g, .. } => {
            let ids: Vec<u32> = match g.as_deref().map(str::trim) {
                None | Some("") | Some("group_id=all") => {
                    st.bridge.groups.iter().map(|g| g.spec.id).collect()
                }
                Some(text) => vec![group_id(text)?],
            };
            let changes: Vec<Change> = ids.into_iter().map(Change::DeleteGroup).collect();
            if changes.is_empty() {
                return Ok(String::new());
            }
            commit(st, &changes, |_| String::new())
        }
        Command::DumpGroups => {
            let mut groups: Vec<_> = st.bridge.groups.iter().collect();
            groups.sort_by_key(|g| g.spec.id);
            Ok(groups
                .iter()
                .map(|g| format_group(&g.spec, ports) + "\n")
                .collect())
        }
        Command::Show => Ok(st.show()),
        Command::DumpPorts { port } => st.dump_ports(port.as_deref()).map_err(rejected),
        Command::DumpTables => Ok(st.dump_tables()),
        Command::DumpDrops => Ok(st.dump_drops()),
        Command::PmdStats => Ok(live_counters(st).pmd_stats()),
        Command::DumpConntrack { zone } => Ok(st.dump_conntrack(zone)),
        Command::FlushConntrack { args } => {
            let filter = ctl::ctflush::parse(&args).map_err(parse_err)?;
            Ok(st.flush_conntrack(&filter))
        }
        Command::DumpMegaflows => Ok(st.megaflows.iter().map(|l| format!("{l}\n")).collect()),
        Command::DumpFastpath => {
            let now = st.now_ms();
            match st.fast.as_mut() {
                Some(f) => {
                    f.read_entries(now);
                    Ok(f.dump(&st.bridge, now))
                }
                None if st.fast_mode == super::config::FastPathMode::Off => Err(Failure::new(
                    FailureKind::Rejected,
                    "the fast path is off (fast_path = \"off\" in [switch])",
                )),
                None => Err(Failure::new(
                    FailureKind::Rejected,
                    "the fast path is off: the kernel refused its maps or program (oxvsd's log says why)",
                )),
            }
        }
        Command::RevalidateCheck => Ok(st.cache_check.clone()),
        Command::Trace { packet } => {
            let key = parse_packet(&packet, ports).map_err(parse_err)?;
            Ok(ctl::trace::render(&st.bridge, &key, ports))
        }
        Command::Metrics => Ok(super::metrics::render(live_counters(st))),
        Command::AddPort {
            name,
            no,
            kind,
            mtu,
            external_ids,
        } => super::handle_ports::add_port(st, name, no, kind, mtu, external_ids),
        Command::DelPort { port } => super::handle_ports::del_port(st, &port),
        Command::SetPort { port, external_ids } => {
            super::handle_ports::set_port(st, &port, external_ids)
        }
        Command::ListPorts { json } => Ok(super::handle_ports::list_ports(st, json)),
        // The control thread answers captures itself: they wait for packets.
        Command::Capture { .. } => Err(Failure::new(
            FailureKind::Rejected,
            "capture needs the running switch's poll threads",
        )),
    }
}

pub(super) fn rejected(msg: String) -> Failure {
    Failure::new(FailureKind::Rejected, msg)
}

/// Applies `changes` all or nothing, persists the result, and only then
/// makes it the master bridge. `place(i)` prefixes the error of change `i`.
fn commit(
    st: &mut ControlState,
    changes: &[Change],
    place: impl Fn(usize) -> String,
) -> Result<String, Failure> {
    let mut next = st.bridge.clone();
    next.apply(changes, st.now_ms())
        .map_err(|(i, e)| rejected(format!("{}{e}", place(i))))?;
    if let Some(p) = &st.persist {
        p.save(&next, &st.registry).map_err(|e| {
            Failure::new(
                FailureKind::Internal,
                format!("{e}; the change was not applied"),
            )
        })?;
    }
    st.bridge = next;
    tracing::info!(
        changes = changes.len(),
        rules = st.bridge.cls.len(),
        "control: rules changed"
    );
    Ok(String::new())
}

/// Whether a flow line's match part names a table. `ovs-ofctl` modifies,
/// deletes and dumps in every table unless one is named.
fn names_table(text: &str) -> bool {
    for item in text.split(|c: char| c == ',' || c.is_whitespace()) {
        match item.split(['=', ':']).next() {
            Some("actions") => return false,
            Some("table") => return true,
            _ => {}
        }
    }
    false
}

fn filter(spec: &FlowSpec, text: &str, strict: bool) -> FlowFilter {
    let mut f = FlowFilter::from_spec(spec, strict);
    if !names_table(text) {
        f.table = ALL_TABLES;
    }
    f
}

/// The filter `del-flows` and `dump-flows` take: a match without actions;
/// none selects every flow.
fn parse_filter(m: Option<&str>, strict: bool, st: &ControlState) -> Result<FlowFilter, Failure> {
    let text = m.unwrap_or("");
    let cmd = if strict {
        FlowCommand::DeleteStrict
    } else {
        FlowCommand::Delete
    };
    let spec = parse_flow_command(text, cmd, &st.bridge.ports).map_err(parse_err)?;
    Ok(filter(&spec, text, strict))
}

/// `add-group` (the group must be new) or `mod-group` (it must exist).
fn group_change(text: &str, adding: bool, st: &mut ControlState) -> Result<String, Failure> {
    let g = parse_group(text, &st.bridge.ports).map_err(parse_err)?;
    match (adding, st.bridge.groups.contains(g.id)) {
        (true, true) => Err(rejected(format!(
            "group {} already exists (mod-group changes it)",
            g.id
        ))),
        (false, false) => Err(rejected(format!("group {} does not exist", g.id))),
        _ => commit(st, &[Change::AddGroup(g)], |_| String::new()),
    }
}

fn group_id(text: &str) -> Result<u32, Failure> {
    let v = text.strip_prefix("group_id=").ok_or_else(|| {
        parse_err(format!(
            "line 1, column 1: expected group_id=N, found {text:?}"
        ))
    })?;
    v.parse().map_err(|_| {
        parse_err(format!(
            "line 1, column 10: expected a group number, found {v:?}"
        ))
    })
}

/// The spec that prints an installed rule as a flow line.
fn rule_spec(r: &Rule) -> FlowSpec {
    FlowSpec {
        table: r.table,
        priority: r.priority,
        m: r.m,
        cookie: r.cookie,
        idle_timeout: r.idle_timeout,
        hard_timeout: r.hard_timeout,
        actions: r.actions.to_vec(),
        ..Default::default()
    }
}

/// How the switch's flows differ from a file's.
struct Diff {
    /// The file's groups.
    groups: Vec<flowtable::GroupSpec>,
    /// Rules that the file does not have, or has with other actions,
    /// cookie or timeouts.
    only_switch: Vec<std::sync::Arc<Rule>>,
    /// The file's flows that the switch does not have as they are, with
    /// their lines.
    only_file: Vec<(usize, FlowSpec)>,
}

/// Compares the switch with a flow file of `add` lines. Flows are the same
/// rule when table, priority and match are; the same flow when the rest is.
fn diff(text: &str, st: &ControlState) -> Result<Diff, Failure> {
    let ports = &st.bridge.ports;
    let file = parse_flow_file(text, ports).map_err(parse_err)?;
    let key = |table: u8, priority: u16, m: &flowtable::Match| {
        (table, std::cmp::Reverse(priority), format_match(m, &()))
    };
    let mut want = BTreeMap::new();
    for (line, cmd, spec) in file.flows {
        if cmd != FlowCommand::Add {
            return Err(parse_err(format!(
                "line {line}, column 1: only flows to add belong in this file, not {cmd:?} lines"
            )));
        }
        let spec = FlowSpec {
            cookie_mask: 0,
            out_port: None,
            ..spec
        };
        want.insert(key(spec.table, spec.priority, &spec.m), (line, spec));
    }
    let mut have = BTreeMap::new();
    for r in st.bridge.cls.rules() {
        have.insert(key(r.table, r.priority, &r.m), r.clone());
    }
    let only_switch = have
        .iter()
        .filter(|(k, r)| want.get(*k).is_none_or(|(_, s)| *s != rule_spec(r)))
        .map(|(_, r)| r.clone())
        .collect();
    let only_file = want
        .into_iter()
        .filter(|(k, (_, s))| have.get(k).is_none_or(|r| rule_spec(r) != *s))
        .map(|(_, v)| v)
        .collect();
    Ok(Diff {
        groups: file.groups.into_iter().map(|(_, g)| g).collect(),
        only_switch,
        only_file,
    })
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
