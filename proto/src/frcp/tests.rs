#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

fn rtx() -> FrcpConfig {
    FrcpConfig {
        rtx: true,
        ..FrcpConfig::reference()
    }
}

fn hdr(p: &[u8]) -> FrctRepr {
    FrctRepr::parse(p).unwrap().0
}

#[test]
fn the_cube_chooses_the_machine() {
    assert_eq!(FrcpConfig::for_qos(&QosSpec::RAW), None);
    assert_eq!(
        FrcpConfig::for_qos(&QosSpec::BEST_EFFORT).map(|c| c.rtx),
        Some(false)
    );
    assert_eq!(
        FrcpConfig::for_qos(&QosSpec::DATA).map(|c| c.rtx),
        Some(true)
    );
}

#[test]
fn a_run_starts_with_drf_and_later_packets_carry_the_window() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Frcp::new(FrcpConfig::reference(), 1),
        Frcp::new(FrcpConfig::reference(), 2),
    );
    a.send(t0, b"ping").unwrap();
    let p = a.poll_transmit().unwrap();
    let h = hdr(&p);
    // The first packet each way: DATA|DRF, no window yet (the capture's).
    assert_eq!((h.flags, h.rwe, h.ackno), (flags::DATA | flags::DRF, 0, 0));
    assert_eq!(&p[12..], b"ping");
    b.handle_pdu(t0, &p).unwrap();
    assert_eq!(b.poll_deliver().unwrap(), b"ping");
    b.send(t0, b"pong").unwrap();
    let q = b.poll_transmit().unwrap();
    let h2 = hdr(&q);
    // b's receiver has a run: its packets say how far a may send.
    assert_eq!(h2.flags, flags::DATA | flags::DRF | flags::FC);
    assert_eq!(h2.rwe, h.seqno.wrapping_add(1 + 64) & 0x00ff_ffff);
    a.handle_pdu(t0, &q).unwrap();
    assert_eq!(a.poll_deliver().unwrap(), b"pong");
    a.send(t0 + Duration::from_millis(1), b"again").unwrap();
    let h3 = hdr(&a.poll_transmit().unwrap());
    assert_eq!(h3.flags, flags::DATA | flags::FC, "same run: no DRF");
    assert_eq!(h3.seqno, h.seqno.wrapping_add(1));
    // Idle past `inact`: a new run at another sequence number.
    a.send(t0 + Duration::from_secs(3), b"later").unwrap();
    let h4 = hdr(&a.poll_transmit().unwrap());
    assert_ne!(h4.flags & flags::DRF, 0);
    assert_ne!(h4.seqno, h.seqno.wrapping_add(2));
}

#[test]
fn an_ack_only_packet_is_the_reference_s_twelve_bytes() {
    let t0 = Instant::now();
    let (mut a, mut b) = (Frcp::new(rtx(), 1), Frcp::new(rtx(), 2));
    a.send(t0, b"x").unwrap();
    b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    assert_eq!(b.poll_timeout(), Some(t0 + rtx().ack_delay));
    b.handle_timeout(t0 + Duration::from_millis(5));
    let ack = b.poll_transmit().unwrap();
    let seq = a.next;
    let mut want = vec![0x04, 0, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&seq.to_be_bytes());
    assert_eq!(ack, want);
    assert_eq!(a.in_flight(), 1);
    a.handle_pdu(t0 + Duration::from_millis(6), &ack).unwrap();
    assert_eq!(a.in_flight(), 0);
    assert_eq!(a.srtt(), Some(Duration::from_millis(6)));
    // Linux's first sample: srtt r, mdev r/2, RTO r + 4 r/2.
    assert_eq!(a.rto(), Duration::from_millis(18));
    assert_eq!(b.counters().acks_sent, 1);
}

#[test]
fn the_rtt_estimator_follows_linux() {
    let cfg = rtx();
    let mut r = Rtt {
        srtt: None,
        mdev: Duration::ZERO,
        rto: cfg.rto_init,
    };
    r.sample(Duration::from_millis(80), &cfg);
    assert_eq!(
        (r.srtt, r.mdev),
        (Some(Duration::from_millis(80)), Duration::from_millis(40))
    );
    r.sample(Duration::from_millis(40), &cfg);
    // srtt 80 - 40/8 = 75; mdev 40 + (40 - 40)/4 = 40; rto 75 + 160.
    assert_eq!(r.srtt, Some(Duration::from_millis(75)));
    assert_eq!(r.mdev, Duration::from_millis(40));
    assert_eq!(r.rto, Duration::from_millis(235));
    r.sample(Duration::from_millis(75), &cfg);
    // err 0: mdev 40 - 40/4 = 30; rto 75 + 120.
    assert_eq!(
        (r.mdev, r.rto),
        (Duration::from_millis(30), Duration::from_millis(195))
    );
    r.sample(Duration::from_millis(120), &cfg);
    // srtt 75 + 45/8; err 45: mdev 30 + 15/4.
    assert_eq!(r.srtt, Some(Duration::from_micros(80_625)));
    assert_eq!(r.mdev, Duration::from_micros(33_750));
    let mut tiny = Rtt {
        srtt: None,
        mdev: Duration::ZERO,
        rto: cfg.rto_init,
    };
    tiny.sample(Duration::from_micros(10), &cfg);
    assert_eq!(tiny.rto, cfg.rto_min);
}

