//! Unicast IPCPs in o7sd (issue 15), first slice: bootstrap and enrolment. A unicast IPCP is
//! a member of a layer that o7sd runs itself: its N-1 flows are flows o7sd allocates over its
//! eth/udp IPCPs (the same allocation job as an app's, with o7sd as the process) or accepts
//! through an internal acceptor (the IPCP's name and its layer's, bound to o7sd: the
//! reference's `autobind`). While they carry CEP and enrolment, o7sd is their app: the event
//! loop reads their rx rings when their kick fires and writes their tx rings. The protocol is
//! `o7s_proto::enroll::Connections`.
//!
//! Not yet: Management and DT connections (`conn`), link state, the DHT, the flow allocator
//! and the DT path in the workers (ARCHITECTURE.md "The unicast layer in o7sd (plan)").

use super::*;
use o7s_proto::enroll::{Connections, EnrollConfig, Event as UniEvent};
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};
use std::sync::mpsc::Receiver;

/// A unicast IPCP.
#[derive(Debug)]
pub struct UniIpcp {
    /// Its name.
    pub name: String,
    /// Its layer, once bootstrapped or enrolled.
    pub layer: Option<String>,
    /// Its address (0 until it is in a layer).
    pub addr: u64,
    /// What it is doing, for `o7sctl ipcp list`.
    pub state: String,
    /// CEP and enrolment.
    pub conn: Connections,
}

/// Work for the event loop from outside it.
#[derive(Debug)]
pub(crate) enum UniRequest {
    /// Enrol IPCP `uni` through the member named `dst`.
    Enrol { uni: usize, dst: String },
    /// IPCP `uni` accepts N-1 flows for `names` through registry acceptor `id`.
    Accept {
        uni: usize,
        names: Vec<String>,
        id: u64,
        rx: Receiver<Accepted>,
    },
}

/// An N-1 flow o7sd is the app of.
#[derive(Debug)]
pub(crate) struct N1 {
    pub uni: usize,
    pub flow: u64,
    pub mem: FlowMem,
    pub tx: Kick,
    pub rx: Kick,
}

