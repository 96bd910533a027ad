//! The driver of the shim layers' protocol machines (`o7s_proto::shim::Shim`, one per
//! eth/udp IPCP, and the responder's `o7s_proto::accept::AcceptQueue`).
//!
//! Management frames from the data plane go into the IPCP's machine on the event loop
//! ([`Daemon::on_mgmt`], from the queue the events thread fills: `from_dp.rs`); what the
//! machine produces is drained by [`Daemon::pump`] under the state lock and sent after it
//! is released. The loop's [`Daemon::protocol_turn`] does the rest without waiting: it
//! checks new flow requests (OAP, keys, limits), serves them in order as processes come
//! to accept (or starts the name's program), refuses what waited too long, and fires the
//! machines' timers. No thread is started per request, and every queue is bounded: what
//! does not fit is refused and counted.

use super::{Owner, State};
use crate::eth::{Peer, ReplyInfo};
use o7s_abi::msg::CryptSpec;
use o7s_proto::refusal::Refusal;
use o7s_proto::shim::{Event, ReqId};
use o7s_wire::oap::OapHdr;
use o7s_wire::qos::QosSpec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Most flow requests from the wire waiting for their checks.
pub const MAX_FRESH: usize = 256;

/// Most checked flow requests waiting for an acceptor.
pub const MAX_WAITING: usize = 256;

/// A flow request from the wire, before its checks.
#[derive(Debug)]
pub struct Fresh {
    pub(super) idx: usize,
    pub(super) req: ReqId,
    pub(super) hash: Vec<u8>,
    pub(super) peer: Peer,
    pub(super) remote: u32,
    pub(super) qos: QosSpec,
    pub(super) oap: Vec<u8>,
}

/// A checked flow request waiting for an acceptor.
#[derive(Debug)]
pub struct Waiting {
    pub(super) idx: usize,
    pub(super) req: ReqId,
    pub(super) name: String,
    pub(super) peer: Peer,
    pub(super) remote: u32,
    pub(super) qos: QosSpec,
    pub(super) resp: OapHdr,
    pub(super) crypt: Option<CryptSpec>,
}

/// Messages to send once the state lock is released: port, destination, payload.
pub type Outbox = Vec<(u32, Peer, Vec<u8>)>;

fn add(c: &AtomicU64, now: u64, before: u64) {
    c.fetch_add(now.saturating_sub(before), Ordering::Relaxed);
}