#[test]
fn what_is_lost_is_sent_again_after_the_rto_byte_for_byte_doubling_each_time() {
    let t0 = Instant::now();
    let mut a = Frcp::new(rtx(), 1);
    a.send(t0, b"lost").unwrap();
    let first = a.poll_transmit().unwrap();
    // The RTO (1 s before any sample) and the delay a receiver may hold its ACK.
    let tm = a.rto_timer();
    assert_eq!(
        (a.rto(), tm),
        (Duration::from_secs(1), Duration::from_millis(1001))
    );
    assert_eq!(a.poll_timeout(), Some(t0 + tm));
    a.handle_timeout(t0 + tm);
    assert_eq!(a.poll_transmit().unwrap(), first);
    assert_eq!(a.poll_timeout(), Some(t0 + tm * 3));
    a.handle_timeout(t0 + tm * 3);
    assert_eq!(a.poll_transmit().unwrap(), first);
    assert_eq!(a.poll_timeout(), Some(t0 + tm * 7));
    assert_eq!(a.counters().retransmits, 2);
    // A retransmitted packet gives no RTT sample (Karn).
    let mut b = Frcp::new(rtx(), 2);
    b.handle_pdu(t0, &first).unwrap();
    b.handle_timeout(t0 + Duration::from_secs(8));
    a.handle_pdu(t0 + Duration::from_secs(8), &b.poll_transmit().unwrap())
        .unwrap();
    assert_eq!((a.in_flight(), a.srtt()), (0, None));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_lost_first_packet_goes_again_with_the_rendez_vous_and_the_write_goes_on() {
    // The CI failure of 2026-12-06: 2 % loss took the DRF packet of a full window;
    // the receiver, without a run, answered nothing and the write reset after 1 s.
    let t0 = Instant::now();
    let (mut a, mut b) = (Frcp::new(rtx(), 1), Frcp::new(rtx(), 2));
    let mut n = 0u32;
    let mut first = None;
    while a.send(t0, &[n as u8]).is_ok() {
        let p = a.poll_transmit().unwrap();
        if n == 0 {
            first = Some(p); // lost
        } else {
            b.handle_pdu(t0, &p).unwrap();
        }
        n += 1;
    }
    assert_eq!(n, 64);
    let first = first.unwrap();
    assert_ne!(hdr(&first).flags & flags::DRF, 0);
    // b has no run: nothing delivered, nothing said.
    assert_eq!((b.deliverable(), b.poll_transmit()), (0, None));
    // The window closed just now: a rendez-vous only (the ACKs may be on their way).
    let rdv = a.poll_transmit().unwrap();
    assert_eq!(hdr(&rdv).flags, flags::RDVS);
    assert_eq!(a.poll_transmit(), None);
    b.handle_pdu(t0, &rdv).unwrap();
    assert_eq!(b.poll_transmit(), None, "no run, no edge to tell");
    // Unanswered for an interval: the DRF packet goes again, byte for byte, then RDVS.
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(a.poll_timeout(), Some(t1));
    a.handle_timeout(t1);
    assert_eq!(a.poll_transmit().unwrap(), first);
    let rdv2 = a.poll_transmit().unwrap();
    assert_eq!(hdr(&rdv2).flags, flags::RDVS);
    assert_eq!((a.counters().drf_resent, a.counters().retransmits), (1, 1));
    // b starts its run, delivers all 64 in order; its app reads; the rendez-vous is
    // answered with the window open.
    b.handle_pdu(t1, &first).unwrap();
    let got: Vec<u8> = std::iter::from_fn(|| b.poll_deliver())
        .map(|s| s[0])
        .collect();
    assert_eq!(got, (0..64u8).collect::<Vec<_>>());
    while let Some(p) = b.poll_transmit() {
        a.handle_pdu(t1, &p).unwrap();
    }
    b.handle_pdu(t1, &rdv2).unwrap();
    while let Some(p) = b.poll_transmit() {
        a.handle_pdu(t1, &p).unwrap();
    }
    assert_eq!(a.in_flight(), 0);
    assert!(a.writable());
    // Past the second the write would have reset at: it goes on.
    assert_eq!(a.send(t0 + Duration::from_millis(1100), b"on"), Ok(()));
    assert_eq!(a.counters().drf_resent, 1);
    // A rendez-vous unanswered while the oldest packet out is not the run's first
    // (the receiver has its run; only its answers are lost) sends no data again.
    let (mut c, mut d) = (Frcp::new(rtx(), 3), Frcp::new(rtx(), 4));
    c.send(t0, b"first").unwrap();
    d.handle_pdu(t0, &c.poll_transmit().unwrap()).unwrap();
    d.ack_now();
    // An RTT of 200 ms: the RTO (600 ms) stays out of the way.
    c.handle_pdu(t0 + Duration::from_millis(200), &d.poll_transmit().unwrap())
        .unwrap();
    assert_eq!(c.in_flight(), 0);
    let t2 = t0 + Duration::from_millis(201);
    while c.send(t2, b"more").is_ok() {
        d.handle_pdu(t2, &c.poll_transmit().unwrap()).unwrap();
    }
    assert_ne!(c.in_flight(), 0);
    assert_eq!(hdr(&c.poll_transmit().unwrap()).flags, flags::RDVS);
    c.handle_timeout(t2 + Duration::from_millis(100));
    assert_eq!(hdr(&c.poll_transmit().unwrap()).flags, flags::RDVS);
    assert_eq!(c.poll_transmit(), None);
    assert_eq!(c.counters().drf_resent, 0);
}

#[test]
fn a_closed_window_blocks_the_writer_calls_for_rendez_vous_and_then_fails() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Frcp::new(FrcpConfig::reference(), 1),
        Frcp::new(FrcpConfig::reference(), 2),
    );
    let mut n = 0;
    while a.send(t0, &[n as u8]).is_ok() {
        b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
        n += 1;
        assert!(n <= 64, "the window never closed");
    }
    // b's app takes nothing: 64 in the window, then would block.
    assert_eq!(n, 64);
    assert!(!a.writable());
    let rdv = a.poll_transmit().unwrap();
    assert_eq!(hdr(&rdv).flags, flags::RDVS);
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    a.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!(hdr(&a.poll_transmit().unwrap()).flags, flags::RDVS);
    assert_eq!(a.counters().rdvs_sent, 2);
    assert_eq!(
        a.send(t0 + Duration::from_millis(500), b"x"),
        Err(SendError::WouldBlock)
    );
    // b answers a rendez-vous with its window: still closed, its app took nothing.
    b.handle_pdu(t0, &rdv).unwrap();
    let fc = b.poll_transmit().unwrap();
    assert_eq!(hdr(&fc).flags, flags::FC);
    a.handle_pdu(t0, &fc).unwrap();
    assert!(!a.writable());
    assert_eq!(
        a.send(t0 + Duration::from_secs(1), b"x"),
        Err(SendError::Reset)
    );
    // b's app reads one: the window opens and a hears of it at once.
    let mut a2 = Frcp::new(FrcpConfig::reference(), 3);
    let mut b2 = Frcp::new(FrcpConfig::reference(), 4);
    for i in 0..64u8 {
        a2.send(t0, &[i]).unwrap();
        b2.handle_pdu(t0, &a2.poll_transmit().unwrap()).unwrap();
    }
    assert_eq!(a2.send(t0, b"x"), Err(SendError::WouldBlock));
    while a2.poll_transmit().is_some() {}
    assert_eq!(b2.poll_deliver().unwrap(), [0]);
    let open = b2.poll_transmit().unwrap();
    assert_eq!(hdr(&open).flags & flags::FC, flags::FC);
    a2.handle_pdu(t0, &open).unwrap();
    assert!(a2.writable());
    assert_eq!(a2.send(t0, b"x"), Ok(()));
}

