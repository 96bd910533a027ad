//! The udp layer's flow allocation messages against udp-small.pcap frames 43 and 44, their
//! bytes copied here (so no ../shared is needed): the FLOW_REQ from 127.0.0.1 and the
//! FLOW_REPLY from 127.0.0.2, the only captured udp reply whose two endpoint ids differ
//! (requester 64, responder 65). The reply names the *requester's* eid first, the opposite
//! of the eth layers' FLOW_REPLY (base facts §1.8.3): a decoder that reads the two the
//! other way round fails here.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_wire::code::UdpCode;
use o7s_wire::field::Writer;
use o7s_wire::qos::QosSpec;
use o7s_wire::udp::MgmtMsg;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn written(m: &MgmtMsg) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    m.write(&mut w);
    w.0
}

/// Frame 43's UDP payload (to port 3435): the 47-byte FLOW_REQ, then MD5("oping") and the
/// first bytes of the OAP header.
const FRAME43: &str = "00000000 00000040 00000000 00000000 0000000000000000 ffffffff 00000001 \
     00000001 ffffffff 0001d4c0 01 00 00 7862c6fec5ecaef4aa2e3934725e23b3 fd65176829a23dc7";

/// Frame 44's: the FLOW_REPLY (QoS all zero in the reply), then the OAP response's start.
const FRAME44: &str = "00000000 00000040 00000041 00000000 0000000000000000 00000000 00000000 \
     00000000 00000000 00000000 02 00 00 fd65176829a23dc71a74ed064a5675ad";

#[test]
fn the_captured_udp_flow_req_names_the_requester_and_no_responder() {
    let bytes = unhex(FRAME43);
    let (m, rest) = MgmtMsg::parse(&bytes).unwrap();
    assert_eq!(m.code, UdpCode::FlowReq);
    assert_eq!(
        (m.eid, m.requester_eid, m.responder_eid, m.response),
        (0, 64, 0, 0)
    );
    assert_eq!(m.qos, QosSpec::RAW);
    assert_eq!(&rest[..16], &unhex("7862c6fec5ecaef4aa2e3934725e23b3")[..]);
    assert_eq!(written(&m), bytes[..47]);
}

#[test]
fn the_captured_udp_flow_reply_names_the_requester_first_then_the_responder() {
    let bytes = unhex(FRAME44);
    let (m, rest) = MgmtMsg::parse(&bytes).unwrap();
    assert_eq!(m.code, UdpCode::FlowReply);
    assert_eq!(
        (m.eid, m.requester_eid, m.responder_eid, m.response),
        (0, 64, 65, 0)
    );
    assert_eq!(m.qos.timeout, 0);
    assert_eq!(rest.len(), 16);
    assert_eq!(written(&m), bytes[..47]);
}
