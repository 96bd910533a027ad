//! The directory's time: joining through a bootstrap peer, the periodic work (refresh,
//! replication, republication, expiry) and the requests that time out.

use super::{Dht, Key};
use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{dht_code, DhtFindReqMsg, DhtMsg, DhtStoreMsg};
use std::collections::HashMap;
use std::time::{Duration, Instant};

impl Dht {
    /// Joins the layer through `peer` (the enroller's address, from the configuration):
    /// looks up our own id there, which fills the buckets around us.
    pub fn bootstrap(&mut self, now: Instant, peer: u64) {
        if peer == 0 || peer == self.addr {
            return;
        }
        self.peer = peer;
        if self.next_work.is_none() {
            self.next_work = Some(now + self.work_interval());
        }
        let key = self.id.clone();
        let id = self.start(now, key, false);
        let magic = self.magic;
        if let Some(l) = self.lookups.get_mut(&id) {
            l.asked.insert(peer);
            l.waiting.insert(peer, (magic, now + self.cfg.t_resp));
        }
        let m = DhtMsg {
            code: dht_code::FIND_NODE_REQ,
            src: self.me(),
            store: None,
            find: Some(DhtFindReqMsg {
                cookie: magic,
                key: self.id.clone(),
            }),
            node: None,
            val: None,
        };
        self.send(peer, m);
    }

    /// Remembers the wall clock `unix` at `now`.
    pub(super) fn tick(&mut self, now: Instant, unix: UnixTime) {
        self.clock = Some((now, unix));
        if self.next_work.is_none() {
            self.next_work = Some(now + self.work_interval());
        }
    }

    /// The wall clock at `now`, from the last one given.
    pub(super) fn unix_at(&self, now: Instant) -> UnixTime {
        match self.clock {
            Some((t, u)) => u + now.saturating_duration_since(t),
            None => UnixTime::default(),
        }
    }

    /// How often the periodic work runs: a fifth of the shorter of the replication and
    /// refresh times, at least a second (the reference: 90 s with the defaults).
    pub(super) fn work_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.cfg.t_replicate.min(self.cfg.t_refresh) / 5).max(1))
    }

    /// Requests whose response did not come in time are given up (their lookups go on
    /// with the next contacts).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_work.is_some_and(|t| t <= now) {
            self.next_work = Some(now + self.work_interval());
            self.periodic(now);
        }
        let mut touched = Vec::new();
        let mut silent = Vec::new();
        for (id, l) in &mut self.lookups {
            let mut late_here = Vec::new();
            l.waiting.retain(|a, (_, d)| {
                let late = *d <= now;
                if late {
                    late_here.push(*a);
                }
                !late
            });
            if !late_here.is_empty() || l.ends <= now {
                touched.push(*id);
                // Who did not answer this lookup is not among the closest that live: the
                // next ones move up into the k it asks.
                l.shortlist.retain(|_, c| !late_here.contains(&c.addr));
            }
            silent.extend(late_here);
        }
        for a in silent {
            self.unanswered(a);
        }
        touched.sort_unstable();
        for id in touched {
            self.step(now, id);
        }
    }

    /// A request to `addr` went unanswered: a contact of the buckets that fails
    /// [`super::MAX_FAILS`] in a row leaves them.
    fn unanswered(&mut self, addr: u64) {
        if !self.buckets.iter().flatten().any(|c| c.addr == addr) {
            return;
        }
        let n = self.fails.entry(addr).or_insert(0);
        *n = n.saturating_add(1);
        if *n >= super::MAX_FAILS {
            self.fails.remove(&addr);
            for b in &mut self.buckets {
                b.retain(|c| c.addr != addr);
            }
            self.counters.contacts_dropped += 1;
        }
    }

    /// The periodic work (facts §6.5): values past their expiry go; values stored here
    /// are sent on to the k closest every t_replicate; our own are republished when within
    /// 5 x t_replicate of expiry; with no contact the bootstrap peer is asked again; every
    /// t_refresh a lookup of our own id refreshes the buckets.
    pub(super) fn periodic(&mut self, now: Instant) {
        let unix = self.unix_at(now);
        let before = self.stored;
        for m in self.values.values_mut() {
            m.retain(|_, e| u64::from(e.exp) > unix.as_secs());
        }
        self.values.retain(|_, m| !m.is_empty());
        self.stored = self.values.values().map(HashMap::len).sum();
        self.counters.expired += before.saturating_sub(self.stored) as u64;
        let every = Duration::from_secs(u64::from(self.cfg.t_replicate));
        let mut resend = Vec::new();
        for (k, m) in &mut self.values {
            for (addr, e) in m.iter_mut() {
                if now.saturating_duration_since(e.last) >= every {
                    e.last = now;
                    resend.push((k.clone(), *addr, e.exp, e.proof.clone()));
                }
            }
        }
        for (key, addr, exp, proof) in resend {
            for c in self.closest(&key, self.cfg.k) {
                if c.addr != addr {
                    let m = DhtMsg {
                        code: dht_code::STORE,
                        src: self.me(),
                        store: Some(DhtStoreMsg {
                            key: key.clone(),
                            val: Self::value_bytes(addr, &proof),
                            exp,
                        }),
                        find: None,
                        node: None,
                        val: None,
                    };
                    self.send(c.addr, m);
                }
            }
        }
        let soon = u64::from(self.cfg.t_replicate) * 5;
        let due: Vec<Key> = self
            .local
            .iter()
            .filter(|(_, exp)| u64::from(**exp) <= unix.as_secs() + soon)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.register(now, unix, key);
        }
        if self.contacts() == 0 && self.peer != 0 {
            let peer = self.peer;
            self.bootstrap(now, peer);
        }
        let refresh = Duration::from_secs(u64::from(self.cfg.t_refresh));
        if self
            .refreshed
            .is_none_or(|t| now.saturating_duration_since(t) >= refresh)
        {
            self.refreshed = Some(now);
            // (With no contact the lookup ends at once, sending nothing.)
            let key = self.id.clone();
            let id = self.start(now, key, false);
            self.step(now, id);
        }
    }
}
