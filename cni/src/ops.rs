//! DEL, CHECK, STATUS and GC.
//!
//! DEL is best-effort and idempotent (CNI spec 1.1.0 §2): it removes the
//! port, the host veth (which takes the container end with it) and the IPAM
//! allocation, each whether or not the others were there, and succeeds on
//! what is already gone. It needs neither the netns nor a `prevResult`,
//! because every name is derived from `(CNI_CONTAINERID, CNI_IFNAME)`. The
//! one failure it reports after doing everything else is an oxvsd that does
//! not answer (code 11), so that the runtime retries and the port does not
//! outlive its pod; GC would remove it too.
//!
//! GC removes every port, veth and allocation of this network whose
//! attachment is not in `cni.dev/valid-attachments`, going on after each
//! error and reporting them all.

#![forbid(unsafe_code)]

use crate::config::{Env, NetConf};
use crate::error::{kernel, CniError, Code};
use crate::ipam::Ipam;
use crate::names::{host_ifname, is_host_ifname};
use crate::result::{mac_text, Cidr, CniResult};
use crate::switch;
use crate::sys::netlink::Netlink;
use crate::sys::Netns;
use std::collections::BTreeSet;

/// Runs DEL.
pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let host_name = host_ifname(&env.container_id, &env.ifname);
    let mut first: Option<CniError> = None;
    let mut note = |r: Result<(), CniError>| {
        if let Err(e) = r {
            eprintln!("oxvs-cni: DEL {}/{}: {e}", env.container_id, env.ifname);
            first.get_or_insert(e);
        }
    };
    note(switch::del_port(&conf.socket, &host_name));
    note(
        Netlink::open_in(None)
            .and_then(|mut nl| nl.del_link(&host_name))
            .map(|_| ())
            .map_err(|e| kernel("delete the host veth", e)),
    );
    if let Some(ipam) = Ipam::of(env, conf) {
        note(ipam.del());
    }
    first.map_or(Ok(()), Err)
}

/// Runs CHECK against `prevResult`.
pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let invalid = |d: &str| CniError::new(Code::InvalidConfig, "invalid network config", d);
    let prev: CniResult = serde_json::from_value(
        conf.prev_result
            .clone()
            .ok_or_else(|| invalid("CHECK needs prevResult"))?,
    )
    .map_err(|e| CniError::new(Code::Decode, "cannot decode prevResult", e.to_string()))?;
    let failed =
        |d: String| CniError::new(Code::CheckFailed, "the attachment is not as ADD left it", d);
    let host_name = host_ifname(&env.container_id, &env.ifname);
    let netns = env.netns.as_deref().unwrap_or(std::path::Path::new(""));
    let ns = Netns::open(netns).map_err(|e| failed(format!("{}: {e}", netns.display())))?;

    let mut host = Netlink::open_in(None).map_err(|e| kernel("netlink socket", e))?;
    let hl = host
        .link(&host_name)
        .map_err(|e| kernel("look up the host veth", e))?
        .ok_or_else(|| failed(format!("host interface {host_name} is missing")))?;
    let mut inside =
        Netlink::open_in(Some(&ns)).map_err(|e| kernel("netlink socket in the container", e))?;
    let cl = inside
        .link(&env.ifname)
        .map_err(|e| kernel("look up the container interface", e))?
        .ok_or_else(|| failed(format!("{} is missing in {}", env.ifname, netns.display())))?;
    for (i, want) in prev.interfaces.iter().enumerate() {
        let have = if want.name == host_name && want.sandbox.is_empty() {
            &hl
        } else if want.name == env.ifname && !want.sandbox.is_empty() {
            &cl
        } else {
            continue;
        };
        if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&mac_text(have.mac)) {
            return Err(failed(format!(
                "interface {i} ({}) has MAC {}, prevResult says {}",
                want.name,
                mac_text(have.mac),
                want.mac
            )));
        }
        if !have.up {
            return Err(failed(format!("{} is down", want.name)));
        }
    }
    let present = inside
        .addrs(cl.index)
        .map_err(|e| kernel("list the container's addresses", e))?;
    for ip in &prev.ips {
        let want = Cidr::parse(&ip.address).ok_or_else(|| {
            failed(format!(
                "prevResult address {:?} does not parse",
                ip.address
            ))
        })?;
        if !present.contains(&want) {
            return Err(failed(format!("{} lacks address {want}", env.ifname)));
        }
    }
    if !switch::list_ports(&conf.socket)?
        .iter()
        .any(|p| p.name == host_name)
    {
        return Err(failed(format!("oxvsd has no port {host_name}")));
    }
    if let Some(ipam) = Ipam::of(env, conf) {
        ipam.check()?;
    }
    Ok(())
}

/// Runs STATUS: ready if oxvsd answers (and the IPAM plugin, when it can
/// say, is ready).
pub fn status(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    switch::list_ports(&conf.socket).map_err(|e| {
        CniError::new(
            Code::NotAvailable,
            "oxvsd is not available",
            format!("{}: {}", conf.socket.display(), e),
        )
    })?;
    match Ipam::of(env, conf) {
        Some(ipam) => ipam.status(),
        None => Ok(()),
    }
}

/// Runs GC.
pub fn gc(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let valid_list = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "invalid network config",
            "GC needs cni.dev/valid-attachments (an empty list removes everything)",
        )
    })?;
    let valid: BTreeSet<(String, String)> = valid_list
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let keep: BTreeSet<String> = valid.iter().map(|(c, i)| host_ifname(c, i)).collect();
    let mut errors = Vec::new();

    // Ports first: each names its network, so another oxvs network's ports
    // (and their veths) are left alone.
    let mut others = BTreeSet::new();
    match switch::list_ports(&conf.socket) {
        Ok(ports) => {
            for p in ports.iter().filter(|p| is_host_ifname(&p.name)) {
                let ours = p.external_ids.get("cni-network") == Some(&conf.name);
                if !ours {
                    others.insert(p.name.clone());
                } else if !keep.contains(&p.name) {
                    if let Err(e) = switch::del_port(&conf.socket, &p.name) {
                        errors.push(e);
                    }
                }
            }
        }
        Err(e) => errors.push(e),
    }
    match Netlink::open_in(None).and_then(|mut nl| {
        let mut failed = Vec::new();
        for l in nl.links()? {
            if is_host_ifname(&l.name) && !keep.contains(&l.name) && !others.contains(&l.name) {
                if let Err(e) = nl.del_link(&l.name) {
                    failed.push(kernel(&format!("delete {}", l.name), e));
                }
            }
        }
        Ok(failed)
    }) {
        Ok(failed) => errors.extend(failed),
        Err(e) => errors.push(kernel("list interfaces", e)),
    }
    if let Some(ipam) = Ipam::of(env, conf) {
        errors.extend(ipam.gc(&valid));
    }
    for e in &errors {
        eprintln!("oxvs-cni: GC: {e}");
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            let first = errors.remove(0);
            let rest: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(CniError::new(
                first.code,
                format!("{} (and {} more errors)", first.msg, n - 1),
                format!("{}; {}", first.details, rest.join("; ")),
            ))
        }
    }
}
