//! `{"type": "oxvs"}`: the pod's address from the node's agent. The
//! controller writes `oxvs.io/ip` on the Pod; the node's `oxvs-agent run`
//! answers for it on its socket ([`ctl::podnet`]); this module asks until
//! the answer holds an address or the configured time is up, as
//! OVN-Kubernetes's CNI waits for its annotation. A Pod the controller has
//! not reached yet and an agent that is not (yet) listening are the same
//! to the runtime: "try again later" (code 11) once the wait is over, so the
//! kubelet retries the sandbox instead of failing the pod for good.
//!
//! There is nothing to release on DEL and nothing to collect on GC: the
//! allocation lives on the Pod object and is freed when the Pod goes.

#![forbid(unsafe_code)]

use crate::config::Env;
use crate::error::{CniError, Code};
use crate::result::{CniResult, IpConfig, Route};
use ctl::podnet::{query, PodRequest};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the agent is asked while the pod has no address.
const POLL: Duration = Duration::from_millis(50);

/// What the agent gave: the IPAM result and the MAC to put on the pod.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentAddress {
    /// Address, gateway and the default route through it.
    pub result: CniResult,
    /// The pod's MAC (`0a:58:` and the address).
    pub mac: [u8; 6],
}

/// The pod of the invocation, from `CNI_ARGS`.
pub fn pod_of(env: &Env) -> Result<PodRequest, CniError> {
    let get = |k: &str| env.args.get(k).filter(|v| !v.is_empty()).cloned();
    match (get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME")) {
        (Some(namespace), Some(name)) => Ok(PodRequest { namespace, name }),
        _ => Err(CniError::new(
            Code::InvalidEnv,
            "invalid environment variables",
            "ipam type oxvs needs K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS",
        )),
    }
}