#[test]
fn without_retransmission_order_holds_by_dropping_what_comes_late() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Frcp::new(FrcpConfig::reference(), 1),
        Frcp::new(FrcpConfig::reference(), 2),
    );
    let pdus: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            a.send(t0, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    // 0, 2 (1 is late), 1, 3, and 2 again.
    for i in [0, 2, 1, 3, 2] {
        b.handle_pdu(t0, &pdus[i]).unwrap();
    }
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_deliver()).collect();
    assert_eq!(got, [vec![0], vec![2], vec![3]]);
    assert_eq!(b.counters().late, 2);
    assert_eq!(a.in_flight(), 0, "nothing kept without retransmission");
}

#[test]
fn ack_fc_is_the_two_flags() {
    assert_eq!(ACK_FC, flags::ACK | flags::FC);
}

#[test]
fn sequence_order_wraps_at_half_the_space() {
    assert!(before(0, 1) && !before(1, 0) && !before(5, 5));
    assert!(before(0xffff_fff0, 5), "across the wrap");
    assert!(before(0, 0x7fff_ffff));
    assert!(!before(0, 0x8000_0000), "exactly half: not before");
}

#[test]
fn the_first_sequence_numbers_are_splitmix64_draws() {
    let mut f = Frcp::new(rtx(), 1);
    // splitmix64 from 1, the low 32 bits (values computed outside).
    assert_eq!([f.draw(), f.draw()], [0x8902_5cc1, 0x658e_ec67]);
    assert_eq!(f.config(), rtx());
}

/// One end of a pair that has exchanged a packet each way (runs on both sides).
fn pair(cfg: FrcpConfig, t0: Instant) -> (Frcp, Frcp) {
    let (mut a, mut b) = (Frcp::new(cfg, 1), Frcp::new(cfg, 2));
    a.send(t0, b"a").unwrap();
    b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    b.send(t0, b"b").unwrap();
    a.handle_pdu(t0, &b.poll_transmit().unwrap()).unwrap();
    while a.poll_transmit().is_some() {}
    while b.poll_transmit().is_some() {}
    assert_eq!(
        (a.poll_deliver().unwrap(), b.poll_deliver().unwrap()),
        (b"b".to_vec(), b"a".to_vec())
    );
    (a, b)
}

#[test]
fn data_carries_the_ack_both_ways() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    // b's data acknowledged a's: nothing of a's is in flight.
    assert_eq!(a.in_flight(), 0);
    a.send(t0, b"c").unwrap();
    let p = a.poll_transmit().unwrap();
    let h = hdr(&p);
    assert_eq!(h.flags, flags::DATA | flags::ACK | flags::FC);
    assert_eq!(h.ackno, b.next);
    b.handle_pdu(t0, &p).unwrap();
    assert_eq!(b.in_flight(), 0);
}

#[test]
fn only_the_flags_set_are_read() {
    let t0 = Instant::now();
    let (mut a, b) = pair(rtx(), t0);
    a.send(t0, b"x").unwrap();
    while a.poll_transmit().is_some() {}
    // DATA alone, whose ackno would acknowledge everything and whose rwe would shut
    // the window: neither is read.
    let mut w = Writer(vec![]);
    FrctRepr {
        flags: flags::DATA,
        rwe: a.next & 0x00ff_ffff,
        seqno: b.next,
        ackno: a.next,
    }
    .write(&mut w);
    a.handle_pdu(t0, &w.0).unwrap();
    assert_eq!(a.in_flight(), 1);
    assert!(a.writable());
}

#[test]
fn the_third_duplicate_ack_sends_the_first_packet_again_at_once() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let pdus: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            a.send(t0, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    let t1 = t0 + Duration::from_millis(10);
    // The first is lost; each of the next three makes b acknowledge the gap at once.
    for p in &pdus[1..4] {
        b.handle_pdu(t1, p).unwrap();
        b.handle_timeout(t1);
        let ack = b.poll_transmit().unwrap();
        assert_eq!(hdr(&ack).ackno, hdr(&pdus[0]).seqno);
        a.handle_pdu(t1, &ack).unwrap();
    }
    assert_eq!(a.poll_transmit().unwrap(), pdus[0]);
    assert!(a.poll_transmit().is_none(), "only the first goes again");
    let c = a.counters();
    assert_eq!((c.retransmits, c.fast_retransmits), (1, 1));
    assert_eq!(a.poll_timeout(), Some(t1 + a.rto_timer()));
    assert_eq!(b.counters().delivered, 1, "held behind the gap");
    // A held packet again: counted as a duplicate.
    b.handle_pdu(t1, &pdus[2]).unwrap();
    assert_eq!(b.counters().duplicates, 1);
    // The fast retransmission counts as a try: its RTO, if it comes, is doubled twice.
    let mut a2 = Frcp::new(rtx(), 1);
    std::mem::swap(&mut a2.unacked, &mut a.unacked);
    a2.rtt = a.rtt;
    let rto = a2.rto_timer();
    a2.handle_timeout(t1 + rto);
    assert_eq!(a2.poll_timeout(), Some(t1 + rto + rto * 4));
    std::mem::swap(&mut a2.unacked, &mut a.unacked);
    b.handle_pdu(t1, &pdus[0]).unwrap();
    assert_eq!(b.counters().delivered, 5);
    // A packet sent at the instant of a retransmission gives no RTT sample.
    let srtt = a.srtt();
    a.send(t1, b"z").unwrap();
    let z = a.poll_transmit().unwrap();
    b.handle_pdu(t1, &pdus[4]).unwrap();
    b.handle_pdu(t1, &z).unwrap();
    b.handle_timeout(t1 + Duration::from_millis(5));
    // The last of b's ACKs (the duplicates it sent on the way came first).
    let ack = std::iter::from_fn(|| b.poll_transmit()).last().unwrap();
    a.handle_pdu(t1 + Duration::from_millis(50), &ack).unwrap();
    assert_eq!((a.in_flight(), a.srtt()), (0, srtt));
    // The same packet again: counted, acknowledged once more.
    b.handle_pdu(t1, &z).unwrap();
    assert_eq!(b.counters().duplicates, 2);
}

