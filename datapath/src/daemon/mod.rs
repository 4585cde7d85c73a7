//! `oxvsd`: the switch daemon. The main thread is the control thread: it
//! owns the master [`Bridge`], loads the flow file before any port opens,
//! applies what poll threads report (MAC learning, port state), expires
//! rules, and publishes rule-set snapshots (its loop is in `control_loop`).
//! The poll threads ([`pmd`]), one per configured core, own the ports'
//! queues and move the packets.

pub mod attach;
pub mod config;
pub mod control;
mod control_loop;
pub mod fastpath;
pub mod handle;
mod handle_ports;
pub mod inbox;
pub mod metrics;
pub mod open;
pub mod persist;
pub mod pmd;
pub mod ports;
pub mod portset;
pub mod publish;
pub mod resolve;
pub mod state;

use crate::buf::FramePool;
use config::Config;
use flowtable::Bridge;
use pmd::{Opener, PmdThread};
use publish::Published;
use state::ControlState;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Frames a poll thread's pool (its UMEM) has beyond what its ports keep in
/// their rings: batches being processed and copies for second outputs.
pub const SPARE_FRAMES: usize = 1024;

/// Loads a flow file into `br`, all or nothing, errors naming the line.
pub fn load_flows(br: &mut Bridge, text: &str) -> Result<usize, String> {
    let file = ctl::ofp::parse_flow_file(text, &br.ports).map_err(|e| e.to_string())?;
    let (changes, lines) = ctl::load::file_changes(&file);
    br.apply(&changes, 0)
        .map_err(|(i, e)| format!("line {}: {e}", lines[i]))?;
    Ok(changes.len())
}

/// The bridge's TLV map from `[switch] tlv_map` (`ovs-ofctl add-tlv-map`
/// syntax).
fn tlv_map(text: &str) -> Result<flowtable::tunnel::TlvMap, String> {
    let parsed = encap::TlvMap::parse(text).map_err(|e| format!("tlv_map: {e}"))?;
    let mut map = flowtable::tunnel::TlvMap::default();
    for e in parsed.entries() {
        let slot = map.slots.get_mut(e.slot as usize).ok_or_else(|| {
            format!(
                "tlv_map: tun_metadata{} is not supported (0 and 1 are)",
                e.slot
            )
        })?;
        if e.len > 8 {
            return Err(format!(
                "tlv_map: tun_metadata{} is {} bytes; at most 8 are supported",
                e.slot, e.len
            ));
        }
        *slot = Some(flowtable::tunnel::TlvSlot {
            class: e.class,
            ty: e.typ,
            len: e.len,
        });
    }
    Ok(map)
}

/// The connection table, with a hash seed chosen at random so that a peer
/// cannot aim its tuples at one chain.
fn new_conntrack(cfg: &Config) -> flowtable::conntrack::ConnTrack {
    use std::hash::BuildHasher;
    let mut c = flowtable::conntrack::CtConfig {
        seed: std::collections::hash_map::RandomState::new().hash_one(0x6f78_7673u64),
        ..Default::default()
    };
    if let Some(max) = cfg.switch.ct_max_conns {
        c.max_conns = max;
    }
    if let Some(max) = cfg.switch.ct_max_frags {
        c.max_frags = max;
    }
    flowtable::conntrack::ConnTrack::new(c)
}

