//! One eth-dix, eth-llc or udp layer's control plane, as a state machine without I/O.
//!
//! - Name queries (eth layers): [`Shim::query`] broadcasts a NAME_QUERY_REQ; answers from
//!   within the query's time fill the cache ([`Shim::cached`]) and give
//!   [`Event::QueryAnswered`]; a query nobody answers ends in [`Event::QueryFailed`].
//!   Queries for registered names ([`Shim::register`]) are answered.
//! - Requester: [`Shim::alloc`] sends a FLOW_REQ from a fresh endpoint id and waits for the
//!   FLOW_REPLY to that id from that peer: [`Event::Allocated`] or [`Event::AllocFailed`]
//!   (refused, or no reply in time). With [`ShimConfig::req_retry`] the FLOW_REQ is sent
//!   again until the deadline (the reference sends it once).
//! - Responder: a FLOW_REQ for a registered name gives [`Event::Incoming`]; the driver
//!   answers with [`Shim::take_eid`] then [`Shim::reply`], or [`Shim::refuse`]. A FLOW_REQ
//!   for an unknown name is refused here. A repeated FLOW_REQ (same peer, same endpoint id)
//!   makes no second flow: while the first waits it is ignored, after the reply the same
//!   reply is sent again.
//!
//! Every table is bounded ([`ShimConfig`]); what does not fit is refused or dropped and
//! counted in [`Counters`].

use crate::mgmt::{Mgmt, Peer, ShimKind, BROADCAST};
use o7s_wire::code::EthCode;
use o7s_wire::qos::QosSpec;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Limits and timers of a [`Shim`].
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// The layer's encoding.
    pub kind: ShimKind,
    /// Length of the layer's name hashes.
    pub hash_len: usize,
    /// How long a learnt name stays in the cache.
    pub cache_ttl: Duration,
    /// Most names in the cache.
    pub max_cache: usize,
    /// Most name queries waiting at once.
    pub max_queries: usize,
    /// Most allocations waiting for their FLOW_REPLY.
    pub max_allocs: usize,
    /// Most incoming requests handed to the driver and not answered yet.
    pub max_incoming: usize,
    /// Send a name query again after this long without an answer (`None`: once).
    pub query_retry: Option<Duration>,
    /// Send a FLOW_REQ again after this long without a reply (`None`: once, as the
    /// reference does).
    pub req_retry: Option<Duration>,
    /// How long a sent FLOW_REPLY is kept to answer a repeated FLOW_REQ (zero: not kept;
    /// a repeat is then a new request, which OAP's replay window refuses).
    pub reply_memory: Duration,
    /// Most FLOW_REPLYs kept for that (when full, expired ones go; if none has expired, a
    /// new reply is not kept).
    pub max_remembered: usize,
}

impl ShimConfig {
    /// The defaults for a layer of `kind` with name hashes of `hash_len` bytes.
    pub fn new(kind: ShimKind, hash_len: usize) -> Self {
        Self {
            kind,
            hash_len,
            cache_ttl: Duration::from_secs(60),
            max_cache: 4096,
            max_queries: 1024,
            max_allocs: 4096,
            max_incoming: 256,
            query_retry: None,
            req_retry: None,
            reply_memory: Duration::from_secs(10),
            max_remembered: 1024,
        }
    }
}

/// An allocation this end asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocId(pub u64);

/// A flow request from a peer, waiting for the driver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqId(pub u64);

/// Why an allocation failed, or a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShimError {
    /// Every endpoint id of the layer is in use.
    #[error("no free endpoint id")]
    NoEid,
    /// The peer did not answer.
    #[error("no FLOW_REPLY within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The peer refused.
    #[error("the peer refused the flow (response {0})")]
    Refused(i32),
    /// Too many queries or allocations wait already.
    #[error("{what}: {limit} already wait; try again")]
    Busy {
        /// What is full.
        what: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// udp layers resolve names through DNS, not with queries.
    #[error("udp layers have no name queries")]
    NoQueries,
    /// The request is not (or no longer) waiting.
    #[error("no such request")]
    UnknownRequest,
}

