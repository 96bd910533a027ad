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
    /// FLOW_REPLYs not kept to answer a repeat: `max_remembered` unexpired ones were kept
    /// already (a repeat is then a new request).
    pub replies_not_remembered: u64,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    peer: Peer,
    expires: Instant,
}

impl CacheEntry {
    /// Whether it still holds at `now` (it expires at `expires` exactly).
    fn live(&self, now: Instant) -> bool {
        self.expires > now
    }
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

impl Seen {
    /// Whether it still counts at `now`: a request waiting always, a reply until its time
    /// (exactly).
    fn live(&self, now: Instant) -> bool {
        match self {
            Seen::Waiting { .. } => true,
            Seen::Replied { until, .. } => *until > now,
        }
    }
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
        // Answered: no longer waiting; kept as a reply only within the bound (the entry
        // of a request that waited counts as a new one: every kept reply is bounded).
        self.seen.remove(&key);
        if self.cfg.reply_memory.is_zero() {
            return;
        }
        if self.seen.len() >= self.cfg.max_remembered {
            self.seen.retain(|_, s| s.live(now));
            if self.seen.len() >= self.cfg.max_remembered {
                self.counters.replies_not_remembered += 1;
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
        // Name queries are eth-only: a udp layer's messages never carry their codes
        // (`Mgmt::parse` maps udp codes to FLOW_REQ, FLOW_REPLY or unknown).
        match m.code {
            EthCode::NameQueryReq => {
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
            EthCode::NameQueryReply => self.on_name_reply(now, src, m.tail),
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
            Some(seen @ Seen::Replied { tail, msg, .. }) if seen.live(now) && *tail == m.tail => {
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
        self.seen.retain(|_, s| s.live(now));
        self.cache.retain(|_, e| e.live(now));
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

    /// A NAME_QUERY_REPLY for `hash`.
    fn name_reply(hash: &[u8]) -> Vec<u8> {
        Mgmt {
            code: EthCode::NameQueryReply,
            s: 0,
            d: 0,
            qos: QosSpec::ZERO,
            response: 0,
            tail: hash.to_vec(),
        }
        .build(ShimKind::Dix)
    }

    #[test]
    fn the_own_mac_can_be_set_later_and_names_come_and_go() {
        let t0 = Instant::now();
        let mut b = Shim::new(ShimConfig::new(ShimKind::Dix, 32), None);
        b.register(vec![5; 32]);
        assert!(b.is_registered(&[5; 32]));
        assert!(!b.is_registered(&[6; 32]));
        // No MAC yet: a frame to any MAC is looked at.
        b.handle(t0, Peer::Mac(A), Some(A), &req(0x40, &[5; 32]));
        assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
        b.set_mac(Some(B));
        b.handle(t0, Peer::Mac(A), Some(A), &req(0x41, &[5; 32]));
        assert_eq!((b.poll_event(), b.counters().not_for_us), (None, 1));
        // Unregistered: queries go unanswered, requests are refused.
        b.unregister(&[5; 32]);
        assert!(!b.is_registered(&[5; 32]));
        let q = Mgmt {
            code: EthCode::NameQueryReq,
            s: 0,
            d: 0,
            qos: QosSpec::ZERO,
            response: 0,
            tail: vec![5; 32],
        };
        b.handle(t0, Peer::Mac(A), Some(BROADCAST), &q.build(ShimKind::Dix));
        assert!(b.poll_transmit().is_none());
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x42, &[5; 32]));
        assert_eq!(b.counters().req_unknown_name, 1);
    }

    #[test]
    fn the_cache_holds_a_name_for_its_ttl_and_queries_wait_their_time() {
        let t0 = Instant::now();
        let mut a = shim(ShimKind::Dix, A);
        a.query(t0, vec![5; 32], 100 * MS).unwrap();
        assert_eq!(a.counters().queries_sent, 1);
        a.handle(t0, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
        let ttl = a.config().cache_ttl;
        assert_eq!(
            a.cache_entries(t0 + 10 * MS),
            vec![(vec![5; 32], Peer::Mac(B), ttl - 10 * MS)]
        );
        assert_eq!(a.cached(t0 + ttl - MS, &[5; 32]), Some(Peer::Mac(B)));
        assert_eq!(a.cached(t0 + ttl, &[5; 32]), None, "expired at its TTL");
        assert!(a.cache_entries(t0 + ttl).is_empty());
        assert!(a.cache_entries(t0 + ttl + MS).is_empty());
        // An unanswered query fails at its deadline, not before.
        a.query(t0, vec![6; 32], 100 * MS).unwrap();
        assert_eq!(a.counters().queries_sent, 2);
        a.handle_timeout(t0 + 99 * MS);
        assert_eq!(
            a.poll_event(),
            Some(Event::QueryAnswered {
                hash: vec![5; 32],
                peer: Peer::Mac(B)
            })
        );
        assert_eq!(a.poll_event(), None, "still waiting");
        a.handle_timeout(t0 + 100 * MS);
        assert_eq!(
            a.poll_event(),
            Some(Event::QueryFailed { hash: vec![6; 32] })
        );
    }

    #[test]
    fn endpoint_ids_run_out_at_the_top_of_the_range_and_come_back() {
        let t0 = Instant::now();
        let mut cfg = ShimConfig::new(ShimKind::Llc, 32);
        cfg.max_allocs = 1000;
        let mut a = Shim::new(cfg, Some(A));
        let (lo, hi) = ShimKind::Llc.eid_range();
        let mut ids = vec![];
        let mut locals = vec![];
        for _ in lo..=hi {
            let (id, l) = a
                .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
                .unwrap();
            ids.push(id);
            locals.push(l);
        }
        assert_eq!(locals.first(), Some(&lo));
        assert_eq!(locals.last(), Some(&hi), "the last id is handed out");
        ids.dedup();
        assert_eq!(
            ids.len(),
            locals.len(),
            "every allocation has its own handle"
        );
        assert_eq!(
            a.alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS),
            Err(ShimError::NoEid)
        );
        // Cancelled and released ids are free again; an unknown one changes nothing.
        a.cancel(lo + 3);
        a.release(lo + 5);
        a.cancel(hi + 7);
        assert_eq!(a.eids_in_use(), locals.len() - 2);
        let (_, l) = a
            .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
            .unwrap();
        assert_eq!(l, lo + 3);
        // The cancelled allocation does not fail later: only the others time out.
        while a.poll_transmit().is_some() {}
        a.handle_timeout(t0 + 49 * MS);
        assert_eq!(a.poll_event(), None, "not before the deadline");
        a.handle_timeout(t0 + 50 * MS);
        let failed = std::iter::from_fn(|| a.poll_event()).count();
        assert_eq!(failed, locals.len() - 2 + 1);
    }

    #[test]
    fn adopted_eids_are_in_range_and_free() {
        let mut a = shim(ShimKind::Llc, A);
        let (lo, hi) = ShimKind::Llc.eid_range();
        assert!(a.adopt_eid(lo));
        assert!(!a.adopt_eid(lo), "taken");
        assert!(a.adopt_eid(hi));
        assert!(!a.adopt_eid(hi + 1), "above the range");
        assert!(!a.adopt_eid(lo - 1), "below the range");
        assert_eq!(a.eids_in_use(), 2);
    }

    #[test]
    fn a_refusal_is_sent_and_frees_the_reserved_eid() {
        let t0 = Instant::now();
        let mut b = shim(ShimKind::Dix, B);
        b.register(vec![5; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        let Some(Event::Incoming { req: r, .. }) = b.poll_event() else {
            panic!()
        };
        b.take_eid(r).unwrap();
        assert_eq!(b.eids_in_use(), 1);
        b.refuse(t0, r, -3).unwrap();
        assert_eq!(b.eids_in_use(), 0);
        let t = b.poll_transmit().unwrap();
        assert_eq!(
            (t.dst, t.msg.code, t.msg.s, t.msg.d, t.msg.response),
            (Peer::Mac(A), EthCode::FlowReply, 0, 0x40, -3)
        );
        assert_eq!(b.counters().refused, 1);
        assert_eq!(b.refuse(t0, r, -3), Err(ShimError::UnknownRequest));
    }

    #[test]
    fn a_request_with_another_tail_is_a_new_request() {
        let t0 = Instant::now();
        let mut b = shim(ShimKind::Dix, B);
        b.register(vec![5; 32]);
        b.register(vec![6; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert_eq!(b.counters().req_duplicate, 1);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert_eq!(b.counters().req_duplicate, 2);
        // The same endpoint id asking for another name: not a repeat.
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[6; 32]));
        let hashes: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_event())
            .filter_map(|e| match e {
                Event::Incoming { hash, .. } => Some(hash),
                _ => None,
            })
            .collect();
        assert_eq!(hashes, vec![vec![5; 32], vec![6; 32]]);
    }

    #[test]
    fn remembered_replies_are_bounded_and_expired_ones_make_room() {
        let t0 = Instant::now();
        let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
        cfg.max_remembered = 2;
        let memory = cfg.reply_memory;
        let mut b = Shim::new(cfg, Some(B));
        b.register(vec![5; 32]);
        let answer = |b: &mut Shim, at: Instant, s: u32| {
            b.handle(at, Peer::Mac(A), Some(B), &req(s, &[5; 32]));
            let Some(Event::Incoming { req: r, .. }) = b.poll_event() else {
                panic!("no request {s:#x}")
            };
            b.reply(at, r, vec![]).unwrap();
            b.poll_transmit().unwrap()
        };
        let repeat = |b: &mut Shim, at: Instant, s: u32| {
            b.handle(at, Peer::Mac(A), Some(B), &req(s, &[5; 32]));
            let repeated = b.poll_transmit().is_some() && b.poll_event().is_none();
            // A new request instead: dropped unanswered.
            while let Some(e) = b.poll_event() {
                if let Event::Incoming { req: r, .. } = e {
                    b.forget(r);
                }
            }
            while b.poll_transmit().is_some() {}
            repeated
        };
        answer(&mut b, t0, 0x40);
        answer(&mut b, t0 + MS, 0x41);
        // Full of replies that have not expired: the third is not kept.
        answer(&mut b, t0 + 2 * MS, 0x42);
        assert!(repeat(&mut b, t0 + 3 * MS, 0x40));
        assert!(repeat(&mut b, t0 + 3 * MS, 0x41));
        assert!(!repeat(&mut b, t0 + 3 * MS, 0x42), "not remembered");
        assert_eq!(b.counters().replies_not_remembered, 1);
        // Once the first has expired (exactly at its time), a new one takes its room.
        answer(&mut b, t0 + memory, 0x43);
        assert!(repeat(&mut b, t0 + memory, 0x43));
        assert!(!repeat(&mut b, t0 + memory, 0x40), "expired");
    }

    #[test]
    fn malformed_and_unexpected_messages_are_counted() {
        let t0 = Instant::now();
        let mut b = shim(ShimKind::Dix, B);
        b.register(vec![5; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &[0xff; 3]);
        assert_eq!(b.counters().malformed, 1);
        // A name reply whose hash has the wrong length.
        b.handle(t0, Peer::Mac(A), Some(B), &name_reply(&[5; 31]));
        assert_eq!(b.counters().malformed, 2);
        // A FLOW_REQ without an endpoint id of its sender.
        b.handle(t0, Peer::Mac(A), Some(B), &req(0, &[5; 32]));
        assert_eq!(b.counters().req_bad_eid, 1);
        // A FLOW_REQ shorter than the hash; one of exactly the hash (no OAP) is taken.
        let short = Mgmt {
            code: EthCode::FlowReq,
            s: 0x40,
            d: 0,
            qos: QosSpec::RAW,
            response: 0,
            tail: vec![5; 31],
        };
        b.handle(t0, Peer::Mac(A), Some(B), &short.build(ShimKind::Dix));
        assert_eq!(b.counters().malformed, 3);
        let bare = Mgmt {
            tail: vec![5; 32],
            ..short
        };
        b.handle(t0, Peer::Mac(A), Some(B), &bare.build(ShimKind::Dix));
        assert!(matches!(
            b.poll_event(),
            Some(Event::Incoming { oap, .. }) if oap.is_empty()
        ));
        assert_eq!(b.counters().malformed, 3);
        // Name queries and replies on a udp layer: codes it does not use.
        let peer = Peer::Ip("127.0.0.2:3435".parse().unwrap());
        let mut u = Shim::new(ShimConfig::new(ShimKind::Udp, 32), None);
        u.register(vec![5; 32]);
        for code in [EthCode::NameQueryReq, EthCode::NameQueryReply] {
            let m = Mgmt {
                code,
                s: 0,
                d: 0,
                qos: QosSpec::ZERO,
                response: 0,
                tail: vec![5; 32],
            };
            u.handle(t0, peer, None, &m.build(ShimKind::Udp));
        }
        assert!(u.poll_transmit().is_none(), "no answer on udp");
        let c = u.counters();
        assert_eq!((c.unexpected_code, c.name_reply_unsolicited), (2, 0));
    }

    #[test]
    fn a_name_reply_counts_until_the_querys_deadline_and_a_full_cache_makes_room_of_expired() {
        let t0 = Instant::now();
        let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
        cfg.max_cache = 1;
        let ttl = cfg.cache_ttl;
        let mut a = Shim::new(cfg, Some(A));
        a.query(t0, vec![5; 32], 100 * MS).unwrap();
        // Exactly at the deadline: too late.
        a.handle(t0 + 100 * MS, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
        assert_eq!(a.counters().name_reply_unsolicited, 1);
        a.query(t0, vec![5; 32], 100 * MS).unwrap();
        a.query(t0, vec![6; 32], ttl * 2).unwrap();
        a.handle(t0, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
        // The cache holds one name: the second answer is not kept while the first lives.
        a.handle(t0 + MS, Peer::Mac(B), Some(A), &name_reply(&[6; 32]));
        assert_eq!(a.cached(t0 + MS, &[6; 32]), None);
        assert_eq!(a.counters().cache_full, 1);
        // Answering again for a cached name refreshes it (no room needed).
        a.handle(t0 + 2 * MS, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
        assert_eq!(a.counters().cache_full, 1);
        // Once the first expired (at its time exactly), the second takes its place.
        a.handle(
            t0 + 2 * MS + ttl,
            Peer::Mac(B),
            Some(A),
            &name_reply(&[6; 32]),
        );
        assert_eq!(a.cached(t0 + 2 * MS + ttl, &[6; 32]), Some(Peer::Mac(B)));
        assert_eq!(a.counters().cache_full, 1);
    }

    #[test]
    fn a_refusal_ends_the_allocation_and_frees_its_eid() {
        let t0 = Instant::now();
        let mut a = shim(ShimKind::Dix, A);
        let (id, local) = a
            .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
            .unwrap();
        let refusal = Mgmt {
            code: EthCode::FlowReply,
            s: 0,
            d: local,
            qos: QosSpec::ZERO,
            response: -7,
            tail: vec![],
        };
        a.handle(t0, Peer::Mac(B), Some(A), &refusal.build(ShimKind::Dix));
        assert_eq!(
            a.poll_event(),
            Some(Event::AllocFailed {
                alloc: id,
                error: ShimError::Refused(-7)
            })
        );
        assert_eq!((a.eids_in_use(), a.counters().reply_unknown), (0, 0));
    }

    #[test]
    fn a_remembered_reply_is_repeated_until_its_time_and_requests_have_their_own_handles() {
        let t0 = Instant::now();
        let mut b = shim(ShimKind::Dix, B);
        let memory = b.config().reply_memory;
        b.register(vec![5; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
        let reqs: Vec<ReqId> = std::iter::from_fn(|| b.poll_event())
            .filter_map(|e| match e {
                Event::Incoming { req: r, .. } => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(reqs.len(), 2);
        assert_ne!(reqs[0], reqs[1]);
        b.reply(t0, reqs[0], vec![]).unwrap();
        let _ = b.poll_transmit();
        b.handle(
            t0 + memory - MS,
            Peer::Mac(A),
            Some(B),
            &req(0x40, &[5; 32]),
        );
        assert!(b.poll_transmit().is_some(), "the reply again");
        assert_eq!(b.poll_event(), None);
        // At its time exactly it is forgotten: a new request.
        b.handle(t0 + memory, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert!(b.poll_transmit().is_none());
        assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
    }

    #[test]
    fn queries_and_requests_are_sent_again_on_their_retry_timers() {
        let t0 = Instant::now();
        let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
        cfg.query_retry = Some(20 * MS);
        cfg.req_retry = Some(30 * MS);
        let mut a = Shim::new(cfg, Some(A));
        a.query(t0, vec![5; 32], 100 * MS).unwrap();
        a.query(t0, vec![6; 32], 100 * MS).unwrap();
        let (_, local) = a
            .alloc(t0, Peer::Mac(B), &[7; 32], QosSpec::RAW, b"", 100 * MS)
            .unwrap();
        let sent = |a: &mut Shim| std::iter::from_fn(|| a.poll_transmit()).count();
        assert_eq!(sent(&mut a), 3);
        assert_eq!(a.poll_timeout(), Some(t0 + 20 * MS));
        a.handle_timeout(t0 + 19 * MS);
        assert_eq!(sent(&mut a), 0, "not yet");
        // Name 5 is answered: only 6 is asked again.
        a.handle(t0 + 19 * MS, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
        let _ = a.poll_event();
        a.handle_timeout(t0 + 20 * MS);
        let again: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].msg.tail, vec![6; 32]);
        assert_eq!(a.counters().queries_sent, 3);
        // The next retry of 6 is 20 ms after this one; the request's first at 30 ms.
        assert_eq!(a.poll_timeout(), Some(t0 + 30 * MS));
        a.handle_timeout(t0 + 30 * MS);
        let req_again: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(req_again.len(), 1);
        assert_eq!(
            (req_again[0].msg.code, req_again[0].msg.s),
            (EthCode::FlowReq, local)
        );
        assert_eq!(a.counters().reqs_retransmitted, 1);
        a.handle_timeout(t0 + 39 * MS);
        assert_eq!(sent(&mut a), 0);
        a.handle_timeout(t0 + 40 * MS);
        assert_eq!(sent(&mut a), 1, "6 again");
        // At the deadline: 6 fails, 5 (answered) ends quietly, the request fails.
        a.handle_timeout(t0 + 100 * MS);
        let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(events.contains(&Event::QueryFailed { hash: vec![6; 32] }));
        assert!(!events.contains(&Event::QueryFailed { hash: vec![5; 32] }));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(sent(&mut a), 0);
    }

    #[test]
    fn timers_keep_what_has_not_expired_and_a_forgotten_request_leaves_no_trace() {
        let t0 = Instant::now();
        let mut b = shim(ShimKind::Dix, B);
        b.register(vec![5; 32]);
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
        let reqs: Vec<ReqId> = std::iter::from_fn(|| b.poll_event())
            .filter_map(|e| match e {
                Event::Incoming { req: r, .. } => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(b.incoming_waiting(), 2);
        b.reply(t0, reqs[0], vec![]).unwrap();
        let _ = b.poll_transmit();
        b.take_eid(reqs[1]).unwrap();
        assert_eq!((b.incoming_waiting(), b.eids_in_use()), (1, 2));
        b.forget(reqs[1]);
        assert_eq!((b.incoming_waiting(), b.eids_in_use()), (0, 1));
        // Forgotten: its repeat is a new request.
        b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
        assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
        // A timer pass keeps the reply remembered (it has not expired).
        b.handle_timeout(t0 + MS);
        b.handle(t0 + 2 * MS, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert!(b.poll_transmit().is_some(), "the remembered reply");
        assert_eq!(b.poll_event(), None);
        // And the cache keeps a name that has not expired.
        let mut a = shim(ShimKind::Dix, A);
        a.query(t0, vec![5; 32], 100 * MS).unwrap();
        a.handle(t0, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
        a.handle_timeout(t0 + MS);
        assert_eq!(a.cached(t0 + 2 * MS, &[5; 32]), Some(Peer::Mac(B)));
    }
}
