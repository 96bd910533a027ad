//! A flow's delivery over plain memory: what it says it did with an SDU, which decides
//! whether a DT PDU counts as delivered and whether its ECN byte steers congestion control.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn flow(crypt: Option<crate::crypt::Crypt>) -> Flow {
    let (mem, _fd) = FlowMem::create(8, 2048).unwrap();
    let now = Instant::now();
    Flow {
        crypt,
        plain: Vec::new(),
        peer_addr: None,
        port: 1,
        local: 64,
        remote: 65,
        peer: [2, 0, 0, 0, 0, 1],
        timeout: Duration::from_secs(1),
        last_rx: now,
        last_tx: now,
        mem,
        tx_kick: Kick::new().unwrap(),
        rx_kick: Kick::new().unwrap(),
        kick_due: false,
        stats: FlowStats::default(),
        pid: 0,
        pidfd: None,
        record: String::new(),
        timeout_ms: 1000,
        uni: None,
        ca: None,
    }
}

fn cipher() -> crate::crypt::Crypt {
    crate::crypt::Crypt::new(901, [7; 32], 20).unwrap()
}

#[test]
fn a_sealed_sdu_that_opens_is_delivered_and_a_forged_one_is_not() {
    let mut f = flow(Some(cipher()));
    let mut sender = cipher();
    let mut wire = Vec::new();
    sender.seal(b"ping", &mut wire).unwrap();
    assert!(f.deliver_mut(&mut wire.clone(), Instant::now()));
    assert_eq!(f.stats.rx_sdus, 1);
    // The same bytes with one flipped: forged.
    let last = wire.len() - 1;
    wire[last] ^= 1;
    assert!(!f.deliver_mut(&mut wire, Instant::now()));
    assert_eq!(f.stats.drop_decrypt, 1);
    assert_eq!(f.stats.rx_sdus, 1);
    // Copied path (`deliver`) says the same.
    assert!(!f.deliver(&wire, Instant::now()));
    assert_eq!(f.stats.drop_decrypt, 2);
}

#[test]
fn plain_sdus_and_keepalives_are_taken() {
    let mut f = flow(None);
    assert!(f.deliver_mut(&mut b"data".to_vec(), Instant::now()));
    assert!(f.deliver_mut(&mut [], Instant::now()));
    assert_eq!((f.stats.rx_sdus, f.stats.rx_keepalives), (1, 1));
    // A sealed keepalive (empty inside) is taken too.
    let mut f = flow(Some(cipher()));
    let mut wire = Vec::new();
    cipher().seal(b"", &mut wire).unwrap();
    assert!(f.deliver_mut(&mut wire, Instant::now()));
    assert_eq!(f.stats.rx_keepalives, 1);
}

/// A writer held by its window that then stops writing (a bulk transfer that ended, or one
/// forged FLOW_UPDATE) leaves its hold behind: once it is over it is no reason to wake,
/// or the worker's every sleep would be a zero one.
#[test]
fn a_hold_that_is_over_does_not_keep_the_worker_awake() {
    let (ch, _peer) = o7s::ipc::Channel::pair().unwrap();
    let mut dp = Dataplane::new(ch);
    let t0 = dp.now;
    let mut f = flow(None);
    let mut ca = congestion::FlowCa::new(0);
    // Far beyond the first window: held.
    assert!(ca.on_sent(t0, 0, 10_000_000));
    f.ca = Some(ca);
    dp.flows.insert(7, f);
    let d = dp.time_deadline().unwrap();
    assert!(d > Duration::ZERO, "held now: wake when it ends ({d:?})");
    dp.now = t0 + Duration::from_secs(2);
    assert_eq!(
        dp.time_deadline(),
        None,
        "the hold is over; nothing else waits"
    );
}
