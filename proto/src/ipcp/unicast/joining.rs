//! Joining a layer and keeping its N-1 flows: bootstrap or enrolment, the CEP connections to
//! members, N-1 flows that go down, and the IPCP's departure from the directory's view.

use super::{
    dht_config, ls_config, publish, Adopted, Departure, Event, Layer, Transmit, UnicastIpcp,
};
use crate::dht::{Dht, Key};
use crate::enroll::FlowId;
use crate::fa::Fa;
use crate::ipcp::dir_join::DirJoin;
use crate::linkstate::LinkState;
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

impl UnicastIpcp {
    /// Starts a layer with configuration `conf` (the first member; the configuration it
    /// hands to those it enrols names it as their directory peer). Returns our address
    /// (the one we have if already in a layer).
    pub fn bootstrap(&mut self, now: Instant, conf: IpcpConfigMsg) -> u64 {
        if let Some(a) = self.addr() {
            return a;
        }
        self.join(now, conf, false);
        self.tend(now);
        self.addr().unwrap_or(0)
    }

    /// Takes the layer's configuration (ours by bootstrap, or the enroller's): an
    /// address, the parts.
    pub(super) fn join(&mut self, now: Instant, conf: IpcpConfigMsg, enrolled: bool) {
        let resumed = self
            .resume_addr
            .as_ref()
            .is_some_and(|(layer, _)| *layer == conf.layer_info.name);
        if resumed {
            self.next_addr = self.resume_addr.take().map(|(_, a)| a);
        }
        let addr = self.draw_addr(&BTreeSet::new());
        let peer = conf
            .unicast
            .as_ref()
            .and_then(|u| u.dir.dht.as_ref())
            .map_or(0, |d| d.peer);
        let peer = if enrolled && peer != addr { peer } else { 0 };
        self.dir_join = DirJoin::new(peer, self.cfg.dht_retry, self.cfg.dht_again);
        self.max_ttl = conf
            .unicast
            .as_ref()
            .map_or(60, |u| u8::try_from(u.dt.max_ttl).unwrap_or(u8::MAX));
        let ls_cfg = self.cfg.ls.unwrap_or_else(|| {
            let mut c = ls_config(&conf);
            c.withdraw = self.cfg.ls_withdraw;
            c
        });
        let dht_cfg = self.cfg.dht.unwrap_or_else(|| dht_config(&conf));
        let mut mine = conf;
        if let Some(d) = mine.unicast.as_mut().and_then(|u| u.dir.dht.as_mut()) {
            d.peer = addr;
        }
        self.conn.set_layer(addr, mine.clone());
        let mut id = vec![0u8; 32];
        self.rng.fill(id.as_mut_slice());
        let (dht_seed, fa_seed) = (self.rng.gen(), self.rng.gen());
        self.layer = Some(Layer {
            addr,
            conf: mine,
            ls: LinkState::new(addr, ls_cfg, now),
            dht: match &self.signed {
                Some((p, _)) => Dht::new(dht_cfg, id, addr, dht_seed).with_proofs(Arc::clone(p)),
                None => Dht::new(dht_cfg, id, addr, dht_seed),
            },
            fa: Fa::new(self.cfg.fa, addr, fa_seed),
        });
        self.events.push_back(Event::InLayer { addr });
    }

    /// Enrols over N-1 flow `flow` (allocated by the driver to a member; `link`: its
    /// lower-layer peer).
    pub fn enrol(&mut self, now: Instant, flow: FlowId, link: u64) {
        let id: [u8; 8] = self.rng.gen();
        self.links.insert(flow, link);
        self.conn.connect(now, flow, Component::Enrollment, id);
        self.tend(now);
    }

    /// Sets up `comp` over N-1 flow `flow` (allocated by the driver to a member).
    pub fn connect(&mut self, now: Instant, flow: FlowId, comp: Component, link: u64) {
        let id: [u8; 8] = self.rng.gen();
        self.links.insert(flow, link);
        self.conn.connect(now, flow, comp, id);
        self.tend(now);
    }

    /// N-1 flow `flow` was allocated to us: its CEP comes first.
    pub fn accept(&mut self, now: Instant, flow: FlowId, link: u64) {
        self.links.insert(flow, link);
        self.conn.accept(now, flow);
        self.tend(now);
    }

