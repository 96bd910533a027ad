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
        /// Times it was sent again for a repeated request (at most [`MAX_RESENT`]).
        resent: u8,
    },
}

/// Most times a remembered reply is sent again. A lost reply is asked for again a few
/// times; beyond, the requests are a spoofer's, who would get a reply (with a certificate
/// and a signature, ten times the request) sent to its victim for each small request.
pub const MAX_RESENT: u8 = 3;

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
}

crate::machine::machine!(Shim, Transmit, Event);

mod flows;
mod names;

#[cfg(test)]
mod tests;