/// Asks the agent at `socket` until it has the pod's address, for at most
/// `timeout`.
pub fn wait_for(
    socket: &Path,
    timeout: Duration,
    env: &Env,
    cni_version: &str,
) -> Result<AgentAddress, CniError> {
    let pod = pod_of(env)?;
    let start = Instant::now();
    let mut last;
    loop {
        let per_call = POLL.max(Duration::from_millis(500));
        match query(socket, &pod, per_call) {
            Ok(a) => match (&a.ip, &a.pending) {
                (Some(_), _) => return decode(&a, cni_version),
                (None, Some(why)) => last = format!("agent: {why}"),
                (None, None) => last = "agent answered without an address".to_string(),
            },
            Err(e) => last = format!("agent at {}: {e}", socket.display()),
        }
        if start.elapsed() + POLL > timeout {
            return Err(CniError::new(
                Code::TryAgainLater,
                format!(
                    "no address for pod {}/{} after {:.1} s",
                    pod.namespace,
                    pod.name,
                    timeout.as_secs_f64()
                ),
                last,
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn decode(a: &ctl::podnet::PodAnswer, cni_version: &str) -> Result<AgentAddress, CniError> {
    let bad = |what: &str, v: &str| {
        CniError::new(
            Code::Ipam,
            format!("the agent answered a bad {what}"),
            v.to_string(),
        )
    };
    let ip = a.ip.clone().unwrap_or_default();
    let (addr, prefix) = ip.split_once('/').ok_or_else(|| bad("address", &ip))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad("address", &ip))?;
    match prefix.parse::<u8>() {
        Ok(p) if p <= 32 => {}
        _ => return Err(bad("address", &ip)),
    }
    let gateway = match &a.gateway {
        Some(g) => Some(
            g.parse::<Ipv4Addr>()
                .map_err(|_| bad("gateway", g))?
                .to_string(),
        ),
        None => None,
    };
    let mac = match &a.mac {
        Some(m) => parse_mac(m).ok_or_else(|| bad("MAC", m))?,
        None => {
            let [b0, b1, b2, b3] = addr.octets();
            [0x0a, 0x58, b0, b1, b2, b3]
        }
    };
    Ok(AgentAddress {
        result: CniResult {
            cni_version: cni_version.to_string(),
            interfaces: Vec::new(),
            routes: if gateway.is_some() {
                vec![Route {
                    dst: "0.0.0.0/0".into(),
                    gw: None,
                }]
            } else {
                Vec::new()
            },
            ips: vec![IpConfig {
                address: ip.clone(),
                gateway,
                interface: None,
            }],
            dns: None,
        },
        mac,
    })
}

/// `aa:bb:cc:dd:ee:ff`, unicast.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    (parts.next().is_none() && out[0] & 1 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::podnet::{read_request, write_answer, PodAnswer};
    use std::collections::BTreeMap;
    use std::io::BufReader;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn env(args: &[(&str, &str)]) -> Env {
        Env {
            command: crate::config::Command::Add,
            container_id: "c1".into(),
            netns: None,
            ifname: "eth0".into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            path: Vec::new(),
        }
    }

    /// An agent that says "pending" `pending` times, then gives the address.
    fn agent(socket: &Path, pending: usize) -> Arc<AtomicUsize> {
        let _ = std::fs::remove_file(socket);
        let l = UnixListener::bind(socket).unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let req = read_request(&mut BufReader::new(&c)).unwrap();
                let n = a.fetch_add(1, Ordering::SeqCst);
                let ans = if n < pending {
                    PodAnswer {
                        pending: Some(format!("no Pod {}/{} yet", req.namespace, req.name)),
                        ..Default::default()
                    }
                } else {
                    PodAnswer {
                        ip: Some("10.244.3.7/24".into()),
                        gateway: Some("10.244.3.1".into()),
                        mac: Some("0a:58:0a:f4:03:07".into()),
                        node: Some("node1".into()),
                        pending: None,
                    }
                };
                let _ = write_answer(&mut &c, &ans);
            }
        });
        asked
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("oxvs-cni-ai-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("agent.sock")
    }

    #[test]
    fn waits_through_pending_answers_for_the_address() {
        let sock = scratch("wait");
        let asked = agent(&sock, 3);
        let e = env(&[("K8S_POD_NAMESPACE", "dev"), ("K8S_POD_NAME", "web-0")]);
        let got = wait_for(&sock, Duration::from_secs(5), &e, "1.1.0").unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 4);
        assert_eq!(got.mac, [0x0a, 0x58, 10, 244, 3, 7]);
        assert_eq!(got.result.ips[0].address, "10.244.3.7/24");
        assert_eq!(got.result.ips[0].gateway.as_deref(), Some("10.244.3.1"));
        assert_eq!(got.result.routes[0].dst, "0.0.0.0/0");
        let _ = std::fs::remove_dir_all(sock.parent().unwrap());
    }

    #[test]
    fn no_address_in_time_is_code_11_with_the_last_reason() {
        let sock = scratch("late");
        let _asked = agent(&sock, usize::MAX);
        let e = env(&[("K8S_POD_NAMESPACE", "dev"), ("K8S_POD_NAME", "web-0")]);
        let t = Instant::now();
        let err = wait_for(&sock, Duration::from_millis(300), &e, "1.1.0").unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(err.code.number(), 11);
        assert!(err.details.contains("no Pod dev/web-0 yet"), "{err}");
        // No agent listening at all: the same code, naming the socket.
        let gone = sock.with_file_name("nobody.sock");
        let err = wait_for(&gone, Duration::from_millis(200), &e, "1.1.0").unwrap_err();
        assert_eq!(err.code.number(), 11);
        assert!(err.details.contains("nobody.sock"), "{err}");
        let _ = std::fs::remove_dir_all(sock.parent().unwrap());
    }

    #[test]
    fn the_pod_must_be_named() {
        let err = wait_for(
            Path::new("/nonexistent"),
            Duration::from_secs(1),
            &env(&[]),
            "1.1.0",
        )
        .unwrap_err();
        assert_eq!(err.code.number(), 4);
        assert_eq!(
            parse_mac("0a:58:0a:f4:03:07"),
            Some([10, 88, 10, 244, 3, 7])
        );
        assert_eq!(parse_mac("01:00:00:00:00:00"), None);
        assert_eq!(parse_mac("0a:58:0a:f4:03"), None);
    }
}
