//! The client side of `capture`: the daemon answers with one line per
//! packet (`SECONDS.NANOS rx|tx HEX`); this turns them into a pcap file
//! (the classic format, microsecond timestamps, Ethernet link type, which
//! tshark, tcpdump and Wireshark read) or into one summary line each.

use std::fmt::Write as _;

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Seconds since the epoch.
    pub secs: u64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Received on the port (`true`) or sent to it.
    pub rx: bool,
    /// The frame.
    pub bytes: Vec<u8>,
}

/// Parses the daemon's answer.
pub fn parse(text: &str) -> Result<Vec<Packet>, String> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("capture answer line {}: {line:?}", i + 1);
            let mut f = line.split(' ');
            let (t, dir, hex) = (f.next(), f.next(), f.next());
            let (Some(t), Some(dir), Some(hex), None) = (t, dir, hex, f.next()) else {
                return Err(bad());
            };
            let (s, n) = t.split_once('.').ok_or_else(bad)?;
            let rx = match dir {
                "rx" => true,
                "tx" => false,
                _ => return Err(bad()),
            };
            if hex.len() % 2 != 0 {
                return Err(bad());
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|j| u8::from_str_radix(&hex[j..j + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad())?;
            Ok(Packet {
                secs: s.parse().map_err(|_| bad())?,
                nanos: n.parse().map_err(|_| bad())?,
                rx,
                bytes,
            })
        })
        .collect()
}

/// A pcap file of `packets`.
pub fn pcap(packets: &[Packet]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(24 + packets.iter().map(|p| 16 + p.bytes.len()).sum::<usize>());
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
    out.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
    out.extend_from_slice(&65535u32.to_le_bytes()); // snap length
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for p in packets {
        out.extend_from_slice(&(p.secs as u32).to_le_bytes());
        out.extend_from_slice(&(p.nanos / 1000).to_le_bytes());
        out.extend_from_slice(&(p.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&p.bytes);
    }
    out
}

/// One line per packet: time, direction, length, MACs, EtherType and, for
/// IPv4, addresses and protocol.
pub fn summary(packets: &[Packet]) -> String {
    let mut s = String::new();
    for p in packets {
        let b = &p.bytes;
        let _ = write!(
            s,
            "{}.{:06} {} {} bytes",
            p.secs,
            p.nanos / 1000,
            if p.rx { "rx" } else { "tx" },
            b.len()
        );
        if b.len() >= 14 {
            let mac = |m: &[u8]| {
                m.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            };
            let et = u16::from_be_bytes([b[12], b[13]]);
            let _ = write!(s, " {} > {} type {et:#06x}", mac(&b[6..12]), mac(&b[0..6]));
            if et == 0x0800 && b.len() >= 34 {
                let ip = |o: usize| std::net::Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
                let _ = write!(s, " {} > {} proto {}", ip(26), ip(30), b[23]);
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_to_pcap_and_back_to_text() {
        let text = "1700000000.000123456 rx 0200000001010200000001020800\n1700000000.5 tx 00\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].nanos, 123456);
        assert!(p[0].rx && !p[1].rx);
        let file = pcap(&p);
        assert_eq!(file.len(), 24 + 16 + 14 + 16 + 1);
        assert_eq!(&file[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&file[28..32], &123u32.to_le_bytes());
        assert!(summary(&p).contains("02:00:00:00:01:02 > 02:00:00:00:01:01 type 0x0800"));
        assert!(parse("1.0 up 00\n").is_err());
        assert!(parse("1.0 rx 0\n").is_err());
        assert!(parse("x rx 00\n").is_err());
    }
}
