//! Lookups: finding the k closest contacts to a key (and its values) step by step, answering
//! others' FIND requests, and the responses that move a lookup on.

use super::{
    distance, Contact, Dht, Event, Key, Lookup, LookupId, Signed, MAX_ADDR, PROVEN_VALUE_BYTES,
};
use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{
    self, dht_code, DhtContactMsg, DhtFindNodeRspMsg, DhtFindReqMsg, DhtFindValueRspMsg, DhtMsg,
};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The most members one lookup asks, for `k` contacts per bucket: a lookup in a layer of
/// a million members asks about k + alpha x 20.
pub(super) fn max_asked(k: usize) -> usize {
    (8 * k).max(64)
}

impl Dht {
    /// A `dht_msg` arrived; `unix`: the wall clock now.
    pub fn handle(&mut self, now: Instant, unix: UnixTime, msg: &[u8]) {
        self.tick(now, unix);
        let m = match pb::decode::<DhtMsg>(msg) {
            Ok(m)
                if m.src.id.len() == self.id.len() && m.src.addr != 0 && m.src.addr <= MAX_ADDR =>
            {
                m
            }
            _ => {
                self.counters.dropped_bad += 1;
                return;
            }
        };
        self.counters.received += 1;
        let from = m.src.clone();
        // It reached us: it is back.
        self.returned(from.addr);
        let mut solicited = false;
        match m.code {
            dht_code::STORE => {
                if let Some(s) = m.store {
                    self.on_store(now, unix, from.addr, s);
                }
            }
            dht_code::FIND_NODE_REQ | dht_code::FIND_VALUE_REQ => {
                if let Some(f) = m.find {
                    self.answer(m.code, &from, f, unix);
                }
            }
            _ => {
                if let Some(n) = m.node {
                    solicited = self.on_response(now, unix, &from, n, m.val);
                }
            }
        }
        // Only an answer to our request (its cookie) shows that the address answers: a
        // message claiming it (DT carries no source address) starts no count again.
        if solicited {
            self.fails.remove(&from.addr);
        }
        self.learn(
            Contact {
                id: from.id,
                addr: from.addr,
            },
            solicited,
        );
    }

    /// Looks `key` up: a value known here is found at once, else the lookup recurses
    /// through the layer. The answer is an [`Event`].
    pub fn lookup(&mut self, now: Instant, unix: UnixTime, key: Key) -> Option<LookupId> {
        self.tick(now, unix);
        let here = self.known(&key, unix);
        // A value known here is found whatever the lookups in flight (members that never
        // answer can keep every slot taken for a while).
        if !here.is_empty() {
            self.next_lookup += 1;
            let id = LookupId(self.next_lookup);
            self.events.push_back(Event::Found {
                id,
                key,
                addrs: here,
            });
            return Some(id);
        }
        if self.lookups.len() >= self.cfg.max_lookups {
            self.counters.lookups_refused += 1;
            return None;
        }
        let id = self.start(now, key.clone(), true);
        self.step(now, id);
        Some(id)
    }

    pub(super) fn start(&mut self, now: Instant, key: Key, value: bool) -> LookupId {
        self.next_lookup += 1;
        let id = LookupId(self.next_lookup);
        let shortlist = self
            .closest(&key, self.cfg.k)
            .into_iter()
            .map(|c| (distance(&c.id, &key), c))
            .collect();
        self.lookups.insert(
            id,
            Lookup {
                key,
                value,
                shortlist,
                asked: HashSet::new(),
                waiting: HashMap::new(),
                store_exp: None,
                ends: now + self.cfg.t_resp * super::LOOKUP_RESPONSE_TIMES,
            },
        );
        id
    }

    /// Asks the closest contacts not asked yet (alpha at a time); ends the lookup when
    /// nothing is left to ask.
    pub(super) fn step(&mut self, now: Instant, id: LookupId) {
        let Some(l) = self.lookups.get(&id) else {
            return;
        };
        if now >= l.ends {
            self.counters.lookups_cut += 1;
            self.finish(id);
            return;
        }
        let k = self.cfg.k;
        // A lookup asks at most this many members: a responder that always names closer
        // (made-up) contacts would otherwise keep it, and its slot, going for ever.
        let most = max_asked(k);
        let capped = l.asked.len() >= most;
        let room = self
            .cfg
            .alpha
            .saturating_sub(l.waiting.len())
            .min(most.saturating_sub(l.asked.len()));
        // Only the k closest candidates are worth asking.
        let next: Vec<Contact> = l
            .shortlist
            .values()
            .take(k)
            .filter(|c| !l.asked.contains(&c.addr))
            .take(room)
            .cloned()
            .collect();
        if next.is_empty() && l.waiting.is_empty() {
            if capped {
                self.counters.lookups_cut += 1;
            }
            self.finish(id);
            return;
        }
        let (key, value) = (l.key.clone(), l.value);
        for c in next {
            let cookie = self.cookie();
            if let Some(l) = self.lookups.get_mut(&id) {
                l.asked.insert(c.addr);
                l.waiting.insert(c.addr, (cookie, now + self.cfg.t_resp));
            }
            let m = DhtMsg {
                code: if value {
                    dht_code::FIND_VALUE_REQ
                } else {
                    dht_code::FIND_NODE_REQ
                },
                src: self.me(),
                store: None,
                find: Some(DhtFindReqMsg {
                    cookie,
                    key: key.clone(),
                }),
                node: None,
                val: None,
            };
            self.send(c.addr, m);
        }
    }

