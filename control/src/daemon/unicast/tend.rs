//! The event loop's part for unicast IPCPs: their N-1 flows (o7sd is their app), the
//! allocations of N-1 flows in progress, internal acceptors, flows over the layer that o7sd
//! serves, and the machines' output.

use super::super::alloc::{AllocJob, Step};
use crate::daemon::Owner;
use crate::registry::Accepted;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use o7s_abi::msg::ToDp;
use o7s_wire::qos::QosSpec;
use o7s_wire::unicast::pb::Component;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Epoll tokens of N-1 flows of unicast IPCPs start here.
pub(in crate::daemon) const N1_TOKENS: u64 = 1 << 48;

/// The unicast IPCPs' part of the loop: N-1 flows o7sd is the app of, allocations of
/// N-1 flows in progress, internal acceptors.
#[derive(Debug, Default)]
pub(in crate::daemon) struct UniLoop {
    pub(in crate::daemon) n1s: HashMap<u64, super::N1>,
    pub(in crate::daemon) next: u64,
    pub(in crate::daemon) jobs: Vec<(usize, Component, AllocJob)>,
    pub(in crate::daemon) acceptors: Vec<(usize, Vec<String>, u64, Receiver<Accepted>)>,
    /// Flows over unicast IPCPs (the data plane moves their SDUs), by flow id.
    pub(in crate::daemon) flows: HashMap<u64, super::flows::UniFlowP>,
    /// Such flows set up by allocations, to watch.
    pub(in crate::daemon) new_flows: Vec<super::flows::UniFlowP>,
    /// Flow requests from peer IPCPs waiting for a process to accept: (request, what its
    /// checks gave, deadline), in arrival order.
    pub(in crate::daemon) waiting:
        std::collections::VecDeque<(super::UniIncoming, super::flows::UniChecked, Instant)>,
    /// Names whose program o7sd started for a request over the layer, and when (one
    /// start per name while it has not had `--autostart-wait` to accept).
    pub(in crate::daemon) starting: HashMap<String, Instant>,
    /// Accepted flows the data plane is installing (their processes get them then).
    pub(in crate::daemon) serving: Vec<super::flows::UniServing>,
}

/// Flow requests from peer IPCPs that may wait for an acceptor, at most.
const MAX_UNI_WAITING: usize = 256;

