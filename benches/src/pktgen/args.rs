//! The command line, parsed by hand into typed options (one mode word, then
//! `--flag value` or `--flag=value` pairs). The flag names and defaults are
//! an interface: the benchmark scripts call them.

use super::frame::{MAX_FLOWS, MAX_SIZE, MIN_SIZE};
use datapath::port::xsk::AttachPref;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// The `--help` text.
pub const HELP: &str = "\
oxvs-pktgen: an AF_XDP packet generator, receiver and reflector (one socket,
one thread), run inside a pod's network namespace.

USAGE:
  oxvs-pktgen tx --netns NS --dev IF --dst-mac MAC --src-ip IP --dst-ip IP
                 [--src-mac MAC] [--size 64] [--flows 1] [--rate PPS]
                 [--duration 5] [--batch 64] [--run-id N] [COMMON]
  oxvs-pktgen rx --netns NS --dev IF [--duration 5] [COMMON]
  oxvs-pktgen reflect --netns NS --dev IF [--duration 5] [COMMON]

tx sends UDP/IPv4 frames of exactly --size bytes (FCS excluded, 60..3840)
over --flows flows (UDP source ports 10000, 10001, ...), each stamped with a
run id, its flow and a per-flow sequence number; --rate packets per second
(suffixes k and M; 0: as fast as possible). It also counts frames that come
back (from a reflector). --src-mac defaults to the interface's.
rx counts what arrives and checks the stamps: lost, reordered and duplicate
frames per flow; other frames are counted as other.
reflect sends every frame back out of the interface with its MAC addresses
swapped.

COMMON:
  --netns NS        network namespace (/run/netns/NS) to run in
  --dev IF          interface (required)
  --duration SECS   how long to run (default 5; fractions allowed)
  --json FILE       also write the JSON summary to FILE
  --core N          pin the thread to core N
  --queue N         queue to bind (default 0; generic XDP sees all on 0)
  --xdp-mode MODE   auto (native, else generic; default), native, generic
  --quiet           no live rate lines
  -h, --help        this text

A live rate line goes to stderr once a second, after a line saying
'ready on IF' once the port is open; the JSON summary goes to stdout.
The port's XDP program takes every frame of the queue for the run: the
interface's kernel networking (ARP, pings) stops meanwhile.
";

/// Options every mode takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Common {
    /// Network namespace to enter.
    pub netns: Option<String>,
    /// Interface.
    pub dev: String,
    /// Run time.
    pub duration: Duration,
    /// Where to write the JSON summary as well.
    pub json: Option<PathBuf>,
    /// Core to pin to.
    pub core: Option<usize>,
    /// Queue to bind.
    pub queue: u32,
    /// Where the XDP program may run.
    pub xdp: AttachPref,
    /// No live lines.
    pub quiet: bool,
}

/// `tx` options.
#[derive(Clone, Debug, PartialEq)]
pub struct TxOpts {
    /// Common options.
    pub common: Common,
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// Ethernet source; `None`: the interface's.
    pub src_mac: Option<[u8; 6]>,
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// Frame size without FCS.
    pub size: usize,
    /// Number of flows.
    pub flows: usize,
    /// Packets per second; 0: unlimited.
    pub rate: u64,
    /// Packets queued per flush.
    pub batch: u32,
    /// Run id; `None`: derived from the clock and the PID.
    pub run_id: Option<u32>,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Send.
    Tx(TxOpts),
    /// Receive and check.
    Rx(Common),
    /// Send back what arrives.
    Reflect(Common),
    /// Print [`HELP`].
    Help,
}

/// Why the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// no mode given (tx, rx or reflect)
    NoMode,
    /// unknown mode {0} (tx, rx or reflect)
    UnknownMode(String),
    /// unknown option {flag} for {mode}
    UnknownFlag {
        /// The option.
        flag: String,
        /// The mode.
        mode: &'static str,
    },
    /// {0} needs a value
    MissingValue(String),
    /// {flag} {value}: {why}
    BadValue {
        /// The option.
        flag: String,
        /// What was given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// {flag} is required for {mode}
    Required {
        /// The option.
        flag: &'static str,
        /// The mode.
        mode: &'static str,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NoMode => write!(f, "no mode given (tx, rx or reflect)"),
            ArgError::UnknownMode(m) => write!(f, "unknown mode {m} (tx, rx or reflect)"),
            ArgError::UnknownFlag { flag, mode } => write!(f, "unknown option {flag} for {mode}"),
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::BadValue { flag, value, why } => write!(f, "{flag} {value}: {why}"),
            ArgError::Required { flag, mode } => write!(f, "{flag} is required for {mode}"),
        }
    }
}

