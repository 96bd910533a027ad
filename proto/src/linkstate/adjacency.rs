//! Adjacencies: Management flows that carry LSAs, DT neighbours that are links, links taken
//! down and up, and the LSDB restored after a restart.

use super::{encode, Addr, LinkState, WITHDRAWN};
use std::time::Instant;

impl<F: Clone + PartialEq> LinkState<F> {
    /// A management flow `f` is up: it gets every record of the LSDB (not the withdrawn).
    pub fn add_mgmt(&mut self, f: F) {
        for ((s, d), a) in self.lsdb.iter().filter(|(_, a)| !a.withdrawn) {
            self.out.push_back((f.clone(), encode(*s, *d, a.seqno)));
        }
        self.mgmt.push(f);
    }

    /// A management flow is gone: no more flooding to it.
    pub fn remove_mgmt(&mut self, f: &F) {
        self.mgmt.retain(|m| m != f);
    }

    /// A DT connection to `addr` is up: announced with seqno 0, or, when we hold a record
    /// of the link (withdrawn, or live: a newer connection over the same link took the
    /// old one's place), one above it (the others hold that seqno: an announcement below
    /// it would be ignored and the link would age out at every other member).
    pub fn add_dt(&mut self, now: Instant, addr: Addr) {
        let seqno = self
            .lsdb
            .get(&(self.me, addr))
            .map_or(0, |a| a.seqno.saturating_add(1).min(WITHDRAWN - 1));
        let lsa = encode(self.me, addr, seqno);
        self.send_all(lsa, None);
        self.dt.insert(addr);
        self.had_dt.insert(addr);
        self.insert(now, self.me, addr, seqno);
    }

    /// Takes back a saved LSDB (an IPCP that resumes after its o7sd restarted: its
    /// neighbours still hold these records, ours with the seqnos we announced): every
    /// record as fresh, our own links `RESTORE_MARGIN` seqnos on (announced at the next
    /// update, above what the neighbours hold), none of them a collision. Records for
    /// address 0 or from a member to itself are skipped, as from the wire.
    pub fn restore(&mut self, now: Instant, records: &[((Addr, Addr), u64)]) {
        for &((s, d), seqno) in records.iter().take(self.cfg.max_records) {
            if s == 0 || d == 0 || s == d || seqno == WITHDRAWN {
                continue;
            }
            let seqno = if s == self.me {
                self.had_dt.insert(d);
                seqno
                    .saturating_add(Self::RESTORE_MARGIN)
                    .min(WITHDRAWN - 1)
            } else {
                seqno
            };
            self.put(now, s, d, seqno);
        }
        self.changed(now, true);
    }

    /// A DT connection to `addr` that was up before our o7sd restarted: ours again, its
    /// record (restored) kept with its seqno, or new at 0.
    pub fn resume_dt(&mut self, now: Instant, addr: Addr) {
        self.dt.insert(addr);
        self.had_dt.insert(addr);
        if !self.lsdb.contains_key(&(self.me, addr)) {
            self.insert(now, self.me, addr, 0);
        } else {
            self.changed(now, true);
        }
    }

    /// The DT connection to `addr` is gone: the own record goes and the table is
    /// recomputed at once; with `withdraw`, every management neighbour is told (the
    /// reference sends nothing and the others age the record out).
    pub fn remove_dt(&mut self, addr: Addr) {
        self.dt.remove(&addr);
        let key = (self.me, addr);
        if self.cfg.withdraw {
            // Kept as a tombstone (with its seqno, aging out as it would have) so that the
            // link, if it comes back, is announced above what the others hold.
            if let Some(a) = self.lsdb.get_mut(&key).filter(|a| !a.withdrawn) {
                a.withdrawn = true;
                self.send_all(encode(self.me, addr, WITHDRAWN), None);
            }
            // The table at once: this member knows its link is gone.
            self.recompute();
        } else {
            // The reference: the record goes, the table waits for the next recomputation.
            self.lsdb.remove(&key);
            self.modified = true;
        }
    }

    /// The N-1 flow to DT neighbour `addr` went down: forwarding avoids it at once (LFA
    /// and ECMP fall back to another next hop; simple has none until the LSAs age out).
    pub fn link_down(&mut self, addr: Addr) {
        if self.down.insert(addr) {
            self.generation += 1;
        }
    }

    /// The N-1 flow to `addr` is up again: it is the primary again where it was.
    pub fn link_up(&mut self, addr: Addr) {
        if self.down.remove(&addr) {
            self.generation += 1;
        }
    }
}
