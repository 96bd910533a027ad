//! A unicast IPCP's DT PDUs in o7sd (the interim path until the workers take them): what
//! arrives on its DT N-1 flows (for the directory, the flow allocator, a flow of ours, or
//! another IPCP: forwarded), what its components send, and the directory's and flow
//! allocator's work.

use super::unix_now;
use super::{UniAllocated, UniIncoming, UniIpcp};
use o7s_proto::dht;
use o7s_proto::fa as ufa;
use o7s_proto::ipcp::departures::Action as Departure;
use o7s_proto::linkstate::LinkState;
use std::time::{Duration, Instant};

/// Bytes of a DT PCI (addr 4, qc, ttl, ecn, eid 8; facts §5.1).
const PCI_LEN: usize = 15;

/// How long a component's message waits for a route to its destination.
pub(in crate::daemon) const HOLD_FOR: Duration = Duration::from_secs(3);
/// At most this many messages wait for a route (the rest are dropped and counted).
pub(in crate::daemon) const HOLD_MAX: usize = 256;

/// A DT PDU: the PCI (to `dst`, eid `eid`, TTL `ttl`) and `sdu`.
fn dt_pdu(dst: u64, eid: u64, ttl: u8, sdu: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PCI_LEN + sdu.len());
    p.extend_from_slice(&(dst as u32).to_le_bytes());
    p.extend_from_slice(&[0, ttl, 0]);
    p.extend_from_slice(&eid.to_le_bytes());
    p.extend_from_slice(sdu);
    p
}

