#![no_main]
//! Fuzz target: udp-layer datagrams (47-byte management message, MD5, OAP).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::frame::UdpMsg;
    if let Ok(m) = UdpMsg::decode(data) {
        assert_eq!(m.encode().ok().as_deref(), Some(data));
    }
});
