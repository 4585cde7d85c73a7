//! The control side of oxvs: the `ovs-ofctl`-style text syntax for flows,
//! groups and packets, parsed into `flowtable`'s typed values and printed back.
//!
//! This crate is never on the packet path. It depends on `flowtable` for the
//! types it produces. The syntax, the protocol types and their framing are
//! plain functions over strings and byte streams, testable without a
//! daemon; the only I/O is in `client` (a Unix socket to oxvsd) and in the
//! command line (`cmd`: files, a pcap written by `capture`). The daemon's
//! control socket is a thin layer over the same types. Text is turned into
//! typed rules once, here, so that no string is ever interpreted per packet.

#![forbid(unsafe_code)]

// `load`, `odp` and `trace` belong to the oxvs-ctl binary (main.rs uses them
// through the library); `ofp` is the flow syntax; `proto` is the control
// socket's protocol, `client` its client end and `cmd` the command line.
pub mod client;
pub mod cmd;
pub mod ctflush;
pub mod load;
pub mod odp;
pub mod ofp;
pub mod podnet;
pub mod proto;
pub mod trace;

pub use ofp::{
    format_actions, format_flow_spec, format_group, format_match, format_rule, parse_flow,
    parse_flow_command, parse_flow_file, parse_group, parse_packet, FlowCommand, FlowFile,
    ParseError, PortNames,
};
