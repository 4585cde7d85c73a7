//! What a runtime hands the plugin: the `CNI_*` environment variables and the
//! network configuration on stdin (CNI spec 1.1.0 §2 "Parameters", §3
//! "Deriving request configuration").
//!
//! Both are parsed and validated here, before anything is created, so that a
//! bad invocation fails with the spec's code (4 for the environment, 6 for
//! JSON that does not decode, 1 for a version we do not speak, 7 for a
//! configuration that decodes but is wrong) and leaves nothing behind.
//! Fields the plugin does not know are ignored, as the spec asks: they may
//! belong to a runtime's conventions (`runtimeConfig`, `args`).

#![forbid(unsafe_code)]

use crate::error::{CniError, Code};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The spec versions this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// The version errors are reported in when the configuration names none we
/// speak.
pub const DEFAULT_VERSION: &str = "1.1.0";

/// The pod MTU when the configuration sets none: a 1500-byte underlay less
/// Geneve's 50 bytes of outer headers (RFC 8926 §3.3) without options.
pub const DEFAULT_MTU: u32 = 1450;

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Verify an attachment against its `prevResult`.
    Check,
    /// Report the spec versions.
    Version,
    /// Whether ADD can be serviced (1.1.0).
    Status,
    /// Remove what is not in `cni.dev/valid-attachments` (1.1.0).
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// The invocation's parameters, from the `CNI_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (required by ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS` (required by ADD and CHECK; optional for DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (required by ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs (`K8S_POD_NAMESPACE`, ...).
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the parameters from `get` (the process environment in the
    /// binary, a map in tests), checking that `command` has what it needs.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND") {
            None => return Err(env_error("CNI_COMMAND is not set")),
            Some(c) => Command::parse(&c)
                .ok_or_else(|| env_error(format!("CNI_COMMAND {c:?} is not a CNI command")))?,
        };
        let needs = |k: &str| -> bool {
            match command {
                Command::Add | Command::Check => {
                    matches!(k, "CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME")
                }
                Command::Del => matches!(k, "CNI_CONTAINERID" | "CNI_IFNAME"),
                Command::Gc => k == "CNI_PATH",
                Command::Version | Command::Status => false,
            }
        };
        let missing: Vec<&str> = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            .into_iter()
            .filter(|k| needs(k) && get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(env_error(format!("missing {}", missing.join(", "))));
        }
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        if !container_id.is_empty() && !valid_container_id(&container_id) {
            return Err(env_error(format!(
                "CNI_CONTAINERID {container_id:?} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
            )));
        }
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        if !ifname.is_empty() && !valid_ifname(&ifname) {
            return Err(env_error(format!(
                "CNI_IFNAME {ifname:?} is not an interface name (1-15 characters, not . or .., no '/', ':' or whitespace)"
            )));
        }
        let mut args = BTreeMap::new();
        for pair in get("CNI_ARGS").unwrap_or_default().split(';') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| env_error(format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))?;
            args.insert(k.to_string(), v.to_string());
        }
        Ok(Env {
            command,
            container_id,
            netns: get("CNI_NETNS").map(PathBuf::from),
            ifname,
            args,
            path: get("CNI_PATH")
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        })
    }
}

fn env_error(details: impl Into<String>) -> CniError {
    CniError::new(
        Code::InvalidEnv,
        "invalid environment variables",
        details.into(),
    )
}

/// CNI spec §2: "Must start with an alphanumeric character, optionally
/// followed by any combination of one or more alphanumeric characters,
/// underscore, dot or hyphen."
fn valid_container_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

/// Linux's rules for an interface name (`dev_valid_name`).
fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// One entry of GC's `cni.dev/valid-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    /// The `CNI_CONTAINERID` of the ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The `CNI_IFNAME` of the ADD.
    pub ifname: String,
}

/// How addresses are obtained. A small enum so that oxvs's own IPAM (the
/// node agent handing out per-namespace /24s) can sit beside delegation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamKind {
    /// Exec the CNI IPAM plugin of this `type` from `CNI_PATH` with the same
    /// environment and configuration (CNI spec §4), e.g. `host-local`.
    Delegate {
        /// The plugin's executable name.
        plugin: String,
    },
    /// `{"type": "oxvs"}`: ask the node's agent (`oxvs-agent run`) over its
    /// unix socket for the address the controller wrote on the Pod, waiting
    /// up to `timeout` for it (then code 11, try again later), as
    /// OVN-Kubernetes's CNI waits for its annotation. Nothing to release:
    /// the allocation lives on the Pod and goes with it.
    Oxvs {
        /// `ipam.socket` (default `/run/oxvs/agent.sock`).
        socket: PathBuf,
        /// `ipam.timeoutSeconds` (default 30).
        timeout: std::time::Duration,
    },
}