/// A random non-zero 32-bit address: the flat address authority (facts §3.2).
fn random_addr() -> u64 {
    loop {
        let a = u64::from(rand::random::<u32>());
        if a != 0 {
            return a;
        }
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Daemon {
    /// Creates the unicast IPCP of a configuration table: bootstrapped, or enrolling.
    pub(super) fn unicast_create(&self, i: &crate::config::IpcpConf) {
        let mut uni = UniIpcp {
            name: i.name.clone(),
            layer: None,
            addr: 0,
            state: "created".into(),
            conn: Connections::new(EnrollConfig::default(), 0, None),
        };
        let idx = {
            let st = self.st();
            st.unicast.len()
        };
        let mut names = vec![i.name.clone()];
        if let (Some(layer), None) = (&i.bootstrap, &i.enrol) {
            let addr = random_addr();
            let mut conf = IpcpConfigMsg::unicast_default(layer, addr);
            // The bootstrapper's configuration names itself as the DHT peer of those it
            // enrols (facts §6.5).
            if let Some(d) = conf.unicast.as_mut().and_then(|u| u.dir.dht.as_mut()) {
                d.peer = addr;
            }
            uni.conn.set_layer(addr, conf);
            uni.addr = addr;
            uni.layer = Some(layer.clone());
            uni.state = "bootstrapped".into();
            names.push(layer.clone());
            tracing::info!(
                "Bootstrapped IPCP {} in unicast layer {layer} with address {addr:#010x}.",
                i.name
            );
        }
        self.st().unicast.push(uni);
        self.uni_accept(idx, &names);
        if let Some(dst) = &i.enrol {
            if let Some(u) = self.st().unicast.get_mut(idx) {
                u.state = format!("enrolling through {dst}");
            }
            tracing::info!("IPCP {}: enrolling through {dst}.", i.name);
            self.uni_request(UniRequest::Enrol {
                uni: idx,
                dst: dst.clone(),
            });
        }
    }

    /// IPCP `uni` accepts N-1 flows for `names` (they are bound to o7sd).
    pub(super) fn uni_accept(&self, uni: usize, names: &[String]) {
        for n in names {
            self.name_create(n, None);
        }
        let (tx, rx) = sync_channel::<Accepted>(1);
        let id = self
            .st()
            .reg
            .add_acceptor(std::process::id() as i32, names, tx);
        self.wake();
        self.uni_request(UniRequest::Accept {
            uni,
            names: names.to_vec(),
            id,
            rx,
        });
    }

    pub(super) fn uni_request(&self, r: UniRequest) {
        self.lp_uni_requests().push(r);
        self.wake();
    }

    /// An N-1 flow for IPCP `uni` (allocated by us when `ours`): o7sd is its app.
    pub(super) fn uni_flow(
        &self,
        now: Instant,
        uni: usize,
        acc: Accepted,
        ours: bool,
    ) -> Option<N1> {
        let mut fds = acc.fds.into_iter();
        let (Some(mem), Some(tx), Some(rx)) = (fds.next(), fds.next(), fds.next()) else {
            self.dealloc(acc.flow);
            return None;
        };
        let mem = match FlowMem::open(&mem) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("N-1 flow {}: its memory: {e}", acc.flow);
                self.dealloc(acc.flow);
                return None;
            }
        };
        // Kick us whenever an SDU arrives (we never spin on the ring).
        mem.ring(o7s::ring::Dir::Rx)
            .waiting()
            .store(1, Ordering::SeqCst);
        let n1 = N1 {
            uni,
            flow: acc.flow,
            mem,
            tx: Kick::from_fd(tx),
            rx: Kick::from_fd(rx),
        };
        let known = {
            let mut st = self.st();
            let u = st.unicast.get_mut(uni);
            if let Some(u) = u {
                if ours {
                    let id: [u8; 8] = rand::random();
                    u.conn.connect(now, acc.flow, Component::Enrollment, id);
                } else {
                    u.conn.accept(now, acc.flow);
                }
                true
            } else {
                false
            }
        };
        if !known {
            self.dealloc(acc.flow);
            return None;
        }
        Some(n1)
    }

    /// SDUs waiting on N-1 flow `n1` go to its IPCP's machine.
    pub(super) fn uni_read(&self, now: Instant, n1: &N1) {
        n1.rx.drain();
        let mut buf = vec![0u8; 65_536];
        let ring = n1.mem.ring(o7s::ring::Dir::Rx);
        let mut st = self.st();
        let Some(u) = st.unicast.get_mut(n1.uni) else {
            return;
        };
        loop {
            while let Ok(Some(n)) = ring.pop(&mut buf) {
                u.conn
                    .handle(now, unix_now(), n1.flow, buf.get(..n).unwrap_or(&[]));
            }
            // The data plane clears the flag when it kicks: ask again, and look once more
            // for an SDU that came in between.
            ring.waiting().store(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if ring.is_empty() {
                break;
            }
        }
    }

    /// Drains IPCP `uni`'s machine: SDUs into the N-1 flows' tx rings, events acted on.
    /// Returns the N-1 flows to close.
    pub(super) fn uni_pump(&self, now: Instant, n1s: &HashMap<u64, N1>) -> Vec<u64> {
        let mut close = vec![];
        let mut accept_more = vec![];
        let mut st = self.st();
        for (idx, u) in st.unicast.iter_mut().enumerate() {
            u.conn.handle_timeout(now);
            while let Some(t) = u.conn.poll_transmit() {
                match n1s.values().find(|n| n.flow == t.flow) {
                    Some(n) => {
                        if n.mem.ring(o7s::ring::Dir::Tx).push(&t.sdu).is_ok() {
                            n.tx.kick();
                        }
                    }
                    None => tracing::debug!("{}: N-1 flow {} is gone", u.name, t.flow),
                }
            }
            while let Some(e) = u.conn.poll_event() {
                match e {
                    UniEvent::Enrolled { conf, .. } => {
                        let addr = random_addr();
                        let layer = conf.layer_info.name.clone();
                        let mut mine = *conf;
                        if let Some(d) = mine.unicast.as_mut().and_then(|x| x.dir.dht.as_mut()) {
                            d.peer = addr;
                        }
                        u.conn.set_layer(addr, mine);
                        u.addr = addr;
                        u.layer = Some(layer.clone());
                        u.state = "enrolled".into();
                        tracing::info!(
                            "IPCP {} enrolled in unicast layer {layer} with address {addr:#010x}.",
                            u.name
                        );
                        // Others may enrol through it now (autobind: the layer's name).
                        accept_more.push((idx, vec![layer]));
                    }
                    UniEvent::Served { flow } => {
                        tracing::info!("IPCP {}: enrolment served on N-1 flow {flow}.", u.name);
                    }
                    UniEvent::Failed { flow, why } => {
                        tracing::warn!("IPCP {}: N-1 flow {flow}: {why}", u.name);
                        if u.state.starts_with("enrolling") {
                            u.state = format!("enrolment failed: {why}");
                        }
                    }
                    UniEvent::Close { flow } => close.push(flow),
                    UniEvent::Connected { .. } => {}
                }
            }
        }
        drop(st);
        for (idx, names) in accept_more {
            self.uni_accept(idx, &names);
        }
        close
    }

    /// An enrolment could not start (its N-1 flow was not allocated).
    pub(super) fn uni_failed(&self, uni: usize, why: &str) {
        if let Some(u) = self.st().unicast.get_mut(uni) {
            tracing::error!("IPCP {}: enrolment failed: {why}", u.name);
            u.state = format!("enrolment failed: {why}");
        }
    }

    /// When IPCP machines want their timers.
    pub(super) fn uni_timeout(&self) -> Option<Instant> {
        self.st()
            .unicast
            .iter()
            .filter_map(|u| u.conn.poll_timeout())
            .min()
    }

    /// `o7sctl ipcp list` rows of the unicast IPCPs.
    pub(super) fn uni_rows(&self) -> Vec<Value> {
        self.st()
            .unicast
            .iter()
            .map(|u| {
                json!({"name": u.name, "type": "unicast", "layer": u.layer.clone().unwrap_or("-".into()),
                       "dev": "-", "mac": "-", "mtu": 0, "hash": "SHA3_256", "state": u.state,
                       "io_path": "-", "registered": [], "address": format!("{:#010x}", u.addr)})
            })
            .collect()
    }
}