#[test]
fn a_partial_ack_after_a_fast_retransmit_sends_the_next_hole_at_once() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let t1 = t0 + Duration::from_millis(10);
    let pdus: Vec<Vec<u8>> = (0..10u8)
        .map(|i| {
            a.send(t0, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    // 0 and 5 are lost; the rest make b acknowledge the first hole again and again.
    for (i, p) in pdus.iter().enumerate() {
        if i != 0 && i != 5 {
            b.handle_pdu(t1, p).unwrap();
        }
    }
    for ack in std::iter::from_fn(|| b.poll_transmit()) {
        a.handle_pdu(t1, &ack).unwrap();
    }
    assert_eq!(a.poll_transmit().unwrap(), pdus[0], "fast retransmit of 0");
    assert!(a.poll_transmit().is_none());
    // 0 arrives: b's ACK moves to 5, short of what was out: 5 goes again at once,
    // long before its RTO.
    b.handle_pdu(t1, &pdus[0]).unwrap();
    let ack = std::iter::from_fn(|| b.poll_transmit()).last().unwrap();
    assert_eq!(hdr(&ack).ackno, hdr(&pdus[5]).seqno);
    let t2 = t1 + Duration::from_micros(100);
    a.handle_pdu(t2, &ack).unwrap();
    assert_eq!(a.poll_transmit().unwrap(), pdus[5], "the next hole");
    assert_eq!(a.counters().fast_retransmits, 2);
    assert_eq!(a.in_flight(), 5);
    // The same partial ACK again sends nothing more (5 went again already).
    a.handle_pdu(t2, &ack).unwrap();
    assert!(a.poll_transmit().is_none());
    // 5 arrives: everything is acknowledged, recovery is over.
    b.handle_pdu(t2, &pdus[5]).unwrap();
    let ack = std::iter::from_fn(|| b.poll_transmit()).last().unwrap();
    a.handle_pdu(t2, &ack).unwrap();
    assert_eq!((a.in_flight(), a.recover), (0, None));
    // A packet whose ACK is not yet due is not taken for lost: with an RTT measured
    // at 50 ms, a partial ACK 1 ms after the next packet was sent leaves it alone.
    let (mut a, mut b) = pair(rtx(), t0);
    a.rtt.srtt = Some(Duration::from_millis(50));
    let pdus: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            a.send(t1, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    for p in &pdus[1..4] {
        b.handle_pdu(t1, p).unwrap();
    }
    for ack in std::iter::from_fn(|| b.poll_transmit()) {
        a.handle_pdu(t1, &ack).unwrap();
    }
    assert_eq!(a.poll_transmit().unwrap(), pdus[0]);
    b.handle_pdu(t1, &pdus[0]).unwrap();
    let ack = std::iter::from_fn(|| b.poll_transmit()).last().unwrap();
    a.handle_pdu(t1 + Duration::from_millis(1), &ack).unwrap();
    assert!(a.poll_transmit().is_none(), "4 may still be on its way");
    assert_eq!(a.counters().fast_retransmits, 1);
}

#[test]
fn o7s_offers_768_and_a_sender_assumes_the_reference_s_64_until_told() {
    let t0 = Instant::now();
    let (d, r) = (FrcpConfig::default(), FrcpConfig::reference());
    assert_eq!(
        (d.window, d.reorder, r.window, r.reorder),
        (768, 1024, 64, 256)
    );
    assert_eq!(
        FrcpConfig {
            window: 64,
            reorder: 256,
            ..d
        },
        r,
        "the window and the reorder queue are the only differences"
    );
    let cfg = FrcpConfig { rtx: true, ..d };
    let (mut a, mut b) = (Frcp::new(cfg, 1), Frcp::new(cfg, 2));
    assert_eq!(a.send_window(), 64);
    for i in 0..64u8 {
        a.send(t0, &[i]).unwrap();
    }
    assert_eq!(a.send(t0, &[64]), Err(SendError::WouldBlock), "64 at first");
    for p in std::iter::from_fn(|| a.poll_transmit()) {
        if hdr(&p).flags & flags::DATA != 0 {
            b.handle_pdu(t0, &p).unwrap();
        }
    }
    while b.poll_deliver().is_some() {}
    b.handle_timeout(t0 + Duration::from_millis(5));
    for p in std::iter::from_fn(|| b.poll_transmit()) {
        a.handle_pdu(t0, &p).unwrap();
    }
    assert_eq!(a.in_flight(), 0);
    assert_eq!(a.send_window(), 768, "b's FC offered its whole window");
}

#[test]
fn transmit_with_offers_the_kept_copy_and_skips_what_was_acknowledged() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    for i in 0..3u8 {
        a.send(t0, &[i]).unwrap();
    }
    assert_eq!(a.pending_transmits(), 3);
    // The driver takes one, then its ring is full.
    let mut got = vec![];
    assert_eq!(
        a.transmit_with(|p| {
            got.push(p.to_vec());
            got.len() < 2
        }),
        1
    );
    assert_eq!(a.pending_transmits(), 2, "the one not taken stays first");
    assert_eq!(hdr(&got[1]).seqno, hdr(&got[0]).seqno.wrapping_add(1));
    // b has all three (the second and third from copies) and acknowledges them: what
    // waits to go is acknowledged already and is not offered.
    b.handle_pdu(t0, &got[0]).unwrap();
    b.handle_pdu(t0, &got[1]).unwrap();
    let third = a.unacked[2].pdu.clone();
    b.handle_pdu(t0, &third).unwrap();
    b.handle_timeout(t0 + Duration::from_millis(5));
    a.handle_pdu(t0, &b.poll_transmit().unwrap()).unwrap();
    assert_eq!(a.in_flight(), 0);
    assert_eq!(a.transmit_with(|_| true), 0);
    assert_eq!(a.pending_transmits(), 0);
    assert!(a.poll_transmit().is_none());
}

#[test]
fn a_transmit_queue_nobody_takes_is_bounded_and_counted() {
    let t0 = Instant::now();
    let mut a = Frcp::new(
        FrcpConfig {
            window: 100_000,
            reorder: 100_000,
            ..FrcpConfig::reference()
        },
        1,
    );
    a.snd_rwe = 0;
    a.last_send = None;
    for i in 0..(MAX_TRANSMITS as u32 + 10) {
        // In-order only: every packet is its own bytes in the queue.
        a.send(t0, &i.to_be_bytes()).unwrap();
        if i == 0 {
            a.snd_rwe = a.next.wrapping_add(1 << 20);
        }
    }
    assert_eq!(a.pending_transmits(), MAX_TRANSMITS);
    assert_eq!(a.counters().transmits_dropped, 10);
    // The oldest went: the first now waiting is the 11th.
    let first = a.poll_transmit().unwrap();
    assert_eq!(&first[HEADER_LEN..], &10u32.to_be_bytes());
}

#[test]
fn packets_beyond_a_gap_are_acknowledged_at_once_four_times_then_one_in_a_quarter_window() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let pdus: Vec<Vec<u8>> = (0..40u8)
        .map(|i| {
            a.send(t0, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    let mut acks = vec![];
    for (i, p) in pdus.iter().enumerate().skip(1) {
        b.handle_pdu(t0, p).unwrap();
        if let Some(ack) = b.poll_transmit() {
            assert_eq!(hdr(&ack).ackno, hdr(&pdus[0]).seqno);
            acks.push(i);
        }
        assert!(b.poll_transmit().is_none());
    }
    // Beyond the gap: packets 1-4 at once, then the 16th and 32nd beyond it.
    assert_eq!(acks, vec![1, 2, 3, 4, 16, 32]);
    assert_eq!(b.counters().acks_sent, 6);
    // The rest wait for the delay, and the repair is acknowledged at once.
    assert_eq!(b.poll_timeout(), Some(t0 + rtx().ack_delay));
    b.handle_pdu(t0, &pdus[0]).unwrap();
    let ack = b.poll_transmit().unwrap();
    assert_eq!(hdr(&ack).ackno, hdr(&pdus[39]).seqno.wrapping_add(1));
    // A new gap counts from the start again.
    a.send(t0, b"x").unwrap();
    let _lost = a.poll_transmit().unwrap();
    a.send(t0, b"y").unwrap();
    b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    assert!(b.poll_transmit().is_some(), "the first beyond the new gap");
}

#[test]
fn recovery_ends_at_an_ack_that_covers_what_was_out_at_the_fast_retransmit() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let t1 = t0 + Duration::from_millis(10);
    let pdus: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            a.send(t0, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    for p in &pdus[1..] {
        b.handle_pdu(t1, p).unwrap();
    }
    for ack in std::iter::from_fn(|| b.poll_transmit()) {
        a.handle_pdu(t1, &ack).unwrap();
    }
    assert_eq!(a.poll_transmit().unwrap(), pdus[0]);
    // Two more go after the fast retransmit (beyond the recovery point) and are lost.
    for i in 5..7u8 {
        a.send(t1, &[i]).unwrap();
        let _lost = a.poll_transmit().unwrap();
    }
    // The repair arrives: the ACK covers all that was out at the fast retransmit.
    b.handle_pdu(t1, &pdus[0]).unwrap();
    let ack = std::iter::from_fn(|| b.poll_transmit()).last().unwrap();
    assert_eq!(hdr(&ack).ackno, hdr(&pdus[4]).seqno.wrapping_add(1));
    // Long after, that ACK is no partial one: nothing goes at once, recovery is over.
    a.handle_pdu(t1 + Duration::from_millis(500), &ack).unwrap();
    assert_eq!((a.in_flight(), a.recover), (2, None));
    assert!(a.poll_transmit().is_none(), "5 and 6 wait for their RTO");
    assert_eq!(a.counters().fast_retransmits, 1);
}

#[test]
fn a_window_update_with_its_ack_answers_the_delayed_ack_too() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    a.send(t0, b"d").unwrap();
    b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    assert_eq!(b.deliverable(), 1);
    assert_eq!(
        b.poll_timeout(),
        Some(t0 + rtx().ack_delay),
        "an ACK is owed"
    );
    // An RDVS: answered at once with ACK|FC, which is the ACK owed.
    b.handle_pdu(t0, &[flags::RDVS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let fc = hdr(&b.poll_transmit().unwrap());
    assert_eq!(fc.flags, ACK_FC);
    assert_eq!(b.poll_timeout(), None, "no delayed ACK left");
    b.handle_timeout(t0 + Duration::from_millis(50));
    assert!(b.poll_transmit().is_none());
    assert_eq!(b.counters().acks_sent, 0);
    // Without retransmission the answer is FC alone, and no ACK was owed.
    let (mut c, mut d) = pair(FrcpConfig::reference(), t0);
    c.send(t0, b"e").unwrap();
    d.handle_pdu(t0, &c.poll_transmit().unwrap()).unwrap();
    d.handle_pdu(t0, &[flags::RDVS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(hdr(&d.poll_transmit().unwrap()).flags, flags::FC);
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn a_window_edge_past_the_reorder_queue_is_held_there_and_old_garbage_is_not_answered() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let base = a.next;
    // An FC 500 past what is unacknowledged (within the 2x reach that is not ignored):
    // held at 256.
    let mut w = Writer(vec![]);
    FrctRepr {
        flags: flags::FC,
        rwe: base.wrapping_add(500) & 0x00ff_ffff,
        seqno: 0,
        ackno: 0,
    }
    .write(&mut w);
    let bad = a.counters().bad_windows;
    a.handle_pdu(t0, &w.0).unwrap();
    assert_eq!(a.send_window(), 256);
    assert_eq!(a.counters().bad_windows, bad + 1);
    for i in 0..256u32 {
        a.send(t0, &i.to_be_bytes()).unwrap();
    }
    assert_eq!(a.send(t0, b"x"), Err(SendError::WouldBlock));
    assert_eq!(a.in_flight(), 256);
    // Data far behind b's edge (more than its reorder queue): dropped, no ACK.
    let lwe = b.rcv_lwe;
    let mut w = Writer(vec![]);
    FrctRepr {
        flags: flags::DATA,
        rwe: 0,
        seqno: lwe.wrapping_sub(1000),
        ackno: 0,
    }
    .write(&mut w);
    w.put(b"old");
    let (dups, oow) = (b.counters().duplicates, b.counters().out_of_window);
    b.handle_pdu(t0, &w.0).unwrap();
    assert!(b.poll_transmit().is_none(), "not answered");
    assert_eq!(
        (b.counters().duplicates, b.counters().out_of_window),
        (dups, oow + 1)
    );
    // The edge of it: 256 behind may be ours sent again (answered), 257 may not.
    for (behind, answered) in [(256u32, true), (257, false)] {
        let mut w = Writer(vec![]);
        FrctRepr {
            flags: flags::DATA,
            rwe: 0,
            seqno: lwe.wrapping_sub(behind),
            ackno: 0,
        }
        .write(&mut w);
        w.put(b"old");
        b.handle_pdu(t0, &w.0).unwrap();
        assert_eq!(b.poll_transmit().is_some(), answered, "{behind} behind");
    }
    assert_eq!(
        (b.counters().duplicates, b.counters().out_of_window),
        (dups + 1, oow + 2)
    );
}

#[test]
fn ack_now_sends_the_owed_ack_and_nothing_when_none_is_owed() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    b.ack_now();
    assert!(b.poll_transmit().is_none(), "nothing owed");
    a.send(t0, b"x").unwrap();
    b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    assert!(b.poll_transmit().is_none(), "delayed");
    b.ack_now();
    let ack = hdr(&b.poll_transmit().unwrap());
    assert_eq!((ack.flags & flags::ACK, ack.ackno), (flags::ACK, b.rcv_lwe));
    assert_eq!(b.poll_timeout(), None);
    b.ack_now();
    assert!(b.poll_transmit().is_none(), "owed once");
}

#[test]
fn a_sender_ignoring_the_window_cannot_make_a_receiver_hold_more_than_it() {
    let t0 = Instant::now();
    for rtx_on in [true, false] {
        let cfg = FrcpConfig {
            rtx: rtx_on,
            ..FrcpConfig::reference()
        };
        let mut b = Frcp::new(cfg, 2);
        // A sender with a window of a million: 1000 packets in order, DRF first.
        let mut a = Frcp::new(
            FrcpConfig {
                window: 1 << 20,
                reorder: 1 << 20,
                ..cfg
            },
            1,
        );
        for i in 0..1000u32 {
            a.send(t0, &i.to_be_bytes()).unwrap();
            if i == 0 {
                a.snd_rwe = a.next.wrapping_add(1 << 20);
            }
            let p = a.poll_transmit().unwrap();
            b.handle_pdu(t0, &p).unwrap();
        }
        // b's app never read: a window's worth waits, the rest was dropped.
        assert_eq!(b.deliverable(), 64, "rtx {rtx_on}");
        assert_eq!(b.counters().out_of_window, 936, "rtx {rtx_on}");
        // The app takes one: one more fits (the next in order, sent again), not two.
        assert!(b.poll_deliver().is_some());
        if rtx_on {
            let (p64, p65) = (a.unacked[64].pdu.clone(), a.unacked[65].pdu.clone());
            b.handle_pdu(t0, &p64).unwrap();
            b.handle_pdu(t0, &p65).unwrap();
        } else {
            b.handle_pdu(t0, &{
                a.send(t0, b"late").unwrap();
                a.poll_transmit().unwrap()
            })
            .unwrap();
            assert_eq!(b.deliverable(), 63, "beyond the reorder queue: dropped");
            continue;
        }
        assert_eq!(b.deliverable(), 64, "rtx {rtx_on}");
    }
}

#[test]
fn after_an_rto_the_packets_behind_wait_one_more_rto() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let rto = a.rto_timer();
    let p1 = {
        a.send(t0, b"1").unwrap();
        a.poll_transmit().unwrap()
    };
    a.send(t0, b"2").unwrap();
    while a.poll_transmit().is_some() {}
    a.handle_timeout(t0 + rto);
    assert_eq!(a.poll_transmit().unwrap(), p1);
    assert!(a.poll_transmit().is_none());
    // The first is acknowledged: the second's timer runs from the RTO, not from its send.
    b.handle_pdu(t0 + rto, &p1).unwrap();
    b.handle_timeout(t0 + rto + Duration::from_millis(5));
    a.handle_pdu(
        t0 + rto + Duration::from_millis(6),
        &b.poll_transmit().unwrap(),
    )
    .unwrap();
    assert_eq!(a.in_flight(), 1);
    assert_eq!(a.poll_timeout(), Some(t0 + rto + rto));
}

#[test]
fn the_machine_trait_drives_frcp_as_its_own_methods_do() {
    use crate::machine::{drain, Machine};
    let t0 = Instant::now();
    let (mut a, mut b) = (Frcp::new(rtx(), 1), Frcp::new(rtx(), 2));
    a.send(t0, b"one").unwrap();
    assert_eq!(Machine::poll_timeout(&a), Some(t0 + a.rto_timer()));
    let (out, none) = drain(&mut a);
    assert_eq!((out.len(), none.len()), (1, 0));
    b.handle_pdu(t0, &out[0]).unwrap();
    // The trait's events are the SDUs delivered.
    assert_eq!(Machine::poll_event(&mut b), Some(b"one".to_vec()));
    assert_eq!(Machine::poll_event(&mut b), None);
    // Its timer: the delayed ACK goes at the trait's handle_timeout.
    let due = Machine::poll_timeout(&b).unwrap();
    Machine::handle_timeout(&mut b, due);
    let ack = Machine::poll_transmit(&mut b).unwrap();
    assert_eq!(hdr(&ack).flags & flags::ACK, flags::ACK);
    assert_eq!(Machine::poll_transmit(&mut b), None);
}

#[test]
fn a_window_edge_far_from_ours_is_ignored_and_one_within_reach_taken() {
    let t0 = Instant::now();
    let (mut a, _b) = pair(FrcpConfig::reference(), t0);
    let fc = |rwe: u32| {
        let mut w = Writer(vec![]);
        FrctRepr {
            flags: flags::FC,
            rwe,
            seqno: 0,
            ackno: 0,
        }
        .write(&mut w);
        w.0
    };
    let had = a.snd_rwe;
    a.handle_pdu(t0, &fc(had.wrapping_add(600) & 0x00ff_ffff))
        .unwrap();
    assert_eq!((a.snd_rwe, a.counters().bad_windows), (had, 1));
    a.handle_pdu(t0, &fc(had.wrapping_add(150) & 0x00ff_ffff))
        .unwrap();
    assert_eq!(a.snd_rwe, had.wrapping_add(150));
    // Within reach but past the reorder queue from what is unacknowledged: held there.
    a.handle_pdu(t0, &fc(had.wrapping_add(512) & 0x00ff_ffff))
        .unwrap();
    assert_eq!(
        (a.snd_rwe, a.counters().bad_windows),
        (a.next.wrapping_add(256), 2)
    );
    // Across the 24-bit wrap of the field.
    let mut c = Frcp::new(FrcpConfig::reference(), 9);
    c.snd_rwe = 0x12ff_fff0;
    c.next = 0x12ff_ff80;
    c.handle_pdu(t0, &fc(0x0000_0010)).unwrap();
    assert_eq!(c.snd_rwe, 0x1300_0010);
    c.handle_pdu(t0, &fc(0x00ff_ffe0)).unwrap();
    assert_eq!(c.snd_rwe, 0x12ff_ffe0);
    // Exactly twice the reach (2 x 256) away is still of this run: taken, and held
    // at the reach past what is out (`next`, nothing unacknowledged).
    let mut d = Frcp::new(FrcpConfig::reference(), 10);
    d.snd_rwe = 0x0000_1000;
    d.next = 0x0000_1000 - 300;
    d.handle_pdu(t0, &fc(0x0000_1000 + 512)).unwrap();
    assert_eq!(
        (d.snd_rwe, d.counters().bad_windows),
        (0x0000_1000 - 300 + 256, 1)
    );
}

#[test]
fn packets_before_a_lost_drf_wait_for_it_and_a_new_run_needs_the_old_one_quiet() {
    let t0 = Instant::now();
    let (mut a, mut b) = (Frcp::new(rtx(), 1), Frcp::new(rtx(), 2));
    let pdus: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            a.send(t0, &[i]).unwrap();
            a.poll_transmit().unwrap()
        })
        .collect();
    b.handle_pdu(t0, &pdus[2]).unwrap();
    b.handle_pdu(t0, &pdus[1]).unwrap();
    assert_eq!(b.counters().delivered, 0, "no run before its DRF");
    b.handle_pdu(t0, &pdus[0]).unwrap();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_deliver()).collect();
    assert_eq!(got, [vec![0], vec![1], vec![2]]);
    // A DRF far from the run while it is alive is not a new run...
    let mut other = Frcp::new(rtx(), 77);
    other.send(t0, b"new").unwrap();
    let drf = other.poll_transmit().unwrap();
    b.handle_pdu(t0 + Duration::from_millis(500), &drf).unwrap();
    assert!(b.poll_deliver().is_none());
    // ...after the run was quiet for `inact` it is.
    b.handle_pdu(t0 + Duration::from_millis(1000), &drf)
        .unwrap();
    assert!(
        b.poll_deliver().is_none(),
        "quiet since t0: not yet past inact"
    );
    b.handle_pdu(t0 + Duration::from_millis(1001), &drf)
        .unwrap();
    assert_eq!(b.poll_deliver().unwrap(), b"new");
    // The early queue holds at most `reorder` packets.
    let small = FrcpConfig {
        reorder: 2,
        ..rtx()
    };
    let (mut c, mut d) = (Frcp::new(small, 3), Frcp::new(small, 4));
    let ps: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            c.send(t0, &[i]).unwrap();
            c.poll_transmit().unwrap()
        })
        .collect();
    for p in &ps[1..4] {
        d.handle_pdu(t0, p).unwrap();
    }
    assert_eq!(d.counters().out_of_window, 1);
    d.handle_pdu(t0, &ps[0]).unwrap();
    assert_eq!(d.counters().delivered, 3);
    // Beyond the reorder queue in a run: dropped, counted.
    d.handle_pdu(t0, &{
        c.send(t0, &[9]).unwrap();
        c.send(t0, &[10]).unwrap();
        c.send(t0, &[11]).unwrap();
        let _ = c.poll_transmit();
        let _ = c.poll_transmit();
        c.poll_transmit().unwrap()
    })
    .unwrap();
    assert_eq!(d.counters().out_of_window, 2);
}

