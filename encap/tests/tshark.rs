//! Interoperability: frames built by `Template::push` are written to a pcap
//! file and dissected by Wireshark's tshark, an implementation written
//! independently of ours. Every frame must come out as Geneve with the VNI
//! and options we put in, with IP and UDP checksum verification turned on,
//! and with no malformed-packet or expert-info complaints.
//!
//! tshark is a test dependency: without it this test fails (it does not
//! skip), so a CI image that lacks it is noticed.

mod common;

use common::*;
use encap::{Options, Template};
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

/// An option: class, type, data.
type Opt = (u16, u8, Vec<u8>);

/// One frame to write, and what tshark must report for it.
struct Case {
    ipv6: bool,
    udp_checksum: bool,
    vni: u32,
    options: Vec<Opt>,
}

/// Writes a classic pcap file (microsecond timestamps, Ethernet link type).
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic
    out.extend_from_slice(&2u16.to_le_bytes()); // version major
    out.extend_from_slice(&4u16.to_le_bytes()); // version minor
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).expect("write pcap");
}

fn tshark(args: &[&str]) -> String {
    let out = match Command::new("tshark").args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "tshark is not installed; this test needs it: \
             apt-get install tshark (DEBIAN_FRONTEND=noninteractive)"
        ),
        Err(e) => panic!("cannot run tshark: {e}"),
    };
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark output is UTF-8")
}

#[test]
fn tshark_dissects_our_frames_as_geneve() {
    let cases = [
        Case {
            ipv6: false,
            udp_checksum: false,
            vni: 100,
            options: vec![],
        },
        Case {
            ipv6: false,
            udp_checksum: false,
            vni: 200,
            options: vec![(0x0102, 0x80, vec![0, 1, 0, 2])],
        },
        Case {
            ipv6: true,
            udp_checksum: false,
            vni: 300,
            options: vec![],
        },
        Case {
            ipv6: true,
            udp_checksum: false,
            vni: 0xabcdef,
            options: vec![(0x0102, 0x80, vec![0, 0, 0, 9]), (0xffff, 0x01, vec![7; 8])],
        },
        Case {
            ipv6: false,
            udp_checksum: true,
            vni: 500,
            options: vec![(0x0103, 0x05, vec![1, 2, 3, 4])],
        },
    ];
    let mut frames = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let t = Template::new(&config(c.ipv6, c.udp_checksum)).unwrap();
        let mut o = Options::new();
        for (class, typ, data) in &c.options {
            o.push(*class, *typ, data).unwrap();
        }
        frames.push(encapsulate(&t, &inner_icmp4(32 + i), c.vni, &o));
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("encap-geneve.pcap");
    write_pcap(&path, &frames);
    let file = path.to_str().unwrap();
    let checks = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ];

    let mut args = vec![
        "-r",
        file,
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-E",
        "occurrence=a",
    ];
    args.extend_from_slice(&checks);
    for f in [
        "frame.protocols",
        "geneve.vni",
        "geneve.option.class",
        "geneve.option.type",
        "geneve.option.length",
    ] {
        args.extend_from_slice(&["-e", f]);
    }
    let fields = tshark(&args);
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), cases.len(), "tshark output:\n{fields}");
    for (line, c) in lines.iter().zip(&cases) {
        let cols: Vec<&str> = line.split(';').collect();
        assert_eq!(cols.len(), 5, "{line}");
        assert!(
            cols[0].contains(":udp:geneve:eth:ethertype:ip:icmp"),
            "not dissected as geneve carrying ethernet: {line}"
        );
        assert_eq!(cols[1], format!("0x{:06x}", c.vni), "{line}");
        let join =
            |f: &dyn Fn(&Opt) -> String| c.options.iter().map(f).collect::<Vec<_>>().join(",");
        assert_eq!(cols[2], join(&|o| format!("0x{:04x}", o.0)), "{line}");
        assert_eq!(cols[3], join(&|o| format!("0x{:02x}", o.1)), "{line}");
        // The field names the header's option area length first, then
        // each option's length, all in bytes.
        let total: usize = c.options.iter().map(|o| 4 + o.2.len()).sum();
        let mut lens = vec![total.to_string()];
        lens.extend(c.options.iter().map(|o| (4 + o.2.len()).to_string()));
        assert_eq!(cols[4], lens.join(","), "{line}");
    }

    let mut args = vec!["-r", file, "-V"];
    args.extend_from_slice(&checks);
    let verbose = tshark(&args);
    assert_eq!(
        verbose
            .matches("Generic Network Virtualization Encapsulation")
            .count(),
        cases.len()
    );
    for bad in ["Malformed", "[Expert Info", "Bad checksum", "[incorrect"] {
        assert!(!verbose.contains(bad), "tshark reports {bad:?}:\n{verbose}");
    }
    // Only the two IPv4 frames without a UDP checksum send zero; the
    // other outer UDP checksums were present and verified (no "[incorrect").
    assert_eq!(
        verbose.matches("[zero-value ignored]").count(),
        2,
        "{verbose}"
    );
}