/// What the machine tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer answered the name query for `hash`.
    QueryAnswered {
        /// The name hash.
        hash: Vec<u8>,
        /// Who has it.
        peer: Peer,
    },
    /// Nobody answered the name query for `hash` in time.
    QueryFailed {
        /// The name hash.
        hash: Vec<u8>,
    },
    /// The peer accepted the flow.
    Allocated {
        /// The allocation.
        alloc: AllocId,
        /// Our endpoint id.
        local: u32,
        /// The peer's endpoint id.
        remote: u32,
        /// The peer.
        peer: Peer,
        /// Its OAP response.
        oap: Vec<u8>,
    },
    /// The allocation failed; its endpoint id is free again.
    AllocFailed {
        /// The allocation.
        alloc: AllocId,
        /// Why.
        error: ShimError,
    },
    /// A peer asks for a flow to a registered name.
    Incoming {
        /// Answer with [`Shim::take_eid`] + [`Shim::reply`], or [`Shim::refuse`].
        req: ReqId,
        /// The name hash.
        hash: Vec<u8>,
        /// The requester.
        peer: Peer,
        /// Its endpoint id.
        remote: u32,
        /// The QoS it asks for.
        qos: QosSpec,
        /// Its OAP request.
        oap: Vec<u8>,
    },
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to (a broadcast MAC for name queries).
    pub dst: Peer,
    /// What.
    pub msg: Mgmt,
}

/// What the machine counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages that did not parse.
    pub malformed: u64,
    /// Messages for another host's MAC.
    pub not_for_us: u64,
    /// Name replies for no query of ours.
    pub name_reply_unsolicited: u64,
    /// Name replies not cached: the cache was full.
    pub cache_full: u64,
    /// FLOW_REPLYs for no allocation of ours (or from another peer).
    pub reply_unknown: u64,
    /// FLOW_REQs with an impossible endpoint id.
    pub req_bad_eid: u64,
    /// FLOW_REQs for a name not registered here (refused).
    pub req_unknown_name: u64,
    /// FLOW_REQs refused because `max_incoming` requests wait.
    pub incoming_full: u64,
    /// Repeated FLOW_REQs (answered again, or ignored while the first waits).
    pub req_duplicate: u64,
    /// Messages with a code this layer does not use.
    pub unexpected_code: u64,
    /// Name queries sent (retransmissions included).
    pub queries_sent: u64,
    /// FLOW_REQs sent again.
    pub reqs_retransmitted: u64,
    /// Refusals sent.
    pub refused: u64,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    peer: Peer,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Query {
    deadline: Instant,
    retry_at: Option<Instant>,
    answered: bool,
}

#[derive(Debug, Clone)]
struct Alloc {
    id: AllocId,
    peer: Peer,
    msg: Mgmt,
    deadline: Instant,
    timeout: Duration,
    retry_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Incoming {
    peer: Peer,
    remote: u32,
    local: Option<u32>,
    tail: Vec<u8>,
}

/// A FLOW_REQ answered or being answered, by its sender and endpoint id. The same id may
/// come back soon for a new flow (ids are reused as fds are): only a request with the same
/// bytes (hash and OAP header, whose id is random) is a repetition.
#[derive(Debug, Clone)]
enum Seen {
    Waiting {
        tail: Vec<u8>,
    },
    Replied {
        tail: Vec<u8>,
        msg: Mgmt,
        until: Instant,
    },
}

/// One shim layer's control plane.
#[derive(Debug)]
pub struct Shim {
    cfg: ShimConfig,
    mac: Option<[u8; 6]>,
    regs: HashSet<Vec<u8>>,
    cache: HashMap<Vec<u8>, CacheEntry>,
    queries: HashMap<Vec<u8>, Query>,
    allocs: HashMap<u32, Alloc>,
    eids: BTreeSet<u32>,
    incoming: HashMap<ReqId, Incoming>,
    seen: HashMap<(Peer, u32), Seen>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_id: u64,
    counters: Counters,
}

impl Shim {
    /// A layer whose own MAC is `mac` (eth layers; frames for other MACs are dropped).
    pub fn new(cfg: ShimConfig, mac: Option<[u8; 6]>) -> Self {
        Self {
            cfg,
            mac,
            regs: HashSet::new(),
            cache: HashMap::new(),
            queries: HashMap::new(),
            allocs: HashMap::new(),
            eids: BTreeSet::new(),
            incoming: HashMap::new(),
            seen: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            counters: Counters::default(),
        }
    }

