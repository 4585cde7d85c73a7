//! A stand-in for oxvsd's control socket that keeps a table of ports and
//! answers add-port, del-port and list-ports as oxvsd does (same framing,
//! same `ctl::proto` types), so the plugin's transaction, idempotence and
//! GC can be tested without a datapath. `refuse_add` makes it refuse every
//! add-port, as a switch that cannot open the port would.

use ctl::proto::{self, Command, Failure, FailureKind, PortInfo, Response};
use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct FakeSwitch {
    pub socket: PathBuf,
    pub ports: Arc<Mutex<BTreeMap<String, PortInfo>>>,
    pub refuse_add: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSwitch {
    pub fn start(socket: &Path) -> FakeSwitch {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).expect("bind the fake switch's socket");
        let ports: Arc<Mutex<BTreeMap<String, PortInfo>>> = Arc::default();
        let refuse_add = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, r, s) = (ports.clone(), refuse_add.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let Ok(body) = proto::read_body(&mut conn) else {
                    continue;
                };
                let resp = match proto::decode_request(&body) {
                    Ok(req) => answer(&p, r.load(Ordering::SeqCst), req.cmd),
                    Err(e) => Response::Err(Failure::new(FailureKind::Malformed, e.to_string())),
                };
                let _ = proto::write_frame(&mut conn, &resp);
            }
        });
        FakeSwitch {
            socket: socket.to_path_buf(),
            ports,
            refuse_add,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port_names(&self) -> Vec<String> {
        self.ports.lock().unwrap().keys().cloned().collect()
    }
}

fn answer(ports: &Mutex<BTreeMap<String, PortInfo>>, refuse: bool, cmd: Command) -> Response {
    let mut ports = ports.lock().unwrap();
    let rejected = |m: String| Response::Err(Failure::new(FailureKind::Rejected, m));
    match cmd {
        Command::AddPort {
            name, external_ids, ..
        } => {
            if refuse {
                return rejected(format!("cannot open {name}"));
            }
            if ports.contains_key(&name) {
                return rejected(format!("port {name} exists"));
            }
            let no = (1..).find(|n| ports.values().all(|p| p.no != *n)).unwrap();
            ports.insert(
                name.clone(),
                PortInfo {
                    name,
                    no,
                    kind: "afxdp".into(),
                    configured: false,
                    external_ids,
                    mtu: None,
                    state: "up".into(),
                },
            );
            Response::Ok(format!("{no}\n"))
        }
        Command::DelPort { port } => match ports.remove(&port) {
            Some(_) => Response::Ok(String::new()),
            None => rejected(format!("no port {port}")),
        },
        Command::ListPorts { json: true } => {
            let list: Vec<&PortInfo> = ports.values().collect();
            Response::Ok(serde_json::to_string(&list).unwrap())
        }
        other => rejected(format!("the fake switch does not do {other:?}")),
    }
}

impl Drop for FakeSwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
