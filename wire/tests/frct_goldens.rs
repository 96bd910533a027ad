//! FRCT headers against uni.pcap (bytes copied in, so no ../shared is needed): frame 47, the
//! client's first ping on a best-effort flow (flags DATA|DRF|FC, the window edge 0x3b531c,
//! seqno 0xd7434e08, ackno 0), and frame 86, an ACK-only packet (facts §1.8.8: `04 000000
//! 00000000 d7434e1c`) acknowledging 0xd7434e1c, 20 packets after frame 47's seqno. The
//! three numbers differ in both, so a decoder that reads one in another's place fails.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_wire::field::Writer;
use o7s_wire::frct::{flags, FrctRepr};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rewritten(r: &FrctRepr) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    r.write(&mut w);
    w.0
}

#[test]
fn the_first_ping_of_uni_pcap_frame_47_carries_the_window_edge() {
    // After the udp eid and the DT PCI: the FRCT header, then the oping message's start.
    let bytes = unhex("0b3b531c d7434e08 00000000 00000001 00000000 e405000000000000");
    let (h, payload) = FrctRepr::parse(&bytes).unwrap();
    assert_eq!(h.flags, flags::DATA | flags::DRF | flags::FC);
    assert_eq!(h.flag_names(), "DATA|DRF|FC");
    assert_eq!((h.rwe, h.seqno, h.ackno), (0x3b_531c, 0xd743_4e08, 0));
    assert_eq!(payload, &bytes[12..]);
    assert_eq!(rewritten(&h), bytes[..12]);
}

#[test]
fn the_ack_only_packet_of_uni_pcap_frame_86_acknowledges_20_packets_later() {
    let bytes = unhex("04000000 00000000 d7434e1c");
    let (h, payload) = FrctRepr::parse(&bytes).unwrap();
    assert_eq!(h.flags, flags::ACK);
    assert_eq!((h.rwe, h.seqno, h.ackno), (0, 0, 0xd743_4e1c));
    assert_eq!(h.ackno - 0xd743_4e08, 20);
    assert!(payload.is_empty());
    assert_eq!(rewritten(&h), bytes);
}
