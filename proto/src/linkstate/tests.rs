#![allow(clippy::unwrap_used)]
use super::*;

/// The collision link state reports, if any (other events are passed over).
fn collision<F: Clone + PartialEq>(ls: &mut LinkState<F>) -> Option<Collision> {
    std::iter::from_fn(|| ls.poll_event()).find_map(|e| match e {
        Event::Collision(c) => Some(c),
        Event::TableChanged => None,
    })
}

#[test]
fn a_changed_table_is_an_event_once_and_an_unchanged_one_none() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    ls.add_mgmt(10);
    ls.add_dt(t0, 2);
    // Only our half of the link: no route, no change.
    assert_eq!(ls.poll_event(), None);
    ls.handle(t0, &10, &encode(2, 1, 0));
    assert_eq!(ls.next_hop(2), Some(2));
    assert_eq!(ls.poll_event(), Some(Event::TableChanged));
    assert_eq!(ls.poll_event(), None, "told once");
    // A newer seqno of the same link: the LSDB changed, the next hops did not.
    ls.handle(t0, &10, &encode(2, 1, 1));
    ls.handle_timeout(t0 + LsConfig::default().t_recalc);
    assert_eq!(ls.poll_event(), None);
    // A third IPCP behind 2: a new destination.
    ls.handle(t0, &10, &encode(2, 3, 0));
    ls.handle(t0, &10, &encode(3, 2, 0));
    ls.handle_timeout(t0 + 2 * LsConfig::default().t_recalc);
    assert_eq!(ls.next_hop(3), Some(2));
    assert_eq!(ls.poll_event(), Some(Event::TableChanged));
    // The machine's shape, through the trait.
    let (sent, events) = crate::machine::drain(&mut ls);
    assert!(events.is_empty());
    assert!(sent.iter().all(|(f, _)| *f == 10), "{sent:?}");
    assert_eq!(
        crate::machine::Machine::poll_timeout(&ls),
        ls.poll_timeout()
    );
}

#[test]
fn an_lsa_is_inserted_forwarded_once_and_links_need_both_ends() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    ls.add_mgmt(10);
    ls.add_mgmt(20);
    ls.add_dt(t0, 2);
    // Our own announcement went to both management neighbours.
    assert_eq!(ls.poll_transmit(), Some((10, encode(1, 2, 0))));
    assert_eq!(ls.poll_transmit(), Some((20, encode(1, 2, 0))));
    // Only 1 -> 2 is known: no route yet.
    assert_eq!(ls.next_hop(2), None);
    // 2 -> 1 from flow 10: inserted, forwarded to 20 only, route up.
    ls.handle(t0, &10, &encode(2, 1, 0));
    assert_eq!(ls.poll_transmit(), Some((20, encode(2, 1, 0))));
    assert_eq!(ls.poll_transmit(), None);
    assert_eq!(ls.next_hop(2), Some(2));
    // The same again: ignored, not forwarded.
    ls.handle(t0, &20, &encode(2, 1, 0));
    assert_eq!(ls.poll_transmit(), None);
    assert_eq!(ls.counters().stale, 1);
    // A newer seqno: forwarded. A short SDU: counted.
    ls.handle(t0, &20, &encode(2, 1, 1));
    assert_eq!(ls.poll_transmit(), Some((10, encode(2, 1, 1))));
    ls.handle(t0, &20, &[0; 23]);
    assert_eq!(ls.counters().malformed, 1);
}

#[test]
fn a_restored_lsdb_routes_at_once_and_announces_our_links_above_the_saved_seqnos() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    // Saved: 1 <-> 2 <-> 3, ours at seqno 40; junk records are skipped.
    let saved = [
        ((1, 2), 40),
        ((2, 1), 41),
        ((2, 3), 7),
        ((3, 2), 9),
        ((0, 2), 1),
        ((3, 3), 1),
        ((2, 4), WITHDRAWN),
    ];
    ls.restore(t0, &saved);
    ls.resume_dt(t0, 2);
    assert_eq!(
        ls.next_hop(3),
        Some(2),
        "a route through the restored records"
    );
    let mut db = ls.lsdb();
    db.sort_unstable();
    assert_eq!(
        db,
        [
            ((1, 2), 40 + LinkState::<u8>::RESTORE_MARGIN),
            ((2, 1), 41),
            ((2, 3), 7),
            ((3, 2), 9)
        ]
    );
    // A neighbour sends our own record back (its copy, older): ours, not a collision.
    ls.add_mgmt(10);
    while ls.poll_transmit().is_some() {}
    ls.handle(t0, &10, &encode(1, 2, 40));
    assert_eq!(ls.counters().collisions, 0);
    assert!(collision(&mut ls).is_none());
    // The next update announces our link above what the neighbours hold.
    ls.handle_timeout(t0 + Duration::from_secs(1));
    let sent: Vec<[u8; 24]> = std::iter::from_fn(|| ls.poll_transmit())
        .map(|(_, l)| l)
        .collect();
    assert!(
        sent.contains(&encode(1, 2, 41 + LinkState::<u8>::RESTORE_MARGIN)),
        "{sent:?}"
    );
    // A DT link with no saved record starts at 0.
    ls.resume_dt(t0, 3);
    assert!(ls.lsdb().contains(&((1, 3), 0)));
    assert_eq!(ls.t_update(), LsConfig::default().t_update);
    // A saved seqno near the top stays below the withdrawal's.
    let mut hi: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    hi.restore(t0, &[((1, 2), WITHDRAWN - 2)]);
    assert_eq!(hi.lsdb(), [((1, 2), WITHDRAWN - 1)]);
}