#[test]
fn a_quarter_window_in_order_is_acknowledged_at_once_with_the_window() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    for i in 0..15u8 {
        a.send(t0, &[i]).unwrap();
        b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
        while b.poll_deliver().is_some() {}
        b.handle_timeout(t0);
        assert!(
            b.poll_transmit().is_none(),
            "{i}: the ACK waits for its delay"
        );
    }
    assert_eq!(b.poll_timeout(), Some(t0 + rtx().ack_delay));
    a.send(t0, &[15]).unwrap();
    b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    while b.poll_deliver().is_some() {}
    let pdu = b.poll_transmit().expect("the 16th makes it go at once");
    let ack = hdr(&pdu);
    assert_eq!(ack.flags, ACK_FC, "16 taken: the window moved a quarter");
    assert_eq!(ack.ackno, b.rcv_lwe);
    a.handle_pdu(t0, &pdu).unwrap();
    assert_eq!(a.in_flight(), 0);
    assert_eq!(
        a.send_window(),
        63,
        "the window is open again but for the SDU b's app has not taken"
    );
    // The count starts over after an ACK: the next 15 wait again.
    for i in 16..31u8 {
        a.send(t0, &[i]).unwrap();
        b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
    }
    assert_eq!(b.poll_timeout(), Some(t0 + rtx().ack_delay));
}

