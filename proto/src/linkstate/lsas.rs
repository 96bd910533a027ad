//! LSAs: received, stored, flooded on, and the address collisions they reveal; our own records
//! when we move.

use super::{encode, Addr, Adj, Collision, LinkState, Stay, WITHDRAWN};
use o7s_wire::unicast::lsa::Lsa;
use std::time::Instant;

/// The most a received LSA may move a record's seqno up: 2^32 announcements (over a
/// thousand years at one every 15 s). A bigger jump is a forgery: for our own record it
/// would drive our seqno into WITHDRAWN (we would withdraw our own link); for another
/// member's it would put the record where that member's announcements never reach again
/// (they would all be stale until it aged out).
const MAX_JUMP: u64 = 1 << 32;

/// How long after a withdrawal of one of our live links we announce it again: far longer
/// than a flood takes to cross a layer, far shorter than an update period.
pub(super) const REASSERT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl<F: Clone + PartialEq> LinkState<F> {
    /// An SDU from management flow `from`.
    pub fn handle(&mut self, now: Instant, from: &F, sdu: &[u8]) {
        let Ok(l) = (if sdu.len() == 24 {
            Lsa::parse(sdu)
        } else {
            Err(o7s_wire::Error::Truncated {
                what: "LSA",
                need: 24,
                have: sdu.len(),
            })
        }) else {
            self.counters.malformed += 1;
            return;
        };
        // No IPCP has address 0 (the flat policy draws non-zero ones) and no link goes
        // from an IPCP to itself: such a record is bad input, not a link. Addresses are
        // 32 bits in every layer (`addr_size` 4): a wider one would be cut to another
        // member's address in the forwarding table.
        if l.s_addr == 0
            || l.d_addr == 0
            || l.s_addr == l.d_addr
            || l.s_addr > u64::from(u32::MAX)
            || l.d_addr > u64::from(u32::MAX)
        {
            self.counters.malformed += 1;
            return;
        }
        let key = (l.s_addr, l.d_addr);
        if l.seqno == WITHDRAWN {
            // Our own links are ours to withdraw (this may be our own withdrawal come
            // round a ring after the link came back, or another member's forgery, which
            // the others took): a live one is announced again above its seqno once the
            // withdrawal's flood has died out ([`REASSERT_AFTER`]), so that they take it
            // back (else it stayed down until our next update).
            if l.s_addr == self.me {
                self.counters.stale += 1;
                self.reassert(now, l.d_addr);
                return;
            }
            // An unknown pair, or one withdrawn already, ends the flood. The record stays
            // as a tombstone until it ages out.
            let live = self
                .lsdb
                .get_mut(&key)
                .filter(|a| !a.withdrawn && l.s_addr != self.me);
            let Some(a) = live else {
                self.counters.stale += 1;
                return;
            };
            a.withdrawn = true;
            a.stamp = now;
            self.counters.withdrawn += 1;
            if self.cfg.withdraw {
                self.changed(now, false);
            } else {
                // The reference's pace: the table follows at the next recomputation.
                self.modified = true;
            }
            self.send_all(encode(l.s_addr, l.d_addr, WITHDRAWN), Some(from));
            return;
        }
        // Flat addresses are drawn at random with no coordination: another IPCP with our
        // address shows as "our" link to a neighbour we have no DT connection to (the
        // reference ignores it). Not stored, not flooded: the caller picks a new address.
        if l.s_addr == self.me && !self.had_dt.contains(&l.d_addr) {
            self.on_collision(now, l.d_addr, l.seqno);
            return;
        }
        // Our link to a member we have no DT connection to now (an echo of an announcement
        // from before the connection went, or a forgery): ours to announce, not the wire's.
        // Stored, we would refresh a link that is gone (at a seqno the forger chose).
        if l.s_addr == self.me && !self.dt.contains(&l.d_addr) {
            self.counters.stale += 1;
            return;
        }
        let full = self.lsdb.len() >= self.cfg.max_records;
        let mut revived = false;
        match self.lsdb.get_mut(&key) {
            None if full => {
                self.counters.full += 1;
                return;
            }
            // A pair not known here starts no higher than a jump could take it: a forged
            // seqno near the top, first to arrive, would make its owner's announcements
            // stale everywhere (and it never learns of it: its own copy is capped).
            None if l.seqno > MAX_JUMP => {
                self.counters.stale += 1;
                return;
            }
            None => {
                self.counters.accepted += 1;
                self.insert(now, l.s_addr, l.d_addr, l.seqno);
            }
            // A member that comes back after a restart learns its old seqno from the echo
            // of its last announcements and goes on above it; a jump beyond any restart's
            // is a forgery ([`MAX_JUMP`]). Not taken, not flooded.
            Some(a) if l.seqno > a.seqno.saturating_add(MAX_JUMP) => {
                self.counters.stale += 1;
                return;
            }
            Some(a) if l.seqno > a.seqno => {
                self.counters.accepted += 1;
                a.seqno = l.seqno;
                a.stamp = now;
                // A withdrawn link announced again, above the withdrawn seqno: back in
                // the graph.
                revived = std::mem::take(&mut a.withdrawn);
            }
            Some(_) => {
                self.counters.stale += 1;
                return;
            }
        }
        if revived {
            self.changed(now, l.s_addr == self.me);
        }
        let mut b = [0u8; 24];
        for (dst, src) in b.iter_mut().zip(sdu.iter()) {
            *dst = *src;
        }
        self.send_all(b, Some(from));
    }

    /// Our live link to `d` is to be announced again, one above its seqno, to every
    /// management neighbour (the one that sent the withdrawal too): a withdrawal of it went
    /// round. Not at once: after [`REASSERT_AFTER`], when the withdrawal's flood has died
    /// out everywhere (answered at once, the layer's other copies of it, still on their
    /// way round its cycles, withdrew the revived records again, which brought the
    /// withdrawal back here: a flood that never ended). One announcement however many
    /// copies come meanwhile.
    fn reassert(&mut self, now: Instant, d: Addr) {
        if self.dt.contains(&d) {
            self.reassert_at.entry(d).or_insert(now + REASSERT_AFTER);
        }
    }

    /// The announcements [`Self::reassert`] put off whose time has come: each link still
    /// ours and live goes out one above its seqno.
    pub(super) fn reassert_due(&mut self, now: Instant) {
        let due: Vec<Addr> = self
            .reassert_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(d, _)| *d)
            .collect();
        for d in due {
            self.reassert_at.remove(&d);
            if !self.dt.contains(&d) {
                continue;
            }
            let Some(a) = self.lsdb.get_mut(&(self.me, d)).filter(|a| !a.withdrawn) else {
                continue;
            };
            // Never into WITHDRAWN (which would withdraw the link), never round.
            a.seqno = a.seqno.saturating_add(1).min(WITHDRAWN - 1);
            a.stamp = now;
            let lsa = encode(self.me, d, a.seqno);
            self.counters.reasserted += 1;
            self.send_all(lsa, None);
        }
    }

    pub(super) fn insert(&mut self, now: Instant, s: Addr, d: Addr, seqno: u64) {
        self.put(now, s, d, seqno);
        self.changed(now, s == self.me);
    }

    /// Stores a live record (the next in insertion order), without recomputing.
    pub(super) fn put(&mut self, now: Instant, s: Addr, d: Addr, seqno: u64) {
        self.order += 1;
        self.lsdb.insert(
            (s, d),
            Adj {
                seqno,
                stamp: now,
                order: self.order,
                withdrawn: false,
            },
        );
    }

    pub(super) fn send_all(&mut self, lsa: [u8; 24], except: Option<&F>) {
        for f in &self.mgmt {
            if except != Some(f) {
                self.out.push_back((f.clone(), lsa));
            }
        }
    }

    /// A colliding LSA `(me -> d, theirs)`: the younger IPCP moves. Its links have the
    /// lower seqno (seqnos count the update periods since a link came up); equal ones
    /// both move.
    pub(super) fn on_collision(&mut self, now: Instant, d: Addr, theirs: u64) {
        self.counters.collisions += 1;
        // A collision sat out and quiet for four update periods is over.
        let t = self.cfg.t_update;
        if self.stay.is_some_and(|s| now > s.last + 4 * t) {
            self.stay = None;
        }
        let ours = self
            .lsdb
            .iter()
            .filter(|((s, _), a)| *s == self.me && !a.withdrawn)
            .map(|(_, a)| a.seqno)
            .max()
            .unwrap_or(0);
        let decision = match self.stay.as_mut() {
            _ if theirs >= ours => Collision::Readdress,
            None => {
                self.stay = Some(Stay {
                    since: now,
                    d,
                    seen: theirs,
                    last: now,
                });
                Collision::Keep
            }
            // It still announces the same link, two seqnos on, two update periods after we
            // sat it out: it does not move (records it sent before it moved, replayed to a
            // new neighbour, do not go up).
            Some(s) if s.d == d && theirs >= s.seen + 2 && now >= s.since + 2 * t => {
                Collision::Readdress
            }
            Some(s) => {
                s.last = now;
                return;
            }
        };
        if decision == Collision::Readdress {
            self.stay = None;
        }
        // A decision to move outranks one to stay.
        if self.collision != Some(Collision::Readdress) {
            self.collision = Some(decision);
        }
    }

    /// Our address is now `new`: our records under the old one go, our DT links are
    /// announced under the new one (the others' copies of the old records age out).
    pub fn readdress(&mut self, now: Instant, new: Addr) {
        let old = self.me;
        self.lsdb.retain(|(s, _), _| *s != old);
        self.me = new;
        self.stay = None;
        self.had_dt = self.dt.clone();
        let links: Vec<Addr> = self.dt.iter().copied().collect();
        for d in links {
            self.send_all(encode(new, d, 0), None);
            self.insert(now, new, d, 0);
        }
        self.recompute();
    }
}
