//! Flow allocation: endpoint ids, FLOW_REQ and FLOW_REPLY both ways, the requests waiting for
//! an acceptor and their refusals, and the duplicates of a request remembered.

use super::{Alloc, AllocId, Event, Incoming, ReqId, Seen, Shim, ShimError, Transmit};
use crate::mgmt::{Mgmt, Peer};
use o7s_wire::code::EthCode;
use o7s_wire::qos::QosSpec;
use std::time::{Duration, Instant};

impl Shim {
    /// Endpoint ids in use (allocations waiting, flows up).
    pub fn eids_in_use(&self) -> usize {
        self.eids.len()
    }

    pub(super) fn take_free_eid(&mut self) -> Option<u32> {
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

    pub(super) fn send_refusal(
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

    pub(super) fn remember(
        &mut self,
        now: Instant,
        peer: Peer,
        remote: u32,
        tail: Vec<u8>,
        msg: Mgmt,
    ) {
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
        self.seen.insert(
            key,
            Seen::Replied {
                tail,
                msg,
                until,
                resent: 0,
            },
        );
    }

    pub(super) fn on_flow_reply(&mut self, src: Peer, m: Mgmt) {
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

    pub(super) fn on_flow_req(&mut self, now: Instant, src: Peer, m: Mgmt) {
        if !self.cfg.kind.valid_remote(m.s) {
            self.counters.req_bad_eid += 1;
            return;
        }
        match self.seen.get_mut(&(src, m.s)) {
            Some(Seen::Waiting { tail }) if *tail == m.tail => {
                self.counters.req_duplicate += 1;
                return;
            }
            Some(Seen::Replied {
                tail,
                msg,
                until,
                resent,
            }) if *until > now && *tail == m.tail => {
                self.counters.req_duplicate += 1;
                if *resent < super::MAX_RESENT {
                    *resent += 1;
                    let msg = msg.clone();
                    self.transmits.push_back(Transmit { dst: src, msg });
                }
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
