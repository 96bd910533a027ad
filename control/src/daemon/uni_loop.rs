//! The event loop's part for unicast IPCPs: their N-1 flows (o7sd is their app), the
//! allocations of N-1 flows in progress, internal acceptors, flows over the layer that o7sd
//! serves, and the machines' output.

use super::alloc::{AllocJob, Step};
use super::*;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use o7s_wire::unicast::pb::Component;
use std::sync::mpsc::{Receiver, TryRecvError};

/// Epoll tokens of N-1 flows of unicast IPCPs start here.
pub(super) const N1_TOKENS: u64 = 1 << 48;
/// Epoll tokens of flows over unicast IPCPs (o7sd serves their SDUs) start here.
pub(super) const N1P_TOKENS: u64 = 1 << 49;

/// The unicast IPCPs' part of the loop: N-1 flows o7sd is the app of, allocations of
/// N-1 flows in progress, internal acceptors.
#[derive(Debug, Default)]
pub(super) struct UniLoop {
    pub(super) n1s: HashMap<u64, super::unicast::N1>,
    pub(super) next: u64,
    pub(super) jobs: Vec<(usize, Component, AllocJob)>,
    pub(super) acceptors: Vec<(usize, Vec<String>, u64, Receiver<Accepted>)>,
    /// Flows over unicast IPCPs, by token.
    pub(super) flows: HashMap<u64, super::uni_flows::UniFlowP>,
    /// Such flows set up by allocations, to watch.
    pub(super) new_flows: Vec<super::uni_flows::UniFlowP>,
    /// Flow requests from peer IPCPs waiting for a process to accept: (request, name, OAP
    /// response, deadline), in arrival order.
    pub(super) waiting:
        std::collections::VecDeque<(super::unicast::UniIncoming, String, Vec<u8>, Instant)>,
}

/// Flow requests from peer IPCPs that may wait for an acceptor, at most.
const MAX_UNI_WAITING: usize = 256;

impl Daemon {
    /// The unicast IPCPs' work: requests, allocations of N-1 flows, flows for internal
    /// acceptors, their machines' output and timers.
    pub(super) fn tend_uni(&self, epoll: &Epoll, u: &mut UniLoop, now: Instant) {
        use super::unicast::UniRequest;
        let reqs = std::mem::take(&mut *self.lp_uni_requests());
        let mut got: Vec<(usize, Accepted, Option<Component>)> = vec![];
        for r in reqs {
            match r {
                UniRequest::Enrol { uni, dst } => {
                    self.uni_alloc(u, &mut got, uni, &dst, Component::Enrollment)
                }
                UniRequest::Connect { uni, dst, comp } => {
                    self.uni_alloc(u, &mut got, uni, &dst, comp)
                }
                UniRequest::Accept { uni, names, id, rx } => u.acceptors.push((uni, names, id, rx)),
            }
        }
        for (uni, comp, job) in std::mem::take(&mut u.jobs) {
            match self.alloc_poll(job, now) {
                Step::Done(Ok(acc)) => got.push((uni, acc, Some(comp))),
                Step::Done(Err(e)) => self.uni_failed(uni, comp, &e.to_string()),
                Step::Pending(job) => u.jobs.push((uni, comp, job)),
            }
        }
        let mut again = vec![];
        u.acceptors
            .retain(|(uni, names, _, rx)| match rx.try_recv() {
                Ok(acc) => {
                    got.push((*uni, acc, None));
                    again.push((*uni, names.clone()));
                    false
                }
                Err(TryRecvError::Empty) => true,
                Err(TryRecvError::Disconnected) => false,
            });
        for (uni, names) in again {
            self.uni_accept(uni, &names);
        }
        for (uni, acc, ours) in got {
            if let Some(n1) = self.uni_flow(now, uni, acc, ours) {
                let token = N1_TOKENS + u.next;
                u.next += 1;
                match epoll.add(n1.rx.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)) {
                    Ok(()) => {
                        // SDUs may have come before the flow was watched.
                        self.uni_read(now, &n1);
                        u.n1s.insert(token, n1);
                    }
                    Err(e) => {
                        tracing::warn!("N-1 flow {}: cannot watch it: {e}", n1.flow);
                        self.dealloc(n1.flow);
                    }
                }
            }
        }
        let mut incoming = vec![];
        let closing = self.uni_pump(now, &u.n1s, &mut incoming);
        for r in incoming {
            if let Some((name, resp)) = self.uni_check(&r) {
                if u.waiting.len() >= MAX_UNI_WAITING {
                    self.counters.flow_req_busy.fetch_add(1, Ordering::Relaxed);
                    self.uni_refuse(&r, "too many requests wait for an acceptor");
                } else {
                    let deadline = now + self.settings.accept_wait;
                    u.waiting.push_back((r, name, resp, deadline));
                }
            }
        }
        // In arrival order; a name with no process in accept keeps its place.
        for (r, name, resp, deadline) in std::mem::take(&mut u.waiting) {
            match self.uni_serve(r, &name, &resp) {
                Ok(Some(fp)) => u.new_flows.push(fp),
                Ok(None) => {}
                Err(r) if now >= deadline => {
                    self.uni_refuse(&r, &format!("no process accepts flows for {name}"));
                }
                Err(r) => u.waiting.push_back((r, name, resp, deadline)),
            }
        }
        for fp in std::mem::take(&mut u.new_flows) {
            let token = N1P_TOKENS + u.next;
            u.next += 1;
            match epoll.add(
                fp.from_app.fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, token),
            ) {
                Ok(()) => {
                    u.flows.insert(token, fp);
                }
                Err(e) => {
                    tracing::warn!("flow {}: cannot watch it: {e}", fp.flow);
                    self.dealloc(fp.flow);
                }
            }
        }
        self.uni_to_apps(&u.flows);
        // Flows whose app went (or that were freed): their endpoint ids go back.
        let gone: Vec<u64> = {
            let st = self.st();
            u.flows
                .iter()
                .filter(|(_, f)| !st.flows.contains_key(&f.flow))
                .map(|(t, _)| *t)
                .collect()
        };
        for t in gone {
            if let Some(f) = u.flows.remove(&t) {
                let _ = epoll.delete(f.from_app.fd());
                if let Some(fa) = self.st().unicast.get_mut(f.uni).and_then(|x| x.fa.as_mut()) {
                    fa.release(f.local);
                }
            }
        }
        for flow in closing {
            let token = u.n1s.iter().find(|(_, n)| n.flow == flow).map(|(t, _)| *t);
            if let Some(n1) = token.and_then(|t| u.n1s.remove(&t)) {
                let _ = epoll.delete(n1.rx.fd());
            }
            self.dealloc(flow);
        }
    }

    /// Starts allocating an N-1 flow to `dst` for component `comp` of IPCP `uni`.
    fn uni_alloc(
        &self,
        u: &mut UniLoop,
        got: &mut Vec<(usize, Accepted, Option<Component>)>,
        uni: usize,
        dst: &str,
        comp: Component,
    ) {
        let pid = std::process::id() as i32;
        match self.alloc_start(dst, QosSpec::RAW, Duration::from_secs(20), pid) {
            Step::Done(Ok(acc)) => got.push((uni, acc, Some(comp))),
            Step::Done(Err(e)) => self.uni_failed(uni, comp, &e.to_string()),
            Step::Pending(job) => u.jobs.push((uni, comp, job)),
        }
    }
}
