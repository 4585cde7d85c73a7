//! Any bytes, received on a port of a datapath whose rules rewrite every
//! header the executor can touch (MACs, VLAN push/pop, IPv4/IPv6 addresses,
//! TTL, TOS, ports) and output to several ports: parsing, extraction, the
//! caches and the executor must never panic, and every frame must come back
//! to the pool.
#![no_main]

use datapath::pipeline::PmdConfig;
use datapath::MemDatapath;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const FLOWS: &str = "\
priority=10,in_port=1,tcp,actions=mod_nw_src:10.0.0.9,mod_tp_dst:99,dec_ttl,push_vlan:0x8100,mod_vlan_vid:7,output:2,pop_vlan,output:3
priority=10,in_port=1,udp,actions=mod_nw_dst:10.0.0.8,mod_tp_src:53,mod_nw_tos:4,output:2
priority=10,in_port=1,udp6,actions=set_field:fe80::1->ipv6_src,dec_ttl,output:3
priority=10,in_port=1,icmp6,actions=set_field:fe80::2->ipv6_dst,output:2
priority=5,in_port=1,dl_vlan=5,actions=pop_vlan,mod_dl_src:02:00:00:00:00:01,output:2
priority=5,in_port=1,dl_vlan=6,actions=mod_vlan_pcp:3,output:3
priority=1,in_port=1,actions=normal
";

fn template() -> &'static flowtable::Bridge {
    static BR: OnceLock<flowtable::Bridge> = OnceLock::new();
    BR.get_or_init(|| {
        let mut dp = MemDatapath::new(16, PmdConfig::default());
        for p in 1..=3 {
            dp.add_port(p, &format!("p{p}"));
        }
        let file = ctl::ofp::parse_flow_file(FLOWS, &dp.bridge.ports).expect("flows parse");
        let (changes, _) = ctl::load::file_changes(&file);
        dp.apply(&changes, 0).expect("flows apply");
        dp.bridge
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = wire::EthernetFrame::new_checked(data);
    let cfg = PmdConfig { emc_entries: 64, emc_inv_prob: 1, max_megaflows: 64 };
    let mut dp = MemDatapath::new(16, cfg);
    for p in 1..=3 {
        dp.add_port(p, &format!("p{p}"));
    }
    dp.bridge = template().clone();
    // Twice: the second time goes through the caches.
    for _ in 0..2 {
        if dp.inject(1, data) {
            dp.run_until_idle(0);
        }
        for p in 1..=3 {
            for out in dp.take_tx(p) {
                // Whatever we emit must itself be a frame we can parse.
                let mut k = flowtable::FlowKey::default();
                let _ = flowtable::extract(&out, p, &mut k);
            }
        }
    }
    assert_eq!(dp.pool.n_free(), 16, "a frame leaked");
});
