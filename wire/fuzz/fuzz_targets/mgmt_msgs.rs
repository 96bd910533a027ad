#![no_main]
//! Fuzz target: the fixed management messages of every layer.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::{dix, llc, udp, unicast::fa::FaMsg};
    let _ = dix::MgmtMsg::parse(data);
    let _ = dix::LegacyMgmtMsg::parse(data);
    let _ = llc::MgmtMsg::parse(data);
    let _ = udp::MgmtMsg::parse(data);
    let _ = FaMsg::parse(data);
    if let Some((&l, rest)) = data.split_first() {
        let _ = llc::LlcRepr::parse(rest, u16::from(l) * 8);
    }
});
