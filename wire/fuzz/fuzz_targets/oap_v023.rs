#![no_main]
//! Fuzz target: the 0.23 OAP header.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::oap::{OapHdr, Role};
    if let Ok(h) = OapHdr::parse(data) {
        assert_eq!(h.to_bytes().ok().as_deref(), Some(data));
        let _ = h.split_tail(Role::Response, 32);
        let _ = h.split_tail(Role::Request, 0);
    }
});
