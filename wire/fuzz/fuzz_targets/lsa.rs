#![no_main]
//! Fuzz target: link-state advertisements.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::unicast::lsa::Lsa;
    if let Ok(l) = Lsa::parse(data) {
        let mut w = o7s_wire::field::Writer::default();
        l.write(&mut w);
        assert_eq!(w.0, data);
    }
});