impl Owner {
    /// Drains IPCP `idx`'s machine: events go to whoever waits for them, new flow requests
    /// to the protocol thread's queue, counters to the daemon's; returns what to send.
    pub(super) fn pump(&self, st: &mut State, idx: usize, out: &mut Outbox, now: Instant) {
        let mut fresh = vec![];
        let mut refuse = vec![];
        // Whether an allocation waiting in the event loop got its answer.
        let mut woke = false;
        {
            let Some(i) = st.ipcps.get_mut(idx) else {
                return;
            };
            while let Some(e) = i.shim.poll_event() {
                match e {
                    Event::QueryAnswered { hash, peer } => {
                        if let Some(q) = i.query_waiters.remove(&hash) {
                            woke = true;
                            for w in q.waiters {
                                let _ = w.send((idx, peer));
                            }
                            // Bounded by the machine's cache: pruned to it at each tick.
                            i.learnt.insert(hash, (q.name, SystemTime::now()));
                        }
                    }
                    Event::QueryFailed { hash } => {
                        // Dropping the senders tells the waiters nobody answered.
                        woke |= i.query_waiters.remove(&hash).is_some();
                    }
                    Event::Allocated {
                        alloc,
                        local,
                        remote,
                        peer,
                        oap,
                    } => match i.alloc_waiters.remove(&alloc.0) {
                        Some(w) => {
                            woke = true;
                            let sent = w.send(Ok(ReplyInfo {
                                local,
                                remote,
                                peer,
                                oap,
                            }));
                            // Its app went away meanwhile.
                            if sent.is_err() {
                                i.shim.release(local);
                            }
                        }
                        // Its app went away meanwhile.
                        None => i.shim.release(local),
                    },
                    Event::AllocFailed { alloc, error } => {
                        if let Some(w) = i.alloc_waiters.remove(&alloc.0) {
                            woke = true;
                            let _ = w.send(Err(error));
                        }
                    }
                    Event::Incoming {
                        req,
                        hash,
                        peer,
                        remote,
                        qos,
                        oap,
                    } => fresh.push(Fresh {
                        idx,
                        req,
                        hash,
                        peer,
                        remote,
                        qos,
                        oap,
                    }),
                }
            }
            if woke {
                self.wake();
            }
            for f in fresh {
                if st_fresh_len(&st.fresh) >= MAX_FRESH {
                    refuse.push(f.req);
                } else {
                    st.fresh.push_back(f);
                }
            }
        }
        let Some(i) = st.ipcps.get_mut(idx) else {
            return;
        };
        for req in refuse {
            self.counters.flow_req_busy.fetch_add(1, Ordering::Relaxed);
            let _ = i.shim.refuse(now, req, -1);
        }
        while let Some(t) = i.shim.poll_transmit() {
            out.push((i.port, t.dst, crate::eth::build_mgmt(i.port_kind, &t.msg)));
        }
        let (c, b) = (i.shim.counters(), i.counted);
        let k = &self.counters;
        add(
            &k.mgmt_malformed,
            c.malformed + c.unexpected_code,
            b.malformed + b.unexpected_code,
        );
        add(&k.not_for_us, c.not_for_us, b.not_for_us);
        add(
            &k.name_reply_unsolicited,
            c.name_reply_unsolicited,
            b.name_reply_unsolicited,
        );
        add(&k.cache_full, c.cache_full, b.cache_full);
        add(&k.reply_unknown_eid, c.reply_unknown, b.reply_unknown);
        add(&k.req_bad_eid, c.req_bad_eid, b.req_bad_eid);
        add(&k.req_unknown_name, c.req_unknown_name, b.req_unknown_name);
        add(&k.flow_req_busy, c.incoming_full, b.incoming_full);
        add(&k.req_duplicate, c.req_duplicate, b.req_duplicate);
        add(
            &k.replies_not_remembered,
            c.replies_not_remembered,
            b.replies_not_remembered,
        );
        add(&k.refused, c.refused, b.refused);
        if c.reply_unknown > b.reply_unknown {
            crate::wire_log!(
                warn,
                "{}: dropped {} FLOW_REPLY(s) for no allocation waiting (or from another peer)",
                i.name,
                c.reply_unknown - b.reply_unknown
            );
        }
        if c.req_bad_eid > b.req_bad_eid {
            crate::wire_log!(
                warn,
                "{}: dropped a FLOW_REQ with an impossible endpoint id",
                i.name
            );
        }
        if c.req_unknown_name > b.req_unknown_name {
            crate::wire_log!(
                info,
                "{}: a flow request for an unregistered name: refused.",
                i.name
            );
        }
        i.counted = c;
    }

    /// Sends what [`Daemon::pump`] collected.
    pub(super) fn send_all(&self, out: Outbox) {
        for (port, dst, payload) in out {
            self.send_mgmt(port, dst, payload);
        }
    }

    /// A management frame from port `port`, from `src`, to `dst` (eth), at `now` (on the
    /// loop: [`Daemon::take_from_dp`]).
    pub(super) fn on_mgmt(
        &self,
        now: Instant,
        port: u32,
        src: Peer,
        dst: Option<[u8; 6]>,
        payload: &[u8],
    ) {
        let mut out = vec![];
        let mut st = self.st();
        let Some(idx) = st.ipcps.iter().position(|i| i.port == port) else {
            return;
        };
        if let Some(i) = st.ipcps.get_mut(idx) {
            i.shim.handle(now, src, dst, payload);
        }
        self.pump(&mut st, idx, &mut out, now);
        let wake = !st.fresh.is_empty();
        drop(st);
        self.send_all(out);
        if wake {
            self.wake();
        }
    }

