//! A capped port's queue drained by the worker over a real loopback UDP port: PDUs whose
//! N-1 flow is gone are dropped and counted (`drop_flow_gone`), the others are sent; and a
//! removed port's cap and impairments.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::packet_path::Egress;

#[test]
fn queued_pdus_of_a_gone_n1_flow_are_counted_and_the_others_leave() {
    let (ch, _peer) = o7s::ipc::Channel::pair().unwrap();
    let mut dp = Dataplane::new(ch);
    dp.add_udp(3, "127.0.0.1:0".parse().unwrap()).unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // N-1 flow 100 leaves by port 3 to `rx`; flow 101 has gone (no egress).
    dp.tab.set_egress(
        100,
        Egress::Udp {
            port: 3,
            dst: rx.local_addr().unwrap(),
            remote: 9,
        },
    );
    let now = dp.now;
    let s = dp
        .shapers
        .entry(3)
        .or_insert_with(|| crate::shaper::Shaper::new(now));
    // 101 first, so that the first PDU popped is one of the gone flow's.
    for (n1, b) in [(101, 1u8), (100, 2), (101, 3), (101, 4), (100, 5)] {
        assert!(s.push(n1, &[b; 40]));
    }
    assert_eq!(dp.drain_shapers(), 2);
    assert_eq!(dp.uports[&3].stats.drop_flow_gone, 3);
    assert!(dp.shapers[&3].is_empty());
    let mut got = Vec::new();
    let mut b = [0u8; 64];
    for _ in 0..2 {
        let n = rx.recv(&mut b).unwrap();
        got.push((n, b[0]));
    }
    assert_eq!(got, vec![(40, 2), (40, 5)]);
}

/// A PDU its port can never send (here: an IPv6 destination on an IPv4 socket; also a frame
/// larger than the port's) is dropped and counted, not put back at the head of the queue,
/// where it held every other N-1 flow of the port for good.
#[test]
fn a_pdu_that_can_never_leave_does_not_hold_the_queue() {
    let (ch, _peer) = o7s::ipc::Channel::pair().unwrap();
    let mut dp = Dataplane::new(ch);
    dp.add_udp(3, "127.0.0.1:0".parse().unwrap()).unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    dp.tab.set_egress(
        100,
        Egress::Udp {
            port: 3,
            dst: "[::1]:9".parse().unwrap(),
            remote: 9,
        },
    );
    dp.tab.set_egress(
        101,
        Egress::Udp {
            port: 3,
            dst: rx.local_addr().unwrap(),
            remote: 9,
        },
    );
    let now = dp.now;
    let s = dp
        .shapers
        .entry(3)
        .or_insert_with(|| crate::shaper::Shaper::new(now));
    assert!(s.push(100, &[1; 40]));
    assert!(s.push(101, &[2; 40]));
    assert_eq!(dp.drain_shapers(), 1);
    assert!(dp.shapers[&3].is_empty());
    assert_eq!(dp.uports[&3].stats.tx_errors, 1);
    let mut b = [0u8; 64];
    let n = rx.recv(&mut b).unwrap();
    assert_eq!((n, b[0]), (40, 2));
}

/// A port o7sd removes takes its cap and its impairments with it: a port made later with
/// the same id (after o7sd restarts and adopts the data plane) starts without them.
#[test]
fn a_removed_port_takes_its_cap_and_impairments_with_it() {
    let (ch, peer) = o7s::ipc::Channel::pair().unwrap();
    let mut dp = Dataplane::new(ch);
    dp.add_udp(3, "127.0.0.1:0".parse().unwrap()).unwrap();
    dp.add_udp(4, "127.0.0.1:0".parse().unwrap()).unwrap();
    for p in [3, 4] {
        dp.set_port_impair(p, Some(500_000), None, None, None, None);
        let now = dp.now;
        dp.shapers
            .entry(p)
            .or_insert_with(|| crate::shaper::Shaper::new(now));
    }
    peer.send(&ToDp::DelPort { port: 3 }, &[]).unwrap();
    assert!(dp.handle_ctl().unwrap());
    assert!(!dp.uports.contains_key(&3));
    assert!(!dp.shapers.contains_key(&3), "cap left behind");
    assert!(!dp.impairs.contains_key(&3), "impairments left behind");
    // The other port keeps its own.
    assert!(dp.impairs.contains_key(&4) && dp.shapers.contains_key(&4));
}