#[test]
fn the_send_window_counts_down_to_the_edge_and_a_new_end_assumes_a_whole_one() {
    let t0 = Instant::now();
    assert_eq!(Frcp::new(rtx(), 9).send_window(), 64);
    let (mut a, _b) = pair(rtx(), t0);
    // b told its edge before its app took a's first SDU: 63 left.
    assert_eq!(a.send_window(), 63);
    for i in 0..10u8 {
        a.send(t0, &[i]).unwrap();
    }
    assert_eq!(a.send_window(), 53);
    for i in 0..53u8 {
        a.send(t0, &[i]).unwrap();
    }
    assert_eq!(a.send_window(), 0);
    assert_eq!(a.send(t0, &[0]), Err(SendError::WouldBlock));
    assert_eq!(a.send_window(), 0);
}

#[test]
fn an_ack_carries_the_window_once_it_moved_a_quarter_window() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    let mut adv = b.rcv_advertised;
    let mut with_fc = 0;
    for i in 0..40u8 {
        a.send(t0, &[i]).unwrap();
        b.handle_pdu(t0, &a.poll_transmit().unwrap()).unwrap();
        while b.poll_deliver().is_some() {}
        let moved = b.rcv_rwe().wrapping_sub(adv);
        b.handle_timeout(t0 + Duration::from_millis(5));
        let ack = hdr(&b.poll_transmit().unwrap());
        assert_eq!(ack.flags == ACK_FC, moved >= 16, "{i}: moved {moved}");
        if ack.flags == ACK_FC {
            assert_eq!(ack.rwe, b.rcv_lwe.wrapping_add(64) & 0x00ff_ffff);
            adv = b.rcv_advertised;
            with_fc += 1;
        }
    }
    assert_eq!(with_fc, 2);
    assert_eq!(b.counters().acks_sent, 40);
    // An RDVS is answered with ACK|FC on a retransmitting flow.
    b.handle_pdu(t0, &[flags::RDVS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let fc = hdr(&b.poll_transmit().unwrap());
    assert_eq!((fc.flags, fc.ackno), (ACK_FC, b.rcv_lwe));
    assert_eq!(b.counters().fc_sent, 1);
}

#[test]
fn bad_pdus_are_refused_and_counted() {
    let t0 = Instant::now();
    let mut b = Frcp::new(rtx(), 2);
    assert_eq!(b.handle_pdu(t0, &[1, 2, 3]), Err(Malformed(3)));
    // An ACK of what was never sent.
    b.handle_pdu(t0, &[0x04, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0])
        .unwrap();
    let c = b.counters();
    assert_eq!((c.malformed, c.bad_acks), (1, 1));
    assert!(b.poll_deliver().is_none());
}

/// A PDU on the simulated link: (arrival, order sent, to b?, bytes).
type InFlight = (Instant, u64, bool, Vec<u8>);

/// Two ends over a link that loses 5 %, duplicates 1 % and reorders (jitter up to
/// twice the delay), both ways, on virtual time: 10,000 SDUs arrive all, in order, once.
#[test]
fn ten_thousand_sdus_cross_loss_duplication_and_reordering_in_order_once() {
    let t0 = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(27);
    let (mut a, mut b) = (Frcp::new(rtx(), 11), Frcp::new(rtx(), 12));
    // In flight: (arrival, order, to b?, pdu).
    let mut wire: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut order = 0u64;
    let delay = Duration::from_millis(5);
    let mut now = t0;
    let (total, mut sent, mut got) = (10_000u32, 0u32, Vec::new());
    let mut put = |wire: &mut BinaryHeap<_>,
                   rng: &mut rand_chacha::ChaCha8Rng,
                   now: Instant,
                   to_b: bool,
                   p: Vec<u8>| {
        if rng.gen_bool(0.05) {
            return;
        }
        let copies = if rng.gen_bool(0.01) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = Duration::from_micros(rng.gen_range(0..10_000));
            order += 1;
            wire.push(Reverse((now + delay + jitter, order, to_b, p.clone())));
        }
    };
    let mut steps = 0u64;
    while got.len() < total as usize {
        steps += 1;
        assert!(steps < 2_000_000, "stuck at {} of {total}", got.len());
        // The writer writes while the window lets it.
        while sent < total && a.send(now, &sent.to_be_bytes()).is_ok() {
            sent += 1;
        }
        for (from_a, end) in [(true, &mut a), (false, &mut b)] {
            while let Some(p) = end.poll_transmit() {
                put(&mut wire, &mut rng, now, from_a, p);
            }
        }
        while let Some(s) = b.poll_deliver() {
            got.push(u32::from_be_bytes(s.try_into().unwrap()));
        }
        // The next event: a PDU arriving or a timer.
        let next = [
            wire.peek().map(|Reverse((t, ..))| *t),
            a.poll_timeout(),
            b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(t) = next else {
            if sent < total {
                now += Duration::from_millis(1);
                continue;
            }
            panic!("nothing left to happen at {} of {total}", got.len());
        };
        now = now.max(t);
        while wire.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
            let Reverse((_, _, to_b, p)) = wire.pop().unwrap();
            if to_b {
                b.handle_pdu(now, &p).unwrap();
            } else {
                a.handle_pdu(now, &p).unwrap();
            }
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert_eq!(got, (0..total).collect::<Vec<u32>>(), "all, in order, once");
    let (ca, cb) = (a.counters(), b.counters());
    assert_eq!(ca.sent, u64::from(total));
    // About what was lost (5 % each way, data and ACKs): each loss repaired once or
    // twice, not the whole window behind it.
    assert!(ca.retransmits > 300 && ca.retransmits < 2_000, "{ca:?}");
    assert!(ca.fast_retransmits > 0, "{ca:?}");
    // 18 s of virtual time here; an estimator fed the repairs' waits took 228 s.
    assert!(now - t0 < Duration::from_secs(60), "{:?}", now - t0);
    assert!(cb.duplicates > 0, "{cb:?}");
    assert_eq!(cb.delivered, u64::from(total));
    // The RTT is 10-30 ms here: the estimator found it.
    let srtt = a.srtt().unwrap();
    assert!(
        srtt > Duration::from_millis(8) && srtt < Duration::from_millis(40),
        "{srtt:?}"
    );
}

#[test]
fn control_packets_never_push_data_out_of_a_full_transmit_queue() {
    let t0 = Instant::now();
    let mut a = Frcp::new(
        FrcpConfig {
            window: 100_000,
            reorder: 100_000,
            ..FrcpConfig::reference()
        },
        1,
    );
    a.snd_rwe = 0;
    a.last_send = None;
    for i in 0..(MAX_TRANSMITS as u32 - 1) {
        a.send(t0, &i.to_be_bytes()).unwrap();
        if i == 0 {
            a.snd_rwe = a.next.wrapping_add(1 << 20);
        }
    }
    // One ACK fits; the next ones replace it; none pushes data out.
    a.send_ack();
    assert_eq!(a.pending_transmits(), MAX_TRANSMITS);
    for _ in 0..10 {
        a.send_ack();
    }
    assert_eq!(a.pending_transmits(), MAX_TRANSMITS);
    assert_eq!(a.counters().transmits_dropped, 10);
    // Data makes the ACK go, not the oldest data.
    a.send(t0, &u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(a.counters().transmits_dropped, 11);
    let first = a.poll_transmit().unwrap();
    assert_eq!(&first[HEADER_LEN..], &0u32.to_be_bytes());
    let mut all = vec![first];
    while let Some(p) = a.poll_transmit() {
        all.push(p);
    }
    assert_eq!(all.len(), MAX_TRANSMITS);
    assert!(
        all.iter().all(|p| p.len() == HEADER_LEN + 4),
        "no ACK left, every datum there"
    );
    assert_eq!(
        &all[MAX_TRANSMITS - 1][HEADER_LEN..],
        &u32::MAX.to_be_bytes()
    );
    // A full queue of data drops a new ACK rather than data.
    for i in 0..MAX_TRANSMITS as u32 {
        a.send(t0, &i.to_be_bytes()).unwrap();
    }
    a.send_ack();
    assert_eq!(a.pending_transmits(), MAX_TRANSMITS);
    assert_eq!(
        &a.poll_transmit().unwrap()[HEADER_LEN..],
        &0u32.to_be_bytes()
    );
}

#[test]
fn a_duplicate_does_not_keep_a_quiet_run_alive() {
    // A replayed packet of the run (delivered already) must not count as the run's
    // activity: after `inact` of real quiet, the sender's new run (DRF) is taken.
    let t0 = Instant::now();
    let (mut a, mut b) = pair(rtx(), t0);
    a.send(t0, b"one").unwrap();
    let first = a.poll_transmit().unwrap();
    b.handle_pdu(t0, &first).unwrap();
    assert_eq!(b.poll_deliver().as_deref(), Some(&b"one"[..]));
    let inact = b.cfg.inact;
    // Replays of the delivered packet, every half `inact`, for three `inact`s.
    let mut t = t0;
    for _ in 0..6 {
        t += inact / 2;
        b.handle_pdu(t, &first).unwrap();
    }
    // A new run from the sender, far from the old one (it restarted).
    let mut c = Frcp::new(rtx(), 0x4000_0000);
    c.send(t, b"two").unwrap();
    let drf = c.poll_transmit().unwrap();
    b.handle_pdu(t, &drf).unwrap();
    assert_eq!(b.poll_deliver().as_deref(), Some(&b"two"[..]));
}
