//! Warm restart: the rule set written to disk after every accepted change
//! and loaded back at start, so that a restarted `oxvsd` forwards as before
//! without waiting for its controller to push every rule again.
//!
//! The file is an `add-flows` file (groups, then flows, ports by number) so
//! that a person can read it, diff it and feed it to `oxvs-ctl add-flows`.
//! Ports added at run time come first, as comment lines that `add-flows`
//! skips (`#port name=v1p5 no=5 kind=auto mtu=1450 external-id:KEY=VALUE`),
//! and so do the held numbers of deleted ports that rules still name
//! (`#held-port no=7`): they are restored before the flows, which may name
//! them. Values are percent-encoded outside `[A-Za-z0-9._:/@+-]`.
//! Its first line is a fixed header; a file without it (an empty file, a
//! different file at that path) is refused rather than read as "no rules",
//! because a switch that silently comes up empty drops all traffic.
//!
//! Writes are atomic: a temporary file in the same directory, fsync, rename
//! over the old file, fsync of the directory. After a crash at any point the
//! path holds either the previous rule set or the new one, whole.

use super::config::PortConfig;
use super::ports::{kind_name, parse_kind, AddedPort, PortRegistry};
use flowtable::{Bridge, FlowSpec};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The first line of every state file.
pub const HEADER: &str = "# oxvs rule state v1: written by oxvsd, add-flows format";

/// Why the state could not be saved or restored. The doc comment of each
/// variant is its message.
#[derive(Debug)]
pub enum PersistError {
    /// cannot write {path}: {err}
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        err: std::io::Error,
    },
    /// cannot read {path}: {err}
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        err: std::io::Error,
    },
    /// {path}: {msg}
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, starting with the line.
        msg: String,
    },
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Write { path, err } => {
                write!(f, "cannot write {}: {err}", path.display())
            }
            PersistError::Read { path, err } => write!(f, "cannot read {}: {err}", path.display()),
            PersistError::Corrupt { path, msg } => write!(f, "{}: {msg}", path.display()),
        }
    }
}

impl std::error::Error for PersistError {}

/// The state file of a running daemon.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path` (nothing is touched yet).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the rule set of `br` and the runtime ports of `ports`,
    /// atomically.
    pub fn save(&self, br: &Bridge, ports: &PortRegistry) -> Result<(), PersistError> {
        let text = render_ports(br, ports) + &render(br)[HEADER.len() + 1..];
        write_atomic(&self.path, text.as_bytes()).map_err(|err| PersistError::Write {
            path: self.path.clone(),
            err,
        })
    }
}

/// The state file text for `br`: header, groups by id, flows by table,
/// priority (highest first) and text, so equal rule sets give equal files.
pub fn render(br: &Bridge) -> String {
    let mut s = format!("{HEADER}\n");
    let mut groups: Vec<_> = br.groups.iter().collect();
    groups.sort_by_key(|g| g.spec.id);
    for g in groups {
        let _ = writeln!(s, "{}", ctl::format_group(&g.spec, &()).trim_start());
    }
    let mut flows: Vec<(u8, u16, String)> = br
        .cls
        .rules()
        .map(|r| {
            let spec = FlowSpec {
                table: r.table,
                priority: r.priority,
                m: r.m,
                cookie: r.cookie,
                idle_timeout: r.idle_timeout,
                hard_timeout: r.hard_timeout,
                actions: r.actions.to_vec(),
                ..Default::default()
            };
            (r.table, r.priority, ctl::format_flow_spec(&spec, &()))
        })
        .collect();
    flows.sort_by(|a, b| (a.0, b.1, &a.2).cmp(&(b.0, a.1, &b.2)));
    for (_, _, line) in flows {
        let _ = writeln!(s, "{line}");
    }
    s
}

/// The header and the port lines of a state file.
pub fn render_ports(br: &Bridge, ports: &PortRegistry) -> String {
    let mut s = format!("{HEADER}\n");
    for a in ports.added.values() {
        let c = &a.cfg;
        let _ = write!(
            s,
            "#port name={} no={} kind={}",
            encode(&c.name),
            c.no,
            kind_name(c.kind)
        );
        if let Some(m) = c.mtu {
            let _ = write!(s, " mtu={m}");
        }
        for (k, v) in &a.external_ids {
            let _ = write!(s, " external-id:{}={}", encode(k), encode(v));
        }
        s.push('\n');
    }
    for n in br.ports.held() {
        let _ = writeln!(s, "#held-port no={n}");
    }
    s
}

fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One `#port` line's words after `#port`.
fn parse_port(words: &str) -> Result<AddedPort, String> {
    let mut cfg = PortConfig {
        name: String::new(),
        no: 0,
        kind: Default::default(),
        uplink: false,
        local_ip: None,
        remote_ip: None,
        key: None,
        runtime: true,
        mtu: None,
    };
    let mut ids = BTreeMap::new();
    for w in words.split_whitespace() {
        let bad = || format!("bad word {w:?}");
        if let Some(kv) = w.strip_prefix("external-id:") {
            let (k, v) = kv.split_once('=').ok_or_else(bad)?;
            ids.insert(decode(k).ok_or_else(bad)?, decode(v).ok_or_else(bad)?);
            continue;
        }
        let (k, v) = w.split_once('=').ok_or_else(bad)?;
        match k {
            "name" => cfg.name = decode(v).ok_or_else(bad)?,
            "no" => cfg.no = v.parse().map_err(|_| bad())?,
            "kind" => cfg.kind = parse_kind(v).ok_or_else(bad)?,
            "mtu" => cfg.mtu = Some(v.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    if cfg.name.is_empty() || cfg.no == 0 {
        return Err("a port needs name= and no=".into());
    }
    Ok(AddedPort {
        cfg,
        external_ids: ids,
    })
}

/// Restores the runtime ports and held numbers of a state file into `br`
/// and `ports` (the configured ports already there). A runtime port that
/// now clashes with a configured one (the config file changed) is left
/// out, with a warning: the configured port wins.
fn restore_ports(text: &str, br: &mut Bridge, ports: &mut PortRegistry) -> Result<usize, String> {
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if let Some(words) = line.strip_prefix("#port ") {
            let a = parse_port(words).map_err(|e| format!("line {}: {e}", i + 1))?;
            let (name, no) = (a.cfg.name.clone(), a.cfg.no);
            if ports.has_name(&name) || br.ports.contains(no) {
                tracing::warn!(port = %name, no, "a configured port has this name or number; the runtime port is not restored");
                continue;
            }
            br.add_port(no, &name);
            br.set_port_up(no, false);
            ports.added.insert(no, a);
            n += 1;
        } else if let Some(w) = line.strip_prefix("#held-port no=") {
            let no = w
                .trim()
                .parse()
                .map_err(|_| format!("line {}: bad held port {w:?}", i + 1))?;
            br.ports.hold_number(no);
        }
    }
    ports.touch();
    Ok(n)
}

/// Loads the state file at `path` into `br` (whose configured ports must
/// already be there) and `ports`: runtime ports first, then the rules, all
/// or nothing. A missing file is a first start: `Ok(None)`. Otherwise the
/// number of groups and flows loaded.
pub fn restore_with_ports(
    path: &Path,
    br: &mut Bridge,
    ports: &mut PortRegistry,
) -> Result<Option<usize>, PersistError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(PersistError::Read {
                path: path.into(),
                err,
            })
        }
    };
    let corrupt = |msg: String| PersistError::Corrupt {
        path: path.into(),
        msg,
    };
    if text.lines().next() != Some(HEADER) {
        return Err(corrupt(format!(
            "line 1: not an oxvs state file (expected the header {HEADER:?})"
        )));
    }
    let (mut b, mut p) = (br.clone(), ports.clone());
    let added = restore_ports(&text, &mut b, &mut p).map_err(corrupt)?;
    let n = super::load_flows(&mut b, &text).map_err(corrupt)?;
    if added > 0 {
        tracing::info!(ports = added, "runtime ports restored");
    }
    *br = b;
    *ports = p;
    Ok(Some(n))
}

/// Loads the state file at `path` into `br` (whose ports must already be
/// there), all or nothing. A missing file is a first start: `Ok(None)`.
/// Otherwise the number of groups and flows loaded.
pub fn restore(path: &Path, br: &mut Bridge) -> Result<Option<usize>, PersistError> {
    restore_with_ports(path, br, &mut PortRegistry::default())
}

/// Replaces `path` with `data` so that a crash leaves the old or the new
/// content, never a mix or nothing.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::load_flows;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oxvs-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn bridge() -> Bridge {
        let mut br = Bridge::default();
        br.add_port(1, "v1p1");
        br.add_port(2, "v1p2");
        br
    }

    const FLOWS: &str =
        "group_id=5,type=select,bucket=actions=output:v1p1,bucket=actions=output:v1p2\n\
        table=0,priority=100,ip,nw_dst=10.0.0.1,actions=output:v1p2\n\
        table=0,cookie=0x7,idle_timeout=30,in_port=v1p1,actions=group:5\n\
        table=1,priority=5,actions=drop\n";

    #[test]
    fn a_saved_rule_set_restores_to_the_same_rules() {
        let d = dir("roundtrip");
        let mut br = bridge();
        load_flows(&mut br, FLOWS).unwrap();
        let f = StateFile::new(d.join("rules"));
        f.save(&br, &PortRegistry::default()).unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        // Ports by number, so renaming an interface does not break restore.
        assert!(text.contains("output:2"), "{text}");
        let mut back = bridge();
        assert_eq!(restore(f.path(), &mut back).unwrap(), Some(4));
        assert_eq!(render(&back), text);
        assert_eq!(back.cls.len(), 3);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["rules"]);
    }

    #[test]
    fn a_missing_file_is_a_first_start() {
        let d = dir("missing");
        let mut br = bridge();
        assert_eq!(restore(&d.join("none"), &mut br).unwrap(), None);
    }

    #[test]
    fn a_corrupt_file_names_the_line_and_loads_nothing() {
        let d = dir("corrupt");
        let p = d.join("rules");
        std::fs::write(
            &p,
            format!("{HEADER}\nin_port=1,actions=drop\nip,nw_dst=10.0.0.999,actions=drop\n"),
        )
        .unwrap();
        let mut br = bridge();
        let e = restore(&p, &mut br).unwrap_err().to_string();
        assert!(e.contains("line 3, column"), "{e}");
        assert!(br.cls.is_empty());
        std::fs::write(&p, format!("{HEADER}\nin_port=1,actions=output:9\n")).unwrap();
        let e = restore(&p, &mut br).unwrap_err().to_string();
        assert!(e.contains("line 2: ") && e.contains("port 9"), "{e}");
        std::fs::write(&p, "").unwrap();
        let e = restore(&p, &mut br).unwrap_err().to_string();
        assert!(e.contains("line 1: not an oxvs state file"), "{e}");
        assert!(br.cls.is_empty());
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file() {
        let d = dir("atomic");
        let p = d.join("f");
        write_atomic(&p, b"old old old\n").unwrap();
        write_atomic(&p, b"new\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new\n");
        // A write into a missing directory fails and leaves nothing.
        assert!(write_atomic(&d.join("no/such/f"), b"x").is_err());
    }
}
