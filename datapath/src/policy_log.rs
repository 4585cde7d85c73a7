//! Per-rule policy logging (`log(name=...)`): one line per connection that a
//! named rule allowed, dropped or rejected, as Kubernetes network policy
//! logging gives it (Antrea's `np.log`).
//!
//! The poll thread only records: [`PolicyLog::record`] reads the 5-tuple
//! from the packet's bytes through the offsets `extract` stored and copies
//! it into a buffer allocated once, so the packet path does no I/O, takes
//! no lock and allocates nothing. Two things keep the lines few:
//!
//! * dedupe: a small direct-mapped table of recently logged tuples; a packet
//!   whose tuple (and rule and verdict) was logged less than a window ago is
//!   only counted. A connection's retransmissions and a ping's echo requests
//!   therefore give one line per window, and a collision merely logs twice.
//! * a token bucket of lines per second, so a scan or a flood cannot turn
//!   into a flood of log lines; what it holds back is counted too.
//!
//! The poll loop hands the records to the control thread, which formats the
//! lines ([`format_line`]) and writes them; all formatting happens there.

use flowtable::extract::Layout;
use flowtable::Verdict;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Slots of the recent-tuple table (a power of two).
const RECENT: usize = 256;
/// Records one thread may hold between two turns of its loop.
pub const BUFFER: usize = 256;
/// Default lines per second per poll thread.
pub const DEFAULT_RATE: u32 = 100;
/// Default dedupe window.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

/// One logged packet, as the control thread receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Milliseconds since the daemon's epoch (the poll threads' clock).
    pub time_ms: u64,
    /// The interned rule name ([`flowtable::bridge::LogNames`]).
    pub name: u16,
    /// What the rules did.
    pub verdict: Verdict,
    /// The IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (the echo identifier for ICMP echo; 0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// Length of the IP packet.
    pub len: u16,
}

/// What [`PolicyLog::record`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// A record was queued.
    Recorded,
    /// The same tuple was logged within the window.
    Deduped,
    /// The rate limit (or a full buffer) held it back.
    Limited,
    /// Not an IP packet: nothing to log.
    NotIp,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Key {
    name: u16,
    verdict: u8,
    proto: u8,
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: Key,
    until_ms: u64,
}

/// A poll thread's policy log state.
pub struct PolicyLog {
    recent: Box<[Slot; RECENT]>,
    window_ms: u64,
    /// Tokens in thousandths of a line.
    tokens: u64,
    cap: u64,
    rate: u64,
    last_ms: u64,
    buf: Vec<LogRecord>,
}

impl PolicyLog {
    /// `rate` lines per second (bursts up to one second's worth), one line
    /// per tuple per `window_ms`.
    pub fn new(rate: u32, window_ms: u64) -> PolicyLog {
        let cap = u64::from(rate) * 1000;
        PolicyLog {
            recent: Box::new([Slot::default(); RECENT]),
            window_ms,
            tokens: cap,
            cap,
            rate: u64::from(rate),
            last_ms: 0,
            buf: Vec::with_capacity(BUFFER),
        }
    }

    /// Records `frame` (headers at `lay`) for rule `name` with `verdict`.
    pub fn record(
        &mut self,
        now_ms: u64,
        name: u16,
        verdict: Verdict,
        frame: &[u8],
        lay: &Layout,
    ) -> Logged {
        let Some(rec) = tuple(frame, lay, now_ms, name, verdict) else {
            return Logged::NotIp;
        };
        let key = Key {
            name,
            verdict: verdict as u8,
            proto: rec.proto,
            sport: rec.sport,
            dport: rec.dport,
            src: v6(rec.src),
            dst: v6(rec.dst),
        };
        let slot = &mut self.recent[hash(&key) & (RECENT - 1)];
        if slot.key == key && now_ms < slot.until_ms {
            return Logged::Deduped;
        }
        self.tokens = (self.tokens + now_ms.saturating_sub(self.last_ms) * self.rate).min(self.cap);
        self.last_ms = now_ms;
        if self.tokens < 1000 || self.buf.len() >= BUFFER {
            // Not remembered as logged, so a later packet of the tuple may
            // still get its line once tokens are back.
            return Logged::Limited;
        }
        self.tokens -= 1000;
        *slot = Slot {
            key,
            until_ms: now_ms + self.window_ms,
        };
        self.buf.push(rec);
        Logged::Recorded
    }

