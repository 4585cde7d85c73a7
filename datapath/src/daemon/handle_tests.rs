//! Tests of the control-socket request handler: commands run against an
//! in-memory control state, without a daemon or a socket.

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
    let file =
        "in_port=v1p1,actions=output:v1p2\nin_port=2,actions=output:3\npriority=5,actions=drop\n";
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
        " group_id=1,type=all,bucket=bucket_id:0,actions=output:v1p3\n"
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
            rx_dropped: 9,
            xsk_rx_dropped: 9,
            xsk_rx_fill_ring_empty: 9,
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
        ports.contains("port  1(v1p1): rx pkts=5, bytes=300, drop=9"),
        "{ports}"
    );
    // The kernel's drops for the AF_XDP socket, by name: an empty fill
    // ring is told apart from a full RX ring.
    assert!(
        ports.contains("xsk rx_dropped=9, rx_ring_full=0, fill_ring_empty=9"),
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

/// The daemon parses `flush-conntrack` itself (a client other than
/// oxvs-ctl may send anything): a bad filter is refused with its place
/// and flushes nothing; a good one removes what it names.
#[test]
fn flush_conntrack_parses_and_flushes() {
    use flowtable::conntrack::{ConnTrack, CtConfig, CtPacket};
    let mut st = state();
    let ct = std::sync::Arc::new(ConnTrack::new(CtConfig::default()));
    for (c, zone) in [(1u8, 5u16), (2, 5), (3, 6)] {
        let p = CtPacket::udp(
            std::net::Ipv4Addr::new(10, 244, 1, c).into(),
            5353,
            std::net::Ipv4Addr::new(10, 96, 0, 10).into(),
            53,
        );
        ct.process(&p, zone, 0, true, None);
    }
    st.conntrack = Some(ct.clone());
    let flush = |args: &[&str]| Command::FlushConntrack {
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let f = err(
        &mut st,
        flush(&["zone=5", "ct_nw_src=10.244.1.1,ct_tp_sorc=1"]),
    );
    assert!(
        f.message.contains("argument 2") && f.message.contains("column 22"),
        "{f:?}"
    );
    assert_eq!(ct.len(), 3, "nothing flushed");
    assert_eq!(ok(&mut st, flush(&["zone=5", "ct_nw_src=10.244.1.1"])), "");
    assert_eq!((ct.len(), ct.zone_len(5)), (2, 1));
    ok(&mut st, flush(&[]));
    assert!(ct.is_empty());
    assert_eq!(st.conntrack_len, 0);
}

/// `pmd-stats` and `/metrics` show fragment tracking's counters, the
/// later fragments conntrack could not place among them, so an operator
/// sees why a large datagram did not cross.
#[test]
fn pmd_stats_and_metrics_count_fragments() {
    use flowtable::conntrack::{ConnTrack, CtConfig, CtPacket, Fragment};
    let mut st = state();
    let ct = std::sync::Arc::new(ConnTrack::new(CtConfig::default()));
    let udp = |sport, dport, frag| {
        let mut p = CtPacket::udp(
            std::net::Ipv4Addr::new(10, 244, 1, 2).into(),
            sport,
            std::net::Ipv4Addr::new(10, 244, 1, 3).into(),
            dport,
        );
        p.frag = frag;
        p
    };
    // A later fragment before any first, then a datagram in order.
    ct.process(&udp(0, 0, Fragment::Later { id: 1 }), 0, 0, true, None);
    ct.process(&udp(5353, 53, Fragment::First { id: 2 }), 0, 0, true, None);
    ct.process(&udp(0, 0, Fragment::Later { id: 2 }), 0, 0, true, None);
    st.conntrack = Some(ct);
    let stats = ok(&mut st, Command::PmdStats);
    assert!(
        stats.contains(
            "conntrack fragments: 1 first, 1 later tracked, 1 later without their first (+inv), 0 evicted"
        ),
        "{stats}"
    );
    let m = crate::daemon::metrics::render(&st);
    assert!(
        m.contains("oxvs_conntrack_fragments_total{outcome=\"orphan\"} 1"),
        "{m}"
    );
}

mod ports {
    //! `add-port`, `del-port`, `set-port`, `list-ports`.

    use super::*;
    use crate::daemon::config::PortConfig;
    use crate::daemon::ports::PortRegistry;

    fn configured(name: &str, no: u32) -> PortConfig {
        PortConfig {
            name: name.into(),
            no,
            kind: Default::default(),
            uplink: false,
            local_ip: None,
            remote_ip: None,
            key: None,
            runtime: false,
            mtu: None,
        }
    }

    fn port_state(max: usize) -> ControlState {
        let mut st = state();
        st.registry = PortRegistry::new(
            vec![
                configured("v1p1", 1),
                configured("v1p2", 2),
                configured("v1p3", 3),
            ],
            max,
        );
        st
    }

    fn add_port(name: &str, no: Option<u32>, ids: &[(&str, &str)]) -> Command {
        Command::AddPort {
            name: name.into(),
            no,
            kind: None,
            mtu: None,
            external_ids: ids
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn list(st: &mut ControlState) -> Vec<ctl::proto::PortInfo> {
        serde_json::from_str(&ok(st, Command::ListPorts { json: true })).unwrap()
    }

    /// What a refused request must leave alone.
    fn snapshot(st: &ControlState) -> (u64, u64, String) {
        (
            st.bridge.version(),
            st.registry.generation(),
            ok(&mut clone_state(st), Command::ListPorts { json: true }),
        )
    }

    fn clone_state(st: &ControlState) -> ControlState {
        let mut c = ControlState::new(st.bridge.clone());
        c.registry = st.registry.clone();
        c
    }

    #[test]
    fn add_port_takes_the_lowest_free_number_and_lists_it() {
        let mut st = port_state(8);
        let v = st.bridge.version();
        let n = ok(&mut st, add_port("pod1", None, &[("iface-id", "ns/pod1")]));
        assert_eq!(n, "4\n");
        assert!(st.bridge.version() > v, "a port change revalidates caches");
        assert_eq!(st.bridge.ports.by_name("pod1"), Some(4));
        // Down until a poll thread has it open.
        assert!(!st.bridge.ports.iter().find(|p| p.no == 4).unwrap().up);
        assert_eq!(ok(&mut st, add_port("pod9", Some(9), &[])), "9\n");
        assert_eq!(ok(&mut st, add_port("pod5", None, &[])), "5\n");
        let ports = list(&mut st);
        let nos: Vec<u32> = ports.iter().map(|p| p.no).collect();
        assert_eq!(nos, [1, 2, 3, 4, 5, 9]);
        let p = &ports[3];
        assert_eq!((p.name.as_str(), p.configured), ("pod1", false));
        assert_eq!(p.external_ids["iface-id"], "ns/pod1");
        assert_eq!(p.kind, "waiting", "no interface pod1 here");
        assert_eq!(p.state, "down");
        assert!(ports[0].configured);
        let text = ok(&mut st, Command::ListPorts { json: false });
        assert!(
            text.contains("4(pod1): waiting, down, added, external-id:iface-id=ns/pod1"),
            "{text}"
        );
        // Rules may name the new port at once.
        add(&mut st, "in_port=pod1,actions=output:v1p1");
    }

    #[test]
    fn refused_requests_change_nothing() {
        let mut st = port_state(2);
        ok(&mut st, add_port("pod1", None, &[]));
        let before = snapshot(&st);
        let cases: Vec<(Command, FailureKind, &str)> = vec![
            (
                add_port("pod1", None, &[]),
                FailureKind::Rejected,
                "already exists",
            ),
            (
                add_port("v1p2", None, &[]),
                FailureKind::Rejected,
                "already exists",
            ),
            (
                add_port("pod2", Some(2), &[]),
                FailureKind::Rejected,
                "taken by v1p2",
            ),
            (add_port("pod2", Some(0), &[]), FailureKind::Parse, "no=0"),
            (
                add_port("pod2", Some(5000), &[]),
                FailureKind::Parse,
                "no=5000",
            ),
            (add_port("7", None, &[]), FailureKind::Parse, "number"),
            (add_port("a/b", None, &[]), FailureKind::Parse, "'/'"),
            (add_port("LOCAL", None, &[]), FailureKind::Parse, "reserved"),
            (
                add_port("waytoolonganame16", None, &[]),
                FailureKind::Parse,
                "15 bytes",
            ),
            (
                Command::AddPort {
                    name: "pod2".into(),
                    no: None,
                    kind: Some("tap".into()),
                    mtu: None,
                    external_ids: Default::default(),
                },
                FailureKind::Parse,
                "kind=tap",
            ),
            (
                Command::AddPort {
                    name: "pod2".into(),
                    no: None,
                    kind: None,
                    mtu: Some(9000),
                    external_ids: Default::default(),
                },
                FailureKind::Parse,
                "mtu=9000",
            ),
            (
                add_port("pod2", None, &[("", "x")]),
                FailureKind::Parse,
                "external-id:=x",
            ),
            (
                Command::DelPort {
                    port: "nope".into(),
                },
                FailureKind::Rejected,
                "no port nope",
            ),
            (
                Command::DelPort {
                    port: "v1p1".into(),
                },
                FailureKind::Rejected,
                "config file",
            ),
            (
                Command::DelPort { port: "2".into() },
                FailureKind::Rejected,
                "config file",
            ),
            (
                Command::SetPort {
                    port: "v1p1".into(),
                    external_ids: Default::default(),
                },
                FailureKind::Rejected,
                "config file",
            ),
        ];
        for (cmd, kind, text) in cases {
            let f = err(&mut st, cmd.clone());
            assert_eq!(f.kind, kind, "{cmd:?}: {f:?}");
            assert!(f.message.contains(text), "{cmd:?}: {}", f.message);
            assert_eq!(snapshot(&st), before, "{cmd:?} changed the switch");
        }
        // The switch is sized for two runtime ports.
        ok(&mut st, add_port("pod2", None, &[]));
        let f = err(&mut st, add_port("pod3", None, &[]));
        assert!(
            f.message.contains("room for 2 runtime ports"),
            "{}",
            f.message
        );
    }

    #[test]
    fn set_port_sets_and_removes_external_ids() {
        let mut st = port_state(8);
        ok(&mut st, add_port("pod1", None, &[("a", "1"), ("b", "2")]));
        let ids = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        ok(
            &mut st,
            Command::SetPort {
                port: "4".into(),
                external_ids: ids(&[("a", ""), ("c", "3"), ("b", "two")]),
            },
        );
        let p = list(&mut st).into_iter().find(|p| p.no == 4).unwrap();
        assert_eq!(p.external_ids, ids(&[("b", "two"), ("c", "3")]));
    }

    #[test]
    fn a_deleted_port_leaves_its_rules_and_its_number_held() {
        let mut st = port_state(8);
        ok(&mut st, add_port("pod1", None, &[]));
        ok(&mut st, add_port("pod2", None, &[]));
        add(
            &mut st,
            "priority=5,ip,nw_dst=10.244.1.9,actions=output:pod1",
        );
        let v = st.bridge.version();
        ok(
            &mut st,
            Command::DelPort {
                port: "pod1".into(),
            },
        );
        assert!(st.bridge.version() > v);
        assert_eq!(st.bridge.ports.by_name("pod1"), None);
        assert_eq!(dump(&mut st, None).len(), 1, "the rule stays");
        // Number 4 is held while the rule names it; pod2 keeps 5.
        assert_eq!(ok(&mut st, add_port("pod3", None, &[])), "6\n");
        assert!(list(&mut st).iter().all(|p| p.no != 4));
        // Once no rule names it, it is free again.
        ok(
            &mut st,
            Command::DelFlows {
                filter: None,
                strict: false,
                bundle: false,
            },
        );
        assert_eq!(ok(&mut st, add_port("pod4", None, &[])), "4\n");
        // A port deleted with no rule naming it frees its number at once.
        ok(&mut st, Command::DelPort { port: "6".into() });
        assert_eq!(ok(&mut st, add_port("pod6", None, &[])), "6\n");
        // An explicit number may put a port back under the rules naming it.
        add(&mut st, "priority=5,ip,nw_dst=10.244.1.9,actions=output:6");
        ok(
            &mut st,
            Command::DelPort {
                port: "pod6".into(),
            },
        );
        assert_eq!(ok(&mut st, add_port("pod6b", Some(6), &[])), "6\n");
        assert_eq!(st.bridge.ports.by_name("pod6b"), Some(6));
    }

    #[test]
    fn added_ports_are_persisted_and_restored_before_the_rules() {
        let d = std::env::temp_dir().join(format!("oxvs-handle-ports-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("rules");
        let mut st = port_state(8);
        st.persist = Some(StateFile::new(&path));
        ok(
            &mut st,
            Command::AddPort {
                name: "pod1".into(),
                no: None,
                kind: Some("af_packet".into()),
                mtu: Some(1450),
                external_ids: [("pod-name".to_string(), "a b=c%".to_string())].into(),
            },
        );
        ok(&mut st, add_port("pod2", None, &[]));
        add(&mut st, "in_port=pod1,actions=output:pod2");
        ok(&mut st, add_port("pod3", None, &[]));
        add(&mut st, "in_port=pod3,actions=output:v1p1");
        ok(
            &mut st,
            Command::DelPort {
                port: "pod3".into(),
            },
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("#port name=pod1 no=4 kind=af_packet mtu=1450"),
            "{text}"
        );
        assert!(!text.contains("pod3"), "{text}");
        assert!(text.contains("#held-port no=6"), "{text}");

        // A restart: the configured ports, then the state file.
        let mut br = Bridge::default();
        for (n, name) in [(1, "v1p1"), (2, "v1p2"), (3, "v1p3")] {
            br.add_port(n, name);
        }
        let mut reg = PortRegistry::new(st.registry.configured.clone(), 8);
        let n = crate::daemon::persist::restore_with_ports(&path, &mut br, &mut reg).unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(reg.added, st.registry.added);
        assert_eq!(br.ports.by_name("pod2"), Some(5));
        assert!(br.ports.known(6) && !br.ports.contains(6));
        let mut back = ControlState::new(br);
        back.registry = reg;
        assert_eq!(
            ok(&mut back, Command::ListPorts { json: true }),
            ok(&mut st, Command::ListPorts { json: true })
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn dump_fastpath_says_when_the_fast_path_is_off() {
    let mut st = state();
    let f = err(&mut st, Command::DumpFastpath);
    assert_eq!(f.kind, FailureKind::Rejected);
    assert!(f.message.contains("the kernel refused"), "{}", f.message);
    st.fast_mode = crate::daemon::config::FastPathMode::Off;
    let f = err(&mut st, Command::DumpFastpath);
    assert_eq!(f.kind, FailureKind::Rejected);
    assert!(f.message.contains("fast_path = \"off\""), "{}", f.message);
    assert!(!ok(&mut st, Command::PmdStats).contains("fast path"));
    assert!(!ok(&mut st, Command::Metrics).contains("oxvs_fastpath"));
}
