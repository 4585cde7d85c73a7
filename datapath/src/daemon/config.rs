//! `oxvsd`'s configuration file (TOML), checked once at start.
//!
//! ```toml
//! [switch]
//! flows = "node.flows"     # loaded before any port opens (relative to this file)
//! log = "info"             # error, warn, info, debug, trace
//! poll_cores = [0, 1]      # one poll thread per core, pinned; thread i owns queue i
//!                          # of every port (default: one unpinned thread)
//! socket = "/run/oxvs/oxvsd.sock"   # control socket (mode 0600); optional
//! state = "/var/lib/oxvs/rules"     # accepted rule changes persisted here; optional
//! metrics = "127.0.0.1:9477"        # Prometheus text endpoint; optional
//! tlv_map = "{class=0x0102,type=0x80,len=4}->tun_metadata0"  # Geneve options; optional
//! fast_path = "auto"       # the XDP fast path (issue 16): "auto" (the default: on
//!                          # for ports whose XDP program attaches natively), "on"
//!                          # (every AF_XDP port, generic ones too) or "off"
//! fast_path_entries = 65536  # most flows the fast path holds; default 65536
//! runtime_ports = 512      # most ports add-port may add; default 64
//! runtime_fill = 1024      # frames in each added port's fill ring (64-4096); its UMEM
//!                          # holds 256 more, 4 KiB each (5 MiB per port at 1024); default 1024
//!
//! [[port]]
//! name = "v1p1"            # interface name
//! no = 1                   # OpenFlow port number
//! kind = "auto"            # auto (AF_XDP, else AF_PACKET), afxdp, af_packet
//! uplink = false           # true: only Geneve goes to the switch, the rest to the kernel
//!
//! [[port]]
//! name = "gnv0"            # a Geneve tunnel port (no interface of its own)
//! no = 100
//! kind = "geneve"
//! local_ip = "192.168.77.1"  # this node's VTEP; packets leave through the
//!                            # uplink the kernel routes the remote to
//! remote_ip = "flow"         # or a fixed remote VTEP
//! key = "flow"               # or a fixed VNI: key = 42 (also "42" or "0x2a");
//!                            # a fixed key receives that VNI only
//! ```
//!
//! Unknown keys are errors (a misspelt key silently ignored is a
//! misconfigured switch), and so are duplicate port names or numbers.
//! Numbers are TOML integers (`no = 1`, `poll_cores = [0, 1]`, `key = 42`);
//! `key` also takes a string, because it may be the word `flow` and because
//! earlier versions wanted `key = "42"`. Addresses are strings.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Switch-wide settings.
    #[serde(default)]
    pub switch: SwitchConfig,
    /// The ports.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
}

/// `[switch]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Flow file loaded at start.
    pub flows: Option<PathBuf>,
    /// Log level.
    pub log: Option<String>,
    /// One poll thread per listed core, pinned to it. Thread `i` owns
    /// queue `i` of every port. Empty: one thread, not pinned.
    #[serde(default)]
    pub poll_cores: Vec<usize>,
    /// The control socket's path.
    pub socket: Option<PathBuf>,
    /// Where accepted rule changes are persisted and restored from at start.
    pub state: Option<PathBuf>,
    /// Listen address of the Prometheus text endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    /// Geneve options carried in `tun_metadataN`, as `ovs-ofctl
    /// add-tlv-map` writes them: `{class=0x0102,type=0x80,len=4}->tun_metadata0`.
    pub tlv_map: Option<String>,
    /// Most connections conntrack holds (OVS's `dpctl/ct-set-maxconns`);
    /// 3,000,000 when unset, as in OVS.
    pub ct_max_conns: Option<usize>,
    /// Most fragmented datagrams whose first fragment's ports conntrack
    /// remembers at once (rounded down to whole buckets); 16,384 when
    /// unset.
    pub ct_max_frags: Option<usize>,
    /// A file that `log(name=...)` lines are appended to, besides the
    /// daemon's log (target `oxvs::policy`).
    pub policy_log: Option<PathBuf>,
    /// Policy log lines per second per poll thread (default 100); what the
    /// limit holds back is counted in `pmd-stats`.
    pub policy_log_rate: Option<u32>,
    /// Seconds within which one connection is logged once (default 10).
    pub policy_log_window: Option<u64>,
    /// How many ports `add-port` may add (default 64). Each AF_XDP queue
    /// of one has a UMEM of its own (`runtime_fill + 256` frames of
    /// 4 KiB), so this is what bounds the switch's memory.
    pub runtime_ports: Option<usize>,
    /// Frames each port added at run time keeps in its fill ring (default
    /// 1024, [`super::open::DEFAULT_RUNTIME_FILL`]): what the kernel can
    /// receive for it while its poll thread is busy elsewhere or asleep.
    /// Its UMEM, pinned memory paid per pod, holds 256 frames more, 4 KiB
    /// each.
    pub runtime_fill: Option<u32>,
    /// Whether established flows are offloaded to the XDP fast path, and on
    /// which ports (default `auto`: those attached natively).
    #[serde(default)]
    pub fast_path: FastPathMode,
    /// Most entries the fast path holds (default 65536; 104 bytes each
    /// plus the key's 80, in kernel memory).
    pub fast_path_entries: Option<u32>,
}

