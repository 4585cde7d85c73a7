//! The arguments of `flush-conntrack`, as `ovs-appctl dpctl/flush-conntrack`
//! takes them: `[zone=N] [mark=V[/M]] [labels=V[/M]] [ORIG-TUPLE
//! [REPLY-TUPLE]]`, where a tuple is a comma-separated list of `ct_nw_src`,
//! `ct_nw_dst`, `ct_ipv6_src`, `ct_ipv6_dst`, `ct_nw_proto`, `ct_tp_src`,
//! `ct_tp_dst`, `icmp_type`, `icmp_code` and `icmp_id`, any of them left out
//! to match anything. The first tuple is
//! the original direction, the second the reply direction as replies carry
//! it (so after DNAT its `ct_nw_src` is the endpoint).
//!
//! Both the command line and the daemon parse with this, so a mistake is
//! refused before anything is sent and nothing is flushed; an error names
//! the argument and the column.

use flowtable::conntrack::{CtFilter, TupleFilter};
use std::net::IpAddr;

/// Parses `flush-conntrack`'s arguments (without the command name).
pub fn parse(args: &[String]) -> Result<CtFilter, String> {
    let mut f = CtFilter::default();
    let mut tuples = 0;
    for (i, arg) in args.iter().enumerate() {
        let at = |col: usize, msg: String| {
            format!(
                "flush-conntrack: argument {} ({arg:?}), column {col}: {msg}",
                i + 1
            )
        };
        if let Some(v) = arg.strip_prefix("zone=") {
            let z = number(v).ok_or_else(|| at(6, format!("zone {v:?} is not 0-65535")))?;
            f.zone =
                Some(u16::try_from(z).map_err(|_| at(6, format!("zone {v:?} is not 0-65535")))?);
        } else if let Some(v) = arg.strip_prefix("mark=") {
            let (v, m) = masked(v, u32::MAX as u128).ok_or_else(|| {
                at(
                    6,
                    format!("mark {v:?} is not VALUE or VALUE/MASK (32 bits)"),
                )
            })?;
            f.mark = Some((v as u32, m as u32));
        } else if let Some(v) = arg.strip_prefix("labels=") {
            f.label = Some(masked(v, u128::MAX).ok_or_else(|| {
                at(
                    8,
                    format!("labels {v:?} is not VALUE or VALUE/MASK (128 bits)"),
                )
            })?);
        } else {
            let t = tuple(arg).map_err(|(col, msg)| at(col, msg))?;
            match tuples {
                0 => f.orig = t,
                1 => f.reply = t,
                _ => return Err(at(1, "a third tuple: only ORIG and REPLY are taken".into())),
            }
            tuples += 1;
        }
    }
    Ok(f)
}

/// A decimal or `0x` hexadecimal number.
fn number(s: &str) -> Option<u128> {
    match s.strip_prefix("0x") {
        Some(h) => u128::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `VALUE` or `VALUE/MASK`, both at most `max`; without a mask every bit
/// counts.
fn masked(s: &str, max: u128) -> Option<(u128, u128)> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (number(v)?, number(m)?),
        None => (number(s)?, max),
    };
    (v <= max && m <= max).then_some((v, m))
}

