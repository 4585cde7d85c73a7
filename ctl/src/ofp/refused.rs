//! The `ovs-fields(7)` fields and `ovs-actions(7)` actions that real OVS
//! pipelines (Antrea's, OVN's) use and oxvs does not have, each with the
//! reason, so that the parser can refuse them by name.
//!
//! A pipeline written for OVS is usually written by a program, and the person
//! loading it into oxvs needs to know at once whether a refused line is a
//! typo or a feature oxvs lacks; "unknown field" says the first, these
//! messages say the second and why. docs/flow-syntax.md carries the same
//! table for people; `refusals_match_the_documentation` in the tests keeps
//! the two from drifting apart.

/// A field oxvs refuses: its names (the `ovs-fields(7)` name first, then
/// NXM/OXM aliases) and why.
pub(crate) struct RefusedField {
    /// Every spelling, canonical first.
    pub names: &'static [&'static str],
    /// Why oxvs does not have it.
    pub why: &'static str,
}

const fn field(names: &'static [&'static str], why: &'static str) -> RefusedField {
    RefusedField { names, why }
}

const XREG: &str = "oxvs has the 32-bit registers reg0..reg15 only; write the 64-bit view xregN as reg(2N) (high half) and reg(2N+1)";
const XXREG: &str = "oxvs has the 32-bit registers reg0..reg15 only; write the 128-bit view xxregN as reg(4N) (most significant) to reg(4N+3)";
const CT_TUPLE: &str =
    "the original-direction tuple of the connection is not carried into the recirculated flow key";
const TUN_EXTRA: &str = "the flow key holds only the tunnel's id, addresses and tun_metadata0..1";
const MPLS: &str = "oxvs does not parse MPLS";
const NSH: &str = "oxvs does not parse NSH";

/// The refused fields.
pub(crate) static FIELDS: &[RefusedField] = &[
    field(
        &["pkt_mark", "NXM_NX_PKT_MARK"],
        "AF_XDP frames carry no socket-buffer mark, so there is nothing to match or set",
    ),
    field(
        &["skb_priority"],
        "AF_XDP frames carry no socket-buffer priority",
    ),
    field(
        &["dp_hash", "NXM_NX_DP_HASH"],
        "select groups hash in translation (selection_method=hash); there is no datapath hash to match",
    ),
    field(&["xreg0", "OXM_OF_PKT_REG0"], XREG),
    field(&["xreg1", "OXM_OF_PKT_REG1"], XREG),
    field(&["xreg2", "OXM_OF_PKT_REG2"], XREG),
    field(&["xreg3", "OXM_OF_PKT_REG3"], XREG),
    field(&["xreg4", "OXM_OF_PKT_REG4"], XREG),
    field(&["xreg5", "OXM_OF_PKT_REG5"], XREG),
    field(&["xreg6", "OXM_OF_PKT_REG6"], XREG),
    field(&["xreg7", "OXM_OF_PKT_REG7"], XREG),
    field(&["xxreg0", "NXM_NX_XXREG0"], XXREG),
    field(&["xxreg1", "NXM_NX_XXREG1"], XXREG),
    field(&["xxreg2", "NXM_NX_XXREG2"], XXREG),
    field(&["xxreg3", "NXM_NX_XXREG3"], XXREG),
    field(&["ct_nw_src", "NXM_NX_CT_NW_SRC"], CT_TUPLE),
    field(&["ct_nw_dst", "NXM_NX_CT_NW_DST"], CT_TUPLE),
    field(&["ct_ipv6_src", "NXM_NX_CT_IPV6_SRC"], CT_TUPLE),
    field(&["ct_ipv6_dst", "NXM_NX_CT_IPV6_DST"], CT_TUPLE),
    field(&["ct_nw_proto", "NXM_NX_CT_NW_PROTO"], CT_TUPLE),
    field(&["ct_tp_src", "NXM_NX_CT_TP_SRC"], CT_TUPLE),
    field(&["ct_tp_dst", "NXM_NX_CT_TP_DST"], CT_TUPLE),
    field(
        &["nd_target", "NXM_NX_ND_TARGET", "OXM_OF_IPV6_ND_TARGET"],
        "the flow key has no room for the neighbour discovery target address",
    ),
    field(
        &["nd_reserved", "nd_options_type"],
        "the flow key has no room for these neighbour discovery fields",
    ),
    field(&["tun_flags", "NXM_NX_TUN_FLAGS"], TUN_EXTRA),
    field(&["tun_tos", "NXM_NX_TUN_IPV4_TOS"], TUN_EXTRA),
    field(&["tun_ttl", "NXM_NX_TUN_IPV4_TTL"], TUN_EXTRA),
    field(&["tun_gbp_id", "NXM_NX_TUN_GBP_ID"], TUN_EXTRA),
    field(&["tun_gbp_flags", "NXM_NX_TUN_GBP_FLAGS"], TUN_EXTRA),
    field(
        &["actset_output", "ONFOXM_ET_ACTSET_OUTPUT"],
        "oxvs has no action set (write_actions)",
    ),
    field(
        &["packet_type"],
        "oxvs switches Ethernet frames only",
    ),
    field(&["mpls_label", "OXM_OF_MPLS_LABEL"], MPLS),
    field(&["mpls_tc", "OXM_OF_MPLS_TC"], MPLS),
    field(&["mpls_bos", "OXM_OF_MPLS_BOS"], MPLS),
    field(&["mpls_ttl", "NXM_NX_MPLS_TTL"], MPLS),
    field(&["nsh_spi"], NSH),
    field(&["nsh_si"], NSH),
    field(&["nsh_mdtype"], NSH),
    field(&["nsh_np"], NSH),
];