/// `fast_path` in `[switch]`.
///
/// The default is `auto`, issue 16's "on where native XDP attaches": the
/// fast path pays where the program runs in the driver, before the kernel
/// builds a socket buffer, and only a natively attached port can be the
/// output of a redirect. A port whose program attaches in generic mode
/// only (a veth whose peer's MTU is too large for native XDP, a driver
/// without XDP) runs the plain redirect; oxvsd says so once per port in its
/// log, and `pmd-stats` lists such ports under "fast path".
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FastPathMode {
    /// AF_XDP ports whose program attaches in native mode run the XDP
    /// fast-path program; ports attached in generic mode run the plain
    /// redirect, so all their packets go through the poll threads.
    #[default]
    Auto,
    /// Every AF_XDP port runs the XDP fast-path program (`afxdp::fastpath`)
    /// instead of the plain redirect, whatever mode it attaches in, and
    /// flows the poll threads cache are offloaded to it
    /// (`daemon::fastpath`). A generic port's hits are redirected to
    /// native outputs; it is never an output itself.
    On,
    /// Every packet goes through the poll threads.
    Off,
}

impl FastPathMode {
    /// `auto`, `on` or `off`, as in the file.
    pub fn name(self) -> &'static str {
        match self {
            FastPathMode::Auto => "auto",
            FastPathMode::On => "on",
            FastPathMode::Off => "off",
        }
    }
}

/// How a port attaches to its interface.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// AF_XDP, falling back to AF_PACKET with a log line saying why.
    #[default]
    Auto,
    /// AF_XDP only.
    Afxdp,
    /// AF_PACKET only.
    AfPacket,
    /// A Geneve tunnel port: no interface of its own; it sends through the
    /// uplink that routes to the remote VTEP and receives what the uplinks
    /// decapsulate for `local_ip`.
    Geneve,
}

/// One `[[port]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Interface name.
    pub name: String,
    /// OpenFlow port number.
    pub no: u32,
    /// Attachment.
    #[serde(default)]
    pub kind: PortKind,
    /// Whether the node itself also uses this interface.
    #[serde(default)]
    pub uplink: bool,
    /// Tunnel ports: this node's VTEP address.
    pub local_ip: Option<std::net::IpAddr>,
    /// Tunnel ports: the remote VTEP, or `"flow"` (the default) for
    /// `set_field:...->tun_dst` in the rules.
    pub remote_ip: Option<String>,
    /// Tunnel ports: the VNI, as an integer (`key = 42`) or a string
    /// (`"42"`, `"0x2a"`), or `"flow"` (the default) for
    /// `set_field:...->tun_id`.
    pub key: Option<IntOrString>,
    /// Added at run time (`add-port`), not read from this file: its AF_XDP
    /// queues get UMEMs of their own and the rings of
    /// [`super::open::RuntimeSizing`].
    #[serde(skip)]
    pub runtime: bool,
    /// The MTU `add-port mtu=M` asked for, set on the interface when the
    /// port attaches.
    #[serde(skip)]
    pub mtu: Option<u32>,
}