impl std::error::Error for ArgError {}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Mode, ArgError> {
    let mut it = args.into_iter();
    let mode: &'static str = match it.next().as_deref() {
        None => return Err(ArgError::NoMode),
        Some("-h" | "--help" | "help") => return Ok(Mode::Help),
        Some("tx") => "tx",
        Some("rx") => "rx",
        Some("reflect") => "reflect",
        Some(other) => return Err(ArgError::UnknownMode(other.to_string())),
    };
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Ok(Mode::Help);
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a, None),
        };
        if flag == "--quiet" {
            pairs.push((flag, None));
            continue;
        }
        if !flag.starts_with("--") {
            return Err(ArgError::UnknownFlag { flag, mode });
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| ArgError::MissingValue(flag.clone()))?,
        };
        pairs.push((flag, Some(value)));
    }
    Opts { mode, pairs }.build()
}

/// The flags of one command line, consumed as they are interpreted.
struct Opts {
    mode: &'static str,
    pairs: Vec<(String, Option<String>)>,
}

impl Opts {
    /// Takes the last value given for `flag`.
    fn take(&mut self, flag: &str) -> Option<String> {
        let mut v = None;
        self.pairs.retain(|(f, val)| {
            if f == flag {
                v = val.clone();
                false
            } else {
                true
            }
        });
        v
    }

    fn has(&mut self, flag: &str) -> bool {
        let before = self.pairs.len();
        self.pairs.retain(|(f, _)| f != flag);
        self.pairs.len() != before
    }

    fn required(&mut self, flag: &'static str) -> Result<String, ArgError> {
        self.take(flag).ok_or(ArgError::Required {
            flag,
            mode: self.mode,
        })
    }

    /// Parses `flag`'s value with `f`, or gives `default`.
    fn value<T>(
        &mut self,
        flag: &str,
        default: T,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ArgError> {
        match self.take(flag) {
            None => Ok(default),
            Some(v) => f(&v).map_err(|why| ArgError::BadValue {
                flag: flag.to_string(),
                value: v,
                why,
            }),
        }
    }

    fn common(&mut self) -> Result<Common, ArgError> {
        let dev = self.required("--dev")?;
        Ok(Common {
            netns: self.take("--netns"),
            dev,
            duration: self.value("--duration", Duration::from_secs(5), parse_duration)?,
            json: self.take("--json").map(PathBuf::from),
            core: self.value("--core", None, |s| {
                number(s, 0, 4095).map(|n| Some(n as usize))
            })?,
            queue: self.value("--queue", 0, |s| number(s, 0, 255).map(|n| n as u32))?,
            xdp: self.value("--xdp-mode", AttachPref::Auto, |s| match s {
                "auto" => Ok(AttachPref::Auto),
                "native" => Ok(AttachPref::Native),
                "generic" => Ok(AttachPref::Generic),
                _ => Err("expected auto, native or generic".to_string()),
            })?,
            quiet: self.has("--quiet"),
        })
    }

    fn build(mut self) -> Result<Mode, ArgError> {
        let mode = match self.mode {
            "tx" => {
                let dst_mac = self.required("--dst-mac")?;
                let src_ip = self.required("--src-ip")?;
                let dst_ip = self.required("--dst-ip")?;
                let bad = |flag: &str, value: &str, why: String| ArgError::BadValue {
                    flag: flag.to_string(),
                    value: value.to_string(),
                    why,
                };
                Mode::Tx(TxOpts {
                    dst_mac: parse_mac(&dst_mac).map_err(|w| bad("--dst-mac", &dst_mac, w))?,
                    src_ip: parse_ip(&src_ip).map_err(|w| bad("--src-ip", &src_ip, w))?,
                    dst_ip: parse_ip(&dst_ip).map_err(|w| bad("--dst-ip", &dst_ip, w))?,
                    src_mac: self.value("--src-mac", None, |s| parse_mac(s).map(Some))?,
                    size: self.value("--size", 64, |s| {
                        number(s, MIN_SIZE as u64, MAX_SIZE as u64).map(|n| n as usize)
                    })?,
                    flows: self.value("--flows", 1, |s| {
                        number(s, 1, MAX_FLOWS as u64).map(|n| n as usize)
                    })?,
                    rate: self.value("--rate", 0, parse_rate)?,
                    batch: self.value("--batch", 64, |s| number(s, 32, 1024).map(|n| n as u32))?,
                    run_id: self.value("--run-id", None, |s| {
                        number(s, 1, u64::from(u32::MAX)).map(|n| Some(n as u32))
                    })?,
                    common: self.common()?,
                })
            }
            "rx" => Mode::Rx(self.common()?),
            _ => Mode::Reflect(self.common()?),
        };
        if let Some((flag, _)) = self.pairs.into_iter().next() {
            return Err(ArgError::UnknownFlag {
                flag,
                mode: self.mode,
            });
        }
        Ok(mode)
    }
}

/// An integer in `lo..=hi`, decimal or `0x` hexadecimal.
fn number(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let n = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| "not a number".to_string())?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("must be from {lo} to {hi}"));
    }
    Ok(n)
}

