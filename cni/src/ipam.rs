//! Address management: delegation to a standard IPAM plugin (CNI spec 1.1.0
//! §4), found on `CNI_PATH` and run with the same environment and
//! configuration, its stderr passed through.
//!
//! Two practical wrinkles of delegation are handled here rather than left
//! to the operator. A plugin built for an older spec (Debian's `host-local`
//! 1.1.1 speaks up to 1.0.0) refuses a 1.1.0 configuration with code 1: the
//! request is then repeated once with the highest version both sides speak.
//! And such a plugin knows neither `STATUS` nor `GC`: `STATUS` is forwarded
//! only to a plugin that says it speaks 1.1.0, and for `GC` a `host-local`
//! store is read directly and every stale allocation released with a
//! delegated `DEL`, which `host-local` has always understood.
//!
//! The other kind, `{"type": "oxvs"}`, is not a plugin but the node's agent
//! ([`crate::agent_ipam`]): its allocation lives on the Pod, so DEL, CHECK
//! and GC have nothing to do for it.

#![forbid(unsafe_code)]

use crate::agent_ipam;
use crate::config::{Env, IpamKind, NetConf, SUPPORTED_VERSIONS};
use crate::error::{CniError, Code};
use crate::result::CniResult;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What ADD got: the addresses, and the MAC when the allocator decides it.
pub struct Allocated {
    /// The (abbreviated) IPAM result.
    pub result: CniResult,
    /// The pod's MAC, when given (`oxvs`); else derived from the address.
    pub mac: Option<[u8; 6]>,
}

/// One delegated call: the attachment it is about (GC's releases name
/// another container than the invocation's).
pub struct Ipam<'a> {
    kind: &'a IpamKind,
    env: &'a Env,
    conf: &'a NetConf,
}

