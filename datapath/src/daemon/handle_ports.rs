//! `add-port`, `del-port`, `set-port` and `list-ports`: the runtime ports
//! of [`super::handle`], apart because they change the port registry as
//! well as the bridge.
//!
//! A change is made on copies of the bridge and the registry, persisted,
//! and only then swapped in, like a rule change: a refused or failed
//! request changes nothing. The control thread then brings the poll
//! threads in step with the registry (`daemon::attach`).
//!
//! Numbers: `add-port` without `no=` takes the lowest number that is
//! neither a port nor held by a deleted port that rules still name, so a
//! rule written for a deleted pod never starts sending to a new one.
//! `no=N` must not be a port; it may be a held number, which is how a port
//! is put back under the rules that name it.

use super::config::PortConfig;
use super::handle::{parse_err, rejected};
use super::ports::{bad_name, kind_name, parse_kind, AddedPort};
use super::state::ControlState;
use ctl::proto::{Failure, FailureKind, PortInfo};
use flowtable::{Bridge, PortNo};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The largest MTU an AF_XDP frame carries: 4096-byte frames less 256
/// bytes of headroom less the Ethernet header and one VLAN tag.
pub const MAX_MTU: u32 = 4096 - 256 - 18;

/// `add-port`: the answer is the port's number and a newline.
pub fn add_port(
    st: &mut ControlState,
    name: String,
    no: Option<u32>,
    kind: Option<String>,
    mtu: Option<u32>,
    external_ids: BTreeMap<String, String>,
) -> Result<String, Failure> {
    if let Some(why) = bad_name(&name) {
        return Err(parse_err(format!("add-port {name:?}: {why}")));
    }
    let kind = match kind.as_deref() {
        None => Default::default(),
        Some(k) => parse_kind(k)
            .ok_or_else(|| parse_err(format!("kind={k}: expected auto, afxdp or af_packet")))?,
    };
    if let Some(m) = mtu.filter(|m| !(68..=MAX_MTU).contains(m)) {
        return Err(parse_err(format!("mtu={m}: expected 68 to {MAX_MTU}")));
    }
    check_ids(&external_ids)?;
    if let Some(n) = st.bridge.ports.by_name(&name) {
        return Err(rejected(format!("port {name} already exists (number {n})")));
    }
    if st.registry.has_name(&name) {
        return Err(rejected(format!("port {name} already exists")));
    }
    if st.registry.added.len() >= st.registry.max_added {
        return Err(rejected(format!(
            "this switch has room for {} runtime ports, all taken ([switch] runtime_ports)",
            st.registry.max_added
        )));
    }
    let mut next = st.bridge.clone();
    let no = match no {
        Some(n) if n == 0 || n > crate::memdp::MAX_PORT_NO => {
            return Err(parse_err(format!(
                "no={n}: expected 1 to {}",
                crate::memdp::MAX_PORT_NO
            )))
        }
        Some(n) => {
            if let Some(other) = next.ports.name(n) {
                return Err(rejected(format!("port number {n} is taken by {other}")));
            }
            n
        }
        None => lowest_free(&mut next)
            .ok_or_else(|| rejected("every port number is taken".to_string()))?,
    };
    next.add_port(no, &name);
    // Down until a poll thread has it open, so flooding skips it.
    next.set_port_up(no, false);
    let mut reg = st.registry.clone();
    reg.added.insert(
        no,
        AddedPort {
            cfg: PortConfig {
                name: name.clone(),
                no,
                kind,
                uplink: false,
                local_ip: None,
                remote_ip: None,
                key: None,
                runtime: true,
                mtu,
            },
            external_ids: external_ids
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        },
    );
    reg.touch();
    save(st, next, reg)?;
    tracing::info!(port = %name, no, kind = kind_name(kind), "port added");
    Ok(format!("{no}\n"))
}

/// The lowest number no port has and no rule names; held numbers that
/// rules no longer name are freed first.
fn lowest_free(br: &mut Bridge) -> Option<PortNo> {
    if br.ports.held().next().is_some() {
        br.release_unnamed_ports();
    }
    (1..=crate::memdp::MAX_PORT_NO).find(|&n| !br.ports.known(n))
}

/// `del-port NAME|N`. Rules naming the port stay; its number stays held
/// while they do.
pub fn del_port(st: &mut ControlState, port: &str) -> Result<String, Failure> {
    let no = runtime_port(st, port)?;
    let mut next = st.bridge.clone();
    next.remove_port(no);
    if !next.names_port(no) {
        next.ports.release(no);
    }
    let mut reg = st.registry.clone();
    reg.added.remove(&no);
    reg.touch();
    save(st, next, reg)?;
    Ok(String::new())
}

