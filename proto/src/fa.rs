//! A unicast layer's flow allocator (unicast facts §7) without I/O: FLOW_REQ, FLOW_REPLY and
//! FLOW_UPDATE on DT eid 0, endpoint ids as the reference makes and checks them, OAP carried
//! after the message as on the eth and udp layers.
//!
//! The driver puts what [`Fa::poll_transmit`] gives behind a PCI (eid 0) to the address it
//! names, and hands received FA messages to [`Fa::handle`]. Where the reference differs: a
//! refused request gets a FLOW_REPLY with a negative response (the reference sends nothing
//! and lets the requester time out), and every wait has a deadline.

use crate::refusal::Refusal;
use o7s_wire::code::FaCode;
use o7s_wire::field::Writer;
use o7s_wire::qos::QosSpec;
use o7s_wire::unicast::fa::{FaMsg, MSG_LEN};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The first N+1 flow number (eids 0..63 are the IPCP's components).
pub const FIRST_FD: u32 = 64;
/// Flow numbers are below this (the reference's check).
pub const MAX_FD: u32 = 4096;

/// Whether `eid` can be a peer's flow's endpoint id: its low half a flow's fd,
/// [`FIRST_FD`]..[`MAX_FD`] (unicast facts §7.2), never a component's (0, 1).
fn peer_eid_ok(eid: u64) -> bool {
    (FIRST_FD..MAX_FD).contains(&((eid & 0xffff_ffff) as u32))
}
/// FA messages longer than this are dropped (the reference's bound).
pub const MAX_MSG: usize = 2048;

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaConfig {
    /// The directory hash's length (FLOW_REQ carries the name's hash).
    pub hash_len: usize,
    /// Requests from peers waiting for our answer, at most.
    pub max_incoming: usize,
    /// How long a request from a peer may wait for our answer.
    pub incoming_wait: Duration,
}

impl Default for FaConfig {
    fn default() -> Self {
        Self {
            hash_len: 32,
            max_incoming: 256,
            incoming_wait: Duration::from_secs(10),
        }
    }
}

/// Handle of an allocation we asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocId(pub u64);

/// Handle of a request from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(pub u64);

/// Why an allocation failed or a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaError {
    /// Every flow number is taken.
    #[error("no free endpoint id (all {} flows in use)", MAX_FD - FIRST_FD)]
    NoEid,
    /// The peer refused.
    #[error("refused by the peer (response {0})")]
    Refused(i32),
    /// No FLOW_REPLY in time.
    #[error("no FLOW_REPLY within {0} ms")]
    Timeout(u128),
    /// No such request (answered already, or it expired).
    #[error("no such request")]
    UnknownRequest,
}

/// What the allocator says to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Our allocation is answered: the flow is up.
    Allocated {
        /// The allocation.
        id: AllocId,
        /// Our endpoint id.
        local: u64,
        /// The peer's endpoint id.
        remote: u64,
        /// The peer's address.
        peer: u64,
        /// Its OAP response.
        oap: Vec<u8>,
    },
    /// Our allocation failed.
    AllocFailed {
        /// The allocation.
        id: AllocId,
        /// Why.
        error: FaError,
    },
    /// A peer asks for a flow to the name whose hash is `hash`: answer with
    /// [`Fa::accept`] or [`Fa::refuse`].
    Incoming {
        /// The request.
        req: ReqId,
        /// The requester's address.
        peer: u64,
        /// The name's hash.
        hash: Vec<u8>,
        /// The flow's QoS.
        qos: QosSpec,
        /// The OAP request.
        oap: Vec<u8>,
    },
    /// The peer of flow `local` reports congestion (MB-ECN).
    Update {
        /// Our endpoint id.
        local: u64,
        /// The echoed congestion level.
        ece: u16,
    },
}

/// An FA message for DT eid 0 at address `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination address.
    pub dst: u64,
    /// The message and what follows it.
    pub msg: Vec<u8>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages dropped: too short, too long, or an unknown code.
    pub malformed: u64,
    /// FLOW_REPLYs and FLOW_UPDATEs for no endpoint of ours.
    pub unknown_eid: u64,
    /// FLOW_REQs repeated while the first waits.
    pub duplicate: u64,
    /// FLOW_REQs refused at once: too many waiting.
    pub busy: u64,
}

