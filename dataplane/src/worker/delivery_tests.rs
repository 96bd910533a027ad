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