    /// N-1 flow `flow` is gone: its connection is forgotten and link state drops the link
    /// it carried (the other members age it out).
    pub fn flow_down(&mut self, now: Instant, flow: FlowId) {
        let comp = self.conn.connected(flow);
        self.conn.flow_down(flow);
        self.budgets.remove(&flow);
        self.links.remove(&flow);
        if let Some(l) = self.layer.as_mut() {
            match comp {
                Some((Component::Management, _)) => l.ls.remove_mgmt(&flow),
                // Unless a newer DT flow to the same member took its place.
                Some((Component::DataTransfer, addr)) if self.dt_nb.get(&addr) == Some(&flow) => {
                    self.dt_nb.remove(&addr);
                    self.routes_changed = true;
                    l.ls.remove_dt(addr);
                }
                _ => {}
            }
        }
        self.tend(now);
    }

    /// Whether a DT connection on N-1 flow `flow` may be to the member at `addr`: not 0,
    /// within 32 bits (the layer's address size), not us, and not a DT neighbour reached over another link (the same link's is a
    /// newer connection taking the old one's place).
    fn may_claim(&self, flow: FlowId, addr: u64) -> bool {
        let here = self.links.get(&flow);
        let elsewhere = self
            .dt_nb
            .get(&addr)
            .is_some_and(|f| *f != flow && self.links.get(f) != here);
        addr != 0 && addr <= u64::from(u32::MAX) && Some(addr) != self.addr() && !elsewhere
    }

    /// Whether link `link`'s neighbour moved too recently to move again: within half of
    /// `readdress_hold` (a member moves at most once per `readdress_hold` of its own clock;
    /// half of it here leaves room for a first move's CEP that came late).
    pub(super) fn move_held(&self, now: Instant, link: Option<u64>) -> bool {
        let hold = self.cfg.readdress_hold / 2;
        link.and_then(|h| self.moved_at.get(&h))
            .is_some_and(|t| now.saturating_duration_since(*t) < hold)
    }

    /// Link `link`'s neighbour moved at `now`.
    fn note_move(&mut self, now: Instant, link: u64) {
        let hold = self.cfg.readdress_hold;
        self.moved_at
            .retain(|_, t| now.saturating_duration_since(*t) < hold);
        self.moved_at.insert(link, now);
    }

    /// A DT connection on N-1 flow `flow` to `addr` while the same link has a DT neighbour
    /// at another address is a move by connecting again: taken (and noted) unless the
    /// link moved within the hold, as a Management CEP's move would be. When taken, the
    /// link's DT neighbours at other addresses are retired, as a CEP's move retires the
    /// old address (their flows may stay up until they time out; they are no neighbour
    /// any more, and a later connection to the new address is no move).
    fn may_move_by_connecting(&mut self, now: Instant, flow: FlowId, addr: u64) -> bool {
        let Some(here) = self.links.get(&flow).copied() else {
            return true;
        };
        let links = &self.links;
        let old: Vec<u64> = self
            .dt_nb
            .iter()
            .filter(|(a, f)| **a != addr && **f != flow && links.get(f) == Some(&here))
            .map(|(a, _)| *a)
            .collect();
        if old.is_empty() {
            return true;
        }
        if self.move_held(now, Some(here)) {
            return false;
        }
        self.note_move(now, here);
        for a in old {
            self.dt_nb.remove(&a);
            self.routes_changed = true;
            if let Some(l) = self.layer.as_mut() {
                l.ls.remove_dt(a);
                l.ls.link_up(a);
            }
        }
        true
    }