#[test]
fn own_links_are_announced_and_others_age_out() {
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_dt(t0, 2);
    ls.handle(t0, &0, &encode(2, 1, 0));
    ls.add_mgmt(7);
    // The new neighbour got the whole LSDB.
    assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, 0))));
    assert_eq!(ls.poll_transmit(), Some((7, encode(2, 1, 0))));
    ls.handle_timeout(t0); // the pass at start: seqno 1
    assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, 1))));
    // 2 stops announcing: after t_timeo its record goes, and the route with it, while
    // the own record is re-announced at every pass.
    let mut now = t0;
    for _ in 0..4 {
        now += cfg.t_update;
        ls.handle_timeout(now);
    }
    assert_eq!(ls.counters().timed_out, 0, "60 s old: not yet");
    assert_eq!(ls.next_hop(2), Some(2));
    // The pass that deletes it recomputes in the same turn (the recalculation is due).
    now += cfg.t_update;
    ls.handle_timeout(now);
    assert!(ls.poll_transmit().is_some());
    assert_eq!(ls.counters().timed_out, 1);
    assert_eq!(ls.next_hop(2), None);
    assert!(ls.table().is_empty());
    assert_eq!(ls.lsdb().len(), 1);
    // Next: the recalculation (every t_recalc), before the next pass.
    assert_eq!(ls.poll_timeout(), Some(now + cfg.t_recalc));
}

#[test]
fn a_forged_seqno_for_our_own_link_never_withdraws_it_nor_wraps() {
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_dt(t0, 2);
    ls.add_mgmt(7);
    while ls.poll_transmit().is_some() {}
    // A peer sends "our" link 1 -> 2 just below WITHDRAWN: refused, counted, not flooded.
    let stale = ls.counters().stale;
    ls.handle(t0, &7, &encode(1, 2, WITHDRAWN - 1));
    assert_eq!(ls.counters().stale, stale + 1);
    assert_eq!(ls.poll_transmit(), None);
    assert_eq!(ls.lsdb(), [((1, 2), 0)]);
    // The echo of an announcement of ours from before a restart is taken: we go on above.
    ls.handle(t0, &7, &encode(1, 2, 1000));
    assert_eq!(ls.lsdb(), [((1, 2), 1000)]);
    while ls.poll_transmit().is_some() {}
    ls.handle_timeout(t0);
    assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, 1001))));
    // A jump of 2^32 exactly is still a restart's; our announcements go on above it.
    ls.handle(t0, &7, &encode(1, 2, 1001 + (1 << 32)));
    let mut now = t0;
    for _ in 0..3 {
        while ls.poll_transmit().is_some() {}
        now += cfg.t_update;
        ls.handle_timeout(now);
    }
    let top = 1001 + (1 << 32) + 3;
    assert_eq!(ls.lsdb(), [((1, 2), top)]);
}

#[test]
fn a_live_link_connected_again_is_announced_above_its_seqno() {
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_dt(t0, 2);
    ls.add_mgmt(7);
    for n in 1..=3 {
        ls.handle_timeout(t0 + cfg.t_update * n);
    }
    while ls.poll_transmit().is_some() {}
    let seq = ls.lsdb()[0].1;
    assert!(seq >= 1, "{seq}");
    // A newer DT connection to 2 (its old one not yet gone): the others hold `seq`.
    ls.add_dt(t0, 2);
    assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, seq + 1))));
    assert_eq!(ls.lsdb(), [((1, 2), seq + 1)]);
}

#[test]
fn an_lsa_for_our_link_to_a_member_we_no_longer_connect_to_is_not_stored() {
    for withdraw in [false, true] {
        let t0 = Instant::now();
        let cfg = LsConfig {
            withdraw,
            ..LsConfig::default()
        };
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_mgmt(7);
        ls.add_dt(t0, 2);
        ls.remove_dt(2);
        while ls.poll_transmit().is_some() {}
        let before = ls.lsdb();
        let stale = ls.counters().stale;
        // A forged (or old) record of our link to 2 at the top seqno: not stored, not
        // flooded, never announced by us.
        ls.handle(t0, &7, &encode(1, 2, WITHDRAWN - 1));
        assert_eq!(ls.counters().stale, stale + 1, "withdraw {withdraw}");
        assert_eq!(ls.lsdb(), before, "withdraw {withdraw}");
        ls.handle_timeout(t0 + cfg.t_update);
        assert!(
            std::iter::from_fn(|| ls.poll_transmit())
                .all(|(_, l)| l != encode(1, 2, WITHDRAWN - 1)),
            "withdraw {withdraw}"
        );
        // 2 back: announced from what we hold, above it.
        ls.add_dt(t0, 2);
        let seq = ls
            .lsdb()
            .iter()
            .find(|(k, _)| *k == (1, 2))
            .map(|(_, s)| *s);
        assert!(seq.is_some_and(|s| s < 10), "withdraw {withdraw}: {seq:?}");
    }
}

#[test]
fn an_own_seqno_at_the_top_stays_below_withdrawn() {
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.restore(t0, &[((1, 2), WITHDRAWN - 2)]);
    ls.resume_dt(t0, 2);
    let mut now = t0;
    for _ in 0..3 {
        now += cfg.t_update;
        ls.handle_timeout(now);
    }
    assert_eq!(ls.lsdb(), [((1, 2), WITHDRAWN - 1)]);
}

