//! The control socket end to end: a real Unix socket in a temporary
//! directory, a thread standing in for the control thread (answering each
//! `Call` with `handle` over an in-memory `ControlState`), and clients that
//! are either the `oxvs-ctl` command line (through `ctl::cmd::run`, the
//! code the binary runs) or raw sockets sending whatever they like.
//! Needs neither root nor network namespaces.

use ctl::proto::{self, Command, FailureKind, Request, Response, MAX_MESSAGE};
use datapath::daemon::control::{ControlError, ControlServer, MAX_CLIENTS};
use datapath::daemon::handle::{answer, Call};
use datapath::daemon::persist::{self, StateFile};
use datapath::daemon::state::ControlState;
use flowtable::Bridge;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

struct Rig {
    dir: PathBuf,
    sock: PathBuf,
    server: Option<ControlServer>,
    control: Option<JoinHandle<ControlState>>,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("oxvs-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("oxvsd.sock");
        let (tx, rx) = std::sync::mpsc::channel::<Call>();
        let mut br = Bridge::default();
        for (no, name) in [(1, "v1p1"), (2, "v1p2"), (3, "v1p3")] {
            br.add_port(no, name);
        }
        let mut st = ControlState::new(br);
        st.persist = Some(StateFile::new(dir.join("rules")));
        let control = std::thread::spawn(move || {
            for call in rx {
                answer(call, &mut st);
            }
            st
        });
        let server = ControlServer::start(&sock, tx).unwrap();
        Rig {
            dir,
            sock,
            server: Some(server),
            control: Some(control),
        }
    }

    /// Runs an `oxvs-ctl` command line against this rig.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["--socket".to_string(), self.sock.display().to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        ctl::cmd::run(&v)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ctl(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// The dump-flows lines without the clock-dependent fields.
    fn flows(&self) -> Vec<String> {
        self.ok(&["dump-flows"])
            .lines()
            .map(|l| l.split_once("idle_age=").unwrap().1)
            .map(|l| l.split_once(", ").map_or("", |x| x.1).to_string())
            .collect()
    }

    /// Stops the server and the control thread, returning the final state.
    fn stop(mut self) -> ControlState {
        drop(self.server.take());
        self.control.take().unwrap().join().unwrap()
    }
}

fn raw(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s
}

fn read_response(s: &mut UnixStream) -> Response {
    let body = proto::read_body(s).unwrap();
    proto::decode_response(&body).unwrap()
}

fn failure_kind(r: Response) -> FailureKind {
    match r {
        Response::Err(f) => f.kind,
        Response::Ok(t) => panic!("unexpected success: {t}"),
    }
}

