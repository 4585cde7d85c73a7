//! ADD as a transaction: each step that leaves something behind records its
//! undo before the next step runs, and when a later step fails the undos run
//! in reverse, so a failed ADD leaves nothing (the `containernetworking`
//! plugins' `ptp` and `bridge` discipline).
//!
//! The steps: check that neither the host veth nor the container interface
//! exists (a second ADD for one attachment is an error, and must not undo
//! the first one's work); IPAM (undo: release); the veth pair with its peer
//! created in the container namespace as `CNI_IFNAME`, MAC and MTU set
//! (undo: delete the host end, which takes the peer with it); inside the
//! container `lo` up, transmit checksum offload off (AF_XDP loses the
//! kernel's "checksum partial" mark, so the receiver would drop such
//! frames), addresses, routes; then `add-port` on oxvsd, last, so that the
//! switch never has a port whose pod is half set up.

#![forbid(unsafe_code)]

use crate::config::{Env, NetConf};
use crate::error::{kernel, CniError, Code};
use crate::ipam::Ipam;
use crate::names::{container_mac, host_ifname, host_mac};
use crate::result::{mac_text, Cidr, CniResult, Interface, IpConfig};
use crate::switch::{self, NewPort};
use crate::sys::netlink::{Netlink, VethSpec};
use crate::sys::{self, Netns};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What to take back if a later step fails.
enum Undo<'a> {
    ReleaseIpam(Ipam<'a>),
    DeleteVeth(String),
}

/// The undo log of one ADD.
struct Txn<'a> {
    undo: Vec<Undo<'a>>,
}

impl Txn<'_> {
    /// Runs every undo, newest first. An undo that fails is logged and the
    /// rest still run: the error the runtime sees is the step's, and GC or
    /// the DEL that follows a failed ADD finds what is left.
    fn roll_back(self, host: &mut Netlink) {
        for u in self.undo.into_iter().rev() {
            let r = match u {
                Undo::ReleaseIpam(ipam) => ipam.del(),
                Undo::DeleteVeth(name) => host
                    .del_link(&name)
                    .map(|_| ())
                    .map_err(|e| kernel("delete veth", e)),
            };
            if let Err(e) = r {
                eprintln!("oxvs-cni: undo after a failed ADD: {e}");
            }
        }
    }
}

/// Runs ADD; the result to print.
pub fn add(env: &Env, conf: &NetConf) -> Result<CniResult, CniError> {
    let netns_path = env.netns.as_deref().unwrap_or(std::path::Path::new(""));
    let ns = Netns::open(netns_path).map_err(|e| {
        CniError::new(
            Code::UnknownContainer,
            "cannot open the container's network namespace",
            format!("{}: {e}", netns_path.display()),
        )
    })?;
    let here = Netns::current().map_err(|e| kernel("open this network namespace", e))?;
    if ns.same_as(&here) {
        return Err(CniError::new(
            Code::InvalidEnv,
            "invalid environment variables",
            format!(
                "CNI_NETNS {} is the plugin's own network namespace",
                netns_path.display()
            ),
        ));
    }
    let host_name = host_ifname(&env.container_id, &env.ifname);
    let mut host = Netlink::open_in(None).map_err(|e| kernel("netlink socket", e))?;
    let mut inside =
        Netlink::open_in(Some(&ns)).map_err(|e| kernel("netlink socket in the container", e))?;
    let exists =
        |what: String| CniError::new(Code::AlreadyExists, "the attachment already exists", what);
    if host
        .link(&host_name)
        .map_err(|e| kernel("look up the host veth", e))?
        .is_some()
    {
        return Err(exists(format!("host interface {host_name} exists")));
    }
    if inside
        .link(&env.ifname)
        .map_err(|e| kernel("look up the container interface", e))?
        .is_some()
    {
        return Err(exists(format!(
            "interface {} exists in {}",
            env.ifname,
            netns_path.display()
        )));
    }
    let mut txn = Txn { undo: Vec::new() };
    match steps(env, conf, &ns, &host_name, &mut host, &mut inside, &mut txn) {
        Ok(r) => Ok(r),
        Err(e) => {
            txn.roll_back(&mut host);
            Err(e)
        }
    }
}