/// A chain A(1) - B(2) - C(3) seen from A and from B, all links known everywhere; A and
/// B are each other's management neighbours (flows 12 at A, 21 at B; 23 B's to C).
fn chain(withdraw: bool) -> (LinkState<u8>, LinkState<u8>, Instant) {
    let t0 = Instant::now();
    let cfg = LsConfig {
        withdraw,
        ..LsConfig::default()
    };
    let mut a: LinkState<u8> = LinkState::new(1, cfg, t0);
    let mut b: LinkState<u8> = LinkState::new(2, cfg, t0);
    a.add_dt(t0, 2);
    b.add_dt(t0, 1);
    b.add_dt(t0, 3);
    for (s, d) in [(2, 1), (2, 3), (3, 2)] {
        a.handle(t0, &12, &encode(s, d, 0));
    }
    for (s, d) in [(1, 2), (3, 2)] {
        b.handle(t0, &21, &encode(s, d, 0));
    }
    a.add_mgmt(12);
    b.add_mgmt(21);
    b.add_mgmt(23);
    while a.poll_transmit().is_some() {}
    while b.poll_transmit().is_some() {}
    assert_eq!(a.next_hop(3), Some(2));
    (a, b, t0)
}

#[test]
fn a_lost_link_is_withdrawn_and_the_far_member_drops_the_route_at_once() {
    let (mut a, mut b, t0) = chain(true);
    // B loses C: its own record goes, its table at once, and both management
    // neighbours are told with the withdrawal seqno.
    b.remove_dt(3);
    assert_eq!(b.next_hop(3), None);
    assert_eq!(b.poll_transmit(), Some((21, encode(2, 3, WITHDRAWN))));
    assert_eq!(b.poll_transmit(), Some((23, encode(2, 3, WITHDRAWN))));
    assert_eq!(b.poll_transmit(), None);
    // A deletes the pair and routes C no more, long before t_timeo; it forwards the
    // withdrawal to its other management neighbours (none here but a new one).
    a.add_mgmt(13);
    while a.poll_transmit().is_some() {}
    a.handle(t0, &12, &encode(2, 3, WITHDRAWN));
    assert_eq!(a.next_hop(3), None);
    assert_eq!(a.counters().withdrawn, 1);
    assert!(!a.lsdb().iter().any(|(k, _)| *k == (2, 3)));
    assert_eq!(a.poll_transmit(), Some((13, encode(2, 3, WITHDRAWN))));
    assert_eq!(a.poll_transmit(), None);
    // Again (another path): an unknown pair, not forwarded: the flood ends.
    a.handle(t0, &13, &encode(2, 3, WITHDRAWN));
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.counters().withdrawn, 1);
    assert_eq!(a.counters().stale, 1);
    // A copy of the old announcement still in flight is stale at a member that has
    // the tombstone, and goes no further: without the tombstone it would be new again,
    // forwarded, and chase the withdrawal round every cycle of the layer.
    a.handle(t0, &13, &encode(2, 3, 0));
    assert_eq!(a.next_hop(3), None);
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.counters().stale, 2);
    // The link comes back: B announces it one above the withdrawn seqno, A takes it.
    b.add_dt(t0, 3);
    assert_eq!(b.poll_transmit(), Some((21, encode(2, 3, 1))));
    a.handle(t0, &12, &encode(2, 3, 1));
    assert_eq!(a.next_hop(3), Some(2));
    assert_eq!(a.poll_transmit(), Some((13, encode(2, 3, 1))));
    // The tombstones age out after t_timeo like any record; then a restarted owner's
    // seqno 0 is new again.
    let (mut c, mut d, t0) = chain(true);
    d.remove_dt(3);
    c.handle(t0, &12, &encode(2, 3, WITHDRAWN));
    let later = t0 + LsConfig::default().t_timeo + Duration::from_secs(1);
    c.handle_timeout(later);
    c.handle(later, &12, &encode(2, 3, 0));
    assert!(c.lsdb().iter().any(|(k, s)| *k == (2, 3) && *s == 0));
}

#[test]
fn without_withdraw_nothing_is_sent_and_a_received_one_never_deletes_an_own_link() {
    let (mut a, mut b, t0) = chain(false);
    b.remove_dt(3);
    assert_eq!(
        b.next_hop(3),
        Some(3),
        "the reference's table waits for its recomputation"
    );
    assert_eq!(
        b.poll_transmit(),
        None,
        "the reference's behaviour: nothing sent"
    );
    b.handle_timeout(t0 + LsConfig::default().t_recalc + Duration::from_millis(1));
    assert_eq!(b.next_hop(3), None);
    // A withdrawal of A's own link to B (its own come round, or a forgery) deletes
    // nothing here: the link is announced again, above its seqno, a second later.
    while a.poll_transmit().is_some() {}
    let seq = a
        .lsdb()
        .iter()
        .find(|(k, _)| *k == (1, 2))
        .map(|(_, s)| *s)
        .unwrap();
    a.handle(t0, &12, &encode(1, 2, WITHDRAWN));
    assert!(a.lsdb().iter().any(|(k, _)| *k == (1, 2)));
    assert_eq!(a.next_hop(2), Some(2));
    assert_eq!(a.counters().withdrawn, 0);
    assert_eq!(a.poll_transmit(), None);
    a.handle_timeout(t0 + lsas::REASSERT_AFTER);
    assert_eq!(a.poll_transmit(), Some((12, encode(1, 2, seq + 1))));
    // A withdrawal from an o7s member is honoured at the reference's pace: the record
    // goes now, the table at the next recomputation.
    assert_eq!(a.next_hop(3), Some(2));
    a.handle(t0, &12, &encode(2, 3, WITHDRAWN));
    assert_eq!(a.counters().withdrawn, 1);
    assert_eq!(a.next_hop(3), Some(2));
    a.handle_timeout(t0 + LsConfig::default().t_recalc + Duration::from_millis(1));
    assert_eq!(a.next_hop(3), None);
}

