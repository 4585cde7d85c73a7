//! Where tunnel packets go: the control thread's view of the underlay.
//!
//! For every remote VTEP that the rules use (a fixed `remote_ip`, or one a
//! poll thread asked about because a packet wanted it), the resolver asks
//! the kernel for the route and the next hop's MAC ([`Netlink::next_hop`])
//! and records a [`TunnelRoute`] in the bridge: which uplink port, the
//! uplink's MAC and MTU, the next hop's MAC. Remotes whose neighbour is not
//! resolved yet are checked again every loop of the control thread (the
//! kernel answers within milliseconds on a LAN); every remote is checked
//! again once a second, so a changed route or neighbour is followed and a
//! vanished route stops traffic rather than sending it elsewhere. Each
//! resolution logs the pod MTU that fits the tunnel (`pod_mtu`): pods with a
//! larger MTU get ICMP "too big" answers from the switch.
//!
//! A neighbour entry the kernel forgets while its route stays (its garbage
//! collector removes entries nothing in the kernel uses, and the switch's
//! packets never pass the kernel's neighbour code, so under churn of other
//! entries ours go too) is asked for again at once, and meanwhile the last
//! MAC keeps being used, for up to [`KEEP_STALE`], as OVS's tunnel neighbour
//! cache keeps its entries: the next hop did not change because the kernel
//! dropped its note of it. A remote whose neighbour does not come back in
//! that time stops traffic.

use crate::sys::netlink::Netlink;
use flowtable::tunnel::TunnelRoute;
use flowtable::{Bridge, PortNo};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often every known remote is checked again.
const REFRESH: Duration = Duration::from_secs(1);

/// How long a route whose neighbour the kernel no longer has keeps its last
/// MAC while the kernel resolves it again (ARP gives up after about 3 s).
pub const KEEP_STALE: Duration = Duration::from_secs(10);

/// Why a remote has no route now.
enum Missing {
    /// The route is there, the next hop's MAC is not (yet, or any more).
    Neighbour(String),
    /// No route, or one through an interface that is not an uplink.
    Route(String),
}

/// The control thread's resolver.
pub struct Resolver {
    nl: Option<Netlink>,
    /// Uplink ports by interface name.
    uplinks: Vec<(String, PortNo)>,
    remotes: BTreeSet<IpAddr>,
    pending: BTreeSet<IpAddr>,
    /// The last problem logged per remote, so each is logged once.
    said: BTreeMap<IpAddr, String>,
    /// Remotes running on their last MAC while the kernel re-resolves the
    /// neighbour, since when.
    stale: BTreeMap<IpAddr, Instant>,
    last_refresh: Instant,
}

impl Resolver {
    /// A resolver for these uplinks (name, port number).
    pub fn new(uplinks: Vec<(String, PortNo)>) -> Resolver {
        let nl = match Netlink::open() {
            Ok(nl) => Some(nl),
            Err(e) => {
                tracing::warn!(error = %e, "no netlink socket: tunnel remotes cannot be resolved");
                None
            }
        };
        Resolver {
            nl,
            uplinks,
            remotes: BTreeSet::new(),
            pending: BTreeSet::new(),
            said: BTreeMap::new(),
            stale: BTreeMap::new(),
            last_refresh: Instant::now(),
        }
    }

    /// Starts following `ips` and resolves them now.
    pub fn want(&mut self, ips: &[IpAddr], br: &mut Bridge) {
        for &ip in ips {
            if self.remotes.insert(ip) || self.pending.contains(&ip) {
                self.resolve(ip, br);
            }
        }
    }

    /// Checks pending remotes, and every remote once a second.
    pub fn tick(&mut self, br: &mut Bridge) {
        if self.last_refresh.elapsed() >= REFRESH {
            self.last_refresh = Instant::now();
            let all: Vec<IpAddr> = self.remotes.iter().copied().collect();
            for ip in all {
                self.resolve(ip, br);
            }
        } else if !self.pending.is_empty() {
            let pending: Vec<IpAddr> = self.pending.iter().copied().collect();
            for ip in pending {
                self.resolve(ip, br);
            }
        }
    }

    fn resolve(&mut self, ip: IpAddr, br: &mut Bridge) {
        let route = self.lookup(ip);
        match &route {
            Ok(r) => {
                if br.tunnel_routes.get(&ip) != Some(r) {
                    // The largest pod packet that crosses without an ICMP
                    // "too big": what the pods' MTU should be.
                    let opts: usize = br
                        .tlv
                        .slots
                        .iter()
                        .flatten()
                        .map(|t| 4 + t.len as usize)
                        .sum();
                    let underlay = if ip.is_ipv4() {
                        encap::mtu::Underlay::Ipv4
                    } else {
                        encap::mtu::Underlay::Ipv6
                    };
                    let pod_mtu = encap::mtu::pod_mtu(r.mtu, underlay, opts);
                    tracing::info!(
                        remote = %ip, port = r.port, mtu = r.mtu, pod_mtu,
                        next_hop_mac = %mac(&r.dst_mac), "tunnel remote resolved"
                    );
                }
                self.pending.remove(&ip);
                self.said.remove(&ip);
                if self.stale.remove(&ip).is_some() {
                    tracing::info!(remote = %ip, "tunnel remote's neighbour resolved again");
                }
                br.tunnel_routes.set(ip, Some(*r));
            }
            Err(Missing::Neighbour(why)) if br.tunnel_routes.get(&ip).is_some() => {
                // Resolution is under way (lookup asked the kernel): keep
                // sending to the last MAC for a while.
                self.pending.insert(ip);
                let since = *self.stale.entry(ip).or_insert_with(|| {
                    tracing::info!(remote = %ip, reason = %why,
                        "tunnel remote's neighbour gone from the kernel: keeping its last MAC while it is resolved again");
                    Instant::now()
                });
                if since.elapsed() >= KEEP_STALE {
                    tracing::warn!(remote = %ip, reason = %why, "tunnel remote not reachable: its neighbour did not come back");
                    self.stale.remove(&ip);
                    self.said.insert(ip, why.clone());
                    br.tunnel_routes.set(ip, None);
                }
            }
            Err(Missing::Neighbour(why) | Missing::Route(why)) => {
                self.pending.insert(ip);
                self.stale.remove(&ip);
                if self.said.get(&ip) != Some(why) {
                    tracing::warn!(remote = %ip, reason = %why, "tunnel remote not reachable yet");
                    self.said.insert(ip, why.clone());
                }
                br.tunnel_routes.set(ip, None);
            }
        }
    }

    fn lookup(&mut self, ip: IpAddr) -> Result<TunnelRoute, Missing> {
        let nl = self
            .nl
            .as_mut()
            .ok_or_else(|| Missing::Route("no netlink socket".into()))?;
        let hop = nl
            .next_hop(ip)
            .map_err(|e| Missing::Route(format!("no route: {e}")))?;
        let port = self
            .uplinks
            .iter()
            .find(|(name, _)| crate::sys::if_index(name) == Some(hop.ifindex))
            .map(|(_, no)| *no)
            .ok_or_else(|| {
                Missing::Route(format!(
                    "the route leaves through interface {}, which is not an uplink port",
                    hop.ifindex
                ))
            })?;
        let dst_mac = hop
            .dst_mac
            .ok_or_else(|| Missing::Neighbour(format!("next hop {} not resolved yet", hop.via)))?;
        Ok(TunnelRoute {
            port,
            src_mac: hop.src_mac,
            dst_mac,
            mtu: hop.mtu.min(u16::MAX as u32) as u16,
        })
    }
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
