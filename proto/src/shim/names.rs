//! Names: the hashes registered here, queries for a name (one outstanding per hash) and the
//! cache of the answers.

use super::{CacheEntry, Event, Query, Shim, ShimError, Transmit};
use crate::mgmt::{Mgmt, Peer, ShimKind, BROADCAST};
use o7s_wire::code::EthCode;
use o7s_wire::qos::QosSpec;
use std::time::{Duration, Instant};

impl Shim {
    /// Answers queries and requests for `hash` from now on.
    pub fn register(&mut self, hash: Vec<u8>) {
        self.regs.insert(hash);
    }

    /// Stops answering for `hash`.
    pub fn unregister(&mut self, hash: &[u8]) {
        self.regs.remove(hash);
    }

    /// Whether `hash` is registered here.
    pub fn is_registered(&self, hash: &[u8]) -> bool {
        self.regs.contains(hash)
    }

    /// The peer of `hash` if the cache knows it at `now`.
    pub fn cached(&self, now: Instant, hash: &[u8]) -> Option<Peer> {
        self.cache.get(hash).filter(|e| e.live(now)).map(|e| e.peer)
    }

    /// The cache at `now`: hash, peer, time left.
    pub fn cache_entries(&self, now: Instant) -> Vec<(Vec<u8>, Peer, Duration)> {
        let mut v: Vec<_> = self
            .cache
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(h, e)| (h.clone(), e.peer, e.expires - now))
            .collect();
        v.sort();
        v
    }

    /// Asks the segment who has `hash`, for `timeout`.
    pub fn query(
        &mut self,
        now: Instant,
        hash: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), ShimError> {
        if self.cfg.kind == ShimKind::Udp {
            return Err(ShimError::NoQueries);
        }
        let deadline = now + timeout;
        if let Some(q) = self.queries.get_mut(&hash) {
            // One query on the wire for all who ask; the latest deadline counts.
            q.deadline = q.deadline.max(deadline);
            q.answered = false;
            return Ok(());
        }
        if self.queries.len() >= self.cfg.max_queries {
            return Err(ShimError::Busy {
                what: "name queries",
                limit: self.cfg.max_queries,
            });
        }
        self.queries.insert(
            hash.clone(),
            Query {
                deadline,
                retry_at: self.cfg.query_retry.map(|r| now + r),
                answered: false,
            },
        );
        self.send_query(hash);
        Ok(())
    }

    pub(super) fn send_query(&mut self, hash: Vec<u8>) {
        self.counters.queries_sent += 1;
        self.transmits.push_back(Transmit {
            dst: Peer::Mac(BROADCAST),
            msg: Mgmt {
                code: EthCode::NameQueryReq,
                s: 0,
                d: 0,
                qos: QosSpec::ZERO,
                response: 0,
                tail: hash,
            },
        });
    }

    pub(super) fn on_name_reply(&mut self, now: Instant, src: Peer, hash: Vec<u8>) {
        if hash.len() != self.cfg.hash_len {
            self.counters.malformed += 1;
            return;
        }
        // Believed only for a name this host asked for, within the query's time (several
        // hosts may answer one query: the latest answer is kept).
        let Some(q) = self.queries.get_mut(&hash).filter(|q| q.deadline > now) else {
            self.counters.name_reply_unsolicited += 1;
            return;
        };
        let first = !q.answered;
        q.answered = true;
        if !self.cache.contains_key(&hash) && self.cache.len() >= self.cfg.max_cache {
            self.cache.retain(|_, e| e.live(now));
            if self.cache.len() >= self.cfg.max_cache {
                self.counters.cache_full += 1;
            }
        }
        if self.cache.contains_key(&hash) || self.cache.len() < self.cfg.max_cache {
            self.cache.insert(
                hash.clone(),
                CacheEntry {
                    peer: src,
                    expires: now + self.cfg.cache_ttl,
                },
            );
        }
        if first {
            self.events
                .push_back(Event::QueryAnswered { hash, peer: src });
        }
    }
}
