//! Counters of a poll thread and of a port. Plain integers: each set has one
//! writer (its poll thread); readers get copies.

use flowtable::DropReason;

/// What one poll thread did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmdStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets whose flow was found in the exact-match cache.
    pub emc_hit: u64,
    /// Packets whose flow was found in the megaflow table.
    pub megaflow_hit: u64,
    /// Packets that needed a translation.
    pub upcall: u64,
    /// Translations that could not be cached (megaflow table full).
    pub upcall_uncached: u64,
    /// Packets copied because they went to more than one port.
    pub tx_copies: u64,
    /// Times the caches were revalidated after a rule change.
    pub revalidations: u64,
    /// Megaflows those revalidations translated again.
    pub revalidated_flows: u64,
    /// Megaflows they left alone because no table their translation looked
    /// up had changed.
    pub revalidation_skipped: u64,
    /// Times a port went down because its interface disappeared.
    pub port_down: u64,
    /// ICMP "fragmentation needed" / "Packet Too Big" errors sent to pods
    /// whose packets were too big for the tunnel.
    pub tunnel_mtu_replies: u64,
    /// Passes after the first: packets a `ct(table=T)` sent back through
    /// the caches.
    pub recirc: u64,
    /// TCP RSTs and ICMP errors sent by `reject`.
    pub reject_sent: u64,
    /// Packets let go after every output took a copy of them (an output
    /// followed by a `log` or an in-place `ct`): the last copy stands in
    /// for the packet.
    pub released: u64,
    /// Answers built (`reject` replies and ICMP too-big errors), whether
    /// or not they could be sent: frames the pipeline made itself.
    pub answers_made: u64,
    /// Policy log records queued for the control thread.
    pub log_records: u64,
    /// Policy log records left out because the connection was logged
    /// within the dedupe window.
    pub log_deduped: u64,
    /// Policy log records held back by the rate limit.
    pub log_rate_limited: u64,
    /// Drops, indexed by [`DropReason`] discriminant.
    pub drops: [u64; DropReason::COUNT],
}

impl PmdStats {
    /// Counts a drop.
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    /// The count for one reason.
    pub fn drops_for(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// Adds `o`'s counters to these.
    pub fn add(&mut self, o: &PmdStats) {
        self.rx_packets += o.rx_packets;
        self.emc_hit += o.emc_hit;
        self.megaflow_hit += o.megaflow_hit;
        self.upcall += o.upcall;
        self.upcall_uncached += o.upcall_uncached;
        self.tx_copies += o.tx_copies;
        self.revalidations += o.revalidations;
        self.revalidated_flows += o.revalidated_flows;
        self.revalidation_skipped += o.revalidation_skipped;
        self.port_down += o.port_down;
        self.tunnel_mtu_replies += o.tunnel_mtu_replies;
        self.recirc += o.recirc;
        self.reject_sent += o.reject_sent;
        self.answers_made += o.answers_made;
        self.released += o.released;
        self.log_records += o.log_records;
        self.log_deduped += o.log_deduped;
        self.log_rate_limited += o.log_rate_limited;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Frames the pipeline made besides those it received: copies for
    /// second outputs (a copy that could not be made is counted as made
    /// and dropped as `drop_no_buffer`), `reject` answers and ICMP too-big
    /// errors, less the packets whose last copy stood in for them.
    pub fn frames_made(&self) -> u64 {
        (self.tx_copies + self.answers_made + self.drops_for(DropReason::NoBuffer))
            .saturating_sub(self.released)
    }
}

/// What one port did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets dropped on receive (no buffer), whoever dropped them: the
    /// port, or the kernel's AF_XDP socket (which the `xsk_*` counters
    /// below break down).
    pub rx_dropped: u64,
    /// Packets dropped on transmit (queue full, port down).
    pub tx_dropped: u64,
    /// Frames the pipeline sent anywhere while handling the packets
    /// received here (outputs, copies, answers), counted by the poll
    /// thread, not the socket.
    pub pipeline_sent: u64,
    /// Named drops while handling the packets received here.
    pub pipeline_dropped: u64,
    /// Frames the pipeline made while handling them: copies for second
    /// outputs, `reject` answers, ICMP too-big errors. With every packet
    /// accounted for, `rx_packets + pipeline_made = pipeline_sent +
    /// pipeline_dropped`.
    pub pipeline_made: u64,
    /// AF_XDP only, the socket's own counters (`XDP_STATISTICS`), read
    /// from the kernel: frames the kernel dropped on receive before the
    /// poll thread saw them, for want of a frame in the fill ring (in copy
    /// mode) or for being longer than a frame. Part of `rx_dropped`.
    pub xsk_rx_dropped: u64,
    /// Frames the kernel dropped because the socket's RX ring was full.
    /// Part of `rx_dropped`.
    pub xsk_rx_ring_full: u64,
    /// Times a frame arrived while the fill ring was empty: the kernel had
    /// no frame to receive it into. A fill ring too small for the bursts
    /// the port takes shows here (in copy mode each such frame is also an
    /// `xsk_rx_dropped`).
    pub xsk_rx_fill_ring_empty: u64,
}

impl PortStats {
    /// Adds `o`'s counters to these.
    pub fn add(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_dropped += o.rx_dropped;
        self.tx_dropped += o.tx_dropped;
        self.pipeline_sent += o.pipeline_sent;
        self.pipeline_dropped += o.pipeline_dropped;
        self.pipeline_made += o.pipeline_made;
        self.xsk_rx_dropped += o.xsk_rx_dropped;
        self.xsk_rx_ring_full += o.xsk_rx_ring_full;
        self.xsk_rx_fill_ring_empty += o.xsk_rx_fill_ring_empty;
    }
}
