//! The node agent's pod-network socket (`/run/oxvs/agent.sock`): how
//! `oxvs-cni` asks `oxvs-agent run` for the address the controller gave a
//! pod, as OVN-Kubernetes's CNI waits for the `k8s.ovn.org/pod-networks`
//! annotation. One JSON line each way on a fresh connection:
//!
//! ```text
//! -> {"namespace":"development","name":"frontend-0a1b2c3d4e-0"}
//! <- {"ip":"10.244.1.2/24","gateway":"10.244.1.1","mac":"0a:58:0a:f4:01:02","node":"node1"}
//! <- {"pending":"no Pod development/frontend-0a1b2c3d4e-0 yet"}
//! ```
//!
//! The answer is immediate: "not yet" is an answer (`pending`), and the
//! waiting (bounded, then CNI error 11 "try again later") is the plugin's,
//! so the agent never holds a connection open for a pod that may never come.
//! The types live here, beside oxvsd's protocol, so the two ends (the `cni`
//! and `agent` crates, which do not depend on each other) cannot disagree.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The default socket of a node's agent.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/oxvs/agent.sock";

/// What the plugin asks: the pod, from `K8S_POD_NAMESPACE` and `K8S_POD_NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// The agent's answer: the allocation, or why there is none yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAnswer {
    /// The address with its prefix length (`oxvs.io/ip`), when allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The subnet's gateway (`oxvs.io/gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The pod's MAC (`oxvs.io/mac`: `0a:58:` and the address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The node the pod is scheduled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why there is no allocation yet (the pod is unknown, or its
    /// namespace has no subnet); absent when `ip` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// One question on a fresh connection to `socket`, each way bounded by
/// `timeout`. An I/O error means the agent did not answer (not running yet,
/// or restarting); a `pending` answer means it answered "not yet".
pub fn query(socket: &Path, req: &PodRequest, timeout: Duration) -> std::io::Result<PodAnswer> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(answer.trim()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("agent answered {answer:?}: {e}"),
        )
    })
}

/// Reads one request line from a connection (the server's side).
pub fn read_request(r: &mut impl BufRead) -> std::io::Result<PodRequest> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    serde_json::from_str(line.trim())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Writes one answer line (the server's side).
pub fn write_answer(w: &mut impl Write, a: &PodAnswer) -> std::io::Result<()> {
    let mut line = serde_json::to_string(a).map_err(std::io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_omit_what_is_absent() {
        let a = PodAnswer {
            pending: Some("no Pod a/b yet".into()),
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_answer(&mut buf, &a).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "{\"pending\":\"no Pod a/b yet\"}\n"
        );
        let req = PodRequest {
            namespace: "development".into(),
            name: "web-0".into(),
        };
        let text = serde_json::to_string(&req).unwrap() + "\n";
        assert_eq!(read_request(&mut text.as_bytes()).unwrap(), req);
    }
}
