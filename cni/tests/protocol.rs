//! The CNI protocol as runtimes speak it: the real binary, `CNI_*`
//! variables and the configuration on stdin, the answer on stdout. Bad
//! invocations get the spec's error code and create nothing (checked, as
//! root, in a namespace of the test's own where the plugin runs).

mod common;

use common::{invoke, root_or_skip, vars, Sandbox};
use std::path::Path;

const GOOD: &str = r#"{"cniVersion":"1.1.0","name":"oxvs","type":"oxvs",
    "socket":"/nonexistent/oxvsd.sock","ipam":{"type":"host-local","subnet":"10.244.1.0/24"}}"#;

#[test]
fn version_lists_both_spec_versions() {
    let a = invoke(
        None,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"1.0.0"}"#,
    );
    assert!(a.ok, "{}", a.stderr);
    assert_eq!(a.json["cniVersion"], "1.0.0");
    let v: Vec<&str> = a.json["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(v, ["1.0.0", "1.1.0"]);
    // With nothing on stdin, the answer is in the newest version.
    let a = invoke(None, &[("CNI_COMMAND", "VERSION")], "");
    assert!(a.ok);
    assert_eq!(a.json["cniVersion"], "1.1.0");
}

#[test]
fn environment_errors_are_code_4_and_name_the_variable() {
    for (vars, names) in [
        (vec![], "CNI_COMMAND"),
        (vec![("CNI_COMMAND", "FROB")], "FROB"),
        (
            vec![("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")],
            "CNI_CONTAINERID",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_NETNS",
        ),
        (
            vec![("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1")],
            "CNI_IFNAME",
        ),
        (
            vec![
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "-c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_CONTAINERID",
        ),
        (
            vec![
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0:1"),
            ],
            "CNI_IFNAME",
        ),
        (vec![("CNI_COMMAND", "GC")], "CNI_PATH"),
    ] {
        let a = invoke(None, &vars, GOOD);
        assert!(!a.ok, "{vars:?} succeeded");
        assert_eq!(a.code(), 4, "{vars:?}: {}", a.json);
        assert_eq!(a.json["cniVersion"], "1.1.0");
        let text = a.json.to_string();
        assert!(
            text.contains(names),
            "{vars:?}: {text} does not name {names}"
        );
    }
}

#[test]
fn configuration_errors_have_their_codes() {
    let del = vars("DEL", "c1", "", "eth0");
    for (conf, code) in [
        ("", 6),
        ("{", 6),
        ("[]", 6),
        (r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#, 6),
        (r#"{"cniVersion":"0.3.1","name":"n"}"#, 1),
        (r#"{"cniVersion":"2.0.0","name":"n"}"#, 1),
        (r#"{"name":"n"}"#, 7),
        (r#"{"cniVersion":"1.0.0","type":"oxvs"}"#, 7),
        (r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#, 7),
        (r#"{"cniVersion":"1.0.0","name":"n","mtu":40}"#, 7),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"x"}}"#,
            7,
        ),
        (r#"{"cniVersion":"1.0.0","name":"n","portKind":"dpdk"}"#, 7),
    ] {
        let a = invoke(None, &del, conf);
        assert!(!a.ok, "{conf} succeeded");
        assert_eq!(a.code(), code, "{conf}: {}", a.json);
        assert!(a.json["msg"].is_string());
    }
    // The error is reported in the configuration's version when we speak it.
    let a = invoke(None, &del, r#"{"cniVersion":"1.0.0","name":"n","mtu":1}"#);
    assert_eq!(a.json["cniVersion"], "1.0.0");
}

#[test]
fn status_without_oxvsd_is_code_50() {
    let a = invoke(None, &[("CNI_COMMAND", "STATUS")], GOOD);
    assert!(!a.ok);
    assert_eq!(a.code(), 50, "{}", a.json);
}

#[test]
fn gc_without_valid_attachments_is_refused() {
    let a = invoke(
        None,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        GOOD,
    );
    assert_eq!(a.code(), 7, "{}", a.json);
}

/// As root: every refused invocation, run in a namespace of the test's own
/// against a real container namespace, leaves both namespaces as they were
/// and host-local's store empty.
#[test]
fn refused_invocations_create_nothing() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("p");
    let node = sb.netns("node");
    let c1 = sb.netns("c1");
    let netns = Sandbox::netns_path(&c1);
    let sock = sb.dir.join("none.sock");
    let good = sb.conf("proto", "1.0.0", &sock, "10.244.7.0/24");
    let before = (Sandbox::links(&node), Sandbox::links(&c1));
    let add = vars("ADD", "c1", &netns, "eth0");
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u64);
    let mut cases: Vec<Case> = vec![
        (add.clone(), "{".into(), 6),
        (add.clone(), good.replace("1.0.0", "0.4.0"), 1),
        (add.clone(), good.replace("\"proto\"", "\"\""), 7),
        (
            add.iter()
                .filter(|(k, _)| *k != "CNI_NETNS")
                .copied()
                .collect(),
            good.clone(),
            4,
        ),
        (
            vars("ADD", "c1", "/run/netns/no-such-ns", "eth0"),
            good.clone(),
            3,
        ),
        (
            vars("ADD", "c1", &netns, "a-name-far-too-long"),
            good.clone(),
            4,
        ),
    ];
    // oxvsd is not there: "try again later", after undoing every step.
    cases.push((add.clone(), good.clone(), 11));
    for (v, conf, code) in &cases {
        let a = invoke(Some(&node), v, conf);
        assert!(!a.ok);
        assert_eq!(a.code(), *code, "{conf}: {} {}", a.json, a.stderr);
        assert_eq!(
            (Sandbox::links(&node), Sandbox::links(&c1)),
            before,
            "{conf} left interfaces behind"
        );
        assert!(
            sb.allocations("proto").is_empty(),
            "{conf} left an allocation"
        );
    }
    assert!(!Path::new(&sock).exists());
}
