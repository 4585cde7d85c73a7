//! The fast path's maps and the program loaded over them.
//!
//! * entries: `BPF_MAP_TYPE_HASH`, [`FpKey`] -> [`FpEntry`]; the switch
//!   inserts and deletes (revalidation must be able to remove exactly what
//!   the rules no longer produce, so no LRU eviction behind its back).
//! * outputs: `BPF_MAP_TYPE_DEVMAP_HASH`, OpenFlow port -> ifindex (of the
//!   namespace that runs the update, as the kernel resolves it then).
//! * tunnels: `BPF_MAP_TYPE_ARRAY`, slot -> [`FpTunnel`], one per remote,
//!   so a route change rewrites one template, not every entry.
//! * ports: `BPF_MAP_TYPE_HASH`, ingress ifindex -> [`FpPort`], read by
//!   uplinks' programs (a pod port's has its OpenFlow number built in).
//! * stats: `BPF_MAP_TYPE_PERCPU_ARRAY` of u64 indexed by [`FpCounter`].

use super::layout::{bytes_of, bytes_of_mut, FpCounter, FpEntry, FpKey, FpPort, FpTunnel, Pod};
use super::program::{assemble, ProgramMaps};
use crate::afxdp::bpf::{self, LoadError};
use crate::afxdp::program::{ProgramKind, XdpAction};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Tunnel template slots.
pub const TUNNEL_SLOTS: u32 = 1024;
/// Interfaces and output ports.
pub const PORT_SLOTS: u32 = 1024;

/// The maps of one switch's fast path, shared by the programs of all its
/// interfaces.
pub struct FastPathMaps {
    entries: OwnedFd,
    outputs: OwnedFd,
    tunnels: OwnedFd,
    ports: OwnedFd,
    stats: OwnedFd,
    cpus: usize,
}

fn size<T>() -> u32 {
    size_of::<T>() as u32
}

impl FastPathMaps {
    /// Creates the maps, with room for `max_entries` entries.
    pub fn create(max_entries: u32) -> io::Result<FastPathMaps> {
        Ok(FastPathMaps {
            entries: bpf::create_map(
                bpf::MAP_HASH,
                size::<FpKey>(),
                size::<FpEntry>(),
                max_entries,
                "oxvs_fp_flows",
            )?,
            outputs: bpf::create_map(bpf::MAP_DEVMAP_HASH, 4, 4, PORT_SLOTS, "oxvs_fp_out")?,
            tunnels: bpf::create_map(
                bpf::MAP_ARRAY,
                4,
                size::<FpTunnel>(),
                TUNNEL_SLOTS,
                "oxvs_fp_tnl",
            )?,
            ports: bpf::create_map(
                bpf::MAP_HASH,
                4,
                size::<FpPort>(),
                PORT_SLOTS,
                "oxvs_fp_ports",
            )?,
            stats: bpf::create_map(
                bpf::MAP_PERCPU_ARRAY,
                4,
                8,
                FpCounter::ALL.len() as u32,
                "oxvs_fp_stats",
            )?,
            cpus: possible_cpus()?,
        })
    }

    /// The descriptors a program over these maps and the XSKMAP `xsk` refers to.
    pub fn program_maps(&self, xsk: BorrowedFd<'_>) -> ProgramMaps {
        ProgramMaps {
            xsk: xsk.as_raw_fd(),
            entries: self.entries.as_raw_fd(),
            devmap: self.outputs.as_raw_fd(),
            tunnels: self.tunnels.as_raw_fd(),
            ports: self.ports.as_raw_fd(),
            stats: self.stats.as_raw_fd(),
        }
    }

    /// Assembles and loads the program for an interface of `kind` that is
    /// OpenFlow port `of_port` (built into a pod port's program), its miss
    /// path through `xsk`; the verifier's log on refusal.
    pub fn load(
        &self,
        kind: ProgramKind,
        xsk: BorrowedFd<'_>,
        miss: XdpAction,
        of_port: u32,
    ) -> Result<OwnedFd, LoadError> {
        let insns = assemble(kind, self.program_maps(xsk), miss, of_port);
        let name = match kind {
            ProgramKind::All => "oxvs_fp_port",
            ProgramKind::Uplink => "oxvs_fp_uplink",
        };
        bpf::load_insns(&insns, name)
    }

    /// Creates or replaces an entry (its counters with it).
    pub fn insert(&self, key: &FpKey, entry: &FpEntry) -> io::Result<()> {
        update(self.entries.as_fd(), key, entry)
    }

    /// The entry for `key`, counters included.
    pub fn get(&self, key: &FpKey) -> io::Result<Option<FpEntry>> {
        lookup(self.entries.as_fd(), key)
    }

    /// Removes the entry for `key`; false if there was none.
    pub fn remove(&self, key: &FpKey) -> io::Result<bool> {
        bpf::map_delete(self.entries.as_fd(), bytes_of(key))
    }

    /// Tells an uplink's program what interface `ifindex` is.
    pub fn set_port(&self, ifindex: u32, port: &FpPort) -> io::Result<()> {
        update(self.ports.as_fd(), &ifindex, port)
    }

    /// Forgets interface `ifindex`: its packets go to the slow path.
    pub fn remove_port(&self, ifindex: u32) -> io::Result<bool> {
        bpf::map_delete(self.ports.as_fd(), bytes_of(&ifindex))
    }

    /// Makes OpenFlow port `of_port` an output through interface `ifindex`
    /// (of the calling thread's namespace).
    pub fn set_output(&self, of_port: u32, ifindex: u32) -> io::Result<()> {
        update(self.outputs.as_fd(), &of_port, &ifindex)
    }

    /// Removes output `of_port`: entries that use it go to the slow path.
    pub fn remove_output(&self, of_port: u32) -> io::Result<bool> {
        bpf::map_delete(self.outputs.as_fd(), bytes_of(&of_port))
    }

    /// Writes tunnel template `slot` (below [`TUNNEL_SLOTS`]).
    pub fn set_tunnel(&self, slot: u32, tunnel: &FpTunnel) -> io::Result<()> {
        update(self.tunnels.as_fd(), &slot, tunnel)
    }

    /// Every counter summed over the CPUs, in [`FpCounter::ALL`] order.
    pub fn counters(&self) -> io::Result<[u64; FpCounter::ALL.len()]> {
        let mut out = [0u64; FpCounter::ALL.len()];
        let mut per_cpu = vec![0u8; 8 * self.cpus];
        for (i, c) in FpCounter::ALL.iter().enumerate() {
            let key = *c as u32;
            bpf::map_lookup(self.stats.as_fd(), bytes_of(&key), &mut per_cpu)?;
            out[i] = per_cpu
                .chunks_exact(8)
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .sum();
        }
        Ok(out)
    }
}

fn update<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<()> {
    bpf::map_update(map, bytes_of(key), bytes_of(value), 0)
}

fn lookup<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut v = V::default();
    Ok(bpf::map_lookup(map, bytes_of(key), bytes_of_mut(&mut v))?.then_some(v))
}

/// How many CPUs a per-CPU map has values for: the kernel's "possible"
/// set, as `0-1` or `0,2-5`.
fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(s.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cpu list {s:?}")))
}

fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut last = 0;
    for part in s.split(',') {
        let hi = match part.split_once('-') {
            Some((_, hi)) => hi.parse::<usize>().ok()?,
            None => part.parse::<usize>().ok()?,
        };
        last = last.max(hi + 1);
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::parse_cpu_list("0-1"), Some(2));
        assert_eq!(super::parse_cpu_list("0"), Some(1));
        assert_eq!(super::parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(super::parse_cpu_list("x"), None);
    }
}