    /// Sets the layer's own MAC (frames to other MACs are then counted and dropped).
    pub fn set_mac(&mut self, mac: Option<[u8; 6]>) {
        self.mac = mac;
    }

    /// The configuration.
    pub fn config(&self) -> &ShimConfig {
        &self.cfg
    }

    /// What was counted.
    pub fn counters(&self) -> Counters {
        self.counters
    }

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
        self.cache
            .get(hash)
            .filter(|e| e.expires > now)
            .map(|e| e.peer)
    }

    /// The cache at `now`: hash, peer, time left.
    pub fn cache_entries(&self, now: Instant) -> Vec<(Vec<u8>, Peer, Duration)> {
        let mut v: Vec<_> = self
            .cache
            .iter()
            .filter(|(_, e)| e.expires > now)
            .map(|(h, e)| (h.clone(), e.peer, e.expires - now))
            .collect();
        v.sort();
        v
    }

    /// Endpoint ids in use (allocations waiting, flows up).
    pub fn eids_in_use(&self) -> usize {
        self.eids.len()
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

    fn send_query(&mut self, hash: Vec<u8>) {
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

    fn take_free_eid(&mut self) -> Option<u32> {
        let (lo, hi) = self.cfg.kind.eid_range();
        // The lowest free id, as the reference's fds.
        let mut want = lo;
        for &e in self.eids.range(lo..=hi) {
            if e != want {
                break;
            }
            want = want.checked_add(1)?;
        }
        if want > hi {
            return None;
        }
        self.eids.insert(want);
        Some(want)
    }

    /// Sends a FLOW_REQ for `hash` to `peer` and waits up to `timeout` for its reply.
    /// Returns the allocation and its local endpoint id.
    #[allow(clippy::too_many_arguments)]
    pub fn alloc(
        &mut self,
        now: Instant,
        peer: Peer,
        hash: &[u8],
        qos: QosSpec,
        oap: &[u8],
        timeout: Duration,
    ) -> Result<(AllocId, u32), ShimError> {
        if self.allocs.len() >= self.cfg.max_allocs {
            return Err(ShimError::Busy {
                what: "allocations",
                limit: self.cfg.max_allocs,
            });
        }
        let local = self.take_free_eid().ok_or(ShimError::NoEid)?;
        self.next_id += 1;
        let id = AllocId(self.next_id);
        let mut tail = hash.to_vec();
        tail.extend_from_slice(oap);
        let msg = Mgmt {
            code: EthCode::FlowReq,
            s: local,
            d: 0,
            qos,
            response: 0,
            tail,
        };
        self.transmits.push_back(Transmit {
            dst: peer,
            msg: msg.clone(),
        });
        self.allocs.insert(
            local,
            Alloc {
                id,
                peer,
                msg,
                deadline: now + timeout,
                timeout,
                retry_at: self.cfg.req_retry.map(|r| now + r),
            },
        );
        Ok((id, local))
    }

    /// Gives up an allocation still waiting (its app went away); its id is free again.
    pub fn cancel(&mut self, local: u32) {
        if self.allocs.remove(&local).is_some() {
            self.eids.remove(&local);
        }
    }

    /// Takes endpoint id `local` for a flow that exists already (adopted from a data plane
    /// whose o7sd went away); `false` when it is out of range or taken.
    pub fn adopt_eid(&mut self, local: u32) -> bool {
        let (lo, hi) = self.cfg.kind.eid_range();
        (lo..=hi).contains(&local) && self.eids.insert(local)
    }

    /// Frees the endpoint id of a flow that ended.
    pub fn release(&mut self, local: u32) {
        self.allocs.remove(&local);
        self.eids.remove(&local);
    }

    /// Reserves the endpoint id the reply to `req` will carry (before the flow is set up,
    /// so data that follows the reply finds it).
    pub fn take_eid(&mut self, req: ReqId) -> Result<u32, ShimError> {
        if !self.incoming.contains_key(&req) {
            return Err(ShimError::UnknownRequest);
        }
        if let Some(l) = self.incoming.get(&req).and_then(|i| i.local) {
            return Ok(l);
        }
        let local = self.take_free_eid().ok_or(ShimError::NoEid)?;
        if let Some(i) = self.incoming.get_mut(&req) {
            i.local = Some(local);
        }
        Ok(local)
    }

    /// Accepts `req`: sends the FLOW_REPLY with its endpoint id and `oap`.
    pub fn reply(&mut self, now: Instant, req: ReqId, oap: Vec<u8>) -> Result<u32, ShimError> {
        let local = self.take_eid(req)?;
        let Some(inc) = self.incoming.remove(&req) else {
            return Err(ShimError::UnknownRequest);
        };
        let msg = Mgmt {
            code: EthCode::FlowReply,
            s: local,
            d: inc.remote,
            qos: QosSpec::ZERO,
            response: 0,
            tail: oap,
        };
        self.remember(now, inc.peer, inc.remote, inc.tail, msg.clone());
        self.transmits.push_back(Transmit { dst: inc.peer, msg });
        Ok(local)
    }

    /// Refuses `req` with `response` (negative); its endpoint id, if taken, is free again.
    pub fn refuse(&mut self, now: Instant, req: ReqId, response: i32) -> Result<(), ShimError> {
        let Some(inc) = self.incoming.remove(&req) else {
            return Err(ShimError::UnknownRequest);
        };
        if let Some(l) = inc.local {
            self.eids.remove(&l);
        }
        self.send_refusal(now, inc.peer, inc.remote, inc.tail, response);
        Ok(())
    }

    fn send_refusal(
        &mut self,
        now: Instant,
        peer: Peer,
        remote: u32,
        tail: Vec<u8>,
        response: i32,
    ) {
        self.counters.refused += 1;
        // A refusal carries no endpoint of ours.
        let msg = Mgmt {
            code: EthCode::FlowReply,
            s: 0,
            d: remote,
            qos: QosSpec::ZERO,
            response,
            tail: vec![],
        };
        self.remember(now, peer, remote, tail, msg.clone());
        self.transmits.push_back(Transmit { dst: peer, msg });
    }

    fn remember(&mut self, now: Instant, peer: Peer, remote: u32, tail: Vec<u8>, msg: Mgmt) {
        let key = (peer, remote);
        if self.cfg.reply_memory.is_zero() {
            self.seen.remove(&key);
            return;
        }
        if !self.seen.contains_key(&key) && self.seen.len() >= self.cfg.max_remembered {
            self.seen.retain(|_, s| match s {
                Seen::Waiting { .. } => true,
                Seen::Replied { until, .. } => *until > now,
            });
            if self.seen.len() >= self.cfg.max_remembered {
                self.seen.remove(&key);
                return;
            }
        }
        let until = now + self.cfg.reply_memory;
        self.seen.insert(key, Seen::Replied { tail, msg, until });
    }

    /// A management message from `src` (to `dst`, the frame's destination MAC on eth).
    pub fn handle(&mut self, now: Instant, src: Peer, dst: Option<[u8; 6]>, payload: &[u8]) {
        if let (Some(d), Some(me)) = (dst, self.mac) {
            if d != me && d != BROADCAST {
                self.counters.not_for_us += 1;
                return;
            }
        }
        let Ok(m) = Mgmt::parse(self.cfg.kind, payload) else {
            self.counters.malformed += 1;
            return;
        };
        let udp = self.cfg.kind == ShimKind::Udp;
        match m.code {
            EthCode::NameQueryReq if !udp => {
                if self.regs.contains(&m.tail) {
                    self.transmits.push_back(Transmit {
                        dst: src,
                        msg: Mgmt {
                            code: EthCode::NameQueryReply,
                            ..m
                        },
                    });
                }
            }
            EthCode::NameQueryReply if !udp => self.on_name_reply(now, src, m.tail),
            EthCode::FlowReply => self.on_flow_reply(src, m),
            EthCode::FlowReq => self.on_flow_req(now, src, m),
            _ => self.counters.unexpected_code += 1,
        }
    }

    fn on_name_reply(&mut self, now: Instant, src: Peer, hash: Vec<u8>) {
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
            self.cache.retain(|_, e| e.expires > now);
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

    fn on_flow_reply(&mut self, src: Peer, m: Mgmt) {
        let valid = self.cfg.kind.valid_remote(m.s) || m.response != 0;
        let mine = valid && self.allocs.get(&m.d).is_some_and(|a| a.peer == src);
        if !mine {
            self.counters.reply_unknown += 1;
            return;
        }
        let Some(a) = self.allocs.remove(&m.d) else {
            return;
        };
        if m.response != 0 {
            self.eids.remove(&m.d);
            self.events.push_back(Event::AllocFailed {
                alloc: a.id,
                error: ShimError::Refused(m.response),
            });
        } else {
            self.events.push_back(Event::Allocated {
                alloc: a.id,
                local: m.d,
                remote: m.s,
                peer: src,
                oap: m.tail,
            });
        }
    }

    fn on_flow_req(&mut self, now: Instant, src: Peer, m: Mgmt) {
        if !self.cfg.kind.valid_remote(m.s) {
            self.counters.req_bad_eid += 1;
            return;
        }
        match self.seen.get(&(src, m.s)) {
            Some(Seen::Waiting { tail }) if *tail == m.tail => {
                self.counters.req_duplicate += 1;
                return;
            }
            Some(Seen::Replied { tail, msg, until }) if *until > now && *tail == m.tail => {
                self.counters.req_duplicate += 1;
                let msg = msg.clone();
                self.transmits.push_back(Transmit { dst: src, msg });
                return;
            }
            _ => {}
        }
        let hl = self.cfg.hash_len;
        if m.tail.len() < hl {
            self.counters.malformed += 1;
            return;
        }
        let (hash, oap) = m.tail.split_at(hl);
        if !self.regs.contains(hash) {
            self.counters.req_unknown_name += 1;
            let why = crate::refusal::Refusal::NotRegistered.response();
            self.send_refusal(now, src, m.s, m.tail.clone(), why);
            return;
        }
        if self.incoming.len() >= self.cfg.max_incoming {
            self.counters.incoming_full += 1;
            let why = crate::refusal::Refusal::Busy.response();
            self.send_refusal(now, src, m.s, m.tail.clone(), why);
            return;
        }
        self.next_id += 1;
        let req = ReqId(self.next_id);
        self.incoming.insert(
            req,
            Incoming {
                peer: src,
                remote: m.s,
                local: None,
                tail: m.tail.clone(),
            },
        );
        self.seen.insert(
            (src, m.s),
            Seen::Waiting {
                tail: m.tail.clone(),
            },
        );
        self.events.push_back(Event::Incoming {
            req,
            hash: hash.to_vec(),
            peer: src,
            remote: m.s,
            qos: m.qos,
            oap: oap.to_vec(),
        });
    }

    /// Timers due at `now`: query and allocation deadlines, retransmissions, expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut failed: Vec<Vec<u8>> = vec![];
        let mut resend: Vec<Vec<u8>> = vec![];
        for (h, q) in &mut self.queries {
            if q.deadline <= now {
                if !q.answered {
                    failed.push(h.clone());
                }
            } else if let (Some(at), Some(r)) = (q.retry_at, self.cfg.query_retry) {
                if at <= now && !q.answered {
                    q.retry_at = Some(now + r);
                    resend.push(h.clone());
                }
            }
        }
        self.queries.retain(|_, q| q.deadline > now);
        failed.sort();
        for hash in failed {
            self.events.push_back(Event::QueryFailed { hash });
        }
        resend.sort();
        for h in resend {
            self.send_query(h);
        }
        let mut done: Vec<u32> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(l, _)| *l)
            .collect();
        done.sort_unstable();
        for l in done {
            if let Some(a) = self.allocs.remove(&l) {
                self.eids.remove(&l);
                self.events.push_back(Event::AllocFailed {
                    alloc: a.id,
                    error: ShimError::Timeout(a.timeout),
                });
            }
        }
        if let Some(r) = self.cfg.req_retry {
            let mut again: Vec<(u32, Transmit)> = vec![];
            for (l, a) in &mut self.allocs {
                if a.retry_at.is_some_and(|t| t <= now) {
                    a.retry_at = Some(now + r);
                    again.push((
                        *l,
                        Transmit {
                            dst: a.peer,
                            msg: a.msg.clone(),
                        },
                    ));
                }
            }
            again.sort_by_key(|(l, _)| *l);
            for (_, t) in again {
                self.counters.reqs_retransmitted += 1;
                self.transmits.push_back(t);
            }
        }
        self.seen.retain(|_, s| match s {
            Seen::Waiting { .. } => true,
            Seen::Replied { until, .. } => *until > now,
        });
        self.cache.retain(|_, e| e.expires > now);
    }

    /// When [`Shim::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let q = self
            .queries
            .values()
            .flat_map(|q| [Some(q.deadline), q.retry_at.filter(|_| !q.answered)])
            .flatten();
        let a = self
            .allocs
            .values()
            .flat_map(|a| [Some(a.deadline), a.retry_at])
            .flatten();
        q.chain(a).min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Forgets a request the driver dropped without answering (its peer gets nothing).
    pub fn forget(&mut self, req: ReqId) {
        if let Some(i) = self.incoming.remove(&req) {
            if let Some(l) = i.local {
                self.eids.remove(&l);
            }
            self.seen.remove(&(i.peer, i.remote));
        }
    }

    /// Requests handed to the driver and not answered yet.
    pub fn incoming_waiting(&self) -> usize {
        self.incoming.len()
    }
}

crate::machine::machine!(Shim, Transmit, Event);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const MS: Duration = Duration::from_millis(1);

