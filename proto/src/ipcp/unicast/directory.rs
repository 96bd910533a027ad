//! Names and flows over the layer: registration (published once the directory can store it),
//! lookups, the flow allocator's requests and answers, and the directory's joining.

use super::{publish, Event, UniError, UnicastIpcp, EID_DHT};
use crate::dht::{self, Key, LookupId};
use crate::fa::{AllocId, ReqId};
use crate::machine::UnixTime;
use o7s_wire::qos::QosSpec;
use std::time::{Duration, Instant};

impl UnicastIpcp {
    /// Publishes `key` (a name's hash) in the directory: at once when it can store it
    /// (in a layer, and its first contact known unless it is the first member), else as
    /// soon as it can.
    pub fn register(&mut self, now: Instant, unix: UnixTime, key: Key) {
        self.tick(now, unix);
        if !self.to_publish.contains(&key) {
            self.to_publish.push(key);
        }
        self.tend(now);
    }

    /// Withdraws `key` (copies elsewhere expire, as in the reference).
    pub fn unregister(&mut self, key: &[u8]) {
        self.to_publish.retain(|k| k != key);
        if let Some(l) = self.layer.as_mut() {
            l.dht.unregister(key);
        }
    }

    /// Looks `key` up in the directory: the answer is an [`Event::Dir`].
    pub fn lookup(&mut self, now: Instant, unix: UnixTime, key: Key) -> Result<LookupId, UniError> {
        self.tick(now, unix);
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let id = l.dht.lookup(now, unix, key);
        self.tend(now);
        // The directory refuses a lookup beyond its bound (counted there).
        id.ok_or(UniError::TooManyLookups)
    }

    /// Asks the IPCP at `dst` for a flow to the name whose hash is `hash`: the answer is
    /// an [`Event::Fa`]. Returns the allocation and our endpoint id.
    pub fn alloc(
        &mut self,
        now: Instant,
        dst: u64,
        hash: &[u8],
        qos: QosSpec,
        oap: &[u8],
        timeout: Duration,
    ) -> Result<(AllocId, u64), UniError> {
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let r = l.fa.alloc(now, dst, hash, qos, oap, timeout)?;
        self.tend(now);
        Ok(r)
    }

    /// Accepts flow request `req` (an [`fa::Event::Incoming`]): returns our endpoint id,
    /// the peer's and its address.
    pub fn accept_flow(
        &mut self,
        now: Instant,
        req: ReqId,
        oap: &[u8],
    ) -> Result<(u64, u64, u64), UniError> {
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let r = l.fa.accept(req, oap);
        self.tend(now);
        Ok(r?)
    }

    /// Refuses flow request `req` with `response` (negative).
    pub fn refuse_flow(&mut self, now: Instant, req: ReqId, response: i32) -> Result<(), UniError> {
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let r = l.fa.refuse(req, response);
        self.tend(now);
        Ok(r?)
    }

    /// The directory: joined through the enroller once it is reachable (asked again
    /// every `dht_retry` until it answers), names published once it can store them, its
    /// messages sent, its answers passed on.
    pub(super) fn tend_dht(&mut self, now: Instant) {
        let unix = self.unix_at(now);
        let Some(l) = self.layer.as_mut() else {
            return;
        };
        let reachable = l.ls.next_hop(self.dir_join.peer()).is_some();
        if let Some(peer) = self.dir_join.due(now, l.dht.contacts(), reachable) {
            l.dht.bootstrap(now, peer);
        }
        if self.dir_join.can_publish(l.dht.contacts()) {
            let signer = self.signed.as_ref().map(|(_, s)| s.as_ref());
            for key in std::mem::take(&mut self.to_publish) {
                if let Err(e) = publish(&mut l.dht, signer, now, unix, key) {
                    self.counters.sign_failed += 1;
                    self.events.push_back(e);
                }
            }
        }
        let mut dts = vec![];
        while let Some(t) = l.dht.poll_transmit() {
            dts.push((t.dst, t.msg));
        }
        while let Some(mut e) = l.dht.poll_event() {
            if let dht::Event::Found { addrs, .. } = &mut e {
                // Members we have a route to first (a name can keep the old address of a
                // member that moved until it expires), in the directory's order.
                addrs.sort_by_key(|a| l.ls.next_hop(*a).is_none());
            }
            self.events.push_back(Event::Dir(e));
        }
        for (dst, msg) in dts {
            self.dt_send(now, dst, EID_DHT, msg);
        }
    }
}
