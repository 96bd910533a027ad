//! The flat address authority: addresses drawn from the seed, and two IPCPs with one address
//! (the younger moves, at most once in the hold).

use super::{Event, LsEvent, UnicastIpcp};
use crate::linkstate::Collision;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

impl UnicastIpcp {
    /// A random non-zero 32-bit address not in `avoid` (the flat address authority), or
    /// the one proposed.
    pub(super) fn draw_addr(&mut self, avoid: &BTreeSet<u64>) -> u64 {
        if let Some(a) = self.next_addr.take() {
            return a;
        }
        loop {
            let a = u64::from(self.rng.gen_range(1..=u32::MAX));
            if !avoid.contains(&a) {
                return a;
            }
        }
    }

    /// Link state's events: the table changed (said once), another IPCP with our
    /// address (the younger one moves).
    pub(super) fn tend_collision(&mut self, now: Instant) {
        let Some(l) = self.layer.as_mut() else {
            return;
        };
        let mut changed = false;
        let mut collision = None;
        while let Some(e) = l.ls.poll_event() {
            match e {
                LsEvent::TableChanged => changed = true,
                LsEvent::Collision(c) => collision = collision.or(Some(c)),
            }
        }
        if changed {
            self.routes_changed = true;
            for back in self
                .departures
                .table_changed(now, l.ls.table().keys().copied())
            {
                l.dht.returned(back);
            }
            self.events.push_back(Event::TableChanged);
        }
        match collision {
            Some(Collision::Keep) => {
                self.counters.collisions_kept += 1;
                self.events.push_back(Event::CollisionKept);
            }
            Some(Collision::Readdress)
                if self.last_readdress.is_some_and(|t| {
                    now.saturating_duration_since(t) < self.cfg.readdress_hold
                }) =>
            {
                self.counters.readdress_held += 1;
                self.events.push_back(Event::ReaddressHeld);
            }
            Some(Collision::Readdress) => self.readdress(now),
            None => {}
        }
    }

    /// Moves to a new address that no LSA names: link state announces our links under
    /// it, the directory stores our names again, the Management neighbours are told (a
    /// CEP on each Management flow).
    pub(super) fn readdress(&mut self, now: Instant) {
        let taken: BTreeSet<u64> = self
            .layer
            .as_ref()
            .map(|l| {
                l.ls.lsdb()
                    .iter()
                    .flat_map(|((s, d), _)| [*s, *d])
                    .collect()
            })
            .unwrap_or_default();
        let new = self.draw_addr(&taken);
        let unix = self.unix_at(now);
        let Some(l) = self.layer.as_mut() else {
            return;
        };
        let old = l.addr;
        if new == old {
            return;
        }
        l.addr = new;
        l.ls.readdress(now, new);
        match self.signed.as_ref().map(|(_, s)| Arc::clone(s)) {
            Some(signer) => {
                let mut failed = vec![];
                l.dht.readdress_signed(now, unix, new, &mut |key, addr| {
                    signer.sign(key, addr, unix).unwrap_or_else(|why| {
                        failed.push((key.to_vec(), why));
                        Vec::new()
                    })
                });
                for (key, why) in failed {
                    self.counters.sign_failed += 1;
                    self.events.push_back(Event::SignFailed { key, why });
                }
            }
            None => l.dht.readdress(now, unix, new),
        }
        l.fa.readdress(new);
        self.conn.readdress(new);
        self.last_readdress = Some(now);
        self.counters.readdressed += 1;
        self.events.push_back(Event::Moved { old, new });
        self.tend_connections(now);
    }
}
