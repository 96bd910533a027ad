#![no_main]
//! Fuzz target: pcap / pcapng capture files.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(recs) = o7s_wire::capfile::parse(data) {
        for r in recs {
            assert!(r.data.len() <= r.orig_len);
        }
    }
});
