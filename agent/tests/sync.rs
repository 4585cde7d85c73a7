//! The sync against a switch held in memory: a `Bridge` with named ports,
//! dumped with the daemon's own printers (`format_rule`, `format_group`),
//! changed by the bundles the agent sends, as oxvsd applies them
//! (`parse_flow_file` → `file_changes` → one `apply`).

mod common;

use agent::app::offline_ports;
use agent::compile::{compile, NodeView};
use agent::object::{Kind, ObjectKey};
use agent::store::Event;
use agent::sync::{plan, Installed};
use ctl::ofp::{format_group, format_rule, parse_flow_file};
use flowtable::bridge::{Bridge, Change};

/// The dump-flows, dump-groups and show text of `br`, as oxvsd prints them.
fn dump(br: &Bridge) -> (String, String, String) {
    let flows: String = br
        .cls
        .rules()
        .map(|r| format_rule(r, 5000, &br.ports) + "\n")
        .collect();
    let groups: String = br
        .groups
        .iter()
        .map(|g| format_group(&g.spec, &br.ports) + "\n")
        .collect();
    let show: String = br
        .ports
        .iter()
        .map(|p| format!(" {}({}): addr:unknown\n", p.no, p.name))
        .collect();
    (flows, groups, show)
}

fn send(br: &mut Bridge, text: &str) {
    let file = parse_flow_file(text, &br.ports).expect("the bundle parses with the switch's names");
    let (changes, _) = ctl::load::file_changes(&file);
    br.apply(&changes, 1000).expect("the bundle applies");
}

#[test]
fn first_sync_then_nothing_then_only_the_difference() {
    let mut c = common::small();
    let ports = offline_ports(&c.store, "node1");
    let mut br = Bridge::default();
    for ((_, name), p) in &ports {
        br.ports.add(p.ofport, &format!("v-{name}"));
    }
    br.ports.add(2, "gw0s");
    br.ports.add(100, "gnv0");
    // Something stale from before, to be removed, and a learned rule, to stay.
    send(
        &mut br,
        "table=80,priority=5,ip,nw_dst=1.2.3.4,actions=drop\n",
    );
    let learned_cookie = agent::cookie::cookie(
        &ObjectKey::new(Kind::Service, "development", "redis"),
        agent::cookie::Category::Learned,
    );
    send(&mut br, &format!("table=41,priority=200,cookie={learned_cookie:#x},hard_timeout=600,tcp,nw_src=10.244.0.2,nw_dst=10.244.240.4,tp_dst=6379,actions=load:0x1->NXM_NX_REG0[4]\n"));

    let want = compile(NodeView {
        store: &c.store,
        config: &c.config,
        node: "node1",
        ports: &ports,
    })
    .unwrap();
    let (f, g, s) = dump(&br);
    let p = plan(&want, &Installed::parse(&f, &g, &s).unwrap()).unwrap();
    assert_eq!(
        (p.added, p.removed, p.groups),
        (want.flow_count(), 1, want.group_count())
    );
    send(&mut br, &p.bundle);

    // In step: a restarted agent sends nothing.
    let (f, g, s) = dump(&br);
    let have = Installed::parse(&f, &g, &s).unwrap();
    assert_eq!(
        have.flow_count(),
        want.flow_count(),
        "the learned rule is not counted"
    );
    assert!(plan(&want, &have).unwrap().is_empty());
    assert!(
        br.cls.rules().any(|r| r.cookie == learned_cookie),
        "learned rules are left alone"
    );

    // One endpoint goes: only its rules change.
    let victim = c
        .store
        .pods()
        .find(|p| {
            p.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("redis-replica")
        })
        .unwrap();
    let name = victim.metadata.name.clone().unwrap();
    c.store.apply(Event::Delete(ObjectKey::new(
        Kind::Pod,
        "development",
        &name,
    )));
    // The other pods keep their ports (the CNI removed this one's).
    let mut ports2 = ports.clone();
    ports2.remove(&("development".to_string(), name));
    let want2 = compile(NodeView {
        store: &c.store,
        config: &c.config,
        node: "node1",
        ports: &ports2,
    })
    .unwrap();
    let p = plan(&want2, &have).unwrap();
    assert!(p.added + p.removed < 20, "a small difference: {p:?}");
    assert!(p.groups >= 1, "the Service groups lose a bucket");
    send(&mut br, &p.bundle);
    for id in &p.stale_groups {
        br.apply(&[Change::DeleteGroup(*id)], 2000).unwrap();
    }
    let (f, g, s) = dump(&br);
    assert!(plan(&want2, &Installed::parse(&f, &g, &s).unwrap())
        .unwrap()
        .is_empty());
}
