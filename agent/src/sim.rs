//! Packets through compiled rules, with the switch's own classifier
//! (`flowtable::translate`, the code oxvsd runs), not a second evaluator:
//! the model tests send a pod's first packet to a Service and check where
//! it leaves and how it was translated, and the next issue's `trace`
//! command is built on the same.
//!
//! A `ct(table=T)` is followed into its next pass as `ofproto/trace` does
//! ([`ctl::trace::next_pass`]): the packet is taken to start a new
//! connection, and a commit with NAT rewrites it to the first address of
//! the range. Rules that `learn` asks for are installed, so session
//! affinity can be observed across packets.

use crate::compile::PortMap;
use crate::config::Config;
use crate::rules::RuleSet;
use ctl::ofp::{parse_flow_file, parse_packet};
use flowtable::action::DpAction;
use flowtable::bridge::{Bridge, Change};
use flowtable::field::Field;
use flowtable::tunnel::Tunnel;
use flowtable::{translate, FlowKey};
use std::net::{IpAddr, Ipv4Addr};

/// Where a packet went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Out of a port, with the packet as it left.
    Port {
        /// The port.
        port: u32,
        /// The packet's key after every rewrite.
        key: Box<FlowKey>,
    },
    /// Into the Geneve tunnel.
    Tunnel {
        /// The remote VTEP.
        dst: Ipv4Addr,
        /// The VNI.
        vni: u32,
        /// The inner packet's key after every rewrite.
        key: Box<FlowKey>,
    },
    /// Answered with a reset or ICMP error.
    Reject,
    /// Dropped (with the reason's debug text).
    Drop(String),
}

impl Outcome {
    /// The packet's destination address and port as it left, if it left.
    pub fn destination(&self) -> Option<(Ipv4Addr, u16)> {
        let k = match self {
            Outcome::Port { key, .. } | Outcome::Tunnel { key, .. } => key,
            _ => return None,
        };
        Some((
            Ipv4Addr::from(k.get(Field::NwDst) as u32),
            k.get(Field::TpDst) as u16,
        ))
    }

    /// The packet's source address as it left, if it left.
    pub fn source(&self) -> Option<Ipv4Addr> {
        match self {
            Outcome::Port { key, .. } | Outcome::Tunnel { key, .. } => {
                Some(Ipv4Addr::from(key.get(Field::NwSrc) as u32))
            }
            _ => None,
        }
    }
}

/// One node's compiled rules loaded into a bridge.
pub struct Sim {
    br: Bridge,
    now_ms: u64,
}

impl Sim {
    /// Loads `rules` into a bridge with the node's ports: its pods', the
    /// gateway and the Geneve port (local VTEP `node_ip`).
    pub fn new(
        rules: &RuleSet,
        cfg: &Config,
        ports: &PortMap,
        node_ip: Ipv4Addr,
    ) -> Result<Sim, String> {
        let mut br = Bridge::default();
        for ((ns, name), p) in ports {
            br.ports.add(p.ofport, &format!("{ns}/{name}"));
        }
        br.ports.add(cfg.gateway_port, "gw0s");
        br.ports.add_tunnel(
            cfg.tunnel_port,
            "gnv0",
            Tunnel {
                local: IpAddr::V4(node_ip),
                remote: None,
                key: None,
            },
        );
        let file = parse_flow_file(&rules.text(), &()).map_err(|e| e.to_string())?;
        let (changes, lines) = ctl::load::file_changes(&file);
        br.apply(&changes, 0)
            .map_err(|(i, e)| format!("line {}: {e}", lines[i]))?;
        Ok(Sim { br, now_ms: 0 })
    }

    /// The bridge, to inspect.
    pub fn bridge(&self) -> &Bridge {
        &self.br
    }

    /// Sends a packet described in flow syntax (`in_port=10,tcp,nw_src=...`).
    pub fn send_text(&mut self, packet: &str) -> Result<Outcome, String> {
        let key = parse_packet(packet, &()).map_err(|e| e.to_string())?;
        Ok(self.send(&key))
    }

    /// Sends one packet; installs what it learned.
    pub fn send(&mut self, key: &FlowKey) -> Outcome {
        let mut key = *key;
        for _ in 0..8 {
            let x = translate(&self.br, &key, None);
            if !x.learned_flows.is_empty() {
                self.now_ms += 1;
                let changes: Vec<Change> = x
                    .learned_flows
                    .iter()
                    .cloned()
                    .map(Change::AddFlow)
                    .collect();
                let _ = self.br.apply(&changes, self.now_ms);
            }
            if let Some(next) = ctl::trace::next_pass(&key, &x.actions) {
                key = next;
                continue;
            }
            return outcome(key, &x.actions);
        }
        Outcome::Drop("recirculation limit".into())
    }
}

fn outcome(mut key: FlowKey, actions: &[DpAction]) -> Outcome {
    for a in actions {
        if ctl::trace::apply_set(&mut key, a) {
            continue;
        }
        match a {
            DpAction::Output(p) => {
                return Outcome::Port {
                    port: *p,
                    key: Box::new(key),
                }
            }
            DpAction::TunnelPush { vni, dst, .. } => {
                let d = std::net::Ipv6Addr::from(*dst);
                return Outcome::Tunnel {
                    dst: d.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                    vni: *vni,
                    key: Box::new(key),
                };
            }
            DpAction::Reject(_) => return Outcome::Reject,
            DpAction::Drop(r) => return Outcome::Drop(format!("{r:?}")),
            _ => {}
        }
    }
    Outcome::Drop("no output".into())
}