#[test]
fn every_flow_command_works_through_oxvs_ctl() {
    let rig = Rig::new("flows");
    assert_eq!(
        rig.ok(&[
            "add-flow",
            "priority=100,ip,nw_dst=10.0.0.1,actions=output:v1p2"
        ]),
        ""
    );
    let f = rig.file(
        "a.flows",
        "# a comment\ncookie=0x1,in_port=v1p1,actions=output:v1p3\ncookie=0x2,in_port=v1p2,actions=drop\ntable=1,priority=7,actions=drop\n",
    );
    rig.ok(&["add-flows", "--bundle", &f]);
    assert_eq!(rig.flows().len(), 4);
    let dump = rig.ok(&["dump-flows", "br0", "ip"]);
    assert!(dump.starts_with(" cookie=0x0, duration="), "{dump}");
    assert!(dump.contains(", table=0, n_packets=0, n_bytes=0, idle_age=0, priority=100,ip,nw_dst=10.0.0.1 actions=output:v1p2\n"), "{dump}");

    rig.ok(&["mod-flows", "in_port=v1p1,actions=output:v1p2"]);
    assert!(rig
        .flows()
        .contains(&"in_port=v1p1 actions=output:v1p2".to_string()));
    rig.ok(&[
        "mod-flows",
        "--strict",
        "table=1,priority=7,actions=output:v1p1",
    ]);
    assert!(rig
        .flows()
        .contains(&"priority=7 actions=output:v1p1".to_string()));
    rig.ok(&["del-flows", "cookie=0x1/-1"]);
    assert_eq!(rig.flows().len(), 3);
    rig.ok(&["del-flows", "--strict", "table=1,priority=7"]);
    assert_eq!(rig.flows().len(), 2);

    let g = "group_id=4,type=select,bucket=actions=output:v1p1,bucket=actions=output:v1p2";
    rig.ok(&["add-group", g]);
    let e = rig.ctl(&["add-group", g]).unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    rig.ok(&[
        "mod-group",
        "group_id=4,type=all,bucket=actions=output:v1p3",
    ]);
    assert_eq!(
        rig.ok(&["dump-groups"]),
        " group_id=4,type=all,bucket=bucket_id:0,actions=output:v1p3\n"
    );

    let want = rig.file(
        "want.flows",
        "cookie=0x2,in_port=v1p2,actions=drop\nin_port=v1p3,actions=group:4\n",
    );
    let diff = rig.ok(&["diff-flows", &want]);
    assert!(
        diff.contains("-priority=100,ip,nw_dst=10.0.0.1,actions=output:v1p2\n"),
        "{diff}"
    );
    assert!(diff.contains("+in_port=v1p3,actions=group:4\n"), "{diff}");
    assert!(
        !diff.contains("in_port=v1p2,"),
        "unchanged flows are not in the diff: {diff}"
    );
    rig.ok(&["replace-flows", "--bundle", &want]);
    assert_eq!(rig.ok(&["diff-flows", &want]), "");
    // Deleting a group deletes the rules that use it, as OpenFlow says.
    rig.ok(&["del-groups", "group_id=4"]);
    assert_eq!(rig.flows(), ["in_port=v1p2 actions=drop"]);
    assert!(rig.ok(&["dump-flows"]).starts_with(" cookie=0x2, "));
    rig.ok(&["del-flows"]);
    assert!(rig.flows().is_empty());
    rig.ok(&["add-flow", "--bundle", "in_port=v1p1,actions=output:v1p2"]);

    let show = rig.ok(&["show"]);
    assert!(show.contains(" 2(v1p2): addr:unknown"), "{show}");
    assert!(rig
        .ok(&["dump-ports", "v1p2"])
        .contains("port  2(v1p2): rx pkts=0"));
    assert!(rig.ok(&["dump-tables"]).contains("table 0:\n    active=1,"));
    assert!(rig.ok(&["dump-drops"]).contains("drop_table_miss: 0\n"));
    rig.ok(&["pmd-stats"]);
    assert_eq!(rig.ok(&["dump-megaflows"]), "");
    let t = rig.ok(&["trace", "in_port=v1p1,ip,nw_dst=10.0.0.9"]);
    assert!(t.contains("Datapath actions: 2"), "{t}");
    assert!(rig
        .ok(&["metrics"])
        .contains("# TYPE oxvs_drops_total counter"));

    // The persisted state restores to the same rule set.
    let st = rig.stop();
    let mut back = Bridge::default();
    for (no, name) in [(1, "v1p1"), (2, "v1p2"), (3, "v1p3")] {
        back.add_port(no, name);
    }
    let path = st.persist.as_ref().unwrap().path().to_path_buf();
    assert_eq!(persist::restore(&path, &mut back).unwrap(), Some(1));
    assert_eq!(persist::render(&back), persist::render(&st.bridge));
}

#[test]
fn a_bad_line_in_a_bundle_is_reported_and_changes_nothing() {
    let rig = Rig::new("bundle");
    rig.ok(&["add-flow", "actions=drop"]);
    let before = rig.flows();
    let f = rig.file(
        "bad.flows",
        "in_port=v1p1,actions=output:v1p2\nin_port=v1p2,ip,nw_src=10.1.1.1/33,actions=drop\n",
    );
    let e = rig.ctl(&["add-flows", "--bundle", &f]).unwrap_err();
    assert!(e.starts_with(&format!("{f}: line 2, column 33: ")), "{e}");
    let f = rig.file(
        "bad2.flows",
        "in_port=v1p1,actions=drop\nin_port=v1p2,actions=output:v9\n",
    );
    let e = rig.ctl(&["add-flows", "--bundle", &f]).unwrap_err();
    assert!(e.starts_with(&format!("{f}: line 2, column ")), "{e}");
    let f = rig.file(
        "bad3.flows",
        "in_port=v1p1,actions=drop\nin_port=v1p2,actions=group:9\n",
    );
    let e = rig.ctl(&["add-flows", "--bundle", &f]).unwrap_err();
    assert!(
        e.starts_with(&format!("{f}: line 2: group 9 does not exist")),
        "{e}"
    );
    assert_eq!(rig.flows(), before);
    let saved = std::fs::read_to_string(rig.dir.join("rules")).unwrap();
    assert!(!saved.contains("in_port"), "{saved}");
}

