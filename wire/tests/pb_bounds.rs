//! The bounds `o7s_wire::unicast::pb::decode` puts on what a peer sends (issue 29: each
//! bound at its edge, found by mutation testing): the message length, CEP names, the
//! enrolment id, the DHT's keys, parts, contacts and values. No ../shared needed.

#![allow(clippy::unwrap_used, clippy::panic)]

use o7s_wire::unicast::pb::{
    self, dht_code, CepMsg, DhtContactMsg, DhtFindNodeRspMsg, DhtFindReqMsg, DhtFindValueRspMsg,
    DhtMsg, DhtStoreMsg, EnrollAckMsg, PbError, ENROLL_ID_LEN, MAX_CONTACTS, MAX_KEY_LEN,
    MAX_MSG_LEN, MAX_VALUES,
};
use prost::Message;

fn out_of_bounds<M: Message + Default + pb::Check + std::fmt::Debug>(m: &M) -> bool {
    match pb::decode::<M>(&m.encode_to_vec()) {
        Ok(_) => false,
        Err(PbError::Malformed { .. }) => panic!("{m:?} did not even decode"),
        Err(_) => true,
    }
}

#[test]
fn a_message_of_the_longest_length_is_read_one_longer_is_not() {
    // 65,535 bytes of padding in an unknown field: decoded (and ignored), not too long.
    let mut b = vec![0x0a];
    let body = MAX_MSG_LEN - 4;
    b.extend([
        0x80 | (body & 0x7f) as u8,
        0x80 | ((body >> 7) & 0x7f) as u8,
        (body >> 14) as u8,
    ]);
    b.resize(MAX_MSG_LEN, 0);
    assert!(!matches!(
        pb::decode::<CepMsg>(&b),
        Err(PbError::TooLong(_))
    ));
    b.push(0);
    assert!(matches!(pb::decode::<CepMsg>(&b), Err(PbError::TooLong(n)) if n == MAX_MSG_LEN + 1));
}

#[test]
fn cep_names_are_at_most_128_bytes_each() {
    let cep = |c: usize, p: usize| CepMsg {
        comp_name: "c".repeat(c),
        protocol: "p".repeat(p),
        ..CepMsg::default()
    };
    assert!(!out_of_bounds(&cep(128, 128)));
    assert!(out_of_bounds(&cep(129, 1)));
    assert!(out_of_bounds(&cep(1, 129)));
}

#[test]
fn an_enrolment_ack_carries_an_id_of_its_length() {
    let ack = |n| EnrollAckMsg {
        id: vec![1; n],
        result: 0,
    };
    assert!(!out_of_bounds(&ack(ENROLL_ID_LEN)));
    assert!(out_of_bounds(&ack(ENROLL_ID_LEN - 1)));
    assert!(out_of_bounds(&ack(ENROLL_ID_LEN + 1)));
}

fn src(n: usize) -> DhtContactMsg {
    DhtContactMsg {
        id: vec![7; n],
        addr: 0x6c8a_0ce2,
    }
}

fn find_value_rsp(contacts: usize, values: usize) -> DhtMsg {
    DhtMsg {
        code: dht_code::FIND_VALUE_RSP,
        src: src(32),
        node: Some(DhtFindNodeRspMsg {
            cookie: 1,
            key: vec![3; 32],
            contacts: (0..contacts).map(|_| src(32)).collect(),
        }),
        val: Some(DhtFindValueRspMsg {
            values: vec![vec![0; 8]; values],
        }),
        ..DhtMsg::default()
    }
}

#[test]
fn dht_keys_are_1_to_64_bytes() {
    let with_src = |n| DhtMsg {
        code: dht_code::FIND_NODE_REQ,
        src: src(n),
        find: Some(DhtFindReqMsg {
            cookie: 1,
            key: vec![3; 32],
        }),
        ..DhtMsg::default()
    };
    assert!(!out_of_bounds(&with_src(1)));
    assert!(!out_of_bounds(&with_src(MAX_KEY_LEN)));
    assert!(out_of_bounds(&with_src(MAX_KEY_LEN + 1)));
    // An empty key is absent in protobuf: the message still decodes, and is refused.
    assert!(matches!(
        pb::decode::<DhtMsg>(&with_src(0).encode_to_vec()),
        Err(PbError::Invalid { .. })
    ));
}

#[test]
fn a_find_value_answer_needs_both_parts_and_bounded_lists() {
    assert!(!out_of_bounds(&find_value_rsp(MAX_CONTACTS, MAX_VALUES)));
    assert!(out_of_bounds(&find_value_rsp(MAX_CONTACTS + 1, 1)));
    assert!(out_of_bounds(&find_value_rsp(1, MAX_VALUES + 1)));
    let mut no_val = find_value_rsp(1, 1);
    no_val.val = None;
    assert!(out_of_bounds(&no_val));
    let mut no_node = find_value_rsp(1, 1);
    no_node.node = None;
    assert!(out_of_bounds(&no_node));
    // A STORE with its part is read.
    let store = DhtMsg {
        code: dht_code::STORE,
        src: src(32),
        store: Some(DhtStoreMsg {
            key: vec![3; 32],
            val: vec![0; 8],
            ..DhtStoreMsg::default()
        }),
        ..DhtMsg::default()
    };
    assert!(!out_of_bounds(&store));
}