/// Runs the switch until `shutdown` is set (SIGTERM/SIGINT in `oxvsd`).
pub fn run(cfg: Config, open: Opener, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    let mut bridge = Bridge::default();
    let mut fixed_remotes = Vec::new();
    for p in &cfg.ports {
        match p.tunnel()? {
            Some(t) => {
                fixed_remotes.extend(t.remote);
                bridge.ports.add_tunnel(p.no, &p.name, t);
            }
            None => {
                bridge.add_port(p.no, &p.name);
                // Down until a poll thread has opened it, so flooding skips it.
                bridge.set_port_up(p.no, false);
            }
        }
    }
    if let Some(text) = &cfg.switch.tlv_map {
        bridge.tlv = tlv_map(text)?;
    }
    let uplinks = cfg
        .ports
        .iter()
        .filter(|p| p.uplink)
        .map(|p| (p.name.clone(), p.no))
        .collect();
    let mut resolver = resolve::Resolver::new(uplinks);
    resolver.want(&fixed_remotes, &mut bridge);
    let fast_entries = cfg
        .switch
        .fast_path_entries
        .unwrap_or(fastpath::DEFAULT_ENTRIES);
    let fast_mode = cfg.switch.fast_path;
    let fast_maps = match fast_mode {
        config::FastPathMode::On | config::FastPathMode::Auto => {
            fast_path_maps(fast_entries, fast_mode)
        }
        config::FastPathMode::Off => None,
    };
    let runtime_ports = cfg
        .switch
        .runtime_ports
        .unwrap_or(open::DEFAULT_RUNTIME_PORTS);
    let mut registry = ports::PortRegistry::new(cfg.ports.clone(), runtime_ports);
    let restored = load_rules(&cfg, &mut bridge, &mut registry)?;
    let mut st = ControlState::new(bridge);
    st.registry = registry;
    st.fast_mode = fast_mode;
    if let Some(maps) = &fast_maps {
        st.fast = Some(fastpath::FastPath::new(
            maps.clone(),
            fast_entries,
            &st.bridge,
            uplink_tunnel(&cfg),
        ));
    }
    // One clock for rule times, in this thread and in the poll threads.
    let epoch = st.start;
    st.persist = cfg.switch.state.clone().map(persist::StateFile::new);
    // A switch started from its flow file records it, so that the next
    // start restores it (with every change made in between).
    if let (Some(p), false) = (&st.persist, restored) {
        p.save(&st.bridge, &st.registry)
            .map_err(|e| e.to_string())?;
    }
    let published = Arc::new(Published::new(st.bridge.clone()));
    let (to_control, from_pmd) = std::sync::mpsc::channel();
    let _ctl = match &cfg.switch.socket {
        Some(p) => {
            Some(control::ControlServer::start(p, to_control.clone()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let _metrics = match cfg.switch.metrics {
        Some(a) => Some(
            metrics::MetricsServer::start(a, to_control.clone())
                .map_err(|e| format!("metrics on {a}: {e}"))?,
        ),
        None => None,
    };
    // One thread per configured core; thread i owns queue i of every port.
    let cores: Vec<Option<usize>> = if cfg.switch.poll_cores.is_empty() {
        vec![None]
    } else {
        cfg.switch.poll_cores.iter().map(|&c| Some(c)).collect()
    };
    let dump = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tap = Arc::new(pmd::Tap::default());
    let ct = Arc::new(new_conntrack(&cfg));
    st.conntrack = Some(ct.clone());
    if let Some(f) = st.fast.as_mut() {
        f.set_conntrack(ct.clone());
    }
    let mut handles = Vec::new();
    let mut attach_to = Vec::new();
    let configured = cfg
        .ports
        .iter()
        .filter(|p| p.kind != config::PortKind::Geneve)
        .count();
    let frames = open::pool_frames(configured, runtime_ports);
    for (id, core) in cores.iter().enumerate() {
        // The pool is the AF_XDP UMEM of every port of the thread (AF_PACKET
        // ports use it as plain memory). It is made here so that this
        // thread, which opens the sockets, can register and share it.
        let pool = FramePool::new_umem(frames).unwrap_or_else(|e| {
            tracing::warn!(error = %e, thread = id, "no UMEM; AF_XDP ports will not open");
            FramePool::new(frames)
        });
        let inbox = Arc::new(inbox::Inbox::new());
        attach_to.push(attach::ThreadHandle {
            inbox: inbox.clone(),
            umem: pool.umem_shared().cloned(),
        });
        let thread = PmdThread {
            id,
            pool,
            inbox,
            cfg: Default::default(),
            policy_log: (
                cfg.switch
                    .policy_log_rate
                    .unwrap_or(crate::policy_log::DEFAULT_RATE),
                cfg.switch
                    .policy_log_window
                    .map_or(crate::policy_log::DEFAULT_WINDOW_MS, |s| s * 1000),
            ),
            core: *core,
            published: published.clone(),
            to_control: to_control.clone(),
            shutdown: shutdown.clone(),
            epoch,
            dump: dump.clone(),
            tap: tap.clone(),
            ct: ct.clone(),
            fast_path: fast_maps.is_some(),
        };
        let h = std::thread::Builder::new()
            .name(format!("oxvs-pmd{id}"))
            .spawn(move || thread.run())
            .map_err(|e| format!("cannot start poll thread {id}: {e}"))?;
        handles.push(h);
    }
    drop(to_control);
    let policy = control_loop::PolicySink::open(cfg.switch.policy_log.as_deref(), epoch)?;
    let control = control_loop::ControlLoop::new(
        st,
        resolver,
        policy,
        published,
        control_loop::Shared { dump, tap, ct },
        handles.len(),
        attach::Attacher::new(
            open,
            attach_to,
            fast_maps,
            fast_mode == config::FastPathMode::On,
        ),
    );
    let exited = control.run(&from_pmd, &shutdown);
    for h in handles {
        h.join().map_err(|_| "a poll thread panicked".to_string())?;
    }
    for r in exited {
        let s = r.stats;
        let port_drops: u64 = r
            .ports
            .iter()
            .map(|p| p.stats.rx_dropped + p.stats.tx_dropped)
            .sum();
        tracing::info!(
            thread = r.thread,
            rx = s.rx_packets,
            emc_hit = s.emc_hit,
            megaflow_hit = s.megaflow_hit,
            upcall = s.upcall,
            drops = s.total_drops(),
            port_drops,
            port_down = s.port_down,
            "poll thread stopped"
        );
    }
    Ok(())
}

/// The fast path's maps, once its program has passed the verifier; `None`
/// (with the reason logged) when the kernel refuses either, and then every
/// packet goes through the poll threads as with `fast_path = "off"`.
fn fast_path_maps(
    entries: u32,
    mode: config::FastPathMode,
) -> Option<Arc<crate::afxdp::fastpath::FastPathMaps>> {
    use crate::afxdp::{bpf, ProgramKind, XdpAction};
    let maps = match crate::afxdp::fastpath::FastPathMaps::create(entries) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "fast path off: cannot create its maps");
            return None;
        }
    };
    let probe = bpf::create_xskmap(1).and_then(|xsk| {
        for kind in [ProgramKind::All, ProgramKind::Uplink] {
            maps.load(kind, std::os::fd::AsFd::as_fd(&xsk), XdpAction::Pass, 1)
                .map_err(|e| {
                    std::io::Error::other(format!("{}: {}\n{}", kind.name(), e.err, e.log))
                })?;
        }
        Ok(())
    });
    if let Err(e) = probe {
        tracing::warn!(error = %e, "fast path off: the kernel refuses its program");
        return None;
    }
    match mode {
        config::FastPathMode::Auto => tracing::info!(
            entries,
            "fast path on for ports whose XDP program attaches natively (fast_path = \"auto\")"
        ),
        _ => tracing::info!(entries, "fast path on"),
    }
    Some(Arc::new(maps))
}

/// The tunnel port and IPv4 VTEP Geneve arrivals on an uplink enter by in
/// the fast path: the first tunnel port with an IPv4 local address (the
/// program pops IPv4 Geneve only; arrivals for any other port miss).
fn uplink_tunnel(cfg: &Config) -> Option<(flowtable::PortNo, [u8; 4])> {
    cfg.ports.iter().find_map(|p| {
        let t = p.tunnel().ok()??;
        match t.local {
            std::net::IpAddr::V4(v4) => Some((p.no, v4.octets())),
            std::net::IpAddr::V6(_) => None,
        }
    })
}

/// The rules at start: the persisted state if there is one (it holds every
/// change accepted since the flow file was first loaded, deletions
/// included, and the ports added at run time), otherwise the flow file.
/// True if the state was restored.
fn load_rules(
    cfg: &Config,
    bridge: &mut Bridge,
    registry: &mut ports::PortRegistry,
) -> Result<bool, String> {
    if let Some(path) = &cfg.switch.state {
        if let Some(n) =
            persist::restore_with_ports(path, bridge, registry).map_err(|e| e.to_string())?
        {
            tracing::info!(state = %path.display(), changes = n, "rules restored");
            return Ok(true);
        }
    }
    if let Some(path) = &cfg.switch.flows {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = load_flows(bridge, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(flows = %path.display(), changes = n, "rules loaded");
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_flow_file_names_the_line_and_applies_nothing() {
        let mut br = Bridge::default();
        br.add_port(1, "v1p1");
        let e = load_flows(
            &mut br,
            "in_port=1,actions=drop\n\nin_port=1,actions=output:7\n",
        )
        .unwrap_err();
        assert!(e.starts_with("line 3: "), "{e}");
        assert!(e.contains("port 7"), "{e}");
        assert!(br.cls.is_empty());
        let e = load_flows(
            &mut br,
            "in_port=1,actions=drop\nip,nw_dst=10.0.0.300,actions=drop\n",
        )
        .unwrap_err();
        assert!(e.starts_with("line 2, column 11"), "{e}");
        assert!(br.cls.is_empty());
        assert_eq!(load_flows(&mut br, "in_port=1,actions=drop\n").unwrap(), 1);
        assert_eq!(br.cls.len(), 1);
    }
}
