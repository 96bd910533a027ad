#![no_main]
//! Fuzz target: oping and ocbr messages.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::app::{OcbrMsg, OpingMsg};
    if let Ok(m) = OpingMsg::parse(data) {
        let mut w = o7s_wire::field::Writer::default();
        m.write(&mut w);
        assert_eq!(w.0, data);
    }
    if let Ok(m) = OcbrMsg::parse(data) {
        let mut w = o7s_wire::field::Writer::default();
        m.write(&mut w);
        assert_eq!(w.0, data);
    }
});
