#![no_main]
//! Fuzz target: the IPv4/IPv6/UDP finder.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&v6, rest)) = data.split_first() else { return };
    let et = if v6 & 1 == 1 { 0x86dd } else { 0x0800 };
    let _ = o7s_wire::ip::udp_in(et, rest);
    let _ = o7s_wire::ip::udp_in_with(et, rest, true);
});
