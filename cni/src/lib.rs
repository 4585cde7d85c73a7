//! `oxvs-cni`: the CNI plugin that attaches a container to oxvs. A runtime
//! (containerd, CRI-O) execs it once per pod and network with `CNI_*`
//! variables and the network configuration on stdin (CNI spec 1.0.0 and
//! 1.1.0: ADD, DEL, CHECK, VERSION, STATUS, GC). ADD creates a veth pair
//! whose container end becomes `CNI_IFNAME` with the addresses and routes
//! IPAM gives (a delegated plugin, or the node's oxvs-agent), and adds
//! the host end to oxvsd as a port carrying the pod's external ids; DEL takes all of it away again, whatever is already gone.
//!
//! It depends on `ctl` for the control protocol and its client, and on
//! nothing of the datapath: the switch is another process behind a socket.
//! Everything is in this library, behind [`run`], so that tests drive the
//! exact protocol the binary speaks without a runtime; `main.rs` only reads
//! the process environment and stdin and prints what `run` answers.
//!
//! Invariants: nothing is created before the invocation is validated; ADD
//! undoes its own steps when a later one fails ([`add`]); names are derived
//! from `(CNI_CONTAINERID, CNI_IFNAME)`, so DEL and GC need no state file
//! ([`names`]); the only `unsafe` is in [`sys`].

#![deny(unsafe_code)]

pub mod add;
pub mod agent_ipam;
pub mod config;
pub mod error;
pub mod ipam;
pub mod names;
pub mod ops;
pub mod result;
pub mod switch;
pub mod sys;

use config::{Command, Env, NetConf, SUPPORTED_VERSIONS};
use error::CniError;

/// What the binary prints on stdout and its exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A result, a version answer or an error object (may be empty).
    pub stdout: String,
    /// 0 on success.
    pub status: i32,
}

/// Runs one invocation: the `CNI_*` variables from `get`, the configuration
/// from `stdin`.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let reply_version = config::reply_version(stdin);
    match dispatch(get, stdin) {
        Ok(stdout) => Outcome { stdout, status: 0 },
        Err(e) => {
            eprintln!("oxvs-cni: {e}");
            Outcome {
                stdout: e.to_json(&reply_version),
                status: 1,
            }
        }
    }
}

fn dispatch(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<String, CniError> {
    let env = Env::parse(get)?;
    // VERSION needs no configuration beyond the version it is asked about.
    let conf = match env.command {
        Command::Version => return Ok(version_answer(stdin)),
        _ => NetConf::parse(stdin)?,
    };
    match env.command {
        Command::Add => {
            let r = add::add(&env, &conf)?;
            serde_json::to_string(&r).map_err(|e| {
                CniError::new(
                    error::Code::Decode,
                    "cannot encode the result",
                    e.to_string(),
                )
            })
        }
        Command::Del => ops::del(&env, &conf).map(|()| String::new()),
        Command::Check => ops::check(&env, &conf).map(|()| String::new()),
        Command::Status => ops::status(&env, &conf).map(|()| String::new()),
        Command::Gc => ops::gc(&env, &conf).map(|()| String::new()),
        Command::Version => Ok(version_answer(stdin)),
    }
}

/// The VERSION answer. It carries the version asked about, even one we do
/// not speak: that is how a runtime learns of the mismatch.
fn version_answer(stdin: &[u8]) -> String {
    let asked = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .unwrap_or_else(|| config::DEFAULT_VERSION.to_string());
    serde_json::json!({
        "cniVersion": asked,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}
