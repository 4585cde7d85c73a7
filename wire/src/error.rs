//! The one error type every view's `new_checked` returns.
//!
//! Following etherparse, an error names the layer that failed and where that
//! header starts, so a drop counter or a log line can say exactly which header
//! of which packet was bad. It is `Copy` and carries no strings, so building
//! one on the packet path costs nothing; the human text lives in `Display`.
//!
//! Offsets are relative to the slice the view was given. A caller that parses
//! nested headers (Ethernet, then IPv4 over `frame.payload()`, ...) rebases
//! an inner error with [`Error::at`], passing the inner slice's offset.

use core::fmt;

/// A header that failed validation: which layer, where it starts, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// The protocol layer whose header is bad.
    pub layer: Layer,
    /// Byte offset of that header within the buffer the caller gave.
    pub offset: usize,
    /// What is wrong with it.
    pub kind: ErrorKind,
}

impl Error {
    /// An error for the header that starts at offset 0 of the view's buffer.
    #[inline]
    pub const fn new(layer: Layer, kind: ErrorKind) -> Error {
        Error {
            layer,
            offset: 0,
            kind,
        }
    }

    /// Rebases the error onto an outer buffer in which the view's slice
    /// started at `base`, so the offset counts from the caller's buffer.
    #[inline]
    #[must_use]
    pub const fn at(self, base: usize) -> Error {
        Error {
            offset: self.offset + base,
            ..self
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} header at offset {}: {}",
            self.layer.name(),
            self.offset,
            self.kind.message()
        )
    }
}

impl std::error::Error for Error {}

/// The protocol layer an [`Error`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header.
    Ethernet,
    /// IEEE 802.1Q / 802.1ad tag.
    Vlan,
    /// ARP for Ethernet and IPv4.
    Arp,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Ext,
    /// ICMP for IPv4.
    Icmpv4,
    /// ICMP for IPv6, including neighbor discovery.
    Icmpv6,
    /// TCP header.
    Tcp,
    /// UDP header.
    Udp,
}

impl Layer {
    /// The lower-case name used in messages and counter names.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Ext => "ipv6 extension",
            Layer::Icmpv4 => "icmpv4",
            Layer::Icmpv6 => "icmpv6",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a header was rejected. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// truncated
    Truncated,
    /// bad version
    BadVersion,
    /// bad header length
    BadHeaderLen,
    /// bad total length
    BadTotalLen,
    /// bad length
    BadLength,
    /// unsupported
    Unsupported,
}

impl ErrorKind {
    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadVersion => "bad version",
            ErrorKind::BadHeaderLen => "bad header length",
            ErrorKind::BadTotalLen => "bad total length",
            ErrorKind::BadLength => "bad length",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_layer_offset_and_kind() {
        let e = Error::new(Layer::Ipv4, ErrorKind::Truncated).at(14);
        assert_eq!(e.to_string(), "ipv4 header at offset 14: truncated");
        let e = Error {
            layer: Layer::Ipv6Ext,
            offset: 40,
            kind: ErrorKind::Unsupported,
        };
        assert_eq!(
            e.at(18).to_string(),
            "ipv6 extension header at offset 58: unsupported"
        );
    }

    #[test]
    fn at_adds_base_and_keeps_the_rest() {
        let e = Error::new(Layer::Udp, ErrorKind::BadLength);
        assert_eq!(e.at(0), e);
        let moved = e.at(34).at(4);
        assert_eq!(moved.offset, 38);
        assert_eq!(moved.layer, Layer::Udp);
        assert_eq!(moved.kind, ErrorKind::BadLength);
    }
}
