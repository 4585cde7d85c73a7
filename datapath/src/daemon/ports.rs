//! The switch's ports as configured: those of the config file and those
//! added at run time (`add-port`), with the external ids OVS users keep on
//! an interface (`iface-id`, `attached-mac`, `container-id`, the pod's
//! namespace and name).
//!
//! This is the desired state; the control thread's attacher
//! (`daemon::attach`) makes the poll threads match it. Owned by the
//! control thread (in [`super::state::ControlState`]); a change bumps
//! [`PortRegistry::generation`] so the attacher knows to look again.
//! Runtime ports are persisted with the rules (`daemon::persist`), so a
//! warm restart brings them back before any traffic.

use super::config::{PortConfig, PortKind};
use flowtable::PortNo;
use std::collections::BTreeMap;

/// A port added at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedPort {
    /// Its configuration (`runtime` set).
    pub cfg: PortConfig,
    /// Its external ids.
    pub external_ids: BTreeMap<String, String>,
}

/// Every port the switch should have.
#[derive(Clone, Debug, Default)]
pub struct PortRegistry {
    /// From the config file.
    pub configured: Vec<PortConfig>,
    /// Added at run time, by number.
    pub added: BTreeMap<PortNo, AddedPort>,
    /// Most runtime ports the poll threads' UMEMs have room for.
    pub max_added: usize,
    generation: u64,
}

impl PortRegistry {
    /// The configured ports, room for `max_added` runtime ports.
    pub fn new(configured: Vec<PortConfig>, max_added: usize) -> PortRegistry {
        PortRegistry {
            configured,
            max_added,
            ..Default::default()
        }
    }

    /// Changes with every add, delete or change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Marks a change.
    pub fn touch(&mut self) {
        self.generation += 1;
    }

    /// The ports that have an interface (tunnel ports have none), in
    /// number order: what the poll threads should hold.
    pub fn interfaces(&self) -> Vec<PortConfig> {
        let mut v: Vec<PortConfig> = self
            .configured
            .iter()
            .filter(|p| p.kind != PortKind::Geneve)
            .cloned()
            .chain(self.added.values().map(|a| a.cfg.clone()))
            .collect();
        v.sort_by_key(|p| p.no);
        v
    }

    /// The configured port called `name`, if any.
    pub fn configured_by_name(&self, name: &str) -> Option<&PortConfig> {
        self.configured.iter().find(|p| p.name == name)
    }

    /// The runtime port called `name`, if any.
    pub fn added_by_name(&self, name: &str) -> Option<&AddedPort> {
        self.added.values().find(|p| p.cfg.name == name)
    }

    /// Whether a port, configured or added, is called `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.configured_by_name(name).is_some() || self.added_by_name(name).is_some()
    }
}

/// The port kinds `add-port kind=...` takes.
pub fn parse_kind(k: &str) -> Option<PortKind> {
    match k {
        "auto" => Some(PortKind::Auto),
        "afxdp" => Some(PortKind::Afxdp),
        "af_packet" => Some(PortKind::AfPacket),
        _ => None,
    }
}

/// The name `add-port` and the state file use for a kind.
pub fn kind_name(k: PortKind) -> &'static str {
    match k {
        PortKind::Auto => "auto",
        PortKind::Afxdp => "afxdp",
        PortKind::AfPacket => "af_packet",
        PortKind::Geneve => "geneve",
    }
}

/// Why `name` cannot be an interface name, if it cannot: Linux takes 1 to
/// 15 bytes without `/`, `:` or white space; we also refuse names that
/// are numbers or reserved port names, which `del-port NAME|N` and flow
/// syntax would read as something else.
pub fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 15 {
        return Some("an interface name has 1 to 15 bytes");
    }
    if name == "." || name == ".." || name.contains(['/', ':']) {
        return Some("an interface name has no '/' or ':' and is not '.' or '..'");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("an interface name has no white space");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some("a port name that is a number would read as a port number");
    }
    if flowtable::port::reserved::NAMES
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Some("that is a reserved port name");
    }
    None
}