#[derive(Debug)]
struct Pending {
    id: AllocId,
    peer: u64,
    deadline: Instant,
    timeout: Duration,
}

#[derive(Debug)]
struct Incoming {
    peer: u64,
    remote: u64,
    qos: QosSpec,
    deadline: Instant,
}

/// The flow allocator of one unicast IPCP.
#[derive(Debug)]
pub struct Fa {
    cfg: FaConfig,
    own: u64,
    /// Endpoint ids in use, by flow number.
    eids: HashMap<u32, u64>,
    pending: HashMap<u64, Pending>,
    incoming: HashMap<ReqId, Incoming>,
    next: u64,
    rng: rand_chacha::ChaCha8Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Fa {
    /// The allocator of the IPCP at address `own`; `seed` seeds the endpoint ids' random
    /// high halves.
    pub fn new(cfg: FaConfig, own: u64, seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            cfg,
            own,
            eids: HashMap::new(),
            pending: HashMap::new(),
            incoming: HashMap::new(),
            next: 0,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Our address is now `new`: requests name it as their source.
    pub fn readdress(&mut self, new: u64) {
        self.own = new;
    }

    /// The flow number of `eid` if it is one of ours (the reference's check: the low half
    /// is a flow number below 4096 whose stored eid is the whole value; only flow numbers
    /// below 4096 are ever stored).
    pub fn check_eid(&self, eid: u64) -> Option<u32> {
        let fd = u32::try_from(eid & 0xffff_ffff).ok()?;
        (self.eids.get(&fd) == Some(&eid)).then_some(fd)
    }

    /// A new endpoint id: `(random 32 bits << 32) | lowest free flow number >= 64`.
    fn take_eid(&mut self) -> Result<u64, FaError> {
        use rand::Rng;
        let fd = (FIRST_FD..MAX_FD)
            .find(|f| !self.eids.contains_key(f))
            .ok_or(FaError::NoEid)?;
        // The random half high, the flow number low.
        let [h0, h1, h2, h3] = self.rng.gen::<u32>().to_be_bytes();
        let [l0, l1, l2, l3] = fd.to_be_bytes();
        let eid = u64::from_be_bytes([h0, h1, h2, h3, l0, l1, l2, l3]);
        self.eids.insert(fd, eid);
        Ok(eid)
    }

    /// Takes endpoint `eid` that a flow set up before us still uses (an o7sd that resumed
    /// this IPCP adopted the flow): `false` when its flow number is out of range or taken.
    pub fn adopt_eid(&mut self, eid: u64) -> bool {
        let Ok(fd) = u32::try_from(eid & 0xffff_ffff) else {
            return false;
        };
        if !(FIRST_FD..MAX_FD).contains(&fd) || self.eids.contains_key(&fd) {
            return false;
        }
        self.eids.insert(fd, eid);
        true
    }

    /// Frees endpoint `eid` (its flow ended; there is no deallocation message).
    pub fn release(&mut self, eid: u64) {
        if let Some(fd) = self.check_eid(eid) {
            self.eids.remove(&fd);
            self.pending.remove(&eid);
        }
    }

    fn msg(&self, m: &FaMsg, tail: &[&[u8]]) -> Vec<u8> {
        let mut w = Writer::default();
        m.write(&mut w);
        for t in tail {
            w.0.extend_from_slice(t);
        }
        w.0
    }

    /// Asks the IPCP at `dst` for a flow to the name whose hash is `hash`.
    pub fn alloc(
        &mut self,
        now: Instant,
        dst: u64,
        hash: &[u8],
        qos: QosSpec,
        oap: &[u8],
        timeout: Duration,
    ) -> Result<(AllocId, u64), FaError> {
        let local = self.take_eid()?;
        self.next += 1;
        let id = AllocId(self.next);
        let m = FaMsg {
            s_addr: self.own,
            r_eid: 0,
            s_eid: local,
            response: 0,
            qos,
            ece: 0,
            code: FaCode::FlowReq,
        };
        let msg = self.msg(&m, &[hash, oap]);
        self.transmits.push_back(Transmit { dst, msg });
        self.pending.insert(
            local,
            Pending {
                id,
                peer: dst,
                deadline: now + timeout,
                timeout,
            },
        );
        Ok((id, local))
    }

    /// Accepts request `req`: takes our endpoint id and sends the FLOW_REPLY with the OAP
    /// response. Returns our endpoint id, the peer's and its address.
    pub fn accept(&mut self, req: ReqId, oap: &[u8]) -> Result<(u64, u64, u64), FaError> {
        let r = self.incoming.remove(&req).ok_or(FaError::UnknownRequest)?;
        let local = match self.take_eid() {
            Ok(e) => e,
            Err(e) => {
                self.reply(&r, 0, Refusal::NoResources.response(), &[]);
                return Err(e);
            }
        };
        self.reply(&r, local, 0, oap);
        Ok((local, r.remote, r.peer))
    }

    /// Refuses request `req` with `response` (negative).
    pub fn refuse(&mut self, req: ReqId, response: i32) -> Result<(), FaError> {
        let r = self.incoming.remove(&req).ok_or(FaError::UnknownRequest)?;
        self.reply(&r, 0, response.min(-1), &[]);
        Ok(())
    }

    fn reply(&mut self, r: &Incoming, local: u64, response: i32, oap: &[u8]) {
        let m = FaMsg {
            s_addr: 0,
            r_eid: r.remote,
            s_eid: local,
            response,
            qos: r.qos,
            ece: 0,
            code: FaCode::FlowReply,
        };
        let msg = self.msg(&m, &[oap]);
        self.transmits.push_back(Transmit { dst: r.peer, msg });
    }

    /// Tells the peer of flow `local` (at `peer`, its eid `remote`) the congestion level.
    pub fn update(&mut self, peer: u64, remote: u64, ece: u16) {
        let m = FaMsg {
            s_addr: 0,
            r_eid: remote,
            s_eid: 0,
            response: 0,
            qos: QosSpec::ZERO,
            ece,
            code: FaCode::FlowUpdate,
        };
        let msg = self.msg(&m, &[]);
        self.transmits.push_back(Transmit { dst: peer, msg });
    }

    /// An FA message arrived (the SDU after the PCI).
    pub fn handle(&mut self, now: Instant, msg: &[u8]) {
        if msg.len() > MAX_MSG {
            self.counters.malformed += 1;
            return;
        }
        let Ok((m, rest)) = FaMsg::parse(msg) else {
            self.counters.malformed += 1;
            return;
        };
        match m.code {
            FaCode::FlowReq => self.on_req(now, &m, rest),
            FaCode::FlowReply => self.on_reply(&m, rest),
            FaCode::FlowUpdate => match self.check_eid(m.r_eid) {
                Some(_) => self.events.push_back(Event::Update {
                    local: m.r_eid,
                    ece: m.ece,
                }),
                None => self.counters.unknown_eid += 1,
            },
            _ => self.counters.malformed += 1,
        }
    }

    fn on_req(&mut self, now: Instant, m: &FaMsg, rest: &[u8]) {
        let (Some(hash), Some(oap)) =
            (rest.get(..self.cfg.hash_len), rest.get(self.cfg.hash_len..))
        else {
            self.counters.malformed += 1;
            return;
        };
        // A requester's endpoint id is `random << 32 | fd`, its fd in 64..4096 (unicast
        // facts §7.2): one below (0 the flow allocator, 1 the DHT) would point our flow's
        // data at the peer's components, at whatever address the request claims.
        if m.s_addr == 0 || !peer_eid_ok(m.s_eid) {
            self.counters.malformed += 1;
            return;
        }
        if self
            .incoming
            .values()
            .any(|r| r.peer == m.s_addr && r.remote == m.s_eid)
        {
            self.counters.duplicate += 1;
            return;
        }
        let r = Incoming {
            peer: m.s_addr,
            remote: m.s_eid,
            qos: m.qos,
            deadline: now + self.cfg.incoming_wait,
        };
        if self.incoming.len() >= self.cfg.max_incoming {
            self.counters.busy += 1;
            self.reply(&r, 0, Refusal::Busy.response(), &[]);
            return;
        }
        self.next += 1;
        let req = ReqId(self.next);
        self.incoming.insert(req, r);
        self.events.push_back(Event::Incoming {
            req,
            peer: m.s_addr,
            hash: hash.to_vec(),
            qos: m.qos,
            oap: oap.to_vec(),
        });
    }

    fn on_reply(&mut self, m: &FaMsg, rest: &[u8]) {
        if self.check_eid(m.r_eid).is_none() {
            self.counters.unknown_eid += 1;
            return;
        }
        // An accepting reply names the responder's endpoint id, which our flow's data goes
        // to: one that is no flow's (see `on_req`) is malformed, and the request still waits
        // for a proper answer.
        if m.response >= 0 && !peer_eid_ok(m.s_eid) {
            self.counters.malformed += 1;
            return;
        }
        let Some(p) = self.pending.remove(&m.r_eid) else {
            self.counters.unknown_eid += 1;
            return;
        };
        if m.response < 0 {
            self.release(m.r_eid);
            self.events.push_back(Event::AllocFailed {
                id: p.id,
                error: FaError::Refused(m.response),
            });
            return;
        }
        self.events.push_back(Event::Allocated {
            id: p.id,
            local: m.r_eid,
            remote: m.s_eid,
            peer: p.peer,
            oap: rest.to_vec(),
        });
    }

    /// Allocations without a reply in time fail; requests we did not answer in time are
    /// refused.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(e, _)| *e)
            .collect();
        for eid in late {
            if let Some(p) = self.pending.remove(&eid) {
                self.release(eid);
                self.events.push_back(Event::AllocFailed {
                    id: p.id,
                    error: FaError::Timeout(p.timeout.as_millis()),
                });
            }
        }
        let stale: Vec<ReqId> = self
            .incoming
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            // Nobody answered it in time: nobody accepted.
            let _ = self.refuse(id, Refusal::NoAcceptor.response());
        }
    }

