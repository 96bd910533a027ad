//! DT PDUs: from a neighbour (within its budget) for the IPCP's components or forwarded with
//! the TTL down, and the components' own messages (waiting for a route when there is none yet).

use super::{dt_pdu, Event, Held, Transmit, UnicastIpcp, EID_DHT, EID_FA, PCI_LEN};
use crate::budget::Bucket;
use crate::enroll::{Connections, FlowId};
use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{self, CepMsg, Component};
use std::time::Instant;

impl UnicastIpcp {
    /// An SDU arrived on N-1 flow `flow`.
    pub fn handle_sdu(&mut self, now: Instant, unix: UnixTime, flow: FlowId, sdu: &[u8]) {
        self.take_sdu(now, unix, flow, sdu);
        self.tend(now);
    }

    /// SDUs that arrived together on N-1 flow `flow` (a ring's worth): the same as a
    /// [`UnicastIpcp::handle_sdu`] for each, with what they make the machine do (its
    /// transmits, its events, the messages waiting for a route) worked out once at the
    /// end: a neighbour's flood costs the work of each SDU, not a turn of every part.
    pub fn handle_sdus<'a>(
        &mut self,
        now: Instant,
        unix: UnixTime,
        flow: FlowId,
        sdus: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for sdu in sdus {
            self.take_sdu(now, unix, flow, sdu);
            // The connection machine's events in order (an enrolment's configuration
            // before the SDUs that follow it).
            self.tend_connections(now);
        }
        self.tend(now);
    }

    /// One SDU into the part it is for (no turn of the others).
    fn take_sdu(&mut self, now: Instant, unix: UnixTime, flow: FlowId, sdu: &[u8]) {
        self.tick(now, unix);
        let comp = self.conn.connected(flow).map(|(c, _)| c);
        match comp {
            Some(Component::Management) if !self.within_budget(flow, now) => {
                self.counters.lsa_rate_dropped += 1;
            }
            Some(Component::DataTransfer) if !self.within_budget(flow, now) => {
                self.counters.dt_rate_dropped += 1;
            }
            Some(Component::Management) if Connections::is_update(sdu) => {
                // The neighbour's new address: its flows are those of the same link.
                let here = self.links.get(&flow).copied();
                let links = &self.links;
                let same = |f: FlowId| here.is_some_and(|h| links.get(&f) == Some(&h));
                let new = pb::decode::<CepMsg>(sdu).map_or(0, |c| c.address);
                // A CEP naming the address the neighbour has (a second Management flow's
                // copy of one move) is no move: `handle_update` counts it, not the hold.
                let current = self.conn.connected(flow).map(|(_, a)| a);
                let held = current != Some(new) && self.move_held(now, here);
                if new > u64::from(u32::MAX) || self.dt_nb.get(&new).is_some_and(|f| !same(*f)) {
                    // Wider than the layer's addresses, or another link's DT neighbour's.
                    self.counters.address_claims_refused += 1;
                    self.events
                        .push_back(Event::ClaimRefused { flow, addr: new });
                } else if held {
                    self.counters.neighbour_moves_held += 1;
                } else {
                    self.conn.handle_update(flow, sdu, same);
                }
            }
            Some(Component::Management) => {
                if let Some(l) = self.layer.as_mut() {
                    l.ls.handle(now, &flow, sdu);
                }
            }
            Some(Component::DataTransfer) => self.on_dt(now, unix, sdu),
            _ => self.conn.handle(now, unix, flow, sdu),
        }
    }

    /// Whether the neighbour on `flow` may make us handle one more message at `now`
    /// (`neighbour_rate` a second, `neighbour_burst` at once; a rate of 0: no bound).
    pub(super) fn within_budget(&mut self, flow: FlowId, now: Instant) -> bool {
        let rate = self.cfg.neighbour_rate;
        if rate == 0 {
            return true;
        }
        let burst = self.cfg.neighbour_burst.max(rate);
        self.budgets
            .entry(flow)
            .or_insert_with(|| Bucket::with_burst(burst, now))
            .take(rate, now)
    }

    /// A DT PDU: for us, to the directory or the flow allocator; for another IPCP,
    /// forwarded along the next hop with its TTL decremented.
    pub(super) fn on_dt(&mut self, now: Instant, unix: UnixTime, pdu: &[u8]) {
        let Some(l) = self.layer.as_mut() else {
            self.counters.dt_dropped += 1;
            return;
        };
        let (Some(dst), Some(&ttl), Some(eid)) = (
            pdu.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()),
            pdu.get(5),
            pdu.get(7..PCI_LEN)
                .and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            self.counters.dt_dropped += 1;
            return;
        };
        let dst = u64::from(u32::from_le_bytes(dst));
        if dst == l.addr {
            let body = pdu.get(PCI_LEN..).unwrap_or_default();
            match u64::from_le_bytes(eid) {
                EID_FA => l.fa.handle(now, body),
                EID_DHT => l.dht.handle(now, unix, body),
                _ => self.counters.dt_dropped += 1,
            }
            return;
        }
        if ttl <= 1 {
            self.counters.ttl_dropped += 1;
            return;
        }
        match self.next_hop(dst) {
            Some(flow) => {
                let mut p = pdu.to_vec();
                if let Some(t) = p.get_mut(5) {
                    *t = ttl - 1;
                }
                self.counters.forwarded += 1;
                self.out.push_back(Transmit { flow, sdu: p });
            }
            None => self.counters.no_route += 1,
        }
    }

    /// A DT PDU for component `eid` at `dst`, along the next hop; with no route yet (a
    /// member just learnt of from the directory, before link state has it) it waits up
    /// to `hold_for`, at most `hold_max` of them, of which the directory's take at most
    /// half: its answers go to whatever address a request claims, and spoofed requests
    /// would otherwise fill the queue our FLOW_REQs wait in.
    pub(super) fn dt_send(&mut self, now: Instant, dst: u64, eid: u64, msg: Vec<u8>) {
        let room = if eid == EID_DHT {
            self.held.iter().filter(|h| h.eid == EID_DHT).count() < self.cfg.hold_max / 2
        } else {
            true
        };
        match self.next_hop(dst) {
            Some(flow) => {
                let sdu = dt_pdu(dst, eid, self.max_ttl, &msg);
                self.out.push_back(Transmit { flow, sdu });
            }
            None if room && self.held.len() < self.cfg.hold_max => {
                self.counters.held += 1;
                self.held.push_back(Held {
                    since: now,
                    dst,
                    eid,
                    msg,
                });
            }
            None => self.counters.held_dropped += 1,
        }
    }

    /// Sends the held messages that have a route now; drops those that waited too long.
    /// Only when the routes may have changed since the last try, or the oldest is due.
    pub(super) fn send_held(&mut self, now: Instant) {
        let due = self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.since) >= self.cfg.hold_for);
        if !(self.routes_changed || due) {
            return;
        }
        self.routes_changed = false;
        for h in std::mem::take(&mut self.held) {
            if let Some(flow) = self.next_hop(h.dst) {
                let sdu = dt_pdu(h.dst, h.eid, self.max_ttl, &h.msg);
                self.out.push_back(Transmit { flow, sdu });
            } else if now.saturating_duration_since(h.since) >= self.cfg.hold_for {
                self.counters.held_dropped += 1;
            } else {
                self.held.push_back(h);
            }
        }
    }
}