/// One tuple; an error carries its 1-based column in the argument.
fn tuple(arg: &str) -> Result<TupleFilter, (usize, String)> {
    let mut t = TupleFilter::default();
    let mut col = 1;
    for part in arg.split(',') {
        let Some((name, value)) = part.split_once('=') else {
            return Err((col, format!("{part:?} is not FIELD=VALUE")));
        };
        let vcol = col + name.len() + 1;
        let bad = |what: &str| (vcol, format!("{name}: {value:?} is not {what}"));
        match name {
            "ct_nw_src" | "ct_nw_dst" | "ct_ipv6_src" | "ct_ipv6_dst" => {
                let v6 = name.starts_with("ct_ipv6");
                let a: IpAddr = value
                    .parse()
                    .ok()
                    .filter(|a: &IpAddr| a.is_ipv6() == v6)
                    .ok_or_else(|| {
                        bad(if v6 {
                            "an IPv6 address"
                        } else {
                            "an IPv4 address"
                        })
                    })?;
                if name.ends_with("src") {
                    t.src = Some(a);
                } else {
                    t.dst = Some(a);
                }
            }
            "ct_nw_proto" => {
                let p = number(value).and_then(|n| u8::try_from(n).ok());
                t.proto = Some(p.ok_or_else(|| bad("a protocol number 0-255"))?);
            }
            "icmp_type" | "icmp_code" => {
                let v = number(value).and_then(|n| u8::try_from(n).ok());
                let v = Some(v.ok_or_else(|| bad("a number 0-255"))?);
                if name == "icmp_type" {
                    t.icmp_type = v;
                } else {
                    t.icmp_code = v;
                }
            }
            "ct_tp_src" | "ct_tp_dst" | "icmp_id" => {
                let p = number(value).and_then(|n| u16::try_from(n).ok());
                let p = p.ok_or_else(|| bad("a port 0-65535"))?;
                // An echo's identifier stands in for both ports.
                if name != "ct_tp_dst" {
                    t.sport = Some(p);
                }
                if name != "ct_tp_src" {
                    t.dport = Some(p);
                }
            }
            _ => {
                return Err((
                    col,
                    format!(
                        "unknown field {name:?}; a tuple takes ct_nw_src, ct_nw_dst, \
                         ct_ipv6_src, ct_ipv6_dst, ct_nw_proto, ct_tp_src, ct_tp_dst, \
                         icmp_type, icmp_code, icmp_id"
                    ),
                ))
            }
        }
        col += part.len() + 1;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn takes_what_dpctl_takes() {
        let f = parse(&args(
            "zone=5 mark=0x7/0xf ct_nw_dst=10.96.0.10,ct_nw_proto=17,ct_tp_dst=53 \
             ct_nw_src=10.244.1.5,ct_tp_src=8080",
        ))
        .unwrap();
        assert_eq!(f.zone, Some(5));
        assert_eq!(f.mark, Some((7, 0xf)));
        assert_eq!(f.orig.dst, Some("10.96.0.10".parse().unwrap()));
        assert_eq!(f.orig.proto, Some(17));
        assert_eq!(f.orig.dport, Some(53));
        assert_eq!(f.orig.sport, None);
        assert_eq!(f.reply.src, Some("10.244.1.5".parse().unwrap()));
        assert_eq!(f.reply.sport, Some(8080));
        assert_eq!(parse(&[]).unwrap(), CtFilter::default(), "no filter");
        let f = parse(&args("ct_ipv6_src=fd00::1,icmp_id=7")).unwrap();
        assert_eq!((f.orig.sport, f.orig.dport), (Some(7), Some(7)));
        let f = parse(&args(
            "mark=9 labels=0x10000000000000000/0x30000000000000000 \
             ct_nw_proto=1,icmp_type=8,icmp_code=0 icmp_type=0",
        ))
        .unwrap();
        assert_eq!(f.mark, Some((9, u32::MAX)));
        assert_eq!(f.label, Some((1 << 64, 3 << 64)));
        assert_eq!((f.orig.icmp_type, f.orig.icmp_code), (Some(8), Some(0)));
        assert_eq!((f.reply.icmp_type, f.reply.icmp_code), (Some(0), None));
    }

    #[test]
    fn errors_name_argument_and_column() {
        let e = parse(&args("zone=5 ct_nw_proto=17,ct_tp_dsx=53")).unwrap_err();
        assert!(e.contains("argument 2") && e.contains("column 16"), "{e}");
        assert!(e.contains("unknown field \"ct_tp_dsx\""), "{e}");
        let e = parse(&args("ct_nw_src=fd00::1")).unwrap_err();
        assert!(e.contains("column 11") && e.contains("IPv4"), "{e}");
        let e = parse(&args("zone=70000")).unwrap_err();
        assert!(e.contains("argument 1") && e.contains("0-65535"), "{e}");
        let e = parse(&args("ct_tp_src=1 ct_tp_src=2 ct_tp_src=3")).unwrap_err();
        assert!(e.contains("argument 3") && e.contains("third tuple"), "{e}");
        let e = parse(&args("mark=0x1/zz")).unwrap_err();
        assert!(e.contains("mark"), "{e}");
        let e = parse(&args("mark=0x100000000")).unwrap_err();
        assert!(e.contains("32 bits"), "{e}");
        let e = parse(&args("zone=1 labels=0x1/")).unwrap_err();
        assert!(e.contains("argument 2") && e.contains("column 8"), "{e}");
        let e = parse(&args("icmp_type=8,icmp_code=256")).unwrap_err();
        assert!(e.contains("column 23") && e.contains("0-255"), "{e}");
        let e = parse(&args("ct_nw_proto")).unwrap_err();
        assert!(e.contains("column 1") && e.contains("FIELD=VALUE"), "{e}");
    }
}
