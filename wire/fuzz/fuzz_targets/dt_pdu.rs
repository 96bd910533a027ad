#![no_main]
//! Fuzz target: unicast DT PDUs (PCI, flow allocator message, hash, OAP).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::unicast::dt::DtConfig;
    use o7s_wire::unicast::sdu::DtPdu;
    let Some((&sizes, rest)) = data.split_first() else { return };
    let cfg = DtConfig::new(usize::from(sizes & 7) + 1, usize::from(sizes >> 3 & 7) + 1);
    let Ok(cfg) = cfg else { return };
    if let Ok(p) = DtPdu::decode(rest, cfg, None) {
        assert_eq!(p.encode(cfg).ok().as_deref(), Some(rest));
    }
});