    /// Moves the queued records to `out` (the caller sends them on).
    pub fn take(&mut self, out: &mut Vec<LogRecord>) {
        out.extend_from_slice(&self.buf);
        self.buf.clear();
    }

    /// Whether records are waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// FNV-1a over the key's fields; only needs to spread tuples over slots.
fn hash(k: &Key) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&k.name.to_be_bytes());
    eat(&[k.verdict, k.proto]);
    eat(&k.sport.to_be_bytes());
    eat(&k.dport.to_be_bytes());
    eat(&k.src);
    eat(&k.dst);
    (h ^ (h >> 32)) as usize
}

/// Reads the 5-tuple of an IP packet whose headers `extract` located.
fn tuple(f: &[u8], lay: &Layout, now_ms: u64, name: u16, verdict: Verdict) -> Option<LogRecord> {
    let l3 = lay.l3 as usize;
    let be16 = |at: usize| f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (src, dst, len) = match f.get(l3).map(|b| b >> 4) {
        Some(4) => {
            let h = f.get(l3..l3 + 20)?;
            let a = |i: usize| Ipv4Addr::new(h[i], h[i + 1], h[i + 2], h[i + 3]);
            (IpAddr::V4(a(12)), IpAddr::V4(a(16)), be16(l3 + 2)?)
        }
        Some(6) => {
            let h = f.get(l3..l3 + 40)?;
            let a = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&h[i..i + 16]);
                Ipv6Addr::from(o)
            };
            let len = be16(l3 + 4)?.saturating_add(40);
            (IpAddr::V6(a(8)), IpAddr::V6(a(24)), len)
        }
        _ => return None,
    };
    let l4 = lay.l4 as usize;
    let (sport, dport) = match lay.proto {
        _ if l4 == 0 => (0, 0),
        6 | 17 | 132 => (be16(l4).unwrap_or(0), be16(l4 + 2).unwrap_or(0)),
        // Echo request and reply (ICMP 8/0, ICMPv6 128/129): the
        // identifier tells one ping from another.
        1 | 58 if matches!(f.get(l4), Some(0 | 8 | 128 | 129)) => (be16(l4 + 4).unwrap_or(0), 0),
        _ => (0, 0),
    };
    Some(LogRecord {
        time_ms: now_ms,
        name,
        verdict,
        proto: lay.proto,
        src,
        dst,
        sport,
        dport,
        len,
    })
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        p => p.to_string(),
    }
}

fn endpoint(a: IpAddr, port: u16, ports: bool) -> String {
    match (a, ports) {
        (IpAddr::V4(a), true) => format!("{a}:{port}"),
        (IpAddr::V6(a), true) => format!("[{a}]:{port}"),
        (a, false) => a.to_string(),
    }
}

/// One log line: `TIME name=N verdict=V proto=P src=IP:PORT dst=IP:PORT
/// len=L`, the time in UTC RFC 3339 from `unix_ms`. Ports are left out for
/// protocols without them; ICMP echo shows its identifier.
pub fn format_line(r: &LogRecord, name: &str, unix_ms: u64) -> String {
    let ports = matches!(r.proto, 6 | 17 | 132);
    let mut s = format!(
        "{} name={name} verdict={} proto={} src={} dst={} len={}",
        rfc3339(unix_ms),
        r.verdict.name(),
        proto_name(r.proto),
        endpoint(r.src, r.sport, ports),
        endpoint(r.dst, r.dport, ports),
        r.len
    );
    if matches!(r.proto, 1 | 58) && r.sport != 0 {
        s.push_str(&format!(" icmp_id={}", r.sport));
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since 1970 (the civil-from-
/// days algorithm of Howard Hinnant's date library).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
#[path = "policy_log_tests.rs"]
mod tests;
