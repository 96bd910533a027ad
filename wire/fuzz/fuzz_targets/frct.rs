#![no_main]
//! Fuzz target: FRCT headers.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::frct::FrctRepr;
    if let Ok((h, rest)) = FrctRepr::parse(data) {
        let mut w = o7s_wire::field::Writer::default();
        h.write(&mut w);
        w.put(rest);
        assert_eq!(w.0, data);
    }
});
