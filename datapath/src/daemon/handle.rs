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

fn parse_err(e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureKind::Parse, e.to_string())
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
        Command::PmdStats => Ok(st.pmd_stats()),
        Command::DumpConntrack { zone } => Ok(st.dump_conntrack(zone)),
        Command::FlushConntrack { args } => {
            let filter = ctl::ctflush::parse(&args).map_err(parse_err)?;
            Ok(st.flush_conntrack(&filter))
        }
        Command::DumpMegaflows => Ok(st.megaflows.iter().map(|l| format!("{l}\n")).collect()),
        Command::Trace { packet } => {
            let key = parse_packet(&packet, ports).map_err(parse_err)?;
            Ok(ctl::trace::render(&st.bridge, &key, ports))
        }
        Command::Metrics => Ok(super::metrics::render(st)),
        // The control thread answers captures itself: they wait for packets.
        Command::Capture { .. } => Err(Failure::new(
            FailureKind::Rejected,
            "capture needs the running switch's poll threads",
        )),
    }
}

fn rejected(msg: String) -> Failure {
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
        p.save(&next).map_err(|e| {
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
mod tests {
    use super::*;
    use crate::daemon::persist::StateFile;
    use crate::daemon::state::{PmdStatus, PortStatus};
    use flowtable::Bridge;

    fn state() -> ControlState {
        let mut br = Bridge::default();
        br.add_port(1, "v1p1");
        br.add_port(2, "v1p2");
        br.add_port(3, "v1p3");
        ControlState::new(br)
    }

    fn ok(st: &mut ControlState, cmd: Command) -> String {
        match handle(Request::new(cmd), st) {
            Response::Ok(t) => t,
            Response::Err(f) => panic!("{f:?}"),
        }
    }

    fn err(st: &mut ControlState, cmd: Command) -> Failure {
        match handle(Request::new(cmd), st) {
            Response::Ok(t) => panic!("unexpected success: {t}"),
            Response::Err(f) => f,
        }
    }

    fn add(st: &mut ControlState, flow: &str) {
        ok(
            st,
            Command::AddFlow {
                flow: flow.into(),
                bundle: false,
            },
        );
    }

    fn dump(st: &mut ControlState, filter: Option<&str>) -> Vec<String> {
        ok(
            st,
            Command::DumpFlows {
                filter: filter.map(str::to_string),
            },
        )
        .lines()
        .map(|l| {
            // Drop the timing fields, which depend on the clock.
            let (_, rest) = l.split_once("n_packets").unwrap();
            let (_, rest) = rest.split_once("idle_age=").unwrap();
            rest.split_once(", ").map_or("", |x| x.1).to_string()
        })
        .collect()
    }

    fn add_flows(text: &str, bundle: bool) -> Command {
        Command::AddFlows {
            text: text.into(),
            bundle,
        }
    }

    #[test]
    fn flows_are_added_with_port_names_and_dumped_like_ovs() {
        let mut st = state();
        add(
            &mut st,
            "priority=100,ip,nw_dst=10.0.0.1,actions=output:v1p2",
        );
        add(&mut st, "in_port=v1p1,actions=drop");
        let text = ok(&mut st, Command::DumpFlows { filter: None });
        // Highest priority first: the default 32768 before 100.
        let first = text.lines().nth(1).unwrap();
        assert!(first.starts_with(" cookie=0x0, duration="), "{first}");
        assert!(first.contains(", table=0, n_packets=0, n_bytes=0, idle_age=0, priority=100,ip,nw_dst=10.0.0.1 actions=output:v1p2"), "{first}");
        // The default priority is left out, as ovs-ofctl does.
        assert_eq!(dump(&mut st, None)[0], "in_port=v1p1 actions=drop");
        assert_eq!(dump(&mut st, Some("ip")).len(), 1);
    }

    #[test]
    fn a_bad_line_in_a_bundle_names_line_and_column_and_changes_nothing() {
        let mut st = state();
        add(&mut st, "actions=drop");
        let v = st.bridge.version();
        let f = err(
            &mut st,
            add_flows(
                "in_port=1,actions=drop\nip,nw_dst=10.0.0.300,actions=drop\n",
                true,
            ),
        );
        assert_eq!(f.kind, FailureKind::Parse);
        assert!(
            f.message.starts_with("line 2, column 11: "),
            "{}",
            f.message
        );
        let f = err(
            &mut st,
            add_flows(
                "in_port=1,actions=drop\n\nin_port=2,actions=output:9\n",
                true,
            ),
        );
        assert_eq!(f.kind, FailureKind::Rejected);
        assert!(
            f.message.starts_with("line 3: ") && f.message.contains("port 9"),
            "{}",
            f.message
        );
        assert_eq!(dump(&mut st, None), ["actions=drop"]);
        assert_eq!(st.bridge.version(), v);
    }

    #[test]
    fn add_flows_lines_may_modify_and_delete() {
        let mut st = state();
        ok(&mut st, add_flows(
            "in_port=1,actions=output:2\nin_port=2,actions=output:1\nmodify in_port=1,actions=output:3\ndelete in_port=2\n",
            false,
        ));
        assert_eq!(dump(&mut st, None), ["in_port=v1p1 actions=output:v1p3"]);
    }

    #[test]
    fn mod_and_del_flows_work_across_tables_unless_a_table_is_named() {
        let mut st = state();
        add(&mut st, "table=0,priority=10,ip,actions=goto_table:1");
        add(
            &mut st,
            "table=1,priority=10,ip,nw_dst=10.0.0.1,actions=output:1",
        );
        add(
            &mut st,
            "table=1,priority=20,ip,nw_dst=10.0.0.1,actions=output:1",
        );
        ok(
            &mut st,
            Command::ModFlows {
                flow: "ip,nw_dst=10.0.0.1,actions=output:2".into(),
                strict: false,
                bundle: false,
            },
        );
        assert_eq!(
            dump(&mut st, Some("table=1"))
                .iter()
                .filter(|l| l.ends_with("output:v1p2"))
                .count(),
            2
        );
        ok(
            &mut st,
            Command::ModFlows {
                flow: "table=1,priority=20,ip,nw_dst=10.0.0.1,actions=output:3".into(),
                strict: true,
                bundle: false,
            },
        );
        assert!(dump(&mut st, Some("table=1"))[0].ends_with("output:v1p3"));
        ok(
            &mut st,
            Command::DelFlows {
                filter: Some("table=1,priority=10,ip,nw_dst=10.0.0.1".into()),
                strict: true,
                bundle: false,
            },
        );
        assert_eq!(dump(&mut st, None).len(), 2);
        ok(
            &mut st,
            Command::DelFlows {
                filter: Some("ip".into()),
                strict: false,
                bundle: true,
            },
        );
        assert!(dump(&mut st, None).is_empty());
    }

    #[test]
    fn del_flows_by_cookie_and_all() {
        let mut st = state();
        add(&mut st, "cookie=0x1,in_port=1,actions=drop");
        add(&mut st, "cookie=0x2,in_port=2,actions=drop");
        add(&mut st, "cookie=0x1,in_port=3,actions=drop");
        ok(
            &mut st,
            Command::DelFlows {
                filter: Some("cookie=0x1/-1".into()),
                strict: false,
                bundle: false,
            },
        );
        assert_eq!(dump(&mut st, None), ["in_port=v1p2 actions=drop"]);
        ok(
            &mut st,
            Command::DelFlows {
                filter: None,
                strict: false,
                bundle: false,
            },
        );
        assert!(st.bridge.cls.is_empty());
    }

    #[test]
    fn replace_flows_changes_only_what_differs_and_diff_flows_shows_it() {
        let mut st = state();
        add(&mut st, "in_port=1,actions=output:2");
        add(&mut st, "in_port=2,actions=output:1");
        add(&mut st, "in_port=3,actions=output:1");
        let kept = st
            .bridge
            .cls
            .rules()
            .find(|r| r.priority == 32768 && r.outputs_to(2))
            .unwrap()
            .clone();
        let file = "in_port=v1p1,actions=output:v1p2\nin_port=2,actions=output:3\npriority=5,actions=drop\n";
        let d = ok(&mut st, Command::DiffFlows { text: file.into() });
        let mut lines: Vec<&str> = d.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "+in_port=v1p2,actions=output:v1p3",
                "+priority=5,actions=drop",
                "-in_port=v1p2,actions=output:v1p1",
                "-in_port=v1p3,actions=output:v1p1",
            ]
        );
        ok(
            &mut st,
            Command::ReplaceFlows {
                text: file.into(),
                bundle: true,
            },
        );
        assert_eq!(ok(&mut st, Command::DiffFlows { text: file.into() }), "");
        assert_eq!(st.bridge.cls.len(), 3);
        // The unchanged rule is the same rule, counters and all.
        assert!(st
            .bridge
            .cls
            .rules()
            .any(|r| std::sync::Arc::ptr_eq(r, &kept)));
        let f = err(
            &mut st,
            Command::ReplaceFlows {
                text: "delete in_port=1\n".into(),
                bundle: false,
            },
        );
        assert!(f.message.starts_with("line 1, column 1: "), "{}", f.message);
    }

    #[test]
    fn groups_are_added_modified_dumped_and_deleted() {
        let mut st = state();
        let g = "group_id=1,type=select,bucket=actions=output:v1p1,bucket=actions=output:v1p2";
        ok(
            &mut st,
            Command::AddGroup {
                group: g.into(),
                bundle: false,
            },
        );
        let f = err(
            &mut st,
            Command::AddGroup {
                group: g.into(),
                bundle: false,
            },
        );
        assert!(f.message.contains("already exists"), "{}", f.message);
        let f = err(
            &mut st,
            Command::ModGroup {
                group: "group_id=2,type=all,bucket=actions=output:1".into(),
                bundle: false,
            },
        );
        assert!(f.message.contains("does not exist"), "{}", f.message);
        ok(
            &mut st,
            Command::ModGroup {
                group: "group_id=1,type=all,bucket=actions=output:3".into(),
                bundle: false,
            },
        );
        add(&mut st, "in_port=1,actions=group:1");
        assert_eq!(
            ok(&mut st, Command::DumpGroups),
            " group_id=1,type=all,bucket=actions=output:v1p3\n"
        );
        let f = err(
            &mut st,
            Command::DelGroups {
                filter: Some("group_id=x".into()),
                bundle: false,
            },
        );
        assert_eq!(f.kind, FailureKind::Parse);
        ok(
            &mut st,
            Command::DelGroups {
                filter: Some("group_id=1".into()),
                bundle: false,
            },
        );
        assert!(st.bridge.groups.is_empty() && st.bridge.cls.is_empty());
        ok(
            &mut st,
            Command::AddGroup {
                group: g.into(),
                bundle: false,
            },
        );
        ok(
            &mut st,
            Command::DelGroups {
                filter: None,
                bundle: false,
            },
        );
        assert!(st.bridge.groups.is_empty());
    }

    #[test]
    fn switch_reports_show_ports_tables_drops_and_pmds() {
        let mut st = state();
        add(&mut st, "actions=drop");
        st.ports = vec![PortStatus {
            no: 1,
            name: "v1p1".into(),
            mac: Some([2, 0, 0, 0, 0, 1]),
            mode: "afxdp native copy".into(),
            queues: 2,
            pmds: vec![0, 1],
            up: true,
            stats: crate::stats::PortStats {
                rx_packets: 5,
                rx_bytes: 300,
                ..Default::default()
            },
        }];
        let mut pmd = PmdStatus {
            id: 0,
            core: Some(2),
            busy_ns: 500,
            total_ns: 1000,
            ..Default::default()
        };
        pmd.stats.rx_packets = 10;
        pmd.stats.emc_hit = 7;
        pmd.stats.drop(flowtable::DropReason::TableMiss);
        st.pmds = vec![pmd.clone(), PmdStatus { id: 1, ..pmd }];
        st.megaflows = vec!["in_port(1),eth_type(0x0800) actions:2".into()];
        let show = ok(&mut st, Command::Show);
        assert!(show.contains(" 1(v1p1): addr:02:00:00:00:00:01"), "{show}");
        assert!(
            show.contains("afxdp native copy, queues: 2, pmd: 0,1"),
            "{show}"
        );
        let ports = ok(
            &mut st,
            Command::DumpPorts {
                port: Some("v1p1".into()),
            },
        );
        assert!(
            ports.contains("port  1(v1p1): rx pkts=5, bytes=300, drop=0"),
            "{ports}"
        );
        assert_eq!(
            err(
                &mut st,
                Command::DumpPorts {
                    port: Some("nope".into())
                }
            )
            .kind,
            FailureKind::Rejected
        );
        let tables = ok(&mut st, Command::DumpTables);
        assert!(
            tables.contains("table 0:\n    active=1, matched=0"),
            "{tables}"
        );
        let drops = ok(&mut st, Command::DumpDrops);
        assert!(
            drops.contains("drop_table_miss: 2\n") && drops.contains("drop_tx_full: 0\n"),
            "{drops}"
        );
        assert_eq!(drops.lines().count(), flowtable::DropReason::COUNT + 1);
        let pmds = ok(&mut st, Command::PmdStats);
        assert!(
            pmds.contains("pmd thread 0 core_id 2:") && pmds.contains("emc hits: 7 (70.0%)"),
            "{pmds}"
        );
        assert!(
            pmds.contains("busy: 50.0%") && pmds.contains("avg ns per packet: 50.0"),
            "{pmds}"
        );
        assert_eq!(
            ok(&mut st, Command::DumpMegaflows),
            "in_port(1),eth_type(0x0800) actions:2\n"
        );
    }

    #[test]
    fn trace_runs_against_the_live_rules() {
        let mut st = state();
        add(
            &mut st,
            "priority=10,ip,nw_dst=10.0.0.2,actions=output:v1p2",
        );
        let t = ok(
            &mut st,
            Command::Trace {
                packet: "in_port=v1p1,ip,nw_dst=10.0.0.2".into(),
            },
        );
        assert!(t.contains("Datapath actions: 2"), "{t}");
        let f = err(
            &mut st,
            Command::Trace {
                packet: "in_port=v1p1,ip,nw_dst=10.0.0".into(),
            },
        );
        assert!(f.message.starts_with("line 1, column "), "{}", f.message);
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let mut st = state();
        let r = handle(
            Request {
                version: VERSION + 1,
                cmd: Command::Show,
            },
            &mut st,
        );
        assert!(matches!(
            r,
            Response::Err(Failure {
                kind: FailureKind::Version,
                ..
            })
        ));
    }

    #[test]
    fn accepted_changes_are_persisted_and_unpersistable_ones_refused() {
        let dir = std::env::temp_dir().join(format!("oxvs-handle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut st = state();
        st.persist = Some(StateFile::new(dir.join("rules")));
        add(&mut st, "in_port=1,actions=output:2");
        let saved = std::fs::read_to_string(dir.join("rules")).unwrap();
        assert!(saved.contains("in_port=1,actions=output:2"), "{saved}");
        st.persist = Some(StateFile::new(dir.join("missing/rules")));
        let f = err(
            &mut st,
            Command::AddFlow {
                flow: "in_port=2,actions=drop".into(),
                bundle: false,
            },
        );
        assert_eq!(f.kind, FailureKind::Internal);
        assert!(f.message.contains("not applied"), "{}", f.message);
        assert_eq!(st.bridge.cls.len(), 1);
    }
}
