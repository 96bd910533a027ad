#![no_main]
//! Fuzz target: the 0.22 OAP header.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::oap::OapHdrV022;
    if let Ok(h) = OapHdrV022::parse(data) {
        let mut w = o7s_wire::field::Writer::default();
        assert!(h.write(&mut w).is_ok());
        assert_eq!(w.0, data);
    }
});
