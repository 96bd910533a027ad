#![no_main]
//! Fuzz target: the unicast layer's protobuf messages (CEP, enrolment, DHT): no panic, and
//! what is accepted re-encodes to a message that is accepted again.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use o7s_wire::unicast::pb::{self, CepMsg, DhtMsg, EnrollAckMsg, EnrollReqMsg, EnrollRespMsg};
    use prost::Message;
    if let Ok(m) = pb::decode::<DhtMsg>(data) {
        assert!(pb::decode::<DhtMsg>(&m.encode_to_vec()).is_ok());
    }
    if let Ok(m) = pb::decode::<CepMsg>(data) {
        assert!(pb::decode::<CepMsg>(&m.encode_to_vec()).is_ok());
    }
    let _ = pb::decode::<EnrollReqMsg>(data);
    let _ = pb::decode::<EnrollRespMsg>(data);
    let _ = pb::decode::<EnrollAckMsg>(data);
});