    pub(super) fn finish(&mut self, id: LookupId) {
        let Some(l) = self.lookups.remove(&id) else {
            return;
        };
        if l.value {
            self.events.push_back(Event::NotFound { id, key: l.key });
        } else if let Some(exp) = l.store_exp {
            // A registration's node lookup is over: store at the k closest found.
            let closest: Vec<u64> = l
                .shortlist
                .values()
                .take(self.cfg.k)
                .map(|c| c.addr)
                .collect();
            for a in closest {
                self.store_to(a, &l.key, exp);
            }
        }
    }

    pub(super) fn answer(
        &mut self,
        code: u32,
        to: &DhtContactMsg,
        f: DhtFindReqMsg,
        unix: UnixTime,
    ) {
        if f.key.len() != self.id.len() {
            self.counters.dropped_bad += 1;
            return;
        }
        let contacts: Vec<DhtContactMsg> = self
            .closest(&f.key, self.cfg.k)
            .into_iter()
            .map(|c| DhtContactMsg {
                id: c.id,
                addr: c.addr,
            })
            .collect();
        let node = Some(DhtFindNodeRspMsg {
            cookie: f.cookie,
            key: f.key.clone(),
            contacts,
        });
        let m = if code == dht_code::FIND_VALUE_REQ {
            let proven = self.proofs.is_some();
            let mut bytes = 0;
            let values: Vec<Vec<u8>> = self
                .known_values(&f.key, unix)
                .into_iter()
                .map(|(a, p)| Self::value_bytes(a, &p))
                .take(pb::MAX_VALUES)
                .take_while(|v| {
                    bytes += v.len();
                    !proven || bytes == v.len() || bytes <= PROVEN_VALUE_BYTES
                })
                .collect();
            DhtMsg {
                code: dht_code::FIND_VALUE_RSP,
                src: self.me(),
                store: None,
                find: None,
                node,
                val: Some(DhtFindValueRspMsg { values }),
            }
        } else {
            DhtMsg {
                code: dht_code::FIND_NODE_RSP,
                src: self.me(),
                store: None,
                find: None,
                node,
                val: None,
            }
        };
        self.send(to.addr, m);
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        unix: UnixTime,
        from: &DhtContactMsg,
        n: DhtFindNodeRspMsg,
        val: Option<DhtFindValueRspMsg>,
    ) -> bool {
        // The lookup that asked `from` this key with this cookie.
        let id = self.lookups.iter().find_map(|(id, l)| {
            (l.key == n.key
                && l.waiting
                    .get(&from.addr)
                    .is_some_and(|(c, _)| *c == n.cookie))
            .then_some(*id)
        });
        let Some(id) = id else {
            self.counters.dropped_unsolicited += 1;
            return false;
        };
        let own = self.addr;
        let (k, id_len) = (self.cfg.k, self.id.len());
        let Some(l) = self.lookups.get_mut(&id) else {
            return false;
        };
        l.waiting.remove(&from.addr);
        let mut learnt = Vec::new();
        for c in n.contacts {
            if c.addr == own
                || c.addr == 0
                || c.addr > MAX_ADDR
                || c.id.len() != id_len
                || self.gone.contains(&c.addr)
            {
                continue;
            }
            // One candidate per address: a responder naming made-up ids at an address
            // already there (its own, asked already) would otherwise fill the k closest
            // with candidates never asked again, and end the lookup before the member
            // that holds the value is asked.
            // (An address asked already is either there or did not answer.)
            if l.asked.contains(&c.addr) || l.shortlist.values().any(|x| x.addr == c.addr) {
                continue;
            }
            let d = distance(&c.id, &l.key);
            l.shortlist.entry(d).or_insert_with(|| Contact {
                id: c.id.clone(),
                addr: c.addr,
            });
            learnt.push(Contact {
                id: c.id,
                addr: c.addr,
            });
        }
        // The shortlist keeps the k closest and those asked.
        while l.shortlist.len() > 4 * k {
            if l.shortlist.pop_last().is_none() {
                break;
            }
        }
        let raw = val.map(|v| v.values).unwrap_or_default();
        let value_lookup = l.value;
        let key = l.key.clone();
        for c in learnt {
            self.learn(c, false);
        }
        // Values with a valid proof only (layers with proofs), the newest of each
        // publisher, newest first.
        let mut admitted: Vec<(u64, Option<Signed>)> = vec![];
        if value_lookup {
            for x in &raw {
                if let Some((a, _, sg)) = self.admit(from.addr, &key, x, unix) {
                    admitted.push((a, sg));
                }
            }
        }
        admitted.sort_by(|x, y| {
            let at = |s: &Option<Signed>| s.as_ref().map_or(0, |s| s.at);
            at(&y.1).cmp(&at(&x.1))
        });
        let mut seen: HashSet<String> = HashSet::new();
        let values: Vec<u64> = admitted
            .into_iter()
            .filter(|(_, sg)| sg.as_ref().is_none_or(|s| seen.insert(s.publisher.clone())))
            .map(|(a, _)| a)
            .collect();
        if value_lookup && !values.is_empty() {
            // Others' addresses first (ours only if nothing else).
            let mut addrs: Vec<u64> = values.iter().copied().filter(|a| *a != own).collect();
            if addrs.is_empty() {
                addrs = values;
            }
            self.lookups.remove(&id);
            self.events.push_back(Event::Found { id, key, addrs });
            return true;
        }
        self.step(now, id);
        true
    }
}
