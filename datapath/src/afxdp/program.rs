//! The XDP programs, assembled here as eBPF instructions: no clang, no
//! object files, no libbpf.
//!
//! Two programs, both ending in `bpf_redirect_map(&xskmap, rx_queue_index,
//! miss_action)`, which sends the frame to the AF_XDP socket bound to the
//! receiving queue, or returns `miss_action` (the low bits of the flags
//! argument, kernel >= 5.3) when that slot of the map is empty:
//!
//! * [`ProgramKind::All`] redirects every frame of the queue (a pod's veth,
//!   where the switch owns all traffic);
//! * [`ProgramKind::Uplink`] redirects only UDP to port 6081 (Geneve,
//!   RFC 8926 §3.3) over untagged IPv4 or IPv6 and passes everything else
//!   to the kernel, so the host keeps its own traffic (SSH, ARP, routing
//!   protocols) on the same NIC.
//!
//! The miss action is `XDP_PASS` in production: while no socket is bound
//! (start-up, restart) frames go to the kernel rather than vanish.
//!
//! The uplink parser reads only what it has bounds-checked against
//! `data_end`, as the verifier requires, and passes whatever it cannot
//! classify: short frames, IPv4 fragments (non-first fragments carry no UDP
//! header; Geneve senders set DF), IPv6 with extension headers before UDP,
//! and 802.1Q-tagged frames. The IPv4 header length is variable (options);
//! the verifier accepts the variable offset because `ihl * 4` is bounded by
//! the mask and shift.

pub use super::asm::Insn;
use super::asm::{md, op, wire16, Asm};