#[test]
fn a_withdrawal_under_hold_waits_for_the_held_recomputation() {
    let t0 = Instant::now();
    let hold = Duration::from_millis(500);
    let cfg = LsConfig {
        hold,
        ..LsConfig::default()
    };
    let mut a: LinkState<u8> = LinkState::new(1, cfg, t0);
    a.add_dt(t0, 2);
    for (s, d) in [(2, 1), (2, 3), (3, 2)] {
        a.handle(t0, &12, &encode(s, d, 0));
    }
    a.handle_timeout(t0 + hold);
    assert_eq!(a.next_hop(3), Some(2));
    let t1 = t0 + 2 * hold;
    a.handle(t1, &12, &encode(2, 3, WITHDRAWN));
    assert_eq!(a.next_hop(3), Some(2), "held");
    assert_eq!(a.poll_timeout(), Some(t1 + hold));
    a.handle_timeout(t1 + hold);
    assert_eq!(a.next_hop(3), None);
    // Announced again above the tombstone: back in the graph at the next held
    // recomputation (a link learnt from an LSA, not our own).
    let t2 = t1 + 2 * hold;
    a.handle(t2, &12, &encode(2, 3, 1));
    assert_eq!(a.next_hop(3), None, "held");
    a.handle_timeout(t2 + hold);
    assert_eq!(a.next_hop(3), Some(2));
}

/// A collision is judged by our own live links' seqnos: not by a neighbour's record
/// (seqno 40), nor by a link of ours we withdrew (seqno 10).
#[test]
fn a_collision_is_judged_by_our_live_links_only() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(7, LsConfig::default(), t0);
    ls.add_mgmt(1);
    ls.add_dt(t0, 2);
    ls.add_dt(t0, 5);
    ls.handle(t0, &1, &encode(2, 7, 40));
    ls.handle(t0, &1, &encode(7, 5, 10));
    ls.remove_dt(5);
    while ls.poll_transmit().is_some() {}
    ls.handle(t0, &1, &encode(7, 9, 3));
    assert_eq!(collision(&mut ls), Some(Collision::Readdress));
}

/// A link of ours withdrawn at the highest seqno is announced again below the
/// withdrawal's seqno, never as a withdrawal.
#[test]
fn a_link_back_is_never_announced_as_a_withdrawal() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(7, LsConfig::default(), t0);
    ls.add_mgmt(1);
    // Our record at the highest live seqno (restored: the wire may not move it that far).
    ls.restore(t0, &[((7, 2), WITHDRAWN - 2)]);
    ls.resume_dt(t0, 2);
    ls.remove_dt(2);
    while ls.poll_transmit().is_some() {}
    ls.add_dt(t0, 2);
    assert_eq!(ls.poll_transmit(), Some((1, encode(7, 2, WITHDRAWN - 1))));
}

/// A ring of four: 1 - 2 - 3 - 4 - 1, seen from 1 (all LSAs in, DT to 2 and 4).
fn ring(policy: Policy) -> LinkState<u8> {
    let t0 = Instant::now();
    let cfg = LsConfig {
        policy,
        ..LsConfig::default()
    };
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_dt(t0, 2);
    ls.add_dt(t0, 4);
    for (s, d) in [(2, 1), (2, 3), (3, 2), (3, 4), (4, 3), (4, 1)] {
        ls.handle(t0, &0, &encode(s, d, 0));
    }
    ls.recompute();
    ls
}

#[test]
fn lfa_falls_back_to_the_alternate_at_once_and_back_again() {
    let mut ls = ring(Policy::Lfa);
    assert_eq!(
        ls.next_hops(3),
        vec![2, 4],
        "primary 2 (lowest address), alternate 4"
    );
    assert_eq!(ls.next_hop(3), Some(2));
    ls.link_down(2);
    assert_eq!(
        ls.next_hop(3),
        Some(4),
        "the alternate, with no recomputation"
    );
    // No loop-free alternate to 2 itself: 4's shortest paths to 2 may run through 1.
    assert_eq!(ls.next_hop(2), None);
    ls.link_up(2);
    assert_eq!(ls.next_hop(3), Some(2), "the primary again");
    // Simple has no alternate.
    let mut s = ring(Policy::Simple);
    s.link_down(2);
    assert_eq!(s.next_hop(3), None);
}

#[test]
fn ecmp_lists_every_equal_cost_next_hop() {
    let mut ls = ring(Policy::Ecmp);
    let mut both = ls.next_hops(3);
    both.sort_unstable();
    assert_eq!(both, vec![2, 4]);
    ls.link_down(4);
    assert_eq!(ls.next_hops(3), vec![2]);
    assert_eq!(ls.next_hops(2), vec![2], "the direct neighbour only");
}

#[test]
fn another_ipcp_with_our_address_is_found_and_we_readdress() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(7, LsConfig::default(), t0);
    ls.add_mgmt(1);
    ls.add_dt(t0, 2);
    while ls.poll_transmit().is_some() {}
    // Our own link, echoed back: no collision.
    ls.handle(t0, &1, &encode(7, 2, 0));
    assert_eq!(collision(&mut ls), None);
    // "7 -> 9": we have no DT connection to 9: another IPCP uses our address, and
    // it is older (seqno 3 > our 0): we move.
    ls.handle(t0, &1, &encode(7, 9, 3));
    assert_eq!(collision(&mut ls), Some(Collision::Readdress));
    assert_eq!(collision(&mut ls), None, "reported once");
    assert_eq!(ls.counters().collisions, 1);
    assert!(ls.poll_transmit().is_none(), "not flooded");
    ls.readdress(t0, 8);
    assert_eq!(ls.addr(), 8);
    assert_eq!(ls.poll_transmit(), Some((1, encode(8, 2, 0))));
    assert!(ls.lsdb().iter().all(|((s, _), _)| *s != 7));
}

