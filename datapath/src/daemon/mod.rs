//! `oxvsd`: the switch daemon. The main thread is the control thread: it
//! owns the master [`Bridge`], loads the flow file before any port opens,
//! applies what poll threads report (MAC learning, port state), expires
//! rules, and publishes rule-set snapshots. The poll threads ([`pmd`]), one
//! per configured core, own the ports' queues and move the packets.

pub mod config;
pub mod open;
pub mod pmd;
pub mod publish;

use config::Config;
use flowtable::Bridge;
use pmd::{Opener, PmdReport, PmdThread, ToControl};
use publish::Published;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Runs the switch until `shutdown` is set (SIGTERM/SIGINT in `oxvsd`).
pub fn run(cfg: Config, open: Opener, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    let mut bridge = Bridge::default();
    for p in &cfg.ports {
        bridge.add_port(p.no, &p.name);
        // Down until a poll thread has opened it, so flooding skips it.
        bridge.set_port_up(p.no, false);
    }
    if let Some(path) = &cfg.switch.flows {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = load_flows(&mut bridge, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(flows = %path.display(), changes = n, "rules loaded");
    }
    let published = Arc::new(Published::new(bridge.clone()));
    let (to_control, from_pmd) = std::sync::mpsc::channel();
    // One thread per configured core; thread i owns queue i of every port.
    let cores: Vec<Option<usize>> = if cfg.switch.poll_cores.is_empty() {
        vec![None]
    } else {
        cfg.switch.poll_cores.iter().map(|&c| Some(c)).collect()
    };
    let mut handles = Vec::new();
    for (id, core) in cores.iter().enumerate() {
        let thread = PmdThread {
            id,
            ports: cfg.ports.clone(),
            frames: cfg.ports.len() * open::FRAMES_PER_PORT + SPARE_FRAMES,
            cfg: Default::default(),
            core: *core,
            published: published.clone(),
            to_control: to_control.clone(),
            shutdown: shutdown.clone(),
            open: open.clone(),
        };
        let h = std::thread::Builder::new()
            .name(format!("oxvs-pmd{id}"))
            .spawn(move || thread.run())
            .map_err(|e| format!("cannot start poll thread {id}: {e}"))?;
        handles.push(h);
    }
    drop(to_control);
    let start = Instant::now();
    let mut last_expire = Instant::now();
    let mut published_version = bridge.version();
    // Which threads have each port open: a port is up for flooding while
    // any thread can send to it.
    let mut up_on: std::collections::BTreeMap<u32, u64> = Default::default();
    let mut exited: Vec<PmdReport> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) || exited.len() < handles.len() {
        let now_ms = start.elapsed().as_millis() as u64;
        match from_pmd.recv_timeout(Duration::from_millis(200)) {
            Ok(ToControl::Learned(l)) => bridge.learn(&l, now_ms),
            Ok(ToControl::PortState { thread, no, up }) => {
                let m = up_on.entry(no).or_default();
                if up {
                    *m |= 1 << thread;
                } else {
                    *m &= !(1 << thread);
                }
                bridge.set_port_up(no, *m != 0);
            }
            Ok(ToControl::Report(_)) => {}
            Ok(ToControl::Exited(r)) => exited.push(r),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_expire.elapsed() >= Duration::from_secs(1) {
            last_expire = Instant::now();
            let gone = bridge.expire(now_ms);
            if !gone.is_empty() {
                tracing::info!(rules = gone.len(), "rules expired");
            }
        }
        if bridge.version() != published_version {
            published_version = bridge.version();
            published.publish(bridge.clone());
        }
    }
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