    pub(super) fn tend_connections(&mut self, now: Instant) {
        while let Some(t) = self.conn.poll_transmit() {
            self.out.push_back(Transmit {
                flow: t.flow,
                sdu: t.sdu,
            });
        }
        while let Some(e) = self.conn.poll_event() {
            use crate::enroll::Event as E;
            match e {
                E::Enrolled { conf, .. } => {
                    if self.layer.is_none() {
                        self.join(now, *conf, true);
                    }
                }
                E::Connected {
                    flow,
                    comp,
                    peer_addr,
                } => {
                    if comp == Component::DataTransfer && !self.may_claim(flow, peer_addr) {
                        self.counters.address_claims_refused += 1;
                        self.events.push_back(Event::ClaimRefused {
                            flow,
                            addr: peer_addr,
                        });
                        self.events.push_back(Event::Close { flow });
                        continue;
                    }
                    if comp == Component::DataTransfer
                        && !self.may_move_by_connecting(now, flow, peer_addr)
                    {
                        self.counters.neighbour_moves_held += 1;
                        self.events.push_back(Event::Close { flow });
                        continue;
                    }
                    if let Some(l) = self.layer.as_mut() {
                        match comp {
                            Component::Management => l.ls.add_mgmt(flow),
                            Component::DataTransfer => {
                                self.dt_nb.insert(peer_addr, flow);
                                self.routes_changed = true;
                                l.ls.add_dt(now, peer_addr);
                            }
                            _ => {}
                        }
                    }
                    self.events.push_back(Event::Connected {
                        flow,
                        comp,
                        peer_addr,
                    });
                }
                E::Failed { flow, why } => self.events.push_back(Event::Failed { flow, why }),
                E::Close { flow } => self.events.push_back(Event::Close { flow }),
                E::Readdressed {
                    flow,
                    old,
                    new,
                    moved,
                } => {
                    self.counters.neighbours_moved += 1;
                    if let Some(h) = self.links.get(&flow).copied() {
                        self.note_move(now, h);
                    }
                    let dt = self.dt_nb.get(&old).copied().filter(|f| moved.contains(f));
                    if let (Some(f), Some(l)) = (dt, self.layer.as_mut()) {
                        self.dt_nb.remove(&old);
                        self.dt_nb.insert(new, f);
                        self.routes_changed = true;
                        l.ls.remove_dt(old);
                        l.ls.link_up(old);
                        l.ls.add_dt(now, new);
                    }
                    self.events.push_back(Event::NeighbourMoved {
                        flow,
                        old,
                        new,
                        moved,
                    });
                }
                E::Served { flow } => self.events.push_back(Event::Served { flow }),
            }
        }
    }

    /// The directory's part in members leaving and coming back ([`Departures`]).
    pub(super) fn depart(&mut self, now: Instant) {
        let unix = self.unix_at(now);
        while let Some(a) = self.departures.poll(now) {
            let Some(l) = self.layer.as_mut() else {
                continue;
            };
            match a {
                Departure::Forget(addr) => {
                    let values = l.dht.forget_address(addr);
                    self.counters.dht_forgotten += values as u64;
                    self.events.push_back(Event::DirForgotten { addr, values });
                }
                Departure::Rejoin(addr) => {
                    self.counters.dht_rejoined += 1;
                    l.dht.bootstrap(now, addr);
                    self.events.push_back(Event::DirRejoined { addr });
                }
                Departure::Republish => {
                    let own: Vec<Key> = l
                        .dht
                        .entries()
                        .into_iter()
                        .filter(|e| e.2)
                        .map(|e| e.0)
                        .collect();
                    let signer = self.signed.as_ref().map(|(_, s)| s.as_ref());
                    for key in own {
                        if let Err(e) = publish(&mut l.dht, signer, now, unix, key) {
                            self.counters.sign_failed += 1;
                            self.events.push_back(e);
                        }
                    }
                }
            }
        }
        self.tend(now);
    }

    /// Resumes what outlived the driver (o7sd restarted; the data plane kept the N-1
    /// flows): the LSDB as saved (our own records a few seqnos on, above what the
    /// neighbours hold) and the connections, up at once in the connection machine, link
    /// state and the DT neighbours. Call it once in the layer (after
    /// [`Event::InLayer`]). Returns how many connections it took (Enrollment ones are
    /// not: enrolment is over); none before we are in a layer.
    pub fn resume(&mut self, now: Instant, lsdb: &[((u64, u64), u64)], conns: &[Adopted]) -> usize {
        let Some(l) = self.layer.as_mut() else {
            return 0;
        };
        l.ls.restore(now, lsdb);
        let mut taken = 0;
        for c in conns {
            match c.comp {
                Component::Management => l.ls.add_mgmt(c.flow),
                Component::DataTransfer => {
                    self.dt_nb.insert(c.peer_addr, c.flow);
                    self.routes_changed = true;
                    l.ls.resume_dt(now, c.peer_addr);
                }
                _ => continue,
            }
            self.conn.adopt(c.flow, c.comp, c.peer_addr);
            self.links.insert(c.flow, c.link);
            taken += 1;
        }
        self.tend(now);
        taken
    }

    /// Takes endpoint id `eid` for a flow over the layer that outlived the driver; false
    /// when it is taken already (or we are in no layer).
    pub fn adopt_eid(&mut self, eid: u64) -> bool {
        self.layer.as_mut().is_some_and(|l| l.fa.adopt_eid(eid))
    }

    /// A flow over the layer ended (or was never handed out): its endpoint id is free.
    pub fn release_flow(&mut self, eid: u64) {
        if let Some(l) = self.layer.as_mut() {
            l.fa.release(eid);
        }
    }
}