#[test]
fn the_younger_of_two_ipcps_with_one_address_moves() {
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let mut ls: LinkState<u8> = LinkState::new(7, cfg, t0);
    ls.add_mgmt(1);
    ls.add_dt(t0, 2);
    // Four update passes: our link 7 -> 2 is at seqno 4.
    for i in 0..5u32 {
        ls.handle_timeout(t0 + cfg.t_update * i);
    }
    while ls.poll_transmit().is_some() {}
    // The other one's link is at seqno 1: it is younger; we keep our address.
    let t1 = t0 + cfg.t_update * 4;
    ls.handle(t1, &1, &encode(7, 9, 1));
    assert_eq!(collision(&mut ls), Some(Collision::Keep));
    // Its next announcement within two update periods changes nothing.
    ls.handle(t1 + cfg.t_update, &1, &encode(7, 9, 2));
    assert_eq!(collision(&mut ls), None);
    // Still announcing, newer, two periods on: it does not move (a reference IPCP):
    // we do.
    ls.handle(t1 + cfg.t_update * 2, &1, &encode(7, 9, 3));
    assert_eq!(collision(&mut ls), Some(Collision::Readdress));
    assert_eq!(ls.counters().collisions, 3);
    // Sat out again (the decision cleared it): another of its links with newer
    // seqnos is no sign (stale records replayed); a long quiet ends the sit-out.
    ls.handle(t1, &1, &encode(7, 9, 1));
    assert_eq!(collision(&mut ls), Some(Collision::Keep));
    ls.handle(t1 + cfg.t_update * 3, &1, &encode(7, 10, 4));
    assert_eq!(collision(&mut ls), None, "another link: no sign");
    let later = t1 + cfg.t_update * 8;
    ls.handle(later, &1, &encode(7, 9, 3));
    assert_eq!(collision(&mut ls), Some(Collision::Keep), "a new sit-out");
    // As old as we are: both move.
    let mut b: LinkState<u8> = LinkState::new(5, cfg, t0);
    b.add_dt(t0, 2);
    b.handle(t0, &1, &encode(5, 9, 0));
    assert_eq!(collision(&mut b), Some(Collision::Readdress));
}

#[test]
fn a_hold_down_defers_recomputation_learnt_from_lsas() {
    let t0 = Instant::now();
    let cfg = LsConfig {
        hold: Duration::from_millis(100),
        ..LsConfig::default()
    };
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_mgmt(0);
    // Our own link: at once.
    ls.add_dt(t0, 2);
    // B's link back to us and on to C: held.
    ls.handle(t0, &0, &encode(2, 1, 1));
    ls.handle(t0, &0, &encode(2, 3, 1));
    ls.handle(t0, &0, &encode(3, 2, 1));
    assert_eq!(ls.next_hop(3), None, "not yet computed");
    ls.handle_timeout(t0 + Duration::from_millis(50));
    assert_eq!(ls.next_hop(3), None, "held for 100 ms");
    assert_eq!(ls.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    ls.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!((ls.next_hop(2), ls.next_hop(3)), (Some(2), Some(2)));
}

#[test]
fn a_full_lsdb_drops_new_pairs_and_keeps_updating_known_ones() {
    let t0 = Instant::now();
    let cfg = LsConfig {
        max_records: 3,
        ..LsConfig::default()
    };
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_mgmt(0);
    ls.add_dt(t0, 2);
    for (s, d) in [(2, 1), (2, 3), (3, 2), (7, 8)] {
        ls.handle(t0, &0, &encode(s, d, 1));
    }
    assert_eq!(ls.lsdb().len(), 3);
    assert_eq!(ls.counters().full, 2, "(3, 2) and (7, 8)");
    // A known pair still refreshes; our own links always go in.
    ls.handle(t0, &0, &encode(2, 3, 5));
    assert!(ls.lsdb().contains(&((2, 3), 5)));
    ls.add_dt(t0, 9);
    assert!(ls.lsdb().iter().any(|(k, _)| *k == (1, 9)));
}

#[test]
fn lsas_with_address_zero_a_link_to_itself_or_a_wide_address_are_dropped() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    ls.add_mgmt(0);
    let _ = std::iter::from_fn(|| ls.poll_transmit()).count();
    // 0x1_0000_0002 would be cut to member 2's address in the forwarding table.
    let wide = (1u64 << 32) + 2;
    for (s, d) in [(0, 2), (2, 0), (5, 5), (wide, 3), (3, wide)] {
        ls.handle(t0, &0, &encode(s, d, 1));
    }
    assert_eq!(ls.counters().malformed, 5);
    assert!(ls.lsdb().is_empty(), "{:?}", ls.lsdb());
    assert!(ls.poll_transmit().is_none(), "not flooded");
    // The widest address there is, 2^32 - 1, is one.
    let top = u64::from(u32::MAX);
    ls.handle(t0, &0, &encode(top, 3, 1));
    ls.handle(t0, &0, &encode(3, top, 1));
    assert_eq!(ls.counters().malformed, 5);
    assert_eq!(ls.lsdb().len(), 2);
}

