//! Any bytes, received on a tunnel port: decap and the option-to-slot
//! mapping must never panic. When decap accepts a frame, encapsulating its
//! inner frame again with the metadata it produced and decapsulating the
//! result must give back the same inner bytes and metadata, both with the
//! raw options and with the options rebuilt from the metadata slots.
#![no_main]

use encap::{decap, DecapConfig, Options, PerPacket, Template, TlvMap, TunMetadata, TunnelConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const MAP: &str = "{class=0x0102,type=0x80,len=4}->tun_metadata0, \
                   {class=0xffff,type=0x01,len=8}->tun_metadata1, \
                   {class=0x0103,type=0x05,len=0}->tun_metadata63";
const HEADROOM: usize = 256;

fn map() -> &'static TlvMap {
    static MAP_ONCE: OnceLock<TlvMap> = OnceLock::new();
    MAP_ONCE.get_or_init(|| TlvMap::parse(MAP).expect("map parses"))
}

/// Encapsulates `inner` with `meta`'s outer addresses and `options`, then
/// decapsulates it with the strict default policy.
fn round_trip(meta: &encap::TunnelMeta, inner: &[u8], options: &Options) -> encap::Decapped {
    let mut cfg = TunnelConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], meta.src, meta.dst);
    cfg.tos = meta.tos;
    cfg.ttl = meta.ttl;
    cfg.ipv4_udp_checksum = meta.src_port & 1 == 1;
    let t = Template::new(&cfg).expect("decap returns one address family");
    let mut frame = vec![0u8; HEADROOM + inner.len()];
    frame[HEADROOM..].copy_from_slice(inner);
    let pkt = PerPacket {
        vni: meta.vni,
        options,
        ip_id: meta.src_port,
        oam: meta.oam,
    };
    let (off, len) = t
        .push(&mut frame, HEADROOM, inner.len(), &pkt)
        .expect("push fits");
    let outer = &frame[off..off + len];
    let d = decap(outer, &DecapConfig::default()).expect("our own frame decaps");
    assert_eq!(&outer[d.inner_off..d.inner_off + d.inner_len], inner);
    assert_eq!(
        (d.meta.src, d.meta.dst, d.meta.tos, d.meta.ttl),
        (meta.src, meta.dst, meta.tos, meta.ttl)
    );
    assert_eq!((d.meta.vni, d.meta.oam), (meta.vni, meta.oam));
    assert_eq!(&d.meta.options, options);
    assert_eq!(d.meta.critical, options.any_critical());
    d
}

fuzz_target!(|data: &[u8]| {
    // The strict policy must not panic either; the lax one lets the
    // fuzzer past the checksums to the Geneve header.
    let _ = decap(data, &DecapConfig::default());
    let lax = DecapConfig {
        verify_udp_checksum: false,
        ..DecapConfig::default()
    };
    let Ok(d) = decap(data, &lax) else { return };
    assert!(d.inner_off + d.inner_len <= data.len());
    let inner = &data[d.inner_off..d.inner_off + d.inner_len];

    let mut md = TunMetadata::new();
    let mapped = map().decode(&d.meta.options, &mut md);

    round_trip(&d.meta, inner, &d.meta.options);

    if mapped.is_ok() {
        let mut rebuilt = Options::new();
        map()
            .encode(&md, &mut rebuilt)
            .expect("mapped slots fit the option area");
        let again = round_trip(&d.meta, inner, &rebuilt);
        let mut md2 = TunMetadata::new();
        map()
            .decode(&again.meta.options, &mut md2)
            .expect("rebuilt options map");
        assert_eq!(md, md2);
    }
});