/// A setting that is a TOML integer or a string (`key = 42`,
/// `key = "0x2a"`, `key = "flow"`); what the string may say is checked
/// where the setting is used, with the port's name in the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrString {
    /// An integer, as written (range checked by the user of the setting).
    Int(i64),
    /// A string.
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl PortConfig {
    /// The tunnel settings of a `geneve` port (checked by [`Config::check`]).
    pub fn tunnel(&self) -> Result<Option<flowtable::tunnel::Tunnel>, String> {
        if self.kind != PortKind::Geneve {
            if self.local_ip.is_some() || self.remote_ip.is_some() || self.key.is_some() {
                return Err(format!(
                    "port {}: local_ip, remote_ip and key are for kind = \"geneve\"",
                    self.name
                ));
            }
            return Ok(None);
        }
        let local = self
            .local_ip
            .ok_or_else(|| format!("port {}: a geneve port needs local_ip", self.name))?;
        let remote = match self.remote_ip.as_deref() {
            None | Some("flow") => None,
            Some(r) => {
                let ip: std::net::IpAddr = r.parse().map_err(|_| {
                    format!(
                        "port {}: remote_ip = {r:?} is not an address or \"flow\"",
                        self.name
                    )
                })?;
                if ip.is_ipv4() != local.is_ipv4() {
                    return Err(format!(
                        "port {}: remote_ip and local_ip are of different families",
                        self.name
                    ));
                }
                Some(ip)
            }
        };
        let bad_key = |written: String| {
            format!(
                "port {}: key = {written} is not a 24-bit VNI or \"flow\"",
                self.name
            )
        };
        let key = match &self.key {
            None => None,
            Some(IntOrString::Str(k)) if k == "flow" => None,
            Some(IntOrString::Str(k)) => {
                let v = match k.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16),
                    None => k.parse(),
                };
                match v {
                    Ok(v) if v < 1 << 24 => Some(v),
                    _ => return Err(bad_key(format!("{k:?}"))),
                }
            }
            // RFC 8926 §3.4: the VNI is a 24-bit field.
            Some(IntOrString::Int(v)) => match u32::try_from(*v) {
                Ok(v) if v < 1 << 24 => Some(v),
                _ => return Err(bad_key(v.to_string())),
            },
        };
        if self.uplink {
            return Err(format!(
                "port {}: a tunnel port cannot be an uplink",
                self.name
            ));
        }
        Ok(Some(flowtable::tunnel::Tunnel { local, remote, key }))
    }
}

