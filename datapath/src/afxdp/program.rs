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

/// eBPF instruction classes, sizes, modes, operations.
mod op {
    pub const LDX: u8 = 0x01;
    pub const ALU64: u8 = 0x07;
    pub const JMP: u8 = 0x05;
    pub const LD: u8 = 0x00;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const MEM: u8 = 0x60;
    pub const IMM: u8 = 0x00;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const MOV: u8 = 0xb0;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JNE: u8 = 0x50;
    pub const JLT: u8 = 0xa0;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
}

/// `BPF_PSEUDO_MAP_FD`: the ld_imm64 source register that marks the
/// immediate as a map fd for the verifier to resolve.
const PSEUDO_MAP_FD: u8 = 1;
/// `bpf_redirect_map` helper number.
const HELPER_REDIRECT_MAP: i32 = 51;
/// `struct xdp_md` offsets.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE_INDEX: i16 = 16;

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one (little-endian bitfields).
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    /// An instruction from its raw fields (tests of the verifier's refusal).
    #[cfg(test)]
    pub(crate) fn raw(code: u8, regs: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
}

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

/// A jump target.
#[derive(Clone, Copy)]
struct Label(usize);

/// A tiny assembler: instructions plus forward jumps resolved at the end.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    /// `dst = *(size *)(src + off)`.
    fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.emit(op::LDX | op::MEM | size, dst, src, off, 0);
    }
    fn alu_imm(&mut self, o: u8, dst: u8, imm: i32) {
        self.emit(op::ALU64 | o | op::K, dst, 0, 0, imm);
    }
    fn alu_reg(&mut self, o: u8, dst: u8, src: u8) {
        self.emit(op::ALU64 | o | op::X, dst, src, 0, 0);
    }
    fn jmp_imm(&mut self, o: u8, dst: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(op::JMP | o | op::K, dst, 0, 0, imm);
    }
    fn jmp_reg(&mut self, o: u8, dst: u8, src: u8, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(op::JMP | o | op::X, dst, src, 0, 0);
    }
    fn ja(&mut self, to: Label) {
        self.jmp_imm(op::JA, 0, 0, to);
    }
    /// `dst = map fd` as a 64-bit immediate the verifier turns into the map.
    fn ld_map_fd(&mut self, dst: u8, fd: i32) {
        self.emit(op::LD | op::IMM | op::DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.emit(0, 0, 0, 0, 0);
    }
    fn call(&mut self, helper: i32) {
        self.emit(op::JMP | op::CALL, 0, 0, 0, helper);
    }
    fn exit(&mut self) {
        self.emit(op::JMP | op::EXIT, 0, 0, 0, 0);
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l.0].expect("every label is bound");
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
    /// `return bpf_redirect_map(map, ctx->rx_queue_index, miss)` with the
    /// context in `ctx`.
    fn redirect(&mut self, ctx: u8, map_fd: i32, miss: XdpAction) {
        self.ldx(op::W, 2, ctx, MD_RX_QUEUE_INDEX);
        self.ld_map_fd(1, map_fd);
        self.alu_imm(op::MOV, 3, miss.code() as i32);
        self.call(HELPER_REDIRECT_MAP);
        self.exit();
    }
}

/// A big-endian (wire order) u16 as a native load of those two bytes reads
/// it, so the program compares without byte swaps.
fn wire16(v: u16) -> i32 {
    u16::from_ne_bytes(v.to_be_bytes()) as i32
}

/// Assembles `kind` against the XSKMAP `map_fd`, returning `miss` when the
/// queue's slot is empty.
pub fn assemble(kind: ProgramKind, map_fd: i32, miss: XdpAction) -> Vec<Insn> {
    let mut a = Asm::default();
    match kind {
        ProgramKind::All => a.redirect(1, map_fd, miss),
        ProgramKind::Uplink => uplink(&mut a, map_fd, miss),
    }
    a.finish()
}

/// The Geneve filter. Registers: r6 ctx, r2 data, r3 data_end, r4/r5 scratch.
fn uplink(a: &mut Asm, map_fd: i32, miss: XdpAction) {
    const ETH: i32 = 14;
    let (pass, redirect, ipv4, ipv6) = (a.label(), a.label(), a.label(), a.label());
    a.alu_reg(op::MOV, 6, 1);
    a.ldx(op::W, 2, 6, MD_DATA);
    a.ldx(op::W, 3, 6, MD_DATA_END);
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
    a.redirect(6, map_fd, miss);
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
