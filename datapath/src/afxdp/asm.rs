//! A small eBPF assembler: instructions, registers, labels with forward and
//! backward jumps, map-fd relocations.
//!
//! Why an assembler instead of clang: the switch ships its XDP programs
//! inside the binary and loads them through raw `bpf(2)`; a build-time C
//! compiler would make clang and LLVM build dependencies of every CI run
//! and need an ELF loader to resolve map relocations, for programs of a
//! few hundred instructions. Each method here emits one instruction (two
//! for 64-bit immediates) whose encoding follows
//! `Documentation/bpf/standardization/instruction-set.rst`; the programs
//! read as annotated assembly, and the kernel's verifier checks every one
//! of them in the tests.
//!
//! Invariant: every label used by a jump is bound before [`Asm::finish`],
//! which panics otherwise (a bug in a program generator, found by the
//! first test that assembles it).

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub(crate) code: u8,
    /// dst in the low nibble, src in the high one (little-endian bitfields).
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
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

/// eBPF instruction classes, sizes, modes, operations.
pub(crate) mod op {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    pub const ATOMIC: u8 = 0xc0;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    /// Byte swap (class ALU); with `TO_BE` it converts host order to big
    /// endian, a swap on the little-endian hosts this runs on.
    pub const END: u8 = 0xd0;
    pub const TO_BE: u8 = 0x08;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JNE: u8 = 0x50;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
}

/// Registers: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9
/// callee-saved, r10 the read-only frame pointer.
pub(crate) mod reg {
    pub const R0: u8 = 0;
    pub const R1: u8 = 1;
    pub const R2: u8 = 2;
    pub const R3: u8 = 3;
    pub const R4: u8 = 4;
    pub const R5: u8 = 5;
    pub const R6: u8 = 6;
    pub const R7: u8 = 7;
    pub const R8: u8 = 8;
    pub const R9: u8 = 9;
    pub const FP: u8 = 10;
}

/// Helper function numbers (`enum bpf_func_id`).
pub(crate) mod helper {
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    pub const KTIME_GET_NS: i32 = 5;
    pub const XDP_ADJUST_HEAD: i32 = 44;
    pub const REDIRECT_MAP: i32 = 51;
}

/// `BPF_PSEUDO_MAP_FD`: the ld_imm64 source register that marks the
/// immediate as a map fd for the verifier to resolve.
const PSEUDO_MAP_FD: u8 = 1;

/// `struct xdp_md` offsets.
pub(crate) mod md {
    pub const DATA: i16 = 0;
    pub const DATA_END: i16 = 4;
    pub const INGRESS_IFINDEX: i16 = 12;
    pub const RX_QUEUE_INDEX: i16 = 16;
}

/// A jump target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Label(usize);

/// Instructions plus jumps resolved at the end.
#[derive(Default)]
pub(crate) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    pub fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none(), "label bound twice");
        self.labels[l.0] = Some(self.insns.len());
    }
    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.emit(op::LDX | op::MEM | size, dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.emit(op::STX | op::MEM | size, dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = imm`.
    pub fn st(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.emit(op::ST | op::MEM | size, dst, 0, off, imm);
    }
    /// `lock *(u64 *)(dst + off) += src`.
    pub fn atomic_add64(&mut self, dst: u8, off: i16, src: u8) {
        self.emit(op::STX | op::ATOMIC | op::DW, dst, src, off, op::ADD as i32);
    }
    pub fn alu_imm(&mut self, o: u8, dst: u8, imm: i32) {
        self.emit(op::ALU64 | o | op::K, dst, 0, 0, imm);
    }
    pub fn alu_reg(&mut self, o: u8, dst: u8, src: u8) {
        self.emit(op::ALU64 | o | op::X, dst, src, 0, 0);
    }
    pub fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.alu_imm(op::MOV, dst, imm);
    }
    pub fn mov(&mut self, dst: u8, src: u8) {
        self.alu_reg(op::MOV, dst, src);
    }
    /// `dst = bswap(dst)` of its low `bits` (16, 32 or 64), upper bits
    /// cleared: big endian to host order and back.
    pub fn bswap(&mut self, dst: u8, bits: i32) {
        self.emit(op::ALU | op::END | op::TO_BE, dst, 0, 0, bits);
    }
    pub fn jmp_imm(&mut self, o: u8, dst: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(op::JMP | o | op::K, dst, 0, 0, imm);
    }
    pub fn jmp_reg(&mut self, o: u8, dst: u8, src: u8, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.emit(op::JMP | o | op::X, dst, src, 0, 0);
    }
    pub fn ja(&mut self, to: Label) {
        self.jmp_imm(op::JA, 0, 0, to);
    }
    /// `dst = map fd` as a 64-bit immediate the verifier turns into the map.
    pub fn ld_map_fd(&mut self, dst: u8, fd: i32) {
        self.emit(op::LD | op::IMM | op::DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.emit(0, 0, 0, 0, 0);
    }
    pub fn call(&mut self, helper: i32) {
        self.emit(op::JMP | op::CALL, 0, 0, 0, helper);
    }
    pub fn exit(&mut self) {
        self.emit(op::JMP | op::EXIT, 0, 0, 0, 0);
    }
    /// `return action`.
    pub fn ret(&mut self, action: u32) {
        self.mov_imm(reg::R0, action as i32);
        self.exit();
    }
    /// `return bpf_redirect_map(map, ctx->rx_queue_index, miss)` with the
    /// context in `ctx`.
    pub fn redirect_queue(&mut self, ctx: u8, map_fd: i32, miss: u32) {
        self.ldx(op::W, reg::R2, ctx, md::RX_QUEUE_INDEX);
        self.ld_map_fd(reg::R1, map_fd);
        self.mov_imm(reg::R3, miss as i32);
        self.call(helper::REDIRECT_MAP);
        self.exit();
    }
    /// Resolves every jump.
    pub fn finish(mut self) -> Vec<Insn> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l.0].expect("every label is bound");
            let rel = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(rel).expect("jump within 32k instructions");
        }
        self.insns
    }
}

/// A big-endian (wire order) u16 as a native load of those two bytes reads
/// it, so the program compares without byte swaps.
pub(crate) fn wire16(v: u16) -> i32 {
    u16::from_ne_bytes(v.to_be_bytes()) as i32
}

/// A big-endian u32 as a native 32-bit load reads it (as the 32-bit
/// immediate a comparison sign-extends: compare against loads of 32 bits).
pub(crate) fn wire32(v: u32) -> u32 {
    u32::from_ne_bytes(v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_and_forward_jumps_resolve() {
        let mut a = Asm::default();
        let (top, out) = (a.label(), a.label());
        a.bind(top);
        a.jmp_imm(op::JEQ, 1, 0, out); // 0 -> 3
        a.alu_imm(op::ADD, 1, -1); // 1
        a.ja(top); // 2 -> 0
        a.bind(out);
        a.exit(); // 3
        let p = a.finish();
        assert_eq!(p[0].off, 2);
        assert_eq!(p[2].off, -3);
    }

    #[test]
    fn encodings() {
        let mut a = Asm::default();
        a.bswap(2, 16);
        a.atomic_add64(9, 8, 1);
        a.stx(op::H, 7, 2, 3);
        let p = a.finish();
        assert_eq!((p[0].code, p[0].regs, p[0].imm), (0xdc, 2, 16));
        assert_eq!((p[1].code, p[1].regs, p[1].off), (0xdb, 0x19, 8));
        assert_eq!((p[2].code, p[2].regs, p[2].off), (0x6b, 0x37, 2));
    }
}