impl<'a> Ipam<'a> {
    /// The configuration's IPAM, if it has one.
    pub fn of(env: &'a Env, conf: &'a NetConf) -> Option<Ipam<'a>> {
        conf.ipam.as_ref().map(|kind| Ipam { kind, env, conf })
    }

    /// Allocates addresses for the invocation's attachment; the agent also
    /// says which MAC the pod gets.
    pub fn add(&self) -> Result<Allocated, CniError> {
        if let IpamKind::Oxvs { socket, timeout } = self.kind {
            let a = agent_ipam::wait_for(socket, *timeout, self.env, &self.conf.cni_version)?;
            return Ok(Allocated {
                result: a.result,
                mac: Some(a.mac),
            });
        }
        let out = self.call("ADD", &self.env.container_id, &self.env.ifname)?;
        let result = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                Code::Ipam,
                format!("{}: cannot decode its result", self.plugin()),
                e.to_string(),
            )
        })?;
        Ok(Allocated { result, mac: None })
    }

    /// Releases the invocation's attachment.
    pub fn del(&self) -> Result<(), CniError> {
        self.release(&self.env.container_id, &self.env.ifname)
    }

    /// Releases `(container_id, ifname)`.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        if self.is_agent() {
            return Ok(());
        }
        self.call("DEL", container_id, ifname).map(|_| ())
    }

    /// Asks the plugin to verify the attachment.
    pub fn check(&self) -> Result<(), CniError> {
        if self.is_agent() {
            return Ok(());
        }
        self.call("CHECK", &self.env.container_id, &self.env.ifname)
            .map(|_| ())
    }

    /// Forwards STATUS to a plugin that speaks 1.1.0; an older one has no
    /// way to say it is unavailable, so it is taken to be available. The
    /// agent is available when its socket accepts a connection.
    pub fn status(&self) -> Result<(), CniError> {
        if let IpamKind::Oxvs { socket, .. } = self.kind {
            return std::os::unix::net::UnixStream::connect(socket)
                .map(|_| ())
                .map_err(|e| {
                    CniError::new(
                        Code::NotAvailable,
                        "the node's oxvs-agent does not answer",
                        format!("{}: {e}", socket.display()),
                    )
                });
        }
        if self.versions()?.iter().any(|v| v == "1.1.0") {
            self.call("STATUS", "", "").map(|_| ())
        } else {
            Ok(())
        }
    }

    /// Removes allocations not in `valid`: forwarded to a plugin that speaks
    /// 1.1.0, else (host-local) by releasing each stale entry of its store.
    /// Returns the errors met; it goes on after each.
    pub fn gc(&self, valid: &BTreeSet<(String, String)>) -> Vec<CniError> {
        if self.is_agent() {
            return Vec::new();
        }
        match self.versions() {
            Ok(v) if v.iter().any(|v| v == "1.1.0") => {
                return self.call("GC", "", "").err().into_iter().collect();
            }
            Ok(_) => {}
            Err(e) => return vec![e],
        }
        if self.plugin() != "host-local" {
            return Vec::new();
        }
        let mut errors = Vec::new();
        for (id, ifname) in host_local_allocations(&self.host_local_dir()) {
            if !valid.contains(&(id.clone(), ifname.clone())) {
                if let Err(e) = self.release(&id, &ifname) {
                    errors.push(e);
                }
            }
        }
        errors
    }

    fn plugin(&self) -> &str {
        match self.kind {
            IpamKind::Delegate { plugin } => plugin,
            IpamKind::Oxvs { .. } => "oxvs",
        }
    }

    fn is_agent(&self) -> bool {
        matches!(self.kind, IpamKind::Oxvs { .. })
    }

    /// host-local's store for this network: `ipam.dataDir` (default
    /// `/var/lib/cni/networks`) / the network's name.
    fn host_local_dir(&self) -> PathBuf {
        let data_dir = serde_json::from_slice::<serde_json::Value>(&self.conf.raw)
            .ok()
            .and_then(|v| v.get("ipam")?.get("dataDir")?.as_str().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/lib/cni/networks"));
        data_dir.join(&self.conf.name)
    }

    fn find(&self) -> Result<PathBuf, CniError> {
        let name = self.plugin();
        self.env
            .path
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CniError::new(
                    Code::Ipam,
                    format!("IPAM plugin {name:?} not found"),
                    format!("searched CNI_PATH {:?}", self.env.path),
                )
            })
    }

    /// The versions the plugin says it speaks.
    fn versions(&self) -> Result<Vec<String>, CniError> {
        let stdin = format!("{{\"cniVersion\":\"{}\"}}", self.conf.cni_version);
        let out = self.exec("VERSION", "", "", stdin.as_bytes())?;
        let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                Code::Ipam,
                format!("{}: cannot decode its VERSION answer", self.plugin()),
                e.to_string(),
            )
        })?;
        Ok(v.get("supportedVersions")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Runs `command` with the configuration as received; on "incompatible
    /// version" once more with the highest version both sides speak.
    fn call(&self, command: &str, container_id: &str, ifname: &str) -> Result<Vec<u8>, CniError> {
        match self.exec(command, container_id, ifname, &self.conf.raw) {
            Err(e) if e.code == Code::Delegated(1) => {
                let theirs = self.versions()?;
                let Some(common) = SUPPORTED_VERSIONS
                    .iter()
                    .rev()
                    .find(|v| theirs.iter().any(|t| t == *v))
                else {
                    return Err(e);
                };
                let mut v: serde_json::Value =
                    serde_json::from_slice(&self.conf.raw).map_err(|e| {
                        CniError::new(
                            Code::Decode,
                            "cannot re-encode the configuration",
                            e.to_string(),
                        )
                    })?;
                v["cniVersion"] = serde_json::Value::from(*common);
                let stdin = serde_json::to_vec(&v).unwrap_or_default();
                self.exec(command, container_id, ifname, &stdin)
            }
            r => r,
        }
    }

    /// One exec of the plugin: `CNI_*` from the invocation, with the
    /// command and attachment given; its stdout on success, its error object
    /// (code passed through) on failure.
    fn exec(
        &self,
        command: &str,
        container_id: &str,
        ifname: &str,
        stdin: &[u8],
    ) -> Result<Vec<u8>, CniError> {
        let bin = self.find()?;
        let name = self.plugin();
        let mut cmd = Command::new(&bin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", join_path(&self.env.path))
            .env("CNI_ARGS", join_args(self.env))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match &self.env.netns {
            Some(n) => cmd.env("CNI_NETNS", n),
            None => cmd.env_remove("CNI_NETNS"),
        };
        let mut child = cmd.spawn().map_err(|e| {
            CniError::new(
                Code::Ipam,
                format!("cannot run IPAM plugin {}", bin.display()),
                e.to_string(),
            )
        })?;
        if let Some(mut w) = child.stdin.take() {
            // A plugin that exits without reading closes the pipe; its exit
            // status and answer say why, so a write error is not the story.
            let _ = w.write_all(stdin);
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(
                Code::Ipam,
                format!("IPAM plugin {name} did not finish"),
                e.to_string(),
            )
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let code = v.get("code").and_then(|c| c.as_u64()).unwrap_or(0) as u32;
        let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or("failed");
        let details = v.get("details").and_then(|m| m.as_str()).unwrap_or("");
        Err(CniError::new(
            if code == 0 {
                Code::Ipam
            } else {
                Code::Delegated(code)
            },
            format!("IPAM plugin {name} ({command}): {msg}"),
            if details.is_empty() {
                out.status.to_string()
            } else {
                details.to_string()
            },
        ))
    }
}

fn join_path(p: &[PathBuf]) -> String {
    p.iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn join_args(env: &Env) -> String {
    env.args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The `(container id, ifname)` of every allocation in a host-local store:
/// one file per address, holding the container id and, since plugins 0.8,
/// a line with the interface name.
fn host_local_allocations(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<std::net::IpAddr>().is_err() {
            continue; // last_reserved_ip.N, lock
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.lines().map(str::trim);
        let id = lines.next().unwrap_or("").to_string();
        let ifname = lines.next().unwrap_or("").to_string();
        if !id.is_empty() && !ifname.is_empty() {
            out.push((id, ifname));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_store_is_read() {
        let dir = std::env::temp_dir().join(format!("oxvs-cni-hl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("10.244.1.2"), "c1\r\neth0").unwrap();
        std::fs::write(dir.join("10.244.1.3"), "c2\r\neth1\r\n").unwrap();
        std::fs::write(dir.join("last_reserved_ip.0"), "10.244.1.3").unwrap();
        std::fs::write(dir.join("lock"), "").unwrap();
        let mut got = host_local_allocations(&dir);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("c1".to_string(), "eth0".to_string()),
                ("c2".to_string(), "eth1".to_string())
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(host_local_allocations(&dir).is_empty());
    }
}