#[test]
fn two_clients_changing_rules_at_once_both_land() {
    let rig = std::sync::Arc::new(Rig::new("two"));
    let workers: Vec<_> = (1..=2u32)
        .map(|c| {
            let rig = rig.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let flow = format!("cookie={c},priority={i},in_port=v1p{c},actions=drop");
                    rig.ok(&["add-flow", &flow]);
                }
                rig.ok(&[
                    "del-flows",
                    &format!("cookie={c}/-1,priority=0,in_port=v1p{c}"),
                ]);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // Loose delete with priority= ignores the priority: each client removed
    // all of its own rules and none of the other's.
    assert!(rig.flows().is_empty());
    let rig = std::sync::Arc::try_unwrap(rig).ok().unwrap();
    let workers: Vec<_> = (1..=2u32)
        .map(|c| {
            let sock = rig.sock.clone();
            std::thread::spawn(move || {
                let text: String = (0..200)
                    .map(|i| format!("cookie={c},priority={i},in_port={c},actions=drop\n"))
                    .collect();
                let args = [
                    "--socket".to_string(),
                    sock.display().to_string(),
                    "add-flows".into(),
                    "--bundle".into(),
                    write_tmp(&sock, c, &text),
                ];
                ctl::cmd::run(&args).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(rig.flows().len(), 400);
    let st = rig.stop();
    assert_eq!(st.bridge.cls.len(), 400);
}

fn write_tmp(sock: &Path, c: u32, text: &str) -> String {
    let p = sock.with_file_name(format!("c{c}.flows"));
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn garbage_oversized_frames_and_dropped_clients_do_not_disturb_the_daemon() {
    let rig = Rig::new("garbage");
    rig.ok(&["add-flow", "actions=drop"]);

    // A well-framed body that is not JSON.
    let mut s = raw(&rig.sock);
    s.write_all(b"\x00\x00\x00\x05hello").unwrap();
    assert_eq!(failure_kind(read_response(&mut s)), FailureKind::Malformed);

    // Text where a length should be reads as a huge length.
    let mut s = raw(&rig.sock);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(failure_kind(read_response(&mut s)), FailureKind::TooLarge);

    // An explicit oversized length is refused without reading a body, and
    // the connection is closed after the reply.
    let mut s = raw(&rig.sock);
    s.write_all(&((MAX_MESSAGE as u32) + 1).to_be_bytes())
        .unwrap();
    assert_eq!(failure_kind(read_response(&mut s)), FailureKind::TooLarge);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);

    // A request from another protocol version.
    let mut s = raw(&rig.sock);
    let body = br#"{"version":999,"cmd":{"cmd":"show"}}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    assert_eq!(failure_kind(read_response(&mut s)), FailureKind::Version);

    // A client that hangs up in the middle of a request.
    let mut s = raw(&rig.sock);
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(b"{\"version\":1,").unwrap();
    drop(s);
    // And one that hangs up before reading its answer.
    let mut s = raw(&rig.sock);
    proto::write_frame(&mut s, &Request::new(Command::DumpFlows { filter: None })).unwrap();
    drop(s);

    // Several requests on one connection are fine.
    let mut s = raw(&rig.sock);
    for _ in 0..3 {
        proto::write_frame(&mut s, &Request::new(Command::DumpTables)).unwrap();
        assert!(matches!(read_response(&mut s), Response::Ok(_)));
    }
    assert_eq!(rig.flows(), ["actions=drop"]);
}

#[test]
fn too_many_clients_are_told_the_daemon_is_busy() {
    let rig = Rig::new("busy");
    let idle: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| raw(&rig.sock)).collect();
    let mut s = raw(&rig.sock);
    assert_eq!(failure_kind(read_response(&mut s)), FailureKind::Busy);
    drop(idle);
    // Once the idle clients are gone, there is room again.
    let mut ok = false;
    for _ in 0..100 {
        if rig.ctl(&["dump-flows"]).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ok);
}

#[test]
fn the_socket_is_private_stale_ones_are_replaced_and_it_is_removed_at_exit() {
    let rig = Rig::new("socket");
    let meta = std::fs::metadata(&rig.sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A second server on a live socket is refused.
    let (tx, _rx) = std::sync::mpsc::channel::<Call>();
    assert!(matches!(
        ControlServer::start(&rig.sock, tx.clone()),
        Err(ControlError::InUse(_))
    ));
    // A plain file is never removed.
    let plain = rig.dir.join("plain");
    std::fs::write(&plain, "x").unwrap();
    assert!(matches!(
        ControlServer::start(&plain, tx.clone()),
        Err(ControlError::NotSocket(_))
    ));
    let sock = rig.sock.clone();
    let dir = rig.dir.clone();
    rig.stop();
    assert!(!sock.exists(), "the socket file is removed at exit");
    // A stale socket (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let server = ControlServer::start(&sock, tx.clone()).unwrap();
    assert!(UnixStream::connect(&sock).is_ok());
    drop(server);
    // A missing parent directory (/run/oxvs after a reboot) is created.
    let deep = dir.join("run/oxvs/oxvsd.sock");
    let server = ControlServer::start(&deep, tx).unwrap();
    assert!(UnixStream::connect(&deep).is_ok());
    drop(server);
    assert!(!deep.exists());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