    fn shim(kind: ShimKind, mac: [u8; 6]) -> Shim {
        Shim::new(ShimConfig::new(kind, 32), Some(mac))
    }

    fn req(s: u32, hash: &[u8]) -> Vec<u8> {
        let mut tail = hash.to_vec();
        tail.extend_from_slice(b"oap");
        Mgmt {
            code: EthCode::FlowReq,
            s,
            d: 0,
            qos: QosSpec::RAW,
            response: 0,
            tail,
        }
        .build(ShimKind::Dix)
    }

    #[test]
    fn a_flow_is_allocated_between_two_machines() {
        let t0 = Instant::now();
        let (mut a, mut b) = (shim(ShimKind::Dix, A), shim(ShimKind::Dix, B));
        b.register(vec![5; 32]);
        // Take a few ids on b first, so that the two ends' eids differ.
        for _ in 0..3 {
            b.take_free_eid();
        }
        a.query(t0, vec![5; 32], 100 * MS).unwrap();
        let q = a.poll_transmit().unwrap();
        assert_eq!(q.dst, Peer::Mac(BROADCAST));
        b.handle(
            t0,
            Peer::Mac(A),
            Some(BROADCAST),
            &q.msg.build(ShimKind::Dix),
        );
        let r = b.poll_transmit().unwrap();
        a.handle(t0, Peer::Mac(B), Some(A), &r.msg.build(ShimKind::Dix));
        assert_eq!(
            a.poll_event(),
            Some(Event::QueryAnswered {
                hash: vec![5; 32],
                peer: Peer::Mac(B)
            })
        );
        assert_eq!(a.cached(t0, &[5; 32]), Some(Peer::Mac(B)));
        let (id, local) = a
            .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"oap", 100 * MS)
            .unwrap();
        assert_eq!(local, 64);
        let fr = a.poll_transmit().unwrap();
        b.handle(t0, Peer::Mac(A), Some(B), &fr.msg.build(ShimKind::Dix));
        let Some(Event::Incoming {
            req, remote, oap, ..
        }) = b.poll_event()
        else {
            panic!("no request");
        };
        assert_eq!((remote, oap.as_slice()), (64, &b"oap"[..]));
        assert_eq!(b.take_eid(req).unwrap(), 67);
        b.reply(t0, req, b"resp".to_vec()).unwrap();
        let rep = b.poll_transmit().unwrap();
        a.handle(t0, Peer::Mac(B), Some(A), &rep.msg.build(ShimKind::Dix));
        assert_eq!(
            a.poll_event(),
            Some(Event::Allocated {
                alloc: id,
                local: 64,
                remote: 67,
                peer: Peer::Mac(B),
                oap: b"resp".to_vec()
            })
        );
    }

    #[test]
    fn udp_replies_carry_the_requesters_eid_first() {
        let t0 = Instant::now();
        let peer = Peer::Ip("127.0.0.2:3435".parse().unwrap());
        let mut b = Shim::new(ShimConfig::new(ShimKind::Udp, 16), None);
        b.register(vec![1; 16]);
        let mut tail = vec![1; 16];
        tail.extend_from_slice(b"x");
        let m = Mgmt {
            code: EthCode::FlowReq,
            s: 0x40,
            d: 0,
            qos: QosSpec::RAW,
            response: 0,
            tail,
        };
        b.take_free_eid(); // so the responder's id (0x41) differs from the requester's
        b.handle(t0, peer, None, &m.build(ShimKind::Udp));
        let Some(Event::Incoming { req, .. }) = b.poll_event() else {
            panic!()
        };
        b.reply(t0, req, vec![]).unwrap();
        let bytes = b.poll_transmit().unwrap().msg.build(ShimKind::Udp);
        let (wire, _) = o7s_wire::udp::MgmtMsg::parse(&bytes).unwrap();
        assert_eq!((wire.requester_eid, wire.responder_eid), (0x40, 0x41));
    }

    #[test]
    fn repeated_requests_make_one_flow_and_get_the_same_reply() {
        let t0 = Instant::now();
        let mut b = shim(ShimKind::Dix, B);
        b.register(vec![5; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        let Some(Event::Incoming { req: r, .. }) = b.poll_event() else {
            panic!()
        };
        // Again while it waits: ignored.
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert_eq!(b.poll_event(), None);
        b.reply(t0, r, b"resp".to_vec()).unwrap();
        let first = b.poll_transmit().unwrap();
        // Again after the reply: the same reply, no new request.
        b.handle(t0 + MS, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert_eq!(b.poll_event(), None);
        assert_eq!(b.poll_transmit().unwrap(), first);
        assert_eq!(b.counters().req_duplicate, 2);
        assert_eq!(b.eids_in_use(), 1);
        // The same eid again with another request (the requester reused the id for a
        // new flow): a new request, not a repetition.
        let mut other = vec![5; 32];
        other.extend_from_slice(b"another oap");
        let m = Mgmt {
            code: EthCode::FlowReq,
            s: 0x40,
            d: 0,
            qos: QosSpec::RAW,
            response: 0,
            tail: other,
        };
        b.handle(t0 + MS, Peer::Mac(A), Some(B), &m.build(ShimKind::Dix));
        assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
        // Another requester eid from the same peer is another flow.
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
        assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
    }

    #[test]
    fn unknown_names_are_refused_and_full_queues_too() {
        let t0 = Instant::now();
        let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
        cfg.max_incoming = 1;
        let mut b = Shim::new(cfg, Some(B));
        b.register(vec![5; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[6; 32]));
        let r = b.poll_transmit().unwrap();
        assert_eq!(
            (r.msg.code, r.msg.response, r.msg.s),
            (
                EthCode::FlowReply,
                crate::refusal::Refusal::NotRegistered.response(),
                0
            )
        );
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x42, &[5; 32]));
        assert_eq!(
            b.poll_transmit().unwrap().msg.d,
            0x42,
            "the second one is refused"
        );
        let c = b.counters();
        assert_eq!((c.req_unknown_name, c.incoming_full, c.refused), (1, 1, 2));
    }

    #[test]
    fn replies_from_elsewhere_or_too_late_are_not_believed() {
        let t0 = Instant::now();
        let mut a = shim(ShimKind::Dix, A);
        let (id, local) = a
            .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
            .unwrap();
        let _ = a.poll_transmit();
        let reply = Mgmt {
            code: EthCode::FlowReply,
            s: 0x50,
            d: local,
            qos: QosSpec::ZERO,
            response: 0,
            tail: vec![],
        }
        .build(ShimKind::Dix);
        // From a third MAC: dropped.
        a.handle(t0, Peer::Mac([2, 0, 0, 0, 0, 0xc]), Some(A), &reply);
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.counters().reply_unknown, 1);
        // Time out.
        assert_eq!(a.poll_timeout(), Some(t0 + 50 * MS));
        a.handle_timeout(t0 + 50 * MS);
        assert_eq!(
            a.poll_event(),
            Some(Event::AllocFailed {
                alloc: id,
                error: ShimError::Timeout(50 * MS)
            })
        );
        assert_eq!(a.eids_in_use(), 0);
        // The real peer's reply, now late: dropped too.
        a.handle(t0 + 60 * MS, Peer::Mac(B), Some(A), &reply);
        assert_eq!(a.poll_event(), None);
        // Unsolicited name replies are not cached.
        let nr = Mgmt {
            code: EthCode::NameQueryReply,
            s: 0,
            d: 0,
            qos: QosSpec::ZERO,
            response: 0,
            tail: vec![5; 32],
        };
        a.handle(t0, Peer::Mac(B), Some(A), &nr.build(ShimKind::Dix));
        assert_eq!(a.cached(t0, &[5; 32]), None);
        assert_eq!(a.counters().name_reply_unsolicited, 1);
    }
}
