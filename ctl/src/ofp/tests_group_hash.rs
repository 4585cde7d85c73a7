//! `selection_method=hash,fields(...)`: parsed to exact values, printed the
//! way `dump-groups` shows it and read back, and refused with a place when
//! malformed.

use super::*;
use flowtable::group::HashField;
use flowtable::Field;

fn group(line: &str) -> flowtable::GroupSpec {
    parse_group(line, &()).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn err(line: &str, at: &str, message: &str) {
    let e = parse_group(line, &()).expect_err(line);
    let column = line
        .find(at)
        .unwrap_or_else(|| panic!("{at} not in {line}"))
        + 1;
    assert_eq!((e.column, e.message.as_str()), (column, message), "{line}");
}

#[test]
fn session_affinity_by_client_address() {
    let line = "group_id=3,type=select,selection_method=hash,fields(ip_src),\
                bucket=output:1,bucket=output:2";
    let g = group(line);
    assert_eq!(
        g.hash_fields,
        Some(vec![HashField {
            field: Field::NwSrc,
            mask: 0xffff_ffff,
            proto: None
        }])
    );
    let printed = format_group(&g, &());
    assert_eq!(
        printed,
        " group_id=3,type=select,selection_method=hash,fields(nw_src),\
         bucket=bucket_id:0,weight:100,actions=output:1,bucket=bucket_id:1,weight:100,actions=output:2"
    );
    assert_eq!(group(printed.trim()), g);
}

#[test]
fn masks_and_protocol_spellings_print_back() {
    let line = "group_id=1,type=select,selection_method=hash,\
                fields(nw_src=255.255.255.0,tcp_dst,udp_src=0xff00,ip_dst),bucket=output:1";
    let g = group(line);
    let f = g.hash_fields.clone().unwrap();
    assert_eq!(f[0].mask, 0xffff_ff00);
    assert_eq!(
        (f[1].field, f[1].mask, f[1].proto),
        (Field::TpDst, 0xffff, Some(6))
    );
    assert_eq!(
        (f[2].field, f[2].mask, f[2].proto),
        (Field::TpSrc, 0xff00, Some(17))
    );
    let printed = format_group(&g, &());
    assert!(
        printed.contains(
            ",selection_method=hash,fields(nw_src=255.255.255.0,tcp_dst,udp_src=65280,nw_dst),"
        ),
        "{printed}"
    );
    assert_eq!(group(printed.trim()), g);
    let one = group("group_id=1,type=select,fields=tp_dst,selection_method=hash,bucket=output:1");
    assert_eq!(one.hash_fields.unwrap()[0].field, Field::TpDst);
}

#[test]
fn malformed_selection_is_refused_with_a_place() {
    err(
        "group_id=1,type=select,fields(ip_src),bucket=output:1",
        "fields",
        "fields needs selection_method=hash",
    );
    err(
        "group_id=1,type=select,selection_method=hash,bucket=output:1",
        "selection_method",
        "selection_method=hash needs fields(...)",
    );
    err(
        "group_id=1,type=all,selection_method=hash,fields(ip_src),bucket=output:1",
        "selection_method",
        "selection_method and fields apply to select groups only",
    );
    err(
        "group_id=1,type=select,selection_method=dp_hash,bucket=output:1",
        "dp_hash",
        "selection_method=dp_hash is not supported",
    );
    err(
        "group_id=1,type=select,selection_method=hash,fields(ip_src,bogus),bucket=output:1",
        "bogus",
        "\"bogus\" is not a field that can be hashed",
    );
    err(
        "group_id=1,type=select,selection_method=hash,fields(icmp_type),bucket=output:1",
        "icmp_type",
        "icmp_type cannot be hashed by a select group",
    );
    err(
        "group_id=1,type=select,selection_method=hash,fields(ip_src=0.0.0.0),bucket=output:1",
        "0.0.0.0",
        "expected a non-zero mask for ip_src, found \"0.0.0.0\"",
    );
    err(
        "group_id=1,type=select,selection_method=hash,selection_method_param=7,fields(ip_src),bucket=output:1",
        "selection_method_param",
        "selection_method_param is not supported",
    );
}