/// Why a configuration was refused. The doc comment of each variant is its
/// message.
#[derive(Debug)]
pub enum ConfigError {
    /// cannot read {path}: {err}
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// {path}: {msg}
    Parse {
        /// The file.
        path: PathBuf,
        /// What TOML said, with line and column.
        msg: String,
    },
    /// {path}: {msg}
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, err } => write!(f, "cannot read {}: {err}", path.display()),
            ConfigError::Parse { path, msg } | ConfigError::Invalid { path, msg } => {
                write!(f, "{}: {msg}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks a configuration file. Relative paths inside it are
    /// made relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.into(),
            err,
        })?;
        let mut cfg = Config::parse(&text).map_err(|msg| ConfigError::Parse {
            path: path.into(),
            msg,
        })?;
        cfg.check().map_err(|msg| ConfigError::Invalid {
            path: path.into(),
            msg,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for f in [
            &mut cfg.switch.flows,
            &mut cfg.switch.socket,
            &mut cfg.switch.state,
            &mut cfg.switch.policy_log,
        ]
        .into_iter()
        .flatten()
        {
            if f.is_relative() {
                *f = dir.join(&*f);
            }
        }
        Ok(cfg)
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks what TOML cannot: unique names and numbers, usable numbers.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        let mut nos = std::collections::BTreeSet::new();
        for p in &self.ports {
            if p.no == 0 || p.no > crate::memdp::MAX_PORT_NO {
                return Err(format!(
                    "port {}: number {} is not in 1..={}",
                    p.name,
                    p.no,
                    crate::memdp::MAX_PORT_NO
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("port name {} appears twice", p.name));
            }
            if !nos.insert(p.no) {
                return Err(format!("port number {} appears twice", p.no));
            }
            p.tunnel()?;
        }
        let mut cores = std::collections::BTreeSet::new();
        for c in &self.switch.poll_cores {
            if !cores.insert(*c) {
                return Err(format!("poll_cores: core {c} appears twice"));
            }
        }
        if self
            .switch
            .policy_log_rate
            .is_some_and(|r| !(1..=100_000).contains(&r))
        {
            return Err("policy_log_rate: expected 1..=100000 lines per second".into());
        }
        if self.switch.runtime_ports.is_some_and(|n| n > 4096) {
            return Err("runtime_ports: expected at most 4096".into());
        }
        let fills = super::open::RUNTIME_FILL_RANGE;
        if self
            .switch
            .runtime_fill
            .is_some_and(|n| !fills.contains(&n))
        {
            return Err(format!(
                "runtime_fill: expected {}..={} frames",
                fills.start(),
                fills.end()
            ));
        }
        if self
            .switch
            .fast_path_entries
            .is_some_and(|n| !(1..=4_000_000).contains(&n))
        {
            return Err("fast_path_entries: expected 1..=4000000".into());
        }
        if self.switch.policy_log_window.is_some_and(|w| w > 3600) {
            return Err("policy_log_window: expected at most 3600 seconds".into());
        }
        if let Some(level) = &self.switch.log {
            if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                return Err(format!(
                    "log = {level:?}: expected error, warn, info, debug or trace"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_node() {
        let c = Config::parse(
            "[switch]\nflows = \"n.flows\"\npoll_cores = [1]\nsocket = \"s.sock\"\nmetrics = \"127.0.0.1:9477\"\n[[port]]\nname = \"v1p1\"\nno = 1\n[[port]]\nname = \"ul0\"\nno = 10\nkind = \"af_packet\"\nuplink = true\n",
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[1].kind, PortKind::AfPacket);
        assert!(c.ports[1].uplink);
        assert_eq!(c.switch.poll_cores, [1]);
        assert_eq!(c.switch.metrics.unwrap().port(), 9477);
    }

    #[test]
    fn runtime_ports_fill_ring_is_configured_and_bounded() {
        use super::super::open::{RuntimeSizing, DEFAULT_RUNTIME_FILL};
        let sizing = |text: &str| {
            let c = Config::parse(text).map_err(|e| e.to_string())?;
            c.check()?;
            Ok::<_, String>(RuntimeSizing::from_config(&c.switch))
        };
        // The default is not the 64 frames that lost TCP segments by the
        // hundred thousand (BENCHMARKS.md, "Runtime ports' fill ring").
        let d = sizing("").unwrap();
        assert_eq!(d.fill, DEFAULT_RUNTIME_FILL);
        assert!(d.fill >= 256, "{d:?}");
        let s = sizing("[switch]\nruntime_fill = 1000\n").unwrap();
        assert_eq!(s.fill, 1000);
        // The RX ring holds every frame the fill ring lends; the UMEM
        // holds the fill ring and as much again to transmit.
        assert_eq!((s.rings().size, s.rings().fill), (1024, 1000));
        assert_eq!(s.own_frames(), 1256);
        assert_eq!(
            sizing("[switch]\nruntime_fill = 64\n")
                .unwrap()
                .rings()
                .size,
            256
        );
        assert_eq!(d.umem_bytes(), (DEFAULT_RUNTIME_FILL as usize + 256) * 4096);
        for bad in ["32", "5000"] {
            let e = sizing(&format!("[switch]\nruntime_fill = {bad}\n")).unwrap_err();
            assert_eq!(e, "runtime_fill: expected 64..=4096 frames");
        }
    }

    #[test]
    fn tunnel_ports() {
        let c = Config::parse(
            "[[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\nlocal_ip = \"192.168.77.1\"\n",
        )
        .unwrap();
        c.check().unwrap();
        let t = c.ports[0].tunnel().unwrap().unwrap();
        assert_eq!((t.remote, t.key), (None, None));
        let bad = |extra: &str| {
            let c = Config::parse(&format!(
                "[[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\n{extra}"
            ))
            .unwrap();
            c.check().unwrap_err()
        };
        assert_eq!(bad(""), "port gnv0: a geneve port needs local_ip");
        assert!(bad("local_ip = \"192.168.77.1\"\nremote_ip = \"fd00::2\"\n").contains("families"));
        assert!(bad("local_ip = \"192.168.77.1\"\nkey = \"0x1000000\"\n").contains("24-bit"));
        let c = Config::parse("[[port]]\nname = \"v1\"\nno = 1\nkey = \"5\"\n").unwrap();
        assert!(c.check().unwrap_err().contains("for kind = \"geneve\""));
    }

    /// The tunnel key of a geneve port written as `key = {v}`.
    fn key(v: &str) -> Result<Option<u32>, String> {
        let c = Config::parse(&format!(
            "[[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\nlocal_ip = \"192.168.77.1\"\nkey = {v}\n"
        ))?;
        c.check()?;
        Ok(c.ports[0].tunnel()?.and_then(|t| t.key))
    }

    #[test]
    fn key_takes_an_integer_or_a_string() {
        assert_eq!(key("42"), Ok(Some(42)));
        assert_eq!(key("0x2a"), Ok(Some(42)), "a TOML hexadecimal integer");
        assert_eq!(key("0"), Ok(Some(0)));
        assert_eq!(key("16777215"), Ok(Some(0xff_ffff)));
        // The string forms stay, for files written for earlier versions.
        assert_eq!(key("\"42\""), Ok(Some(42)));
        assert_eq!(key("\"0x2a\""), Ok(Some(42)));
        assert_eq!(key("\"flow\""), Ok(None));
        assert_eq!(
            key("16777216").unwrap_err(),
            "port gnv0: key = 16777216 is not a 24-bit VNI or \"flow\""
        );
        assert_eq!(
            key("-1").unwrap_err(),
            "port gnv0: key = -1 is not a 24-bit VNI or \"flow\""
        );
        assert_eq!(
            key("\"forty-two\"").unwrap_err(),
            "port gnv0: key = \"forty-two\" is not a 24-bit VNI or \"flow\""
        );
        for v in ["4.2", "true", "[42]"] {
            let e = key(v).unwrap_err();
            assert!(e.contains("expected an integer or a string"), "{v}: {e}");
        }
    }

    #[test]
    fn numeric_settings_take_toml_integers() {
        let c = Config::parse(
            "[switch]\npoll_cores = [0, 1]\nct_max_conns = 1000\nct_max_frags = 640\npolicy_log_rate = 5\npolicy_log_window = 2\n\
             [[port]]\nname = \"v1\"\nno = 7\n[[port]]\nname = \"gnv0\"\nno = 0x64\nkind = \"geneve\"\n\
             local_ip = \"192.168.77.1\"\nremote_ip = \"192.168.77.2\"\nkey = 42\n",
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.switch.poll_cores, [0, 1]);
        assert_eq!(c.switch.ct_max_conns, Some(1000));
        assert_eq!(c.switch.ct_max_frags, Some(640));
        assert_eq!(
            (c.switch.policy_log_rate, c.switch.policy_log_window),
            (Some(5), Some(2))
        );
        assert_eq!((c.ports[0].no, c.ports[1].no), (7, 100));
        let t = c.ports[1].tunnel().unwrap().unwrap();
        assert_eq!(
            (t.remote, t.key),
            (Some("192.168.77.2".parse().unwrap()), Some(42))
        );
        // A number where an address is meant, or a negative port number,
        // is refused with its line.
        let e = Config::parse("[[port]]\nname = \"v1\"\nno = -1\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        let e = Config::parse(
            "[[port]]\nname = \"g\"\nno = 1\nkind = \"geneve\"\nlocal_ip = \"192.168.77.1\"\nremote_ip = 42\n",
        )
        .unwrap_err();
        assert!(
            e.contains("line 6") && e.contains("expected a string"),
            "{e}"
        );
    }

    #[test]
    fn policy_log_settings() {
        let c = Config::parse(
            "[switch]\npolicy_log = \"np.log\"\npolicy_log_rate = 5\npolicy_log_window = 2\n",
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.switch.policy_log.as_deref(), Some(Path::new("np.log")));
        assert_eq!(
            (c.switch.policy_log_rate, c.switch.policy_log_window),
            (Some(5), Some(2))
        );
        let c = Config::parse("[switch]\npolicy_log_rate = 0\n").unwrap();
        assert!(c.check().unwrap_err().contains("policy_log_rate"));
    }

    #[test]
    fn fast_path_is_auto_unless_asked() {
        let c = Config::parse("[switch]\n").unwrap();
        assert_eq!(c.switch.fast_path, FastPathMode::Auto);
        let c = Config::parse("").unwrap();
        assert_eq!(c.switch.fast_path, FastPathMode::Auto);
        let c = Config::parse("[switch]\nfast_path = \"on\"\n").unwrap();
        assert_eq!(c.switch.fast_path, FastPathMode::On);
        let c = Config::parse("[switch]\nfast_path = \"off\"\n").unwrap();
        assert_eq!(c.switch.fast_path, FastPathMode::Off);
        let c = Config::parse("[switch]\nfast_path = \"auto\"\n").unwrap();
        assert_eq!(c.switch.fast_path, FastPathMode::Auto);
        let e = Config::parse("[switch]\nfast_path = \"yes\"\n").unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let c = Config::parse("[switch]\nfast_path_entries = 0\n").unwrap();
        assert!(c.check().unwrap_err().contains("fast_path_entries"));
    }

    #[test]
    fn refuses_typos_and_duplicates() {
        let e = Config::parse("[[port]]\nname = \"a\"\nnumber = 1\n").unwrap_err();
        assert!(e.contains("unknown field `number`"), "{e}");
        let c = Config::parse("[[port]]\nname = \"a\"\nno = 1\n[[port]]\nname = \"b\"\nno = 1\n")
            .unwrap();
        assert_eq!(c.check().unwrap_err(), "port number 1 appears twice");
    }
}