/// Refused `tun_metadataN` (N of 2 to 63): oxvs maps two Geneve options.
const TUN_METADATA: &str =
    "only tun_metadata0 and tun_metadata1 exist (two Geneve options, mapped with tlv_map)";

/// An action oxvs refuses: its name and why.
pub(crate) static ACTIONS: &[(&str, &str)] = &[
    (
        "controller",
        "oxvs has no OpenFlow controller channel to send packets to",
    ),
    (
        "meter",
        "oxvs has no meters; rate-limit with the log action's built-in limit or outside the switch",
    ),
    (
        "note",
        "oxvs keeps no opaque bytes with a rule; use the cookie to tag rules",
    ),
    ("sample", "oxvs has no IPFIX or sFlow exporter"),
    (
        "clone",
        "oxvs translates one packet path per flow; use a group of type all",
    ),
    (
        "push",
        "oxvs has no register stack; copy with move into a spare register",
    ),
    (
        "pop",
        "oxvs has no register stack; copy with move into a spare register",
    ),
    (
        "check_pkt_larger",
        "translation does not know a packet's length (megaflows do not match on it)",
    ),
    ("set_queue", "oxvs ports have no QoS queues"),
    ("enqueue", "oxvs ports have no QoS queues"),
    ("pop_queue", "oxvs ports have no QoS queues"),
    ("multipath", "use a select group with selection_method=hash"),
    ("bundle", "oxvs has no bonds; use a select group"),
    ("bundle_load", "oxvs has no bonds; use a select group"),
    (
        "output_reg",
        "write output:FIELD[...] (the OVS spelling oxvs reads)",
    ),
    ("push_mpls", MPLS),
    ("pop_mpls", MPLS),
    ("set_mpls_label", MPLS),
    ("set_mpls_tc", MPLS),
    ("set_mpls_ttl", MPLS),
    ("dec_mpls_ttl", MPLS),
    (
        "encap",
        "oxvs encapsulates only through Geneve tunnel ports",
    ),
    ("decap", "oxvs decapsulates only on Geneve tunnel ports"),
    ("dec_nsh_ttl", NSH),
    ("exit", "stop with drop, or end the action list"),
    (
        "fin_timeout",
        "rules expire by idle_timeout and hard_timeout only",
    ),
    (
        "write_actions",
        "oxvs has no action set; write the actions in the apply list",
    ),
    ("clear_actions", "oxvs has no action set to clear"),
    (
        "delete_field",
        "oxvs has no optional (TLV) fields to delete",
    ),
    ("debug_recirc", "a debugging aid of the OVS datapath"),
    ("debug_slow", "a debugging aid of the OVS datapath"),
];

/// The message for a refused field name, if `name` is one.
pub(crate) fn field_message(name: &str) -> Option<String> {
    if let Some(f) = FIELDS.iter().find(|f| f.names.contains(&name)) {
        return Some(format!("{name} is not supported by oxvs: {}", f.why));
    }
    let n = name
        .strip_prefix("tun_metadata")
        .or_else(|| name.strip_prefix("NXM_NX_TUN_METADATA"))?;
    match n.parse::<u8>() {
        Ok(2..=63) if !n.starts_with('0') => {
            Some(format!("{name} is not supported by oxvs: {TUN_METADATA}"))
        }
        _ => None,
    }
}

/// The message for a refused action name, if `name` is one.
pub(crate) fn action_message(name: &str) -> Option<String> {
    ACTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, why)| format!("{n} is not supported by oxvs: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names_are_not_also_accepted() {
        for f in FIELDS {
            for n in f.names {
                assert!(
                    super::super::fields::lookup(n).is_none(),
                    "{n} is both refused and accepted"
                );
            }
        }
        assert!(field_message("tun_metadata1").is_none());
        assert!(field_message("tun_metadata2").is_some());
        assert!(field_message("tun_metadata64").is_none());
        assert_eq!(
            action_message("controller").as_deref(),
            Some(
                "controller is not supported by oxvs: oxvs has no OpenFlow controller channel to send packets to"
            )
        );
    }

    /// Every refused field and action appears in docs/flow-syntax.md.
    #[test]
    fn refusals_match_the_documentation() {
        let doc = include_str!("../../../docs/flow-syntax.md");
        for f in FIELDS {
            let n = f.names[0];
            // Numbered families (xreg0 .. xreg7) are written as a range.
            let family = format!("`{}0`", n.trim_end_matches(|c: char| c.is_ascii_digit()));
            assert!(
                doc.contains(&format!("`{n}`")) || doc.contains(&family),
                "{n} is not in docs/flow-syntax.md"
            );
        }
        for (n, _) in ACTIONS {
            assert!(
                doc.contains(&format!("`{n}")),
                "{n} is not in docs/flow-syntax.md"
            );
        }
    }
}