/// How long `{"type": "oxvs"}` waits for the pod's address by default: a
/// kubelet's CNI call is itself bounded (the CRI's RunPodSandbox deadline is
/// minutes), and the controller allocates within a sync of the Pod.
pub const DEFAULT_OXVS_IPAM_TIMEOUT: f64 = 30.0;

/// The network configuration, as the runtime derives it from a conflist.
#[derive(Clone, Debug)]
pub struct NetConf {
    /// `cniVersion`: one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `name`: the network's name.
    pub name: String,
    /// `socket`: oxvsd's control socket.
    pub socket: PathBuf,
    /// `mtu`: the pod interface's MTU.
    pub mtu: u32,
    /// `portKind`: the `kind` of the oxvsd port (`auto` when absent).
    pub port_kind: Option<String>,
    /// `ipam`.
    pub ipam: Option<IpamKind>,
    /// `dns` of the configuration, passed into the result when IPAM gives
    /// none.
    pub dns: Option<serde_json::Value>,
    /// `prevResult` (CHECK, DEL).
    pub prev_result: Option<serde_json::Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The bytes as received, handed unchanged to a delegated plugin.
    pub raw: Vec<u8>,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    socket: Option<PathBuf>,
    mtu: Option<u32>,
    #[serde(rename = "portKind")]
    port_kind: Option<String>,
    ipam: Option<IpamWire>,
    dns: Option<serde_json::Value>,
    #[serde(rename = "prevResult")]
    prev_result: Option<serde_json::Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize)]
struct IpamWire {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `oxvs` only: the agent's socket.
    socket: Option<PathBuf>,
    /// `oxvs` only: how long to wait for the address.
    #[serde(rename = "timeoutSeconds")]
    timeout: Option<f64>,
}

/// The version to report errors in: the configuration's when it names one
/// we speak, else [`DEFAULT_VERSION`]. Never fails.
pub fn reply_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| DEFAULT_VERSION.to_string())
}