#[test]
fn the_table_ecmp_order_and_the_management_flows_are_as_announced() {
    let t0 = Instant::now();
    let cfg = LsConfig {
        policy: Policy::Ecmp,
        ..LsConfig::default()
    };
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_mgmt(10);
    ls.add_mgmt(20);
    // 2 first, then 3 (the newer link): both reach 4 in two hops.
    ls.add_dt(t0, 2);
    ls.add_dt(t0, 3);
    for (s, d) in [(2, 1), (3, 1), (2, 4), (4, 2), (3, 4), (4, 3)] {
        ls.handle(t0, &10, &encode(s, d, 0));
    }
    assert_eq!(ls.counters().accepted, 6);
    ls.handle(t0, &10, &encode(2, 4, 1));
    assert_eq!(ls.counters().accepted, 7, "a newer seqno is accepted");
    assert_eq!(
        ls.table().iter().map(|(d, h)| (*d, *h)).collect::<Vec<_>>(),
        [(2, 2), (3, 3), (4, 2)]
    );
    // Equal-cost next hops, the newest link first.
    assert_eq!(ls.next_hops(4), [3, 2]);
    // A management flow removed gets no more LSAs.
    while ls.poll_transmit().is_some() {}
    ls.remove_mgmt(&20);
    ls.handle(t0, &10, &encode(4, 5, 0));
    let to: Vec<u8> = std::iter::from_fn(|| ls.poll_transmit())
        .map(|(f, _)| f)
        .collect();
    assert!(to.is_empty(), "flooded back to its sender only: {to:?}");
    ls.handle(t0, &30, &encode(4, 6, 0));
    let to: Vec<u8> = std::iter::from_fn(|| ls.poll_transmit())
        .map(|(f, _)| f)
        .collect();
    assert_eq!(to, [10]);
}

#[test]
fn a_sit_out_lasts_four_quiet_periods_and_needs_two_seqnos_and_two_periods() {
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let t = cfg.t_update;
    let mut ls: LinkState<u8> = LinkState::new(7, cfg, t0);
    ls.add_mgmt(1);
    ls.add_dt(t0, 2);
    for i in 0..5u32 {
        ls.handle_timeout(t0 + t * i);
    }
    while ls.poll_transmit().is_some() {}
    let t1 = t0 + t * 4;
    ls.handle(t1, &1, &encode(7, 9, 1));
    assert_eq!(collision(&mut ls), Some(Collision::Keep));
    // Two seqnos on but only one period: no move. One seqno on, two periods: no move.
    ls.handle(t1 + t, &1, &encode(7, 9, 3));
    assert_eq!(collision(&mut ls), None);
    ls.handle(t1 + t * 2, &1, &encode(7, 9, 2));
    assert_eq!(collision(&mut ls), None);
    // Quiet for exactly four periods since the last: still the same sit-out.
    ls.handle(t1 + t * 6, &1, &encode(7, 9, 1));
    assert_eq!(collision(&mut ls), None);
    // Past four quiet periods: over, a new one starts.
    ls.handle(t1 + t * 10 + Duration::from_millis(1), &1, &encode(7, 9, 1));
    assert_eq!(collision(&mut ls), Some(Collision::Keep));
}

#[test]
fn a_neighbour_as_far_from_the_destination_as_we_are_is_a_loop_free_alternate() {
    let t0 = Instant::now();
    let cfg = LsConfig {
        policy: Policy::Lfa,
        ..LsConfig::default()
    };
    // A triangle 1 - 2 - 3 - 1: towards 2, neighbour 3 is one hop from 2, as we are
    // (1 < 1 + 1): an alternate.
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_dt(t0, 2);
    ls.add_dt(t0, 3);
    for (s, d) in [(2, 1), (3, 1), (2, 3), (3, 2)] {
        ls.handle(t0, &10, &encode(s, d, 0));
    }
    assert_eq!(ls.next_hops(2), [2, 3]);
    assert_eq!(ls.next_hops(3), [3, 2]);
}

#[test]
fn link_state_is_driven_through_the_machine_trait() {
    use crate::machine::{drain, Machine};
    let t0 = Instant::now();
    let cfg = LsConfig::default();
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_mgmt(10);
    ls.add_dt(t0, 2);
    let (sent, _) = drain(&mut ls);
    assert_eq!(sent, [(10, encode(1, 2, 0))]);
    ls.handle(t0, &10, &encode(2, 1, 0));
    // The first update pass, through the trait: our link again, seqno 1; the table
    // changed when 2 -> 1 came.
    Machine::handle_timeout(&mut ls, t0);
    let (sent, events) = drain(&mut ls);
    assert_eq!(sent, [(10, encode(1, 2, 1))]);
    assert_eq!(events, [Event::TableChanged]);
    assert_eq!(Machine::poll_timeout(&ls), Some(t0 + cfg.t_recalc));
}

