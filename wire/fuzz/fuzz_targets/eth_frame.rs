#![no_main]
//! Fuzz target: eth-dix / eth-llc frames with their management messages and OAP headers.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::frame::{DecodeOpts, EthFrame};
    for hash_len in [None, Some(32)] {
        let opts = DecodeOpts { hash_len, ..DecodeOpts::default() };
        if let Ok(Some(f)) = EthFrame::decode(data, &opts) {
            // Whatever decodes must re-encode to the same bytes.
            assert_eq!(f.encode().ok().as_deref(), Some(data));
        }
    }
});