/// The steps after the checks, each recording its undo in `txn`.
fn steps<'a>(
    env: &'a Env,
    conf: &'a NetConf,
    ns: &Netns,
    host_name: &str,
    host: &mut Netlink,
    inside: &mut Netlink,
    txn: &mut Txn<'a>,
) -> Result<CniResult, CniError> {
    // CNI spec §4: a failed delegated ADD is followed by a delegated DEL, so
    // the release is recorded before the allocation is asked for.
    let (ipam_result, ipam_mac) = match Ipam::of(env, conf) {
        Some(ipam) => {
            let r = ipam.add();
            txn.undo.push(Undo::ReleaseIpam(ipam));
            let a = r?;
            (a.result, a.mac)
        }
        None => (CniResult::default(), None),
    };
    let mut addrs = Vec::new();
    for ip in &ipam_result.ips {
        let cidr = Cidr::parse(&ip.address).ok_or_else(|| {
            CniError::new(
                Code::Ipam,
                "IPAM returned a bad address",
                ip.address.clone(),
            )
        })?;
        let gw = match &ip.gateway {
            Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
                CniError::new(Code::Ipam, "IPAM returned a bad gateway", g.clone())
            })?),
            None => None,
        };
        addrs.push((cidr, gw));
    }
    let ips: Vec<IpAddr> = addrs.iter().map(|(c, _)| c.addr).collect();
    // The agent's MAC when it gives one (the same `0a:58:` + address rule,
    // decided where the address is), else derived here.
    let mac = ipam_mac.unwrap_or_else(|| container_mac(&env.container_id, &env.ifname, &ips));
    let hmac = host_mac(&env.container_id, &env.ifname);

    host.create_veth(&VethSpec {
        host: host_name,
        host_mac: hmac,
        peer: &env.ifname,
        peer_mac: mac,
        mtu: conf.mtu,
        peer_ns: ns,
    })
    .map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            CniError::new(
                Code::AlreadyExists,
                "the attachment already exists",
                e.to_string(),
            )
        } else {
            kernel("create the veth pair", e)
        }
    })?;
    txn.undo.push(Undo::DeleteVeth(host_name.to_string()));

    host.set_up(host_name)
        .map_err(|e| kernel("bring the host veth up", e))?;
    inside.set_up("lo").map_err(|e| kernel("bring lo up", e))?;
    let ioctl = sys::ioctl_socket_in(Some(ns)).map_err(|e| kernel("socket in the container", e))?;
    sys::set_tx_checksum(&ioctl, &env.ifname, false)
        .map_err(|e| kernel("turn transmit checksum offload off", e))?;
    inside
        .set_up(&env.ifname)
        .map_err(|e| kernel("bring the container interface up", e))?;
    // GRO on: the pod's veth then receives what oxvsd's XDP fast path
    // redirects into it from the host side (docs/architecture.md). Only
    // once the interface is up: the veth driver marks the host side as a
    // redirect target (`ndo-xmit`, which oxvsd waits for) when GRO is
    // turned on on a running interface, and not when it is set while down.
    sys::set_gro(&ioctl, &env.ifname, true)
        .map_err(|e| kernel("turn generic receive offload on", e))?;
    let link = inside
        .link(&env.ifname)
        .map_err(|e| kernel("look up the container interface", e))?
        .ok_or_else(|| {
            CniError::new(
                Code::Kernel,
                "the container interface vanished",
                env.ifname.clone(),
            )
        })?;
    for (cidr, _) in &addrs {
        inside
            .add_addr(link.index, *cidr)
            .map_err(|e| kernel(&format!("add address {cidr}"), e))?;
    }
    for r in &ipam_result.routes {
        let dst = Cidr::parse(&r.dst)
            .ok_or_else(|| CniError::new(Code::Ipam, "IPAM returned a bad route", r.dst.clone()))?;
        let gw = match &r.gw {
            Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
                CniError::new(Code::Ipam, "IPAM returned a bad route gateway", g.clone())
            })?),
            None => addrs
                .iter()
                .find(|(c, _)| c.addr.is_ipv4() == dst.addr.is_ipv4())
                .and_then(|(_, gw)| *gw),
        };
        inside
            .add_route(link.index, dst, gw)
            .map_err(|e| kernel(&format!("add route {dst}"), e))?;
    }

    let mut ids = BTreeMap::new();
    let ns_name = env.args.get("K8S_POD_NAMESPACE");
    let pod_name = env.args.get("K8S_POD_NAME");
    let iface_id = match (ns_name, pod_name) {
        (Some(n), Some(p)) => format!("{n}/{p}"),
        _ => env.container_id.clone(),
    };
    ids.insert("iface-id".to_string(), iface_id);
    ids.insert("attached-mac".to_string(), mac_text(mac));
    ids.insert("container-id".to_string(), env.container_id.clone());
    ids.insert("cni-network".to_string(), conf.name.clone());
    ids.insert("cni-ifname".to_string(), env.ifname.clone());
    if let Some(n) = ns_name {
        ids.insert("k8s-pod-namespace".to_string(), n.clone());
    }
    if let Some(p) = pod_name {
        ids.insert("k8s-pod-name".to_string(), p.clone());
    }
    if !ips.is_empty() {
        let text: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        ids.insert("ip".to_string(), text.join(","));
    }
    switch::add_port(
        &conf.socket,
        &NewPort {
            name: host_name,
            kind: conf.port_kind.as_deref(),
            external_ids: ids,
        },
    )?;

    Ok(CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: host_name.to_string(),
                mac: mac_text(hmac),
                mtu: Some(conf.mtu),
                sandbox: String::new(),
            },
            Interface {
                name: env.ifname.clone(),
                mac: mac_text(mac),
                mtu: Some(conf.mtu),
                sandbox: env
                    .netns
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
        ],
        ips: addrs
            .iter()
            .map(|(c, gw)| IpConfig {
                address: c.to_string(),
                gateway: gw.map(|g| g.to_string()),
                interface: Some(1),
            })
            .collect(),
        routes: ipam_result.routes,
        dns: ipam_result.dns.or_else(|| conf.dns.clone()),
    })
}