impl UniIpcp {
    /// A DT PDU from a DT N-1 flow (the slow path in o7sd until the workers take it):
    /// for us, to the directory (eid 1) or, for eid 0, the flow allocator (not yet: counted);
    /// for another IPCP, forwarded along the next hop with its TTL decremented.
    pub(in crate::daemon) fn on_dt(
        &mut self,
        now: Instant,
        unix: o7s_proto::machine::UnixTime,
        pdu: &[u8],
        out: &mut Vec<(u64, Vec<u8>)>,
    ) {
        if pdu.len() < PCI_LEN {
            self.dt_dropped += 1;
            return;
        }
        let dst = pdu
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b: [u8; 4]| u64::from(u32::from_le_bytes(b)));
        if dst == self.addr {
            let eid = pdu
                .get(7..PCI_LEN)
                .and_then(|b| b.try_into().ok())
                .map_or(u64::MAX, u64::from_le_bytes);
            let body = pdu.get(PCI_LEN..).unwrap_or(&[]);
            match (eid, self.dht.as_mut(), self.fa.as_mut()) {
                (0, _, Some(f)) => f.handle(now, body),
                (1, Some(d), _) => d.handle(now, unix, body),
                _ => self.dt_dropped += 1,
            }
            return;
        }
        let ttl = pdu.get(5).copied().unwrap_or(0);
        let hop = self
            .ls
            .as_ref()
            .and_then(|l| l.next_hop(dst))
            .and_then(|a| self.dt_nb.get(&a).copied());
        match hop {
            Some(flow) if ttl > 1 => {
                let mut p = pdu.to_vec();
                if let Some(t) = p.get_mut(5) {
                    *t -= 1;
                }
                self.dt_forwarded += 1;
                out.push((flow, p));
            }
            _ => self.dt_dropped += 1,
        }
    }

    /// The N-1 flow of the next hop towards `dst`, if link state has a route.
    fn hop_to(&self, dst: u64) -> Option<u64> {
        self.ls
            .as_ref()
            .and_then(|l| l.next_hop(dst))
            .and_then(|a| self.dt_nb.get(&a).copied())
    }

    /// Sends a component's message to `dst` in a DT PDU along the next hop. With no route
    /// yet (a member just learnt of from the directory, before link state has it) the
    /// message waits up to [`HOLD_FOR`] in a queue of at most [`HOLD_MAX`]: a STORE sent
    /// while routes converge would otherwise be lost until the next replication (900 s).
    pub(in crate::daemon) fn dt_send(&mut self, now: Instant, dst: u64, eid: u64, msg: &[u8]) {
        match self.hop_to(dst) {
            Some(flow) => {
                let ttl = u8::try_from(self.max_ttl).unwrap_or(u8::MAX);
                self.pending.push((flow, dt_pdu(dst, eid, ttl, msg)));
            }
            None if self.held.len() < HOLD_MAX => {
                self.dt_held += 1;
                self.held.push_back((now, dst, eid, msg.to_vec()));
            }
            None => self.dt_dropped += 1,
        }
    }

    /// Sends the held messages whose destination has a route now; drops (and counts)
    /// those that waited [`HOLD_FOR`].
    fn send_held(&mut self, now: Instant) {
        for (at, dst, eid, msg) in std::mem::take(&mut self.held) {
            if let Some(flow) = self.hop_to(dst) {
                let ttl = u8::try_from(self.max_ttl).unwrap_or(u8::MAX);
                self.pending.push((flow, dt_pdu(dst, eid, ttl, &msg)));
            } else if now.saturating_duration_since(at) >= HOLD_FOR {
                self.dt_dropped += 1;
            } else {
                self.held.push_back((at, dst, eid, msg));
            }
        }
    }

    /// The directory's work: bootstrap through the enroller once it is reachable, publish
    /// the `reg` names, send what it produced.
    /// Returns whether an allocation waiting in the loop got an answer (wake it).
    pub(in crate::daemon) fn tend_dht(&mut self, now: Instant) -> bool {
        let unix = unix_now();
        let mut answered = false;
        let Some(d) = self.dht.as_mut() else {
            return false;
        };
        d.handle_timeout(now);
        while let Some(a) = self.departures.poll(now) {
            match a {
                Departure::Forget(addr) => {
                    let n = d.forget_address(addr);
                    if n > 0 {
                        self.dht_forgotten += n as u64;
                        tracing::info!(
                            "IPCP {}: address {addr:#x} left the layer: {n} directory value(s) naming it dropped.",
                            self.name
                        );
                    }
                }
                Departure::Rejoin(addr) => {
                    self.dht_rejoined += 1;
                    tracing::info!(
                        "IPCP {}: {addr:#x}, a member the directory had dropped, is reachable again (a healed layer): the directory rejoins through it.",
                        self.name
                    );
                    d.bootstrap(now, addr);
                }
                // Our names again, signed anew (below), at the whole layer's k closest.
                Departure::Republish => self.published = false,
            }
        }
        let reachable = |peer: u64, ls: &Option<LinkState<u64>>| {
            ls.as_ref().is_some_and(|l| l.next_hop(peer).is_some())
        };
        let peer_reachable = reachable(self.dir_join.peer(), &self.ls);
        if let Some(peer) = self.dir_join.due(now, d.contacts(), peer_reachable) {
            d.bootstrap(now, peer);
        }
        if !self.published && self.dir_join.can_publish(d.contacts()) {
            self.published = true;
            for n in &self.reg {
                let key = o7s_wire::hash::HashAlgo::Sha3_256.hash(n);
                match &self.member {
                    Some(m) => {
                        if !crate::dir_proof::publishable_names(&m.signer.cert).contains(n) {
                            tracing::warn!(
                                "IPCP {}: publishes {n}, but its member certificate does not name it (subjectAltName DNS): other members will ignore the entry.",
                                self.name
                            );
                        }
                        match crate::dir_proof::sign(m, &key, self.addr, unix.as_secs()) {
                            Ok(p) => d.register_signed(now, unix, key, p),
                            Err(e) => {
                                tracing::error!(
                                    "IPCP {}: cannot sign the directory entry of {n}: {e}; not published.",
                                    self.name
                                );
                                continue;
                            }
                        }
                    }
                    None => d.register(now, unix, key),
                }
                tracing::info!("IPCP {}: {n} published in the directory.", self.name);
            }
        }
        let mut out = vec![];
        while let Some(t) = d.poll_transmit() {
            out.push((t.dst, 1, t.msg));
        }
        while let Some(e) = d.poll_event() {
            let (id, mut addrs) = match e {
                dht::Event::Found { id, addrs, .. } => (id, addrs),
                dht::Event::NotFound { id, .. } => (id, vec![]),
                dht::Event::ProofRefused { from, addr, why } => {
                    // Logged at the first, second, fourth, ... refusal: every one is
                    // counted (`dht_proofs_refused`), the log stays bounded.
                    let n = d.counters().proofs_refused;
                    if n.is_power_of_two() {
                        tracing::warn!(
                            "IPCP {}: a directory entry for {addr:#010x} from {from:#010x} ignored: {why} ({n} so far).",
                            self.name
                        );
                    }
                    continue;
                }
            };
            // Members we have a route to first (a name can have an old address of a
            // member that moved, until it expires), in the directory's order.
            addrs.sort_by_key(|a| !reachable(*a, &self.ls));
            if let Some(w) = self.lookups.remove(&id) {
                answered = true;
                let _ = w.send(addrs);
            }
        }
        if let Some(f) = self.fa.as_mut() {
            f.handle_timeout(now);
            while let Some(e) = f.poll_event() {
                match e {
                    ufa::Event::Allocated {
                        id,
                        local,
                        remote,
                        peer,
                        oap,
                    } => {
                        if let Some(w) = self.fa_waiters.remove(&id) {
                            answered = true;
                            let ok = w.send(Ok(UniAllocated {
                                local,
                                remote,
                                peer,
                                oap,
                            }));
                            if ok.is_err() {
                                f.release(local);
                            }
                        }
                    }
                    ufa::Event::AllocFailed { id, error } => {
                        if let Some(w) = self.fa_waiters.remove(&id) {
                            answered = true;
                            let _ = w.send(Err(error));
                        }
                    }
                    ufa::Event::Incoming {
                        req,
                        peer,
                        hash,
                        qos,
                        oap,
                    } => self.incoming.push(UniIncoming {
                        uni: usize::MAX,
                        req,
                        peer,
                        hash,
                        qos,
                        oap,
                    }),
                    ufa::Event::Update { .. } => {}
                }
            }
            while let Some(t) = f.poll_transmit() {
                out.push((t.dst, 0, t.msg));
            }
        }
        self.send_held(now);
        for (dst, eid, msg) in out {
            self.dt_send(now, dst, eid, &msg);
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o7s_proto::linkstate::LsConfig;

    /// An IPCP at address 1 whose link state knows nobody yet.
    fn ipcp(now: Instant) -> UniIpcp {
        let mut u = UniIpcp::new("u1", &[], &[], true);
        u.addr = 1;
        u.ls = Some(LinkState::new(1, LsConfig::default(), now));
        u
    }

    /// Gives `u` a DT neighbour `addr` on N-1 flow `flow`, routed.
    fn route(u: &mut UniIpcp, now: Instant, addr: u64, flow: u64) {
        let ls = u.ls.as_mut().expect("in a layer");
        ls.add_dt(now, addr);
        // The neighbour's record of the link back to us.
        let mut w = o7s_wire::field::Writer::default();
        o7s_wire::unicast::lsa::Lsa {
            d_addr: 1,
            s_addr: addr,
            seqno: 0,
        }
        .write(&mut w);
        ls.handle(now, &flow, &w.0);
        let at = ls.next_recalc();
        ls.handle_timeout(at);
        u.dt_nb.insert(addr, flow);
        assert_eq!(u.hop_to(addr), Some(flow), "{addr} routed");
    }

    #[test]
    fn a_message_for_an_unrouted_member_waits_for_its_route() {
        let now = Instant::now();
        let mut u = ipcp(now);
        u.dt_send(now, 2, 1, b"store");
        assert!(u.pending.is_empty());
        assert_eq!((u.held.len(), u.dt_held, u.dt_dropped), (1, 1, 0));
        // Still no route just before the deadline: it keeps waiting.
        u.send_held(now + HOLD_FOR - Duration::from_millis(1));
        assert_eq!((u.held.len(), u.pending.len()), (1, 0));
        route(&mut u, now, 2, 7);
        u.send_held(now + Duration::from_secs(1));
        assert!(u.held.is_empty());
        assert_eq!(u.pending, vec![(7, dt_pdu(2, 1, 60, b"store"))]);
        assert_eq!(u.dt_dropped, 0);
        // Routed: sent at once, never held.
        u.dt_send(now, 2, 0, b"fa");
        assert_eq!(u.pending.len(), 2);
        assert_eq!(u.dt_held, 1);
    }

    #[test]
    fn a_message_held_too_long_or_beyond_the_bound_is_dropped_and_counted() {
        let now = Instant::now();
        let mut u = ipcp(now);
        u.dt_send(now, 3, 1, b"late");
        u.send_held(now + HOLD_FOR);
        assert!(u.held.is_empty() && u.pending.is_empty());
        assert_eq!(u.dt_dropped, 1);
        for _ in 0..HOLD_MAX + 2 {
            u.dt_send(now, 3, 1, b"x");
        }
        assert_eq!(u.held.len(), HOLD_MAX);
        assert_eq!((u.dt_held, u.dt_dropped), (1 + HOLD_MAX as u64, 3));
    }

    /// An LSA from `s` to `d` with `seqno`, as a Management neighbour sends it.
    fn lsa(s: u64, d: u64, seqno: u64) -> Vec<u8> {
        let mut w = o7s_wire::field::Writer::default();
        o7s_wire::unicast::lsa::Lsa {
            d_addr: d,
            s_addr: s,
            seqno,
        }
        .write(&mut w);
        w.0
    }

    /// A member that forges our address (links from it, with a high seqno) makes us move
    /// once; forging the new one within READDRESS_HOLD moves us no more (counted), after it
    /// we move again.
    #[test]
    fn forged_collisions_move_us_at_most_once_per_hold() {
        let now = Instant::now();
        let mut u = ipcp(now);
        let forge = |u: &mut UniIpcp, at: Instant| {
            let me = u.addr;
            if let Some(ls) = u.ls.as_mut() {
                ls.handle(at, &9, &lsa(me, 77, 1 << 40));
            }
            u.tend_collision(at);
        };
        forge(&mut u, now);
        let moved = u.addr;
        assert_ne!(moved, 1);
        assert_eq!((u.readdressed, u.readdress_held), (1, 0));
        for k in 1..=5 {
            forge(&mut u, now + Duration::from_secs(k));
        }
        assert_eq!(u.addr, moved, "no move within the hold");
        assert_eq!((u.readdressed, u.readdress_held), (1, 5));
        forge(
            &mut u,
            now + crate::daemon::unicast::READDRESS_HOLD + Duration::from_secs(1),
        );
        assert_ne!(u.addr, moved);
        assert_eq!(u.readdressed, 2);
    }

    #[test]
    fn a_pdu_carries_destination_ttl_and_eid_little_endian() {
        let p = dt_pdu(0x1122_3344, 0x0102_0304_0506_0708, 9, b"ab");
        assert_eq!(
            p,
            [0x44, 0x33, 0x22, 0x11, 0, 9, 0, 8, 7, 6, 5, 4, 3, 2, 1, b'a', b'b']
        );
    }
}