    /// When [`Fa::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(self.incoming.values().map(|r| r.deadline))
            .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

crate::machine::machine!(Fa, Transmit, Event);

/// Whether `msg` is long enough to be an FA message at all.
pub fn plausible(msg: &[u8]) -> bool {
    (MSG_LEN..=MAX_MSG).contains(&msg.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const A: u64 = 0x41dc_5e0b;
    const C: u64 = 0x275b_9eac;

    fn hash() -> Vec<u8> {
        o7s_wire::hash::HashAlgo::Sha3_256.hash("oping")
    }

    #[test]
    fn an_adopted_eid_is_ours_again_and_not_handed_out_twice() {
        let mut a = Fa::new(FaConfig::default(), A, 1);
        let eid = (0xabcd_u64 << 32) | 64;
        assert!(a.adopt_eid(eid));
        assert_eq!(a.check_eid(eid), Some(64));
        assert!(!a.adopt_eid(eid), "taken");
        assert!(!a.adopt_eid((1 << 32) | 64), "its flow number is taken");
        assert!(!a.adopt_eid(63), "below the first flow number");
        assert!(!a.adopt_eid(u64::from(MAX_FD)), "beyond the last");
        // A new flow gets another flow number.
        assert_eq!(a.take_eid().map(|e| e & 0xffff_ffff), Ok(65));
        a.release(eid);
        assert_eq!(a.check_eid(eid), None);
        assert!(a.adopt_eid(eid));
    }

    #[test]
    fn a_flow_between_two_allocators_has_the_reference_fields() {
        let t0 = Instant::now();
        let mut a = Fa::new(FaConfig::default(), A, 1);
        let mut c = Fa::new(FaConfig::default(), C, 2);
        let oap = [7u8; 36];
        let (id, la) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &oap, Duration::from_secs(2))
            .unwrap();
        assert_eq!(la & 0xffff_ffff, 64, "the lowest flow number");
        let t = a.poll_transmit().unwrap();
        assert_eq!(t.dst, C);
        assert_eq!(t.msg.len(), 61 + 32 + 36, "129 bytes as on the wire");
        let (m, rest) = FaMsg::parse(&t.msg).unwrap();
        assert_eq!(
            (m.s_addr, m.r_eid, m.s_eid, m.code),
            (A, 0, la, FaCode::FlowReq)
        );
        assert_eq!(&rest[..32], hash().as_slice());
        c.handle(t0, &t.msg);
        let Some(Event::Incoming {
            req,
            peer,
            hash: h,
            oap: o,
            ..
        }) = c.poll_event()
        else {
            panic!()
        };
        assert_eq!((peer, h, o), (A, hash(), oap.to_vec()));
        // A repeated request is not a second flow.
        c.handle(t0, &t.msg);
        assert_eq!((c.poll_event(), c.counters().duplicate), (None, 1));
        let resp = [9u8; 84];
        let (lc, remote, at) = c.accept(req, &resp).unwrap();
        assert_eq!((remote, at), (la, A));
        assert_ne!(lc, la, "the two ends' eids differ");
        let r = c.poll_transmit().unwrap();
        assert_eq!(r.dst, A);
        let (m, rest) = FaMsg::parse(&r.msg).unwrap();
        assert_eq!(
            (m.s_addr, m.r_eid, m.s_eid, m.response, m.code),
            (0, la, lc, 0, FaCode::FlowReply),
            "s_addr 0 in a reply, as the reference"
        );
        assert_eq!(rest, resp);
        a.handle(t0, &r.msg);
        assert_eq!(
            a.poll_event(),
            Some(Event::Allocated {
                id,
                local: la,
                remote: lc,
                peer: C,
                oap: resp.to_vec()
            })
        );
        assert_eq!(a.check_eid(la), Some(64));
        assert_eq!(
            a.check_eid(la ^ (1 << 40)),
            None,
            "another high half is no flow of ours"
        );
        // Congestion echo.
        c.update(A, la, 3);
        a.handle(t0, &c.poll_transmit().unwrap().msg);
        assert_eq!(a.poll_event(), Some(Event::Update { local: la, ece: 3 }));
    }

    #[test]
    fn refusals_and_silence_end_allocations() {
        let t0 = Instant::now();
        let mut a = Fa::new(FaConfig::default(), A, 1);
        let mut c = Fa::new(FaConfig::default(), C, 2);
        let (id, la) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(2))
            .unwrap();
        c.handle(t0, &a.poll_transmit().unwrap().msg);
        let Some(Event::Incoming { req, .. }) = c.poll_event() else {
            panic!()
        };
        c.refuse(req, -1).unwrap();
        a.handle(t0, &c.poll_transmit().unwrap().msg);
        assert_eq!(
            a.poll_event(),
            Some(Event::AllocFailed {
                id,
                error: FaError::Refused(-1)
            })
        );
        assert_eq!(a.check_eid(la), None, "its eid is free again");
        // No answer: the requester's deadline; the responder's own deadline refuses.
        let (id2, _) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(2))
            .unwrap();
        c.handle(t0, &a.poll_transmit().unwrap().msg);
        let _ = c.poll_event();
        a.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(
            a.poll_event(),
            Some(Event::AllocFailed {
                id: id2,
                error: FaError::Timeout(2000)
            })
        );
        c.handle_timeout(t0 + Duration::from_secs(10));
        let (m, _) = FaMsg::parse(&c.poll_transmit().unwrap().msg).unwrap();
        assert_eq!(
            m.response,
            Refusal::NoAcceptor.response(),
            "nobody answered it"
        );
        // A late reply for a freed eid is dropped and counted.
        let late = c.msg(
            &FaMsg {
                s_addr: 0,
                r_eid: 0x1234_0000_0040,
                s_eid: 99,
                response: 0,
                qos: QosSpec::RAW,
                ece: 0,
                code: FaCode::FlowReply,
            },
            &[],
        );
        a.handle(t0, &late);
        assert_eq!(a.counters().unknown_eid, 1);
    }

    #[test]
    fn bad_messages_and_floods_are_bounded() {
        let t0 = Instant::now();
        let mut c = Fa::new(
            FaConfig {
                max_incoming: 4,
                ..FaConfig::default()
            },
            C,
            2,
        );
        c.handle(t0, &[0u8; 60]);
        c.handle(t0, &vec![0u8; MAX_MSG + 1]);
        assert_eq!(c.counters().malformed, 2);
        for i in 0..6u64 {
            let mut a = Fa::new(FaConfig::default(), A + i, i);
            a.alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(1))
                .unwrap();
            c.handle(t0, &a.poll_transmit().unwrap().msg);
        }
        assert_eq!(c.counters().busy, 2, "beyond 4 waiting, refused at once");
        assert_eq!(std::iter::from_fn(|| c.poll_event()).count(), 4);
        // Flow numbers run out at 4096.
        let mut a = Fa::new(FaConfig::default(), A, 1);
        for _ in FIRST_FD..MAX_FD {
            a.alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(1))
                .unwrap();
        }
        assert_eq!(
            a.alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(1)),
            Err(FaError::NoEid)
        );
    }

    /// A FLOW_REQ from `peer` (eid `s_eid`) with `oap` after the hash.
    fn req(peer: u64, s_eid: u64, oap: &[u8]) -> Vec<u8> {
        let a = Fa::new(FaConfig::default(), peer, 9);
        let m = FaMsg {
            s_addr: peer,
            r_eid: 0,
            s_eid,
            response: 0,
            qos: QosSpec::RAW,
            ece: 0,
            code: FaCode::FlowReq,
        };
        a.msg(&m, &[&hash(), oap])
    }

    /// A peer's endpoint id is a flow's (its low half 64..4096): a FLOW_REQ or an accepting
    /// FLOW_REPLY naming a component's (0 the flow allocator, 1 the DHT) or another value
    /// is malformed, and installs nothing.
    #[test]
    fn a_peers_endpoint_id_must_be_a_flows() {
        let t0 = Instant::now();
        let mut c = Fa::new(FaConfig::default(), C, 2);
        for bad in [1, 63, 4096, 0x1234_5678_0000_0001] {
            c.handle(t0, &req(A, bad, &[]));
        }
        assert_eq!((c.poll_event(), c.counters().malformed), (None, 4));
        c.handle(t0, &req(A, 0x1234_5678_0000_0040, &[]));
        assert!(matches!(c.poll_event(), Some(Event::Incoming { .. })));
        // A reply accepting with the responder's eid 0: malformed, the request still waits
        // and a proper reply then brings it up.
        let mut a = Fa::new(FaConfig::default(), A, 1);
        let (id, la) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(2))
            .unwrap();
        let _ = a.poll_transmit();
        let reply = |s_eid: u64| {
            let m = FaMsg {
                s_addr: 0,
                r_eid: la,
                s_eid,
                response: 0,
                qos: QosSpec::RAW,
                ece: 0,
                code: FaCode::FlowReply,
            };
            c.msg(&m, &[])
        };
        a.handle(t0, &reply(0));
        assert_eq!((a.poll_event(), a.counters().malformed), (None, 1));
        a.handle(t0, &reply(0x77_0000_0041));
        assert_eq!(
            a.poll_event(),
            Some(Event::Allocated {
                id,
                local: la,
                remote: 0x77_0000_0041,
                peer: C,
                oap: vec![]
            })
        );
    }

    #[test]
    fn each_allocation_and_request_has_its_own_handle() {
        let t0 = Instant::now();
        let mut a = Fa::new(FaConfig::default(), A, 1);
        let mut c = Fa::new(FaConfig::default(), C, 2);
        let (id1, l1) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(2))
            .unwrap();
        let (id2, l2) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(2))
            .unwrap();
        assert_ne!(id1, id2);
        assert_eq!((l1 & 0xffff_ffff, l2 & 0xffff_ffff), (64, 65));
        // Both reach C: two requests (same peer, two eids: not duplicates).
        for _ in 0..2 {
            c.handle(t0, &a.poll_transmit().unwrap().msg);
        }
        let reqs: Vec<ReqId> = std::iter::from_fn(|| c.poll_event())
            .map(|e| match e {
                Event::Incoming { req, .. } => req,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(reqs.len(), 2);
        assert_ne!(reqs[0], reqs[1]);
        assert_eq!(c.counters().duplicate, 0);
        // The second answered first: its own allocation is the one up.
        let (lc2, remote, _) = c.accept(reqs[1], &[]).unwrap();
        assert_eq!(remote, l2);
        let reply2 = c.poll_transmit().unwrap().msg;
        a.handle(t0, &reply2);
        assert_eq!(
            a.poll_event(),
            Some(Event::Allocated {
                id: id2,
                local: l2,
                remote: lc2,
                peer: C,
                oap: vec![]
            })
        );
        // A repeated reply is for no pending allocation: counted, no second event.
        a.handle(t0, &reply2);
        assert_eq!((a.poll_event(), a.counters().unknown_eid), (None, 1));
        // A refusal with a response that is not negative still refuses (-1).
        c.refuse(reqs[0], 5).unwrap();
        a.handle(t0, &c.poll_transmit().unwrap().msg);
        assert_eq!(
            a.poll_event(),
            Some(Event::AllocFailed {
                id: id1,
                error: FaError::Refused(-1)
            })
        );
        assert_eq!(c.refuse(reqs[0], -1), Err(FaError::UnknownRequest));
    }

    #[test]
    fn an_allocation_waits_its_whole_time_and_names_our_new_address() {
        let t0 = Instant::now();
        let mut a = Fa::new(FaConfig::default(), A, 1);
        a.readdress(A + 1);
        let (id, _) = a
            .alloc(t0, C, &hash(), QosSpec::RAW, &[], Duration::from_secs(2))
            .unwrap();
        let (m, _) = FaMsg::parse(&a.poll_transmit().unwrap().msg).unwrap();
        assert_eq!(m.s_addr, A + 1, "requests name the new address");
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        a.handle_timeout(t0 + Duration::from_millis(1999));
        assert_eq!(a.poll_event(), None, "still waiting");
        a.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(
            a.poll_event(),
            Some(Event::AllocFailed {
                id,
                error: FaError::Timeout(2000)
            })
        );
    }

    #[test]
    fn plausible_lengths() {
        assert!(!plausible(&[0; MSG_LEN - 1]));
        assert!(plausible(&[0; MSG_LEN]));
        assert!(plausible(&vec![0; MAX_MSG]));
        assert!(!plausible(&vec![0; MAX_MSG + 1]));
    }

    #[test]
    fn a_request_waits_its_whole_time_for_an_answer() {
        let t0 = Instant::now();
        let mut c = Fa::new(FaConfig::default(), C, 2);
        c.handle(t0, &req(A, 77, &[]));
        assert!(matches!(c.poll_event(), Some(Event::Incoming { .. })));
        let wait = FaConfig::default().incoming_wait;
        assert_eq!(c.poll_timeout(), Some(t0 + wait));
        c.handle_timeout(t0 + wait - Duration::from_millis(1));
        assert!(c.poll_transmit().is_none(), "still waiting");
        c.handle_timeout(t0 + wait);
        let (m, _) = FaMsg::parse(&c.poll_transmit().unwrap().msg).unwrap();
        assert_eq!((m.r_eid, m.response), (77, Refusal::NoAcceptor.response()));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn each_malformed_message_is_counted_once() {
        let t0 = Instant::now();
        let mut c = Fa::new(FaConfig::default(), C, 2);
        // The longest message taken: MAX_MSG bytes; one more is dropped.
        let oap = vec![1u8; MAX_MSG - MSG_LEN - 32];
        let longest = req(A, 77, &oap);
        assert_eq!(longest.len(), MAX_MSG);
        c.handle(t0, &longest);
        assert!(
            matches!(c.poll_event(), Some(Event::Incoming { oap: o, .. }) if o == oap),
            "a message of MAX_MSG bytes is taken"
        );
        let mut over = req(A, 78, &oap);
        over.push(0);
        c.handle(t0, &over);
        assert_eq!((c.poll_event(), c.counters().malformed), (None, 1));
        // Shorter than the hash; no source address; no source eid.
        let short = req(A, 79, &[]);
        c.handle(t0, &short[..short.len() - 1]);
        assert_eq!(c.counters().malformed, 2);
        c.handle(t0, &req(0, 80, &[]));
        assert_eq!(c.counters().malformed, 3);
        c.handle(t0, &req(A, 0, &[]));
        assert_eq!(c.counters().malformed, 4);
        // An unknown code.
        let mut bad = req(A, 81, &[]);
        // The code is the third byte from the end of the fixed part.
        bad[MSG_LEN - 3] = 0x7f;
        let (m, _) = FaMsg::parse(&bad).unwrap();
        assert!(!matches!(
            m.code,
            FaCode::FlowReq | FaCode::FlowReply | FaCode::FlowUpdate
        ));
        c.handle(t0, &bad);
        assert_eq!(c.counters().malformed, 5);
        assert_eq!(c.poll_event(), None);
        // A FLOW_UPDATE for no flow of ours.
        let mut a = Fa::new(FaConfig::default(), A, 1);
        a.update(C, (5 << 32) | 64, 2);
        c.handle(t0, &a.poll_transmit().unwrap().msg);
        assert_eq!((c.poll_event(), c.counters().unknown_eid), (None, 1));
        assert_eq!(c.counters().malformed, 5);
    }
}
