//! The directory's values: what we publish (signed or not), what others store here, what a
//! lookup may answer, and the values of members that left.

use super::{Dht, Event, Key, ProofError, Signed, Stored, MAX_GONE, MAX_VALUES_PER_KEY};
use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{dht_code, DhtMsg, DhtStoreMsg};
use std::time::Instant;

impl Dht {
    /// A value from member `from`: its address, proof and signer, or `None` (counted, and
    /// an event says why) when it has no valid proof in a layer with proofs, or has one in
    /// an open layer.
    pub(super) fn admit(
        &mut self,
        from: u64,
        key: &[u8],
        val: &[u8],
        unix: UnixTime,
    ) -> Option<(u64, Vec<u8>, Option<Signed>)> {
        let (addr, proof) = DhtMsg::split_value(val)?;
        let r = match &self.proofs {
            None if proof.is_empty() => return Some((addr, vec![], None)),
            None => Err(ProofError(format!(
                "a proof of {} bytes in an open layer",
                proof.len()
            ))),
            Some(_) if proof.is_empty() => Err(ProofError("no proof".into())),
            Some(p) => p.check(key, addr, proof, unix),
        };
        match r {
            Ok(sg) => Some((addr, proof.to_vec(), Some(sg))),
            Err(why) => {
                self.counters.proofs_refused += 1;
                self.events
                    .push_back(Event::ProofRefused { from, addr, why });
                None
            }
        }
    }