/// Seconds, fractions allowed, more than 0 and at most a day.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err("must be more than 0 and at most 86400 seconds".to_string());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Packets per second: `20000`, `20k`, `1.5M`; 0 means unlimited.
fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1e3),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| "not a rate (e.g. 20000, 20k, 1.5M)".to_string())?;
    let pps = v * mult;
    if !(0.0..=1e9).contains(&pps) {
        return Err("must be from 0 to 1000M packets per second".to_string());
    }
    Ok(pps.round() as u64)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts
            .next()
            .ok_or("expected six bytes like 02:00:00:01:00:02")?;
        if p.is_empty() || p.len() > 2 {
            return Err("expected six bytes like 02:00:00:01:00:02".to_string());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| "expected hexadecimal bytes".to_string())?;
    }
    if parts.next().is_some() {
        return Err("expected six bytes like 02:00:00:01:00:02".to_string());
    }
    Ok(mac)
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| "not an IPv4 address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn a_full_tx_line_parses() {
        let m = parse(args(
            "tx --netns LAB-n1-p1 --dev eth0 --dst-mac 0a:00:00:00:01:fe --src-ip 10.244.1.2 \
             --dst-ip 10.244.1.3 --size 128 --flows 4 --rate 20k --duration 2.5 --json /tmp/x.json \
             --core 1 --xdp-mode=generic --quiet",
        ))
        .expect("parses");
        let Mode::Tx(t) = m else { panic!("{m:?}") };
        assert_eq!(t.dst_mac, [0x0a, 0, 0, 0, 1, 0xfe]);
        assert_eq!(t.src_mac, None);
        assert_eq!((t.size, t.flows, t.rate, t.batch), (128, 4, 20_000, 64));
        assert_eq!(t.common.netns.as_deref(), Some("LAB-n1-p1"));
        assert_eq!(t.common.duration, Duration::from_millis(2500));
        assert_eq!(t.common.core, Some(1));
        assert_eq!(t.common.xdp, AttachPref::Generic);
        assert!(t.common.quiet);
    }

    #[test]
    fn defaults() {
        let Ok(Mode::Rx(c)) = parse(args("rx --dev eth0")) else {
            panic!()
        };
        assert_eq!(c.duration, Duration::from_secs(5));
        assert_eq!((c.netns, c.queue, c.core, c.json), (None, 0, None, None));
        let Ok(Mode::Tx(t)) = parse(args(
            "tx --dev e --dst-mac 2:0:0:0:0:1 --src-ip 10.244.0.1 --dst-ip 10.244.0.2",
        )) else {
            panic!()
        };
        assert_eq!((t.size, t.flows, t.rate), (64, 1, 0));
        assert_eq!(parse(args("reflect --help")), Ok(Mode::Help));
    }

    #[test]
    fn mistakes_are_named() {
        let e = |s: &str| parse(args(s)).expect_err(s).to_string();
        assert_eq!(e(""), "no mode given (tx, rx or reflect)");
        assert_eq!(e("rx"), "--dev is required for rx");
        assert_eq!(e("rx --dev eth0 --rate 5"), "unknown option --rate for rx");
        assert_eq!(e("rx --dev"), "--dev needs a value");
        assert_eq!(
            e("rx --dev eth0 --duration 0"),
            "--duration 0: must be more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            e("tx --dev e --dst-mac 2:0:0:0:0 --src-ip 10.244.0.1 --dst-ip 10.244.0.2"),
            "--dst-mac 2:0:0:0:0: expected six bytes like 02:00:00:01:00:02"
        );
        assert_eq!(
            e("tx --dev e --dst-mac 2:0:0:0:0:1 --src-ip 10.244.0.1 --dst-ip 10.244.0.2 --size 59"),
            "--size 59: must be from 60 to 3840"
        );
        assert_eq!(
            e("bounce --dev e"),
            "unknown mode bounce (tx, rx or reflect)"
        );
    }

    #[test]
    fn rates_take_suffixes() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("20k"), Ok(20_000));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1").is_err());
    }
}