    /// Refuses request `req` of IPCP `idx`; the FLOW_REPLY's response says `why` (the
    /// caller has logged it).
    pub(super) fn refuse_req(&self, idx: usize, req: ReqId, why: Refusal, now: Instant) {
        let mut out = vec![];
        let mut st = self.st();
        if let Some(i) = st.ipcps.get_mut(idx) {
            let _ = i.shim.refuse(now, req, why.response());
        }
        self.pump(&mut st, idx, &mut out, now);
        drop(st);
        self.send_all(out);
    }

    /// The event loop's protocol work: checks and serves flow requests, fires the
    /// machines' timers. Returns when it is due again at the latest (recorded, so that a
    /// machine's earlier new timer wakes the loop: [`Daemon::wake_for`]).
    pub(super) fn protocol_turn(&self, now: Instant) -> Instant {
        // What the data plane sent: flows ended, management frames (a turn's worth).
        let more_mgmt = self.take_from_dp(now);
        // At most this many new requests a turn: the loop's other work goes on in a flood.
        let mut budget = MAX_FRESH;
        loop {
            while budget > 0 {
                let f = self.st().fresh.pop_front();
                let Some(f) = f else { break };
                budget -= 1;
                self.check_fresh(f, now);
            }
            self.serve_waiting(now);
            self.serve_installing(now);
            let mut out = vec![];
            let mut st = self.st();
            for idx in 0..st.ipcps.len() {
                let due = st
                    .ipcps
                    .get(idx)
                    .and_then(|i| i.shim.poll_timeout())
                    .is_some_and(|t| t <= now);
                if due {
                    if let Some(i) = st.ipcps.get_mut(idx) {
                        i.shim.handle_timeout(now);
                    }
                    self.pump(&mut st, idx, &mut out, now);
                }
            }
            if !out.is_empty() {
                drop(st);
                self.send_all(out);
                continue;
            }
            if !st.fresh.is_empty() && budget > 0 {
                continue;
            }
            // Work left for the next turn: the loop comes back at once.
            if more_mgmt || !st.fresh.is_empty() {
                st.proto_wake = Some(now);
                return now;
            }
            let next = st
                .ipcps
                .iter()
                .filter_map(|i| i.shim.poll_timeout())
                .chain(st.accept_queue.poll_timeout())
                .chain(st.shim_serving.iter().map(|(_, _, i)| i.deadline()))
                .min()
                .unwrap_or(now + Duration::from_millis(500))
                .min(now + Duration::from_millis(500));
            st.proto_wake = Some(next);
            return next;
        }
    }

    /// Starts a name query for `name` (hash `h`) on IPCP `idx`; the answer comes on `tx`
    /// (nothing when nobody answers); `Err` when too many queries wait.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn query(
        &self,
        st: &mut State,
        idx: usize,
        name: &str,
        h: &[u8],
        timeout: Duration,
        tx: std::sync::mpsc::Sender<(usize, Peer)>,
        out: &mut Outbox,
        now: Instant,
    ) -> Result<(), crate::error::FlowError> {
        let Some(i) = st.ipcps.get_mut(idx) else {
            return Err(crate::error::FlowError::Internal("IPCP vanished".into()));
        };
        // Queries whose time is up go first (the protocol thread may be asleep).
        i.shim.handle_timeout(now);
        if let Err(source) = i.shim.query(now, h.to_vec(), timeout) {
            self.counters.query_limit.fetch_add(1, Ordering::Relaxed);
            return Err(crate::error::FlowError::Layer {
                ipcp: i.name.clone(),
                source,
            });
        }
        i.query_waiters
            .entry(h.to_vec())
            .or_insert_with(|| crate::eth::PendingQuery {
                name: name.to_string(),
                waiters: Vec::new(),
            })
            .waiters
            .push(tx);
        self.pump(st, idx, out, now);
        self.wake_for(st, now + timeout);
        Ok(())
    }

    /// Wakes the event loop if it sleeps past `deadline` (a new timer of a machine).
    pub(super) fn wake_for(&self, st: &State, deadline: Instant) {
        if st.proto_wake.is_none_or(|w| deadline < w) {
            self.wake();
        }
    }
}

fn st_fresh_len(q: &VecDeque<Fresh>) -> usize {
    q.len()
}