/// What an XDP program decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    /// `XDP_ABORTED`: a program error.
    Aborted,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_PASS`: to the kernel stack.
    Pass,
    /// `XDP_TX`: back out of the receiving interface.
    Tx,
    /// `XDP_REDIRECT`: to the AF_XDP socket.
    Redirect,
    /// A value outside the enum.
    Other(u32),
}

impl XdpAction {
    /// The kernel's number for the action.
    pub fn code(self) -> u32 {
        match self {
            XdpAction::Aborted => 0,
            XdpAction::Drop => 1,
            XdpAction::Pass => 2,
            XdpAction::Tx => 3,
            XdpAction::Redirect => 4,
            XdpAction::Other(v) => v,
        }
    }

    /// The action for a kernel number.
    pub fn from_code(v: u32) -> XdpAction {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            v => XdpAction::Other(v),
        }
    }
}

/// Which frames an interface's XDP program hands to the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// Every frame received on a queue with a bound socket.
    All,
    /// Only UDP to port 6081 (Geneve) over IPv4/IPv6; the rest to the kernel.
    Uplink,
}

impl ProgramKind {
    /// The program name the kernel shows (at most 15 characters).
    pub fn name(self) -> &'static str {
        match self {
            ProgramKind::All => "oxvs_xsk_all",
            ProgramKind::Uplink => "oxvs_xsk_geneve",
        }
    }
}

/// Assembles `kind` against the XSKMAP `map_fd`, returning `miss` when the
/// queue's slot is empty.
pub fn assemble(kind: ProgramKind, map_fd: i32, miss: XdpAction) -> Vec<Insn> {
    let mut a = Asm::default();
    match kind {
        ProgramKind::All => a.redirect_queue(1, map_fd, miss.code()),
        ProgramKind::Uplink => uplink(&mut a, map_fd, miss),
    }
    a.finish()
}

/// The Geneve filter. Registers: r6 ctx, r2 data, r3 data_end, r4/r5 scratch.
fn uplink(a: &mut Asm, map_fd: i32, miss: XdpAction) {
    const ETH: i32 = 14;
    let (pass, redirect, ipv4, ipv6) = (a.label(), a.label(), a.label(), a.label());
    a.alu_reg(op::MOV, 6, 1);
    a.ldx(op::W, 2, 6, md::DATA);
    a.ldx(op::W, 3, 6, md::DATA_END);
    // Ethernet header present?
    a.alu_reg(op::MOV, 4, 2);
    a.alu_imm(op::ADD, 4, ETH);
    a.jmp_reg(op::JGT, 4, 3, pass);
    a.ldx(op::H, 5, 2, 12);
    a.jmp_imm(op::JEQ, 5, wire16(0x0800), ipv4);
    a.jmp_imm(op::JEQ, 5, wire16(0x86dd), ipv6);
    a.ja(pass);

    // IPv4: fixed header in bounds, protocol UDP, not a fragment, then UDP
    // after `ihl * 4` bytes.
    a.bind(ipv4);
    a.alu_reg(op::MOV, 4, 2);
    a.alu_imm(op::ADD, 4, ETH + 20);
    a.jmp_reg(op::JGT, 4, 3, pass);
    a.ldx(op::B, 5, 2, ETH as i16 + 9);
    a.jmp_imm(op::JNE, 5, 17, pass);
    a.ldx(op::H, 5, 2, ETH as i16 + 6);
    a.alu_imm(op::AND, 5, wire16(0x3fff)); // MF flag and fragment offset
    a.jmp_imm(op::JNE, 5, 0, pass);
    a.ldx(op::B, 5, 2, ETH as i16);
    a.alu_imm(op::AND, 5, 0x0f);
    a.alu_imm(op::LSH, 5, 2);
    a.jmp_imm(op::JLT, 5, 20, pass);
    a.alu_reg(op::MOV, 4, 2);
    a.alu_reg(op::ADD, 4, 5);
    a.alu_imm(op::ADD, 4, ETH); // r4 = UDP header
    a.alu_reg(op::MOV, 5, 4);
    a.alu_imm(op::ADD, 5, 8);
    a.jmp_reg(op::JGT, 5, 3, pass);
    a.ldx(op::H, 5, 4, 2); // destination port
    a.jmp_imm(op::JEQ, 5, wire16(6081), redirect);
    a.ja(pass);

    // IPv6: fixed header and UDP in bounds, next header UDP.
    a.bind(ipv6);
    a.alu_reg(op::MOV, 4, 2);
    a.alu_imm(op::ADD, 4, ETH + 40 + 8);
    a.jmp_reg(op::JGT, 4, 3, pass);
    a.ldx(op::B, 5, 2, ETH as i16 + 6);
    a.jmp_imm(op::JNE, 5, 17, pass);
    a.ldx(op::H, 5, 2, ETH as i16 + 40 + 2);
    a.jmp_imm(op::JEQ, 5, wire16(6081), redirect);

    a.bind(pass);
    a.alu_imm(op::MOV, 0, XdpAction::Pass.code() as i32);
    a.exit();

    a.bind(redirect);
    a.redirect_queue(6, map_fd, miss.code());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_program_is_six_slots() {
        let p = assemble(ProgramKind::All, 7, XdpAction::Pass);
        assert_eq!(p.len(), 6);
        assert_eq!(
            p[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 16,
                imm: 0
            },
            "r2 = *(u32 *)(r1 + 16)"
        );
        assert_eq!(
            p[1],
            Insn {
                code: 0x18,
                regs: 0x11,
                off: 0,
                imm: 7
            },
            "r1 = map fd 7"
        );
        assert_eq!(
            p[3],
            Insn {
                code: 0xb7,
                regs: 0x03,
                off: 0,
                imm: 2
            },
            "r3 = XDP_PASS"
        );
        assert_eq!(
            p[4],
            Insn {
                code: 0x85,
                regs: 0,
                off: 0,
                imm: 51
            },
            "call bpf_redirect_map"
        );
        assert_eq!(p[5].code, 0x95, "exit");
    }

    #[test]
    fn jumps_land_inside_the_program() {
        let p = assemble(ProgramKind::Uplink, 3, XdpAction::Pass);
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == op::JMP
                && insn.code & 0xf0 != op::CALL
                && insn.code & 0xf0 != op::EXIT
            {
                let to = i as isize + 1 + insn.off as isize;
                assert!(
                    to > i as isize && (to as usize) < p.len(),
                    "insn {i} jumps to {to}"
                );
            }
        }
    }

    #[test]
    fn wire_constants_match_loaded_bytes() {
        assert_eq!(wire16(0x0800) as u16, u16::from_ne_bytes([0x08, 0x00]));
        assert_eq!(wire16(6081) as u16, u16::from_ne_bytes([0x17, 0xc1]));
    }
}
