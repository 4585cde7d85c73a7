//! `ovs-ofctl` flow syntax: parsing flow lines, flow files, group lines and
//! packet descriptions into `flowtable`'s typed values, and printing those
//! values back in `dump-flows` / `dump-groups` form.
//!
//! The grammar is the one `ovs-ofctl(8)` ("Flow Syntax"), `ovs-fields(7)` and
//! `ovs-actions(7)` define, restricted to what `flowtable` can represent;
//! anything else is refused with a message and a column rather than ignored,
//! because a silently dropped match field widens a rule.
//!
//! Invariants: every printer is the inverse of its parser —
//! `parse_flow(format_flow_spec(s)) == s` for every `s` the parser produces —
//! and the parser never panics on any input (both are property-tested). Text
//! is handled here, once, so nothing on the packet path sees a string.
//!
//! Layout: `lexer` splits a line into items; `value` reads scalars;
//! `fields` maps field names to storage; `flow`, `actions` and `group`
//! parse; `print` prints; `file` handles multi-line input.

mod actions;
mod conj;
pub(crate) mod ct;
mod error;
mod fields;
mod file;
mod flow;
mod group;
mod group_hash;
mod learn;
mod lexer;
mod print;
mod refused;
mod value;

pub use error::ParseError;
pub use file::{parse_flow_file, FlowCommand, FlowFile};
pub use flow::{parse_flow, parse_flow_command, parse_packet};
pub use group::parse_group;
pub use print::{format_actions, format_flow_spec, format_group, format_match, format_rule};

use flowtable::port::{PortNo, PortTable};

/// Resolves port names in flow syntax (`in_port=vA1`, `output:vA1`) and
/// names ports when printing.
///
/// `()` knows no names (numbers and reserved names like `LOCAL` still work);
/// a bridge's [`PortTable`] knows its interfaces.
pub trait PortNames {
    /// The number of the port called `name`, if there is one.
    fn port_no(&self, name: &str) -> Option<PortNo>;

    /// The name of port `no`, if it has one; printers fall back to the number.
    fn port_name(&self, no: PortNo) -> Option<String> {
        let _ = no;
        None
    }
}

impl PortNames for () {
    fn port_no(&self, _name: &str) -> Option<PortNo> {
        None
    }
}

impl PortNames for PortTable {
    fn port_no(&self, name: &str) -> Option<PortNo> {
        self.by_name(name)
    }

    fn port_name(&self, no: PortNo) -> Option<String> {
        self.name(no).map(str::to_string)
    }
}

impl<T: PortNames + ?Sized> PortNames for &T {
    fn port_no(&self, name: &str) -> Option<PortNo> {
        (**self).port_no(name)
    }

    fn port_name(&self, no: PortNo) -> Option<String> {
        (**self).port_name(no)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conj;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_group_hash;
#[cfg(test)]
mod tests_reject;
#[cfg(test)]
mod tests_syntax;