    /// A value on the wire: the address, then the proof.
    pub(super) fn value_bytes(addr: u64, proof: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + proof.len());
        v.extend_from_slice(&addr.to_be_bytes());
        v.extend_from_slice(proof);
        v
    }

    /// Publishes `key` (a name's hash) as ours: kept locally and stored at the k contacts
    /// closest to it. `unix`: the wall clock now.
    pub fn register(&mut self, now: Instant, unix: UnixTime, key: Key) {
        let proof = self.local_proof.get(&key).cloned().unwrap_or_default();
        self.register_signed(now, unix, key, proof);
    }

    /// [`Dht::register`] with the proof sent after our address (a layer with proofs: made
    /// by the driver for `key` and our address).
    pub fn register_signed(&mut self, now: Instant, unix: UnixTime, key: Key, proof: Vec<u8>) {
        self.tick(now, unix);
        if proof.is_empty() {
            self.local_proof.remove(&key);
        } else {
            self.local_proof.insert(key.clone(), proof);
        }
        let exp = u32::try_from(unix.as_secs().saturating_add(u64::from(self.cfg.t_expire)))
            .unwrap_or(u32::MAX);
        self.local.insert(key.clone(), exp);
        // The STOREs go where lookups will look: to the k closest found by a node lookup
        // (it ends in `store_at`), and at once to the closest known.
        for c in self.closest(&key, self.cfg.k) {
            self.store_to(c.addr, &key, exp);
        }
        let id = self.start(now, key, false);
        if let Some(l) = self.lookups.get_mut(&id) {
            l.store_exp = Some(exp);
        }
        self.step(now, id);
    }

    pub(super) fn store_to(&mut self, dst: u64, key: &[u8], exp: u32) {
        let m = DhtMsg {
            code: dht_code::STORE,
            src: self.me(),
            store: Some(DhtStoreMsg {
                key: key.to_vec(),
                val: Self::value_bytes(
                    self.addr,
                    self.local_proof.get(key).map_or(&[][..], Vec::as_slice),
                ),
                exp,
            }),
            find: None,
            node: None,
            val: None,
        };
        self.send(dst, m);
    }

    /// Our address is now `new` (another IPCP had ours): every registration of ours is
    /// stored again with it. The copies with the old address stay where they are until
    /// they expire (0.23 has no delete); lookups answer the newest first.
    pub fn readdress(&mut self, now: Instant, unix: UnixTime, new: u64) {
        self.readdress_signed(now, unix, new, &mut |_, _| Vec::new());
    }

    /// [`Dht::readdress`] in a layer with proofs: `sign(key, new)` makes each
    /// registration's proof for the new address.
    pub fn readdress_signed(
        &mut self,
        now: Instant,
        unix: UnixTime,
        new: u64,
        sign: &mut dyn FnMut(&[u8], u64) -> Vec<u8>,
    ) {
        self.addr = new;
        let mut keys: Vec<Key> = self.local.keys().cloned().collect();
        keys.sort();
        for k in keys {
            let proof = sign(&k, new);
            self.register_signed(now, unix, k, proof);
        }
    }

    /// Withdraws our registration of `key` (as the reference: copies elsewhere expire).
    pub fn unregister(&mut self, key: &[u8]) {
        self.local.remove(key);
        self.local_proof.remove(key);
    }

    /// What we know of `key` without asking: our own registration and values stored here.
    pub fn known(&self, key: &[u8], unix: UnixTime) -> Vec<u64> {
        self.known_values(key, unix)
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    }

    /// [`Dht::known`] with each value's proof.
    pub(super) fn known_values(&self, key: &[u8], unix: UnixTime) -> Vec<(u64, Vec<u8>)> {
        // The newest signature first, then the latest expiry: the newest store (an IPCP
        // that moved to another address stores its names again; the old copies expire
        // later).
        let mut v: Vec<(u64, u32, u64, Vec<u8>)> = self
            .values
            .get(key)
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| u64::from(e.exp) > unix.as_secs())
                    .map(|(a, e)| {
                        let at = e.signed.as_ref().map_or(0, |s| s.at);
                        (at, e.exp, *a, e.proof.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable_by_key(|x| std::cmp::Reverse((x.0, x.1, x.2)));
        let mut v: Vec<(u64, Vec<u8>)> = v.into_iter().map(|x| (x.2, x.3)).collect();
        if self.local.contains_key(key) {
            let proof = self.local_proof.get(key).cloned().unwrap_or_default();
            v.push((self.addr, proof));
        }
        v
    }

    /// Who signed the value of `key` at `addr` stored here (layers with proofs).
    pub fn signer(&self, key: &[u8], addr: u64) -> Option<&Signed> {
        self.values.get(key)?.get(&addr)?.signed.as_ref()
    }

    pub(super) fn on_store(&mut self, now: Instant, unix: UnixTime, from: u64, s: DhtStoreMsg) {
        if u64::from(s.exp) <= unix.as_secs() || s.key.len() != self.id.len() {
            self.counters.store_refused += 1;
            return;
        }
        // (A value shorter than 8 bytes does not decode: counted in `dropped_bad`.)
        let Some((addr, proof, signed)) = self.admit(from, &s.key, &s.val, unix) else {
            return;
        };
        if addr == self.addr {
            self.counters.store_refused += 1;
            return;
        }
        // No value lives here longer than its publisher's own would (t_expire): a STORE
        // with an expiry far ahead would otherwise hold its slot for decades.
        let latest = u32::try_from(unix.as_secs().saturating_add(u64::from(self.cfg.t_expire)))
            .unwrap_or(u32::MAX);
        let s = DhtStoreMsg {
            exp: s.exp.min(latest),
            ..s
        };
        let full = self.stored >= self.cfg.max_values;
        if full
            && !self
                .values
                .get(&s.key)
                .is_some_and(|m| m.contains_key(&addr))
        {
            // Refused before the key is looked up for writing: a new key would otherwise
            // leave an empty entry behind, one per refused STORE until the next pass.
            self.counters.store_refused += 1;
            return;
        }
        let entry = self.values.entry(s.key).or_default();
        if let Some(sg) = &signed {
            // A newer entry of the same publisher supersedes its older ones (an IPCP that
            // restarted or moved signs again); an older one than we hold is refused.
            let same = |e: &Stored| {
                e.signed
                    .as_ref()
                    .is_some_and(|o| o.publisher == sg.publisher)
            };
            if entry
                .values()
                .any(|e| same(e) && e.signed.as_ref().is_some_and(|o| o.at > sg.at))
            {
                self.counters.superseded += 1;
                return;
            }
            let before = entry.len();
            entry.retain(|a, e| *a == addr || !same(e));
            let gone = before - entry.len();
            self.counters.superseded += gone as u64;
            self.stored = self.stored.saturating_sub(gone);
        }
        if let Some(e) = entry.get_mut(&addr) {
            e.exp = e.exp.max(s.exp);
            // A proof that passed the check above is as new as any its publisher gave
            // for this key.
            if signed.is_some() {
                e.proof = proof;
                e.signed = signed;
            }
            return;
        }
        // (A full table refused a new value above.)
        if entry.len() >= MAX_VALUES_PER_KEY {
            // The value that expires first makes room, if it expires before this one.
            let first = entry
                .iter()
                .min_by_key(|(a, e)| (e.exp, **a))
                .map(|(a, e)| (*a, e.exp));
            match first {
                Some((old, exp)) if exp < s.exp => {
                    entry.remove(&old);
                    self.stored = self.stored.saturating_sub(1);
                    self.counters.superseded += 1;
                }
                _ => {
                    self.counters.store_refused += 1;
                    return;
                }
            }
        }
        entry.insert(
            addr,
            Stored {
                exp: s.exp,
                last: now,
                proof,
                signed,
            },
        );
        self.stored += 1;
    }

    /// Address `addr` left the layer (its routes are gone: link state withdrew it or it
    /// aged out): the values stored here that point at it are dropped, so lookups stop
    /// answering a dead address, and it leaves the buckets. Returns how many values went.
    /// An o7s step beyond 0.23, which keeps them until they expire; a member that is still
    /// there stores its names again when it republishes.
    pub fn forget_address(&mut self, addr: u64) -> usize {
        if addr == self.addr {
            return 0;
        }
        let mut gone = 0;
        self.values.retain(|_, m| {
            gone += usize::from(m.remove(&addr).is_some());
            !m.is_empty()
        });
        self.stored = self.stored.saturating_sub(gone);
        for b in &mut self.buckets {
            b.retain(|c| c.addr != addr);
        }
        self.fails.remove(&addr);
        if self.gone.insert(addr) {
            self.gone_order.push_back(addr);
            if self.gone_order.len() > MAX_GONE {
                if let Some(old) = self.gone_order.pop_front() {
                    self.gone.remove(&old);
                }
            }
        }
        gone
    }

    /// Address `addr`, forgotten, is back in the layer (a route to it again): other
    /// members' answers may name it again.
    pub fn returned(&mut self, addr: u64) {
        if self.gone.remove(&addr) {
            self.gone_order.retain(|a| *a != addr);
        }
    }

    /// Values stored here for others.
    pub fn stored(&self) -> usize {
        self.stored
    }

    /// Every key known here: (key, address, whether it is our own registration, expiry).
    pub fn entries(&self) -> Vec<(Key, u64, bool, u32)> {
        let mut v: Vec<(Key, u64, bool, u32)> = self
            .local
            .iter()
            .map(|(k, e)| (k.clone(), self.addr, true, *e))
            .chain(
                self.values
                    .iter()
                    .flat_map(|(k, m)| m.iter().map(move |(a, e)| (k.clone(), *a, false, e.exp))),
            )
            .collect();
        v.sort();
        v
    }
}