impl Owner {
    /// The unicast IPCPs' work: requests, allocations of N-1 flows, flows for internal
    /// acceptors, their machines' output and timers.
    pub(in crate::daemon) fn tend_uni(&self, epoll: &Epoll, u: &mut UniLoop, now: Instant) {
        use super::UniRequest;
        let reqs = std::mem::take(&mut *self.uni_requests.borrow_mut());
        let mut got: Vec<(usize, Accepted, Option<Component>)> = vec![];
        for r in reqs {
            match r {
                UniRequest::Enrol { uni, dst } => {
                    self.uni_alloc(u, &mut got, uni, &dst, Component::Enrollment, now)
                }
                UniRequest::Connect { uni, dst, comp } => {
                    self.uni_alloc(u, &mut got, uni, &dst, comp, now)
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
        // N-1 flows of resumed IPCPs: read from now on.
        let adopted_n1 = std::mem::take(&mut self.st().n1_adopted);
        for n1 in adopted_n1 {
            let token = N1_TOKENS + u.next;
            u.next += 1;
            match epoll.add(n1.rx.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)) {
                Ok(()) => {
                    self.uni_read(now, &n1);
                    u.n1s.insert(token, n1);
                }
                Err(e) => {
                    tracing::warn!("N-1 flow {}: cannot watch it: {e}", n1.flow);
                    self.dealloc(n1.flow);
                }
            }
        }
        self.bc_forget_left(epoll);
        let mut incoming = vec![];
        let closing = self.uni_pump(now, &u.n1s, &mut incoming);
        for r in incoming {
            if let Some(c) = self.uni_check(&r, now) {
                if u.waiting.len() >= MAX_UNI_WAITING {
                    self.counters.flow_req_busy.fetch_add(1, Ordering::Relaxed);
                    self.uni_refuse(
                        &r,
                        o7s_proto::refusal::Refusal::Busy,
                        "too many requests wait for an acceptor",
                        now,
                    );
                } else {
                    let deadline = now + self.settings.accept_wait;
                    u.waiting.push_back((r, c, deadline));
                }
            }
        }
        // In arrival order; a name with no process in accept keeps its place, and its
        // program is started when it has one to auto-start (as on the eth and udp layers).
        let wait = self.settings.autostart_wait;
        u.starting
            .retain(|_, t| now.saturating_duration_since(*t) < wait);
        for (r, c, deadline) in std::mem::take(&mut u.waiting) {
            match self.uni_serve(r, &c, now) {
                Ok(Some(sv)) => u.serving.push(sv),
                Ok(None) => {}
                Err(r) if now >= deadline => {
                    use o7s_proto::refusal::Refusal;
                    let auto = self.st().reg.auto_prog(&c.name);
                    let cause = match auto {
                        Some(p) if !p.startable() => Refusal::NoProgram,
                        _ => Refusal::NoAcceptor,
                    };
                    let why = self.why_no_acceptor(&c.name);
                    self.uni_refuse(&r, cause, &format!("{}: {why}", c.name), now);
                }
                Err(r) => {
                    let mut deadline = deadline;
                    // A program that cannot start is not tried at every turn: the refusal
                    // says why.
                    let auto = self
                        .st()
                        .reg
                        .auto_prog(&c.name)
                        .is_some_and(|p| p.startable());
                    if auto && !u.starting.contains_key(&c.name) && self.start_program(&c.name) {
                        u.starting.insert(c.name.clone(), now);
                    }
                    if u.starting.contains_key(&c.name) {
                        deadline = deadline.max(now + wait);
                    }
                    u.waiting.push_back((r, c, deadline));
                }
            }
        }
        // Accepted flows whose installation the data plane acknowledged go to their
        // processes; the loop does not wait for it.
        for sv in std::mem::take(&mut u.serving) {
            match self.uni_serving_poll(sv, now) {
                super::flows::ServeStep::Done(fp) => u.new_flows.push(fp),
                super::flows::ServeStep::Waiting(sv) => u.serving.push(*sv),
                super::flows::ServeStep::Failed => {}
            }
        }
        let adopted = std::mem::take(&mut self.st().uni_flows_adopted);
        for fp in std::mem::take(&mut u.new_flows).into_iter().chain(adopted) {
            u.flows.insert(fp.flow, fp);
        }
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
                if let Some(m) = self.st().unicast.get_mut(f.uni).and_then(|x| x.m.as_mut()) {
                    m.release_flow(f.local);
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
        self.uni_tables(now);
    }

    /// Sends each unicast IPCP's forwarding state to the data plane when it changed: its
    /// address, the N-1 flow of the next hop towards every destination (the first that is
    /// up, under LFA and ECMP), its DT N-1 flows.
    fn uni_tables(&self, now: Instant) {
        let mut send = vec![];
        for (i, u) in self.st().unicast.iter_mut().enumerate() {
            let Some(ls) = u.ls() else {
                continue;
            };
            let dt_nb = u.dt_nb();
            let mut nb: Vec<(u64, u64)> = dt_nb.iter().map(|(a, f)| (*a, *f)).collect();
            nb.sort_unstable();
            let from = (ls.generation(), ls.addr(), nb);
            let (own, t_update) = (ls.addr(), ls.t_update());
            let reasserted = ls.counters().reasserted;
            if u.adopt_hold.is_some() || u.dp_table_from.as_ref() != Some(&from) {
                let mut next_hop: Vec<(u32, u64)> = ls
                    .table()
                    .keys()
                    .filter_map(|dst| {
                        // The first next hop whose DT N-1 flow is up: the primary, else (LFA,
                        // ECMP) an alternate, at once, without waiting for the recomputation.
                        let f = ls
                            .next_hops(*dst)
                            .into_iter()
                            .find_map(|hop| dt_nb.get(&hop))?;
                        Some((*dst as u32, *f))
                    })
                    .collect();
                // A neighbour is its own next hop (also before the LSAs name it).
                for (a, f) in &dt_nb {
                    if !next_hop.iter().any(|(d, _)| u64::from(*d) == *a) {
                        next_hop.push((*a as u32, *f));
                    }
                }
                next_hop.sort_unstable();
                // Retiring DT flows still deliver what is in flight on them.
                let mut n1: Vec<u64> = dt_nb.values().copied().collect();
                n1.sort_unstable();
                n1.dedup();
                // Resuming: the adopted table's routes fill this one's gaps until it has none.
                if let Some((until, old)) = &u.adopt_hold {
                    let alive = |f: u64| n1.contains(&f);
                    let complete = super::resume::fill_gaps(&mut next_hop, old, alive);
                    if complete || now >= *until {
                        tracing::info!(
                            "IPCP {}: its own forwarding table ({} destinations) replaces the adopted one{}.",
                            u.name,
                            next_hop.len(),
                            if complete { "" } else { " (hold over)" }
                        );
                        u.adopt_hold = None;
                    }
                }
                // (Destinations that leave and come back: the machine's departures.)
                let table = (own as u32, next_hop, n1);
                u.dp_table_from = Some(from);
                if u.dp_table.as_ref() != Some(&table) {
                    u.dp_table = Some(table.clone());
                    u.save_due = true;
                    send.push(ToDp::UniTable {
                        ipcp: i as u32,
                        own: table.0,
                        next_hop: table.1,
                        n1: table.2,
                    });
                }
            }
            // What a restarted o7sd needs to resume this IPCP: at each change of the
            // table or of the connections, and twice per update period (our links'
            // seqnos move on).
            let conns: Vec<(u64, String, u64)> = u
                .connections()
                .connections()
                .into_iter()
                .map(|(f, c, a)| (f, c.comp_name().to_string(), a))
                .collect();
            let since = |gap: Duration| {
                u.saved_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= gap)
            };
            // (Our links' seqnos moved out of turn: saved as a table change is.)
            let moved = reasserted != u.saved_reasserted;
            let stale = u.saved_conns != conns
                || ((u.save_due || moved) && since(Duration::from_secs(1)))
                || since(t_update / 2);
            if stale {
                if let Some(layer) = u.layer.clone().filter(|_| u.bcast.is_none()) {
                    u.saved_at = Some(now);
                    u.save_due = false;
                    u.saved_reasserted = reasserted;
                    u.saved_conns = conns.clone();
                    super::resume::save(
                        &self.settings.rundir,
                        &u.name,
                        &super::resume::UniSaved {
                            index: i,
                            layer,
                            addr: u.addr,
                            conns,
                            lsdb: u.ls().map(|l| l.lsdb()).unwrap_or_default(),
                            next_hop: u.dp_table.as_ref().map(|t| t.1.clone()).unwrap_or_default(),
                            dp: self.dp.pid(),
                        },
                    );
                }
            }
        }
        for m in send {
            self.dp.send(&m, &[]);
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
        now: Instant,
    ) {
        let pid = std::process::id() as i32;
        let member = self.st().unicast.get(uni).and_then(|x| x.member.clone());
        match self.alloc_start_as(dst, QosSpec::RAW, Duration::from_secs(20), pid, member, now) {
            Step::Done(Ok(acc)) => got.push((uni, acc, Some(comp))),
            Step::Done(Err(e)) => self.uni_failed(uni, comp, &e.to_string()),
            Step::Pending(job) => u.jobs.push((uni, comp, job)),
        }
    }
}