/// A withdrawal of one of our live links (another member's forgery, which the others took,
/// or ours come round after the link came back) is answered by the link announced above
/// its seqno, to every management neighbour, the sender too, once the withdrawal's flood
/// has died out (answered at once, copies still on their way withdrew the revived records
/// again and came back: a flood without end round a layer's cycles): one announcement
/// however many copies came. A link we no longer have is not announced.
#[test]
fn a_withdrawal_of_our_live_link_is_answered_by_announcing_it_again() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    ls.add_mgmt(7);
    ls.add_mgmt(8);
    ls.add_dt(t0, 2);
    ls.handle(t0, &7, &encode(2, 1, 0));
    ls.handle_timeout(t0); // the pass at start: our link at seqno 1
    while ls.poll_transmit().is_some() {}
    let stale = ls.counters().stale;
    // Three copies, over both flows, within the second.
    ls.handle(t0, &7, &encode(1, 2, WITHDRAWN));
    ls.handle(t0 + Duration::from_millis(10), &8, &encode(1, 2, WITHDRAWN));
    ls.handle(
        t0 + Duration::from_millis(500),
        &7,
        &encode(1, 2, WITHDRAWN),
    );
    assert_eq!(
        ls.counters().stale,
        stale + 3,
        "the withdrawals themselves are not taken"
    );
    assert_eq!(ls.poll_transmit(), None, "not at once");
    assert_eq!(ls.poll_timeout(), Some(t0 + lsas::REASSERT_AFTER));
    ls.handle_timeout(t0 + lsas::REASSERT_AFTER - Duration::from_millis(1));
    assert_eq!(ls.poll_transmit(), None);
    ls.handle_timeout(t0 + lsas::REASSERT_AFTER);
    let sent: Vec<_> = std::iter::from_fn(|| ls.poll_transmit()).collect();
    assert_eq!(sent, [(7, encode(1, 2, 2)), (8, encode(1, 2, 2))], "once");
    assert_eq!(ls.counters().reasserted, 1);
    assert_eq!(ls.next_hop(2), Some(2));
    ls.handle_timeout(t0 + 2 * lsas::REASSERT_AFTER);
    assert_eq!(ls.poll_transmit(), None, "nothing more");
    // A member B keeps a withdrawn copy of our link until our answer revives it.
    let mut b: LinkState<u8> = LinkState::new(2, LsConfig::default(), t0);
    b.add_mgmt(9);
    b.handle(t0, &9, &encode(1, 5, 4));
    b.handle(t0, &9, &encode(1, 5, WITHDRAWN));
    assert!(!b.lsdb().iter().any(|(k, _)| *k == (1, 5)), "withdrawn");
    b.handle(t0, &9, &encode(1, 5, 5));
    assert_eq!(b.lsdb(), [((1, 5), 5)], "taken back");
    // Near the top, never into WITHDRAWN (which would withdraw it).
    let mut hi: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    hi.restore(t0, &[((1, 2), WITHDRAWN - 2)]);
    hi.resume_dt(t0, 2);
    hi.add_mgmt(7);
    while hi.poll_transmit().is_some() {}
    for n in 1..=2 {
        hi.handle(t0, &7, &encode(1, 2, WITHDRAWN));
        hi.handle_timeout(t0 + n * lsas::REASSERT_AFTER);
        assert_eq!(hi.poll_transmit(), Some((7, encode(1, 2, WITHDRAWN - 1))));
    }
    // A link gone before its time comes, or never ours: nothing to announce.
    let t1 = t0 + 10 * lsas::REASSERT_AFTER;
    while ls.poll_transmit().is_some() {}
    ls.handle(t1, &7, &encode(1, 2, WITHDRAWN));
    ls.remove_dt(2);
    ls.handle(t1, &7, &encode(1, 3, WITHDRAWN));
    while ls.poll_transmit().is_some() {}
    ls.handle_timeout(t1 + lsas::REASSERT_AFTER);
    assert_eq!(ls.poll_transmit(), None);
    assert_eq!(ls.counters().reasserted, 1);
}

/// Another member's record moves up by at most 2^32 at a time: a forged seqno near the top
/// would make that member's own announcements stale everywhere until the record aged out.
#[test]
fn a_forged_jump_of_another_member_s_seqno_is_refused() {
    let t0 = Instant::now();
    let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
    ls.add_mgmt(7);
    ls.handle(t0, &7, &encode(2, 3, 5));
    while ls.poll_transmit().is_some() {}
    let stale = ls.counters().stale;
    ls.handle(t0, &7, &encode(2, 3, 5 + (1 << 32) + 1));
    assert_eq!(ls.counters().stale, stale + 1);
    assert_eq!(ls.poll_transmit(), None, "not flooded");
    assert_eq!(ls.lsdb(), [((2, 3), 5)]);
    // 2^32 exactly is still taken, and the member's next announcement above it too.
    ls.handle(t0, &7, &encode(2, 3, 5 + (1 << 32)));
    ls.handle(t0, &7, &encode(2, 3, 6 + (1 << 32)));
    assert_eq!(ls.lsdb(), [((2, 3), 6 + (1 << 32))]);
    // A pair not known here starts at most at 2^32.
    while ls.poll_transmit().is_some() {}
    ls.handle(t0, &7, &encode(4, 5, (1 << 32) + 1));
    assert_eq!(ls.poll_transmit(), None);
    ls.handle(t0, &7, &encode(4, 6, 1 << 32));
    assert_eq!(ls.lsdb(), [((2, 3), 6 + (1 << 32)), ((4, 6), 1 << 32)]);
}

/// Our own live links are refreshed, never aged out, whatever the timers: with a `t_timeo`
/// below `t_update` they went before their refresh at every pass (and every route with
/// them); others' records and our own withdrawn ones still age out.
#[test]
fn our_own_live_links_never_age_out_even_when_t_timeo_is_below_t_update() {
    let t0 = Instant::now();
    let cfg = LsConfig {
        t_update: Duration::from_secs(15),
        t_timeo: Duration::from_secs(5),
        ..LsConfig::default()
    };
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_mgmt(7);
    ls.add_dt(t0, 2);
    ls.add_dt(t0, 3);
    ls.handle(t0, &7, &encode(2, 4, 0));
    ls.remove_dt(3);
    while ls.poll_transmit().is_some() {}
    let mut now = t0;
    for n in 1..=3 {
        now += cfg.t_update;
        ls.handle_timeout(now);
        // Ours to 2 is there and announced, one above each pass.
        assert_eq!(ls.lsdb(), [((1, 2), n)], "pass {n}");
        assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, n))));
    }
    assert!(
        ls.counters().timed_out >= 2,
        "2 -> 4 and our withdrawn 1 -> 3 aged out"
    );
}