impl NetConf {
    /// Decodes and validates `stdin`.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decode,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        if !value.is_object() {
            return Err(CniError::new(
                Code::Decode,
                "cannot decode the network configuration",
                "it is not a JSON object",
            ));
        }
        let w: Wire = serde_json::from_value(value).map_err(|e| {
            CniError::new(
                Code::Decode,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        let invalid = |d: String| CniError::new(Code::InvalidConfig, "invalid network config", d);
        let cni_version = w
            .cni_version
            .ok_or_else(|| invalid("cniVersion is missing".into()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                "incompatible CNI versions",
                format!(
                    "config is {cni_version:?}, plugin supports {:?}",
                    SUPPORTED_VERSIONS
                ),
            ));
        }
        let name = w.name.unwrap_or_default();
        if name.is_empty() {
            return Err(invalid("name is missing".into()));
        }
        // The runtime found this binary by `type`; any other type means a
        // configuration meant for another plugin reached this one.
        if let Some(t) = w
            .kind
            .as_deref()
            .filter(|t| !matches!(*t, "oxvs" | "oxvs-cni"))
        {
            return Err(invalid(format!(
                "type is {t:?}; this plugin is \"oxvs\" (or \"oxvs-cni\")"
            )));
        }
        let mtu = w.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(invalid(format!("mtu {mtu} is outside 68..=65535")));
        }
        if let Some(k) = &w.port_kind {
            if !matches!(k.as_str(), "auto" | "afxdp" | "af_packet") {
                return Err(invalid(format!(
                    "portKind {k:?} is not auto, afxdp or af_packet"
                )));
            }
        }
        let ipam = match w.ipam {
            None => None,
            Some(IpamWire { kind: None, .. }) => return Err(invalid("ipam has no type".into())),
            Some(IpamWire {
                kind: Some(t),
                socket,
                timeout,
            }) if t == "oxvs" => {
                let secs = timeout.unwrap_or(DEFAULT_OXVS_IPAM_TIMEOUT);
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err(invalid(format!(
                        "ipam timeoutSeconds {secs} is outside (0, 3600]"
                    )));
                }
                Some(IpamKind::Oxvs {
                    socket: socket
                        .unwrap_or_else(|| PathBuf::from(ctl::podnet::DEFAULT_AGENT_SOCKET)),
                    timeout: std::time::Duration::from_secs_f64(secs),
                })
            }
            Some(IpamWire { kind: Some(t), .. }) => {
                if t.is_empty() || t.contains('/') || t == "." || t == ".." {
                    return Err(invalid(format!("ipam type {t:?} is not a plugin name")));
                }
                Some(IpamKind::Delegate { plugin: t })
            }
        };
        let socket = w
            .socket
            .unwrap_or_else(|| PathBuf::from(ctl::client::DEFAULT_SOCKET));
        Ok(NetConf {
            cni_version,
            name,
            socket,
            mtu,
            port_kind: w.port_kind,
            ipam,
            dns: w.dns,
            prev_result: w.prev_result,
            valid_attachments: w.valid_attachments,
            raw: stdin.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::parse(|k| m.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert!(e.details.contains("CNI_CONTAINERID") && e.details.contains("CNI_NETNS"));
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!(ok.args["K8S_POD_NAME"], "web-0");
        assert_eq!(ok.path.len(), 2);
    }

    #[test]
    fn del_does_not_need_netns_and_bad_values_are_refused() {
        assert!(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0")
        ])
        .is_ok());
        for (k, v) in [
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_CONTAINERID", "a b"),
            ("CNI_IFNAME", "a-very-long-interface"),
            ("CNI_IFNAME", ".."),
            ("CNI_IFNAME", "e/0"),
            ("CNI_ARGS", "novalue"),
        ] {
            let mut p = vec![
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ];
            p.retain(|(pk, _)| *pk != k);
            p.push((k, v));
            assert_eq!(env(&p).unwrap_err().code, Code::InvalidEnv, "{k}={v}");
        }
        assert_eq!(
            env(&[("CNI_COMMAND", "FROB")]).unwrap_err().code,
            Code::InvalidEnv
        );
        assert_eq!(env(&[]).unwrap_err().code, Code::InvalidEnv);
    }

    #[test]
    fn config_codes() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{"), Code::Decode);
        assert_eq!(code("[1]"), Code::Decode);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#),
            Code::Decode
        );
        assert_eq!(
            code(r#"{"cniVersion":"0.4.0","name":"n"}"#),
            Code::IncompatibleVersion
        );
        assert_eq!(code(r#"{"name":"n"}"#), Code::InvalidConfig);
        assert_eq!(code(r#"{"cniVersion":"1.0.0"}"#), Code::InvalidConfig);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","mtu":20}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","ipam":{}}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#),
            Code::InvalidConfig
        );
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"oxvs","type":"oxvs","mtu":1400,
                 "ipam":{"type":"host-local","subnet":"10.244.1.0/24"},"runtimeConfig":{}}"#,
        )
        .unwrap();
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.socket, PathBuf::from("/run/oxvs/oxvsd.sock"));
        assert_eq!(
            c.ipam,
            Some(IpamKind::Delegate {
                plugin: "host-local".into()
            })
        );
    }

    #[test]
    fn oxvs_ipam_takes_socket_and_timeout() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"oxvs","ipam":{"type":"oxvs","socket":"/tmp/a.sock","timeoutSeconds":2.5}}"#,
        )
        .unwrap();
        assert_eq!(
            c.ipam,
            Some(IpamKind::Oxvs {
                socket: "/tmp/a.sock".into(),
                timeout: std::time::Duration::from_millis(2500)
            })
        );
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"oxvs","ipam":{"type":"oxvs"}}"#)
            .unwrap();
        assert_eq!(
            c.ipam,
            Some(IpamKind::Oxvs {
                socket: "/run/oxvs/agent.sock".into(),
                timeout: std::time::Duration::from_secs(30)
            })
        );
        let e = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"oxvs","ipam":{"type":"oxvs","timeoutSeconds":0}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
    }

    /// The conflist the README tells a node to install, handed to the
    /// plugin as a runtime does (libcni gives each plugin of the list the
    /// list's `cniVersion` and `name`).
    #[test]
    fn the_shipped_conflist_is_valid() {
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../examples/cni/10-oxvs.conflist")).unwrap();
        let plugins = list["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 1);
        let mut conf = plugins[0].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        let c = NetConf::parse(conf.to_string().as_bytes()).unwrap();
        assert_eq!((c.cni_version.as_str(), c.name.as_str()), ("1.0.0", "oxvs"));
        assert_eq!(c.socket, PathBuf::from("/run/oxvs/oxvsd.sock"));
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.port_kind.as_deref(), Some("auto"));
        assert_eq!(
            c.ipam,
            Some(IpamKind::Delegate {
                plugin: "host-local".into()
            })
        );
    }

    #[test]
    fn reply_version_falls_back() {
        assert_eq!(reply_version(br#"{"cniVersion":"1.0.0"}"#), "1.0.0");
        assert_eq!(reply_version(br#"{"cniVersion":"9.9.9"}"#), "1.1.0");
        assert_eq!(reply_version(b"garbage"), "1.1.0");
    }
}