/// `set-port NAME|N external-id:KEY=VALUE ...`; an empty value removes
/// the key.
pub fn set_port(
    st: &mut ControlState,
    port: &str,
    external_ids: BTreeMap<String, String>,
) -> Result<String, Failure> {
    let no = runtime_port(st, port)?;
    check_ids(&external_ids)?;
    let mut reg = st.registry.clone();
    if let Some(a) = reg.added.get_mut(&no) {
        for (k, v) in external_ids {
            if v.is_empty() {
                a.external_ids.remove(&k);
            } else {
                a.external_ids.insert(k, v);
            }
        }
    }
    reg.touch();
    let br = st.bridge.clone();
    save(st, br, reg)?;
    Ok(String::new())
}

/// `list-ports`: every port, configured or added, by number.
pub fn list_ports(st: &ControlState, json: bool) -> String {
    let ports = port_infos(st);
    if json {
        return serde_json::to_string(&ports).unwrap_or_else(|_| "[]".into()) + "\n";
    }
    let mut s = String::new();
    for p in ports {
        let _ = write!(
            s,
            "{:>4}({}): {}, {}, {}",
            p.no,
            p.name,
            p.kind,
            p.state,
            if p.configured { "configured" } else { "added" }
        );
        if let Some(m) = p.mtu {
            let _ = write!(s, ", mtu={m}");
        }
        for (k, v) in &p.external_ids {
            let _ = write!(s, ", external-id:{k}={v}");
        }
        s.push('\n');
    }
    s
}

/// The ports as `list-ports --format json` gives them.
pub fn port_infos(st: &ControlState) -> Vec<PortInfo> {
    let info = |cfg: &PortConfig, configured: bool, ids: &BTreeMap<String, String>| {
        let up = st
            .bridge
            .ports
            .iter()
            .any(|p| p.no == cfg.no && p.up && p.name == cfg.name);
        let mode = st
            .ports
            .iter()
            .find(|p| p.no == cfg.no && p.up)
            .map(|p| p.mode.as_str())
            .or(st.port_modes.get(&cfg.no).map(String::as_str))
            .and_then(|m| m.split_whitespace().next().map(str::to_string));
        let kind = match (cfg.kind, mode) {
            (super::config::PortKind::Geneve, _) => "geneve".to_string(),
            (_, Some(m)) => m,
            (_, None) if crate::sys::if_index(&cfg.name).is_none() => "waiting".to_string(),
            (_, None) => "down".to_string(),
        };
        PortInfo {
            name: cfg.name.clone(),
            no: cfg.no,
            kind,
            configured,
            external_ids: ids.clone(),
            mtu: cfg.mtu,
            state: if up { "up" } else { "down" }.to_string(),
        }
    };
    let none = BTreeMap::new();
    let mut v: Vec<PortInfo> = st
        .registry
        .configured
        .iter()
        .map(|c| info(c, true, &none))
        .chain(
            st.registry
                .added
                .values()
                .map(|a| info(&a.cfg, false, &a.external_ids)),
        )
        .collect();
    v.sort_by_key(|p| p.no);
    v
}

fn check_ids(ids: &BTreeMap<String, String>) -> Result<(), Failure> {
    for (k, v) in ids {
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(parse_err(format!(
                "external-id:{k}={v}: a key is a word without white space"
            )));
        }
    }
    Ok(())
}

/// The number of the runtime port `port` names (a name or a number).
fn runtime_port(st: &ControlState, port: &str) -> Result<PortNo, Failure> {
    let by_no = port
        .parse::<PortNo>()
        .ok()
        .filter(|n| st.bridge.ports.contains(*n));
    let Some(no) = by_no.or_else(|| st.bridge.ports.by_name(port)) else {
        return Err(rejected(format!("no port {port}")));
    };
    if st.registry.added.contains_key(&no) {
        return Ok(no);
    }
    Err(rejected(format!(
        "port {port} is in the config file, not added at run time: change it there"
    )))
}

/// Persists `br` and `reg`, then makes them the switch's.
fn save(st: &mut ControlState, br: Bridge, reg: super::ports::PortRegistry) -> Result<(), Failure> {
    if let Some(p) = &st.persist {
        p.save(&br, &reg).map_err(|e| {
            Failure::new(
                FailureKind::Internal,
                format!("{e}; the change was not applied"),
            )
        })?;
    }
    st.bridge = br;
    st.registry = reg;
    Ok(())
}