/// The generation moves with every change of the table or of the next hops (a link down
/// or up), and not when a recomputation finds the same table: o7sd makes the data plane's
/// table again only when it moves.
#[test]
fn the_generation_moves_with_the_table_and_the_next_hops_only() {
    let t0 = Instant::now();
    let cfg = LsConfig {
        policy: Policy::Lfa,
        ..LsConfig::default()
    };
    let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
    ls.add_mgmt(10);
    let g0 = ls.generation();
    ls.add_dt(t0, 2);
    assert_eq!(ls.generation(), g0, "our half only: no route");
    ls.handle(t0, &10, &encode(2, 1, 0));
    let g1 = ls.generation();
    assert!(g1 > g0, "a route to 2");
    // A link of others' known from one end only: recomputed, the same table.
    ls.handle(t0, &10, &encode(7, 8, 0));
    ls.handle_timeout(t0 + cfg.t_recalc);
    assert_eq!(ls.counters().accepted, 2, "recomputed over the new record");
    assert_eq!(ls.generation(), g1);
    ls.link_down(2);
    let g2 = ls.generation();
    assert!(g2 > g1, "a next hop down");
    ls.link_down(2);
    assert_eq!(ls.generation(), g2, "down already");
    ls.link_up(2);
    assert!(ls.generation() > g2, "up again");
}

/// A layer on virtual time: members by address, each management flow named by the
/// neighbour's address, every LSA delivered `LATENCY` after it was sent, in order.
struct Wheel {
    nodes: BTreeMap<Addr, LinkState<Addr>>,
    wire: VecDeque<(Instant, Addr, Addr, [u8; 24])>,
    now: Instant,
    delivered: usize,
}

const LATENCY: Duration = Duration::from_millis(1);

impl Wheel {
    /// A (1), with a DT link to 2 (not simulated), is the hub of a ring X1..X4 (10..13):
    /// management flows A-Xi and Xi-Xi+1 (every member on several cycles).
    fn new(t0: Instant) -> Self {
        // Updates every minute: the first is after every check below.
        let cfg = LsConfig {
            t_update: Duration::from_secs(60),
            t_timeo: Duration::from_secs(180),
            ..LsConfig::default()
        };
        let mut nodes = BTreeMap::new();
        let rim = [10, 11, 12, 13];
        let mut a = LinkState::new(1, cfg, t0);
        for x in rim {
            a.add_mgmt(x);
        }
        nodes.insert(1, a);
        for (i, x) in rim.iter().enumerate() {
            let mut n = LinkState::new(*x, cfg, t0);
            n.add_mgmt(1);
            n.add_mgmt(rim[(i + 1) % 4]);
            n.add_mgmt(rim[(i + 3) % 4]);
            nodes.insert(*x, n);
        }
        let mut w = Self {
            nodes,
            wire: VecDeque::new(),
            now: t0,
            delivered: 0,
        };
        if let Some(a) = w.nodes.get_mut(&1) {
            a.add_dt(t0, 2);
        }
        w
    }

    /// Runs until `until`: LSAs delivered in order, timers fired; how many were delivered.
    fn run(&mut self, until: Instant) -> usize {
        let before = self.delivered;
        loop {
            for (at, n) in &mut self.nodes {
                while let Some((to, lsa)) = n.poll_transmit() {
                    self.wire.push_back((self.now + LATENCY, to, *at, lsa));
                }
            }
            let next_msg = self.wire.front().map(|m| m.0);
            let next_timer = self.nodes.values().filter_map(|n| n.poll_timeout()).min();
            let Some(next) = [next_msg, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            for n in self.nodes.values_mut() {
                if n.poll_timeout().is_some_and(|t| t <= self.now) {
                    n.handle_timeout(self.now);
                }
            }
            while self.wire.front().is_some_and(|m| m.0 <= self.now) {
                let Some((_, to, from, lsa)) = self.wire.pop_front() else {
                    break;
                };
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.handle(self.now, &from, &lsa);
                    self.delivered += 1;
                }
            }
        }
        self.now = until;
        self.delivered - before
    }

    fn has_live(&self, at: Addr, link: (Addr, Addr)) -> bool {
        self.nodes
            .get(&at)
            .is_some_and(|n| n.lsdb().iter().any(|(k, _)| *k == link))
    }
}

/// One forged withdrawal of A's live link, on a layer where every member is on several
/// cycles: the withdrawal's flood dies out, A announces the link once, everyone takes it
/// back, and the layer goes quiet (answered at once, copies of the withdrawal still on
/// their way withdrew the revived records again and came back to A: a flood without end).
/// The same for A's link going down and coming back half a second later.
#[test]
fn a_withdrawal_of_a_live_link_ends_with_the_link_back_and_a_quiet_layer() {
    let t0 = Instant::now();
    let mut w = Wheel::new(t0);
    w.run(t0 + Duration::from_millis(100));
    assert!(
        (10..=13).all(|x| w.has_live(x, (1, 2))),
        "announced everywhere"
    );
    // The forgery arrives at X1.
    let t1 = w.now;
    if let Some(x1) = w.nodes.get_mut(&10) {
        x1.handle(t1, &99, &encode(1, 2, WITHDRAWN));
    }
    let n = w.run(t1 + Duration::from_secs(3));
    assert!(
        (10..=13).all(|x| w.has_live(x, (1, 2))),
        "taken back everywhere"
    );
    assert_eq!(w.nodes[&1].counters().reasserted, 1);
    assert!(n < 100, "{n} LSAs for one withdrawal");
    // Quiet: nothing more until the next update period.
    assert_eq!(w.run(t1 + Duration::from_secs(10)), 0);
    // A's link goes down and comes back 500 ms later (its withdrawal still about).
    let t2 = w.now;
    if let Some(a) = w.nodes.get_mut(&1) {
        a.remove_dt(2);
    }
    w.run(t2 + Duration::from_millis(500));
    if let Some(a) = w.nodes.get_mut(&1) {
        a.add_dt(w.now, 2);
    }
    let n = w.run(t2 + Duration::from_secs(4));
    assert!(n < 200, "{n} LSAs for one link down and up");
    assert!((10..=13).all(|x| w.has_live(x, (1, 2))), "back everywhere");
    assert_eq!(w.run(t2 + Duration::from_secs(14)), 0, "quiet");
}
