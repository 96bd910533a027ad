//! Broadcast layers (`[broadcast.X]`, the reference's `ipcpd-broadcast`). A broadcast IPCP
//! enrols and connects as a unicast one does (the same `o7s_proto::enroll::Connections`,
//! with the broadcast IPCP's components: Enrollment and Data Transfer), but has no
//! addresses, routing, directory or flow allocator: every SDU that comes from one of its
//! neighbours (a DT N-1 flow) or from a process that joined the layer (`Flow::join`, the
//! reference's `flow_join`) is written, unchanged and without a header, to every other
//! neighbour and every other joined process. As in the reference there is no duplicate
//! suppression: the layer's graph must be a tree.
//!
//! o7sd is the IPCP: it reads the DT N-1 flows (it is their app, as for a unicast IPCP's
//! Management flows) and the joined processes' tx rings (their kick is in the loop's epoll
//! set), and writes to the others. A joined process gets flow memory of its own, as any
//! flow, with o7sd at the other end; the rings are untrusted as everywhere (lengths
//! checked, slots copied out), a full ring drops the SDU for that reader only (counted),
//! and one turn reads at most [`TURN`] SDUs from a process, so none can hold the loop.

use super::unicast::UniIpcp;
use crate::daemon::{dup, FlowRec, Owner, State};
use crate::error::FlowError;
use crate::eth::Peer;
use crate::registry::Accepted;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use o7s::proto::FlowInfo;
use o7s::ring::{FlowMem, Kick, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE};
use o7s_abi::ring::flags;
use o7s_wire::qos::QosSpec;
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

/// The largest SDU of a broadcast layer (the reference's `BROADCAST_MTU`).
pub const BROADCAST_MTU: usize = 1400;

/// The IPCP index joined flows carry in their [`FlowRec`].
pub const JOINED_IPCP: usize = usize::MAX - 2;

/// Epoll tokens of joined processes' tx kicks start here (below the N-1 flows').
pub(super) const JOIN_TOKENS: u64 = 1 << 47;

/// SDUs read from one joined process in one turn of the loop, at most.
const TURN: usize = 256;

/// Most processes joined to one broadcast IPCP.
pub const MAX_JOINED: usize = 256;

/// Most copies for neighbours waiting for the loop to write them (at most
/// [`BROADCAST_MTU`] each: 5.7 MB). Each SDU from a neighbour is copied for every other
/// one, and the loop writes them only once it has read every event of its turn.
pub const MAX_PENDING: usize = 4096;

/// A broadcast IPCP's own state (in its [`UniIpcp`]).
#[derive(Debug, Default)]
pub struct Bcast {
    /// Its neighbours: DT N-1 flows.
    pub nbs: BTreeSet<u64>,
    /// SDUs that came from neighbours.
    pub from_nbs: u64,
    /// SDUs that came from joined processes.
    pub from_apps: u64,
    /// Copies written to neighbours.
    pub to_nbs: u64,
    /// Copies written to joined processes.
    pub to_apps: u64,
    /// Copies dropped: a joined process's ring was full.
    pub drop_full: u64,
    /// SDUs dropped: larger than [`BROADCAST_MTU`].
    pub drop_too_big: u64,
    /// Copies for neighbours dropped: [`MAX_PENDING`] already waited for the loop to
    /// write them (many neighbours flooding at once).
    pub drop_backlog: u64,
}

/// A process joined to a broadcast layer: o7sd's end of its flow.
#[derive(Debug)]
pub struct Joined {
    /// The broadcast IPCP (index in `unicast`).
    pub uni: usize,
    /// The flow id.
    pub flow: u64,
    /// Its epoll token.
    pub token: u64,
    mem: FlowMem,
    tx: Kick,
    rx: Kick,
}

/// Where an SDU came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum From {
    /// A neighbour's DT N-1 flow.
    Nb(u64),
    /// A joined process's flow.
    App(u64),
}

/// Writes `sdu` from `from` to every other neighbour (queued on `u.pending`, which the loop
/// writes to the N-1 flows) and every other process joined to IPCP `uni`.
pub(super) fn flood(u: &mut UniIpcp, uni: usize, joined: &[Joined], from: From, sdu: &[u8]) {
    let Some(b) = u.bcast.as_mut() else {
        return;
    };
    match from {
        From::Nb(_) => b.from_nbs += 1,
        From::App(_) => b.from_apps += 1,
    }
    if sdu.len() > BROADCAST_MTU {
        b.drop_too_big += 1;
        return;
    }
    for nb in &b.nbs {
        if from != From::Nb(*nb) {
            if u.pending.len() >= MAX_PENDING {
                b.drop_backlog += 1;
                continue;
            }
            b.to_nbs += 1;
            u.pending.push((*nb, sdu.to_vec()));
        }
    }
    for j in joined
        .iter()
        .filter(|j| j.uni == uni && from != From::App(j.flow))
    {
        match j.mem.ring(o7s::ring::Dir::Rx).push(sdu) {
            Ok(wake) => {
                b.to_apps += 1;
                if wake {
                    j.rx.kick();
                }
            }
            Err(_) => b.drop_full += 1,
        }
    }
}

/// Reads at most `limit` SDUs from joined flow `j`'s tx ring and floods them; rings its
/// kick again when it stopped at the limit. Returns how many it read.
fn drain_app(st: &mut State, j: usize, limit: usize) -> usize {
    let mut buf = vec![0u8; 65_536];
    let mut sdus = vec![];
    let Some(jf) = st.bc_joined.get(j) else {
        return 0;
    };
    let (uni, flow) = (jf.uni, jf.flow);
    let ring = jf.mem.ring(o7s::ring::Dir::Tx);
    loop {
        while sdus.len() < limit {
            match ring.pop(&mut buf) {
                Ok(Some(n)) => sdus.push(buf.get(..n).unwrap_or(&[]).to_vec()),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("joined flow {flow}: its ring: {e}; flow ended");
                    jf.mem.flags().fetch_or(flags::PEER_DOWN, Ordering::SeqCst);
                    break;
                }
            }
        }
        if sdus.len() >= limit {
            // More next turn: the loop must not stay on this one alone.
            jf.tx.kick();
            break;
        }
        ring.waiting().store(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if ring.is_empty() || jf.mem.flags().load(Ordering::SeqCst) & flags::PEER_DOWN != 0 {
            break;
        }
    }
    let n = sdus.len();
    if let Some(u) = st.unicast.get_mut(uni) {
        for sdu in &sdus {
            flood(u, uni, &st.bc_joined, From::App(flow), sdu);
        }
    }
    n
}

impl Owner {
    /// Creates the broadcast IPCP of a `[broadcast.X]` table: bootstrapped, or enrolling;
    /// it accepts N-1 flows for its name and its layer's.
    pub(super) fn broadcast_create(&self, i: &crate::config::IpcpConf) -> Result<(), String> {
        let mut u = UniIpcp::broadcast_base(&i.name, &i.conn);
        u.conn = o7s_proto::enroll::Connections::new(
            o7s_proto::enroll::EnrollConfig {
                broadcast: true,
                ..Default::default()
            },
            0,
            None,
        );
        u.bcast = Some(Bcast::default());
        self.uni_member(i, &mut u)?;
        let mut names = vec![i.name.clone()];
        if let (Some(layer), None) = (&i.bootstrap, &i.enrol) {
            u.conn
                .set_layer(0, o7s_wire::unicast::pb::IpcpConfigMsg::broadcast(layer));
            u.layer = Some(layer.clone());
            u.state = "bootstrapped".into();
            names.push(layer.clone());
            tracing::info!("Bootstrapped IPCP {} in broadcast layer {layer}.", i.name);
        }
        let idx = {
            let mut st = self.st();
            st.unicast.push(u);
            st.unicast.len() - 1
        };
        self.uni_accept(idx, &names);
        if let Some(dst) = &i.enrol {
            if let Some(u) = self.st().unicast.get_mut(idx) {
                u.state = format!("enrolling through {dst}");
            }
            tracing::info!("IPCP {}: enrolling through {dst}.", i.name);
            self.uni_request(super::unicast::UniRequest::Enrol {
                uni: idx,
                dst: dst.clone(),
            });
        }
        Ok(())
    }

    /// Process `pid` joins broadcast layer `layer` (or the broadcast IPCP of that name):
    /// flow memory of its own, its tx kick watched by the loop. The flow for the process.
    pub(super) fn bc_join(
        &self,
        epoll: &Epoll,
        layer: &str,
        pid: i32,
    ) -> Result<Accepted, FlowError> {
        let mut st = self.st();
        let Some(uni) = st.unicast.iter().position(|u| {
            u.bcast.is_some() && (u.layer.as_deref() == Some(layer) || u.name == layer)
        }) else {
            let known: Vec<String> = st
                .unicast
                .iter()
                .filter(|u| u.bcast.is_some())
                .map(|u| {
                    format!(
                        "{} ({})",
                        u.layer.as_deref().unwrap_or("not in a layer yet"),
                        u.name
                    )
                })
                .collect();
            return Err(FlowError::NoBroadcast(format!(
                "no broadcast layer {layer} here{}",
                if known.is_empty() {
                    " (no broadcast IPCP at all: add a [broadcast.X] table)".to_string()
                } else {
                    format!("; broadcast layers: {}", known.join(", "))
                }
            )));
        };
        let (name, joined_layer) = match st.unicast.get(uni) {
            Some(u) if u.layer.is_some() => (u.name.clone(), u.layer.clone().unwrap_or_default()),
            Some(u) => {
                return Err(FlowError::NoBroadcast(format!(
                    "broadcast IPCP {} is not in a layer yet ({})",
                    u.name, u.state
                )))
            }
            None => return Err(FlowError::Internal("broadcast IPCP gone".into())),
        };
        if st.bc_joined.iter().filter(|j| j.uni == uni).count() >= MAX_JOINED {
            return Err(FlowError::Busy(format!(
                "{MAX_JOINED} processes have joined {joined_layer} already"
            )));
        }
        let (mem, memfd) =
            FlowMem::create(DEFAULT_SLOTS, DEFAULT_SLOT_SIZE).map_err(FlowError::Memory)?;
        let (tx, rx) = (
            Kick::new().map_err(FlowError::Memory)?,
            Kick::new().map_err(FlowError::Memory)?,
        );
        // The kicks on descriptions of their own: we keep ours (a dup would share its
        // O_NONBLOCK with the process).
        let fds: Option<Vec<OwnedFd>> = [dup(&memfd), tx.share().ok(), rx.share().ok()]
            .into_iter()
            .collect();
        let fds = fds.ok_or(FlowError::Descriptors)?;
        st.next_flow += 1;
        let flow = st.next_flow;
        let token = JOIN_TOKENS + flow;
        // Kick us whenever the process writes (we never spin on its ring).
        mem.ring(o7s::ring::Dir::Tx)
            .waiting()
            .store(1, Ordering::SeqCst);
        if let Err(e) = epoll.add(tx.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)) {
            return Err(FlowError::Internal(format!(
                "cannot watch the joined flow: {e}"
            )));
        }
        st.flows.insert(
            flow,
            FlowRec {
                ipcp: JOINED_IPCP,
                local: flow,
                remote: 0,
                peer: Peer::Mac([0; 6]),
                name: joined_layer.clone(),
                side: "join",
                pid,
                qos: QosSpec::RAW,
                down: false,
                layer_peer: None,
            },
        );
        st.bc_joined.push(Joined {
            uni,
            flow,
            token,
            mem,
            tx,
            rx,
        });
        drop(st);
        self.counters.flows.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "Process {pid} joined broadcast layer {joined_layer} (IPCP {name}) on flow {flow}."
        );
        Ok(Accepted {
            info: FlowInfo {
                id: flow,
                name: joined_layer.clone(),
                qos: QosSpec::RAW,
                mtu: BROADCAST_MTU,
                layer: joined_layer,
                local: false,
                swapped: false,
            },
            flow,
            fds,
        })
    }

    /// A joined process's kick fired: what it wrote goes to the layer (at most [`TURN`]
    /// SDUs; with more waiting the kick is rung again for the next turn).
    pub(super) fn bc_app_read(&self, token: u64) {
        let mut st = self.st();
        let Some(j) = st.bc_joined.iter().position(|j| j.token == token) else {
            return;
        };
        if let Some(jf) = st.bc_joined.get(j) {
            jf.tx.drain();
        }
        let n = drain_app(&mut st, j, TURN);
        // Its ring was corrupt (drain_app said so and marked it down): the flow leaves,
        // its kick out of the loop's epoll set, rather than warn at every kick.
        let corrupt = st
            .bc_joined
            .get(j)
            .filter(|jf| jf.mem.flags().load(Ordering::SeqCst) & flags::PEER_DOWN != 0)
            .map(|jf| jf.flow);
        drop(st);
        if let Some(flow) = corrupt {
            self.bc_leave(flow);
        }
        if n > 0 {
            self.wake();
        }
    }

    /// Ends joined flow `flow`, if it is one: its memory says so to the process (woken);
    /// the loop takes its kick out of the epoll set. False if `flow` is no joined flow.
    pub(super) fn bc_leave(&self, flow: u64) -> bool {
        let mut st = self.st();
        let Some(i) = st.bc_joined.iter().position(|j| j.flow == flow) else {
            return false;
        };
        // What it wrote before it went still goes to the layer: at most a ring's worth (a
        // process that keeps writing as it goes must not keep the loop here).
        let most = st.bc_joined.get(i).map_or(0, |j| j.mem.slots() as usize);
        drain_app(&mut st, i, most);
        let j = st.bc_joined.swap_remove(i);
        st.flows.remove(&flow);
        j.mem.flags().fetch_or(flags::PEER_DOWN, Ordering::SeqCst);
        j.rx.kick();
        st.bc_left.push(j);
        drop(st);
        self.wake();
        tracing::info!("Joined flow {flow} ended.");
        true
    }

    /// Takes the kicks of joined flows that ended out of the loop's epoll set.
    pub(super) fn bc_forget_left(&self, epoll: &Epoll) {
        let left = std::mem::take(&mut self.st().bc_left);
        for j in left {
            let _ = epoll.delete(j.tx.fd());
        }
    }

    /// The `ipcp list` row of broadcast IPCP `u` (index `uni`).
    pub(super) fn bc_row(st: &State, uni: usize, u: &UniIpcp, b: &Bcast) -> serde_json::Value {
        let joined: Vec<i32> = st
            .bc_joined
            .iter()
            .filter(|j| j.uni == uni)
            .filter_map(|j| st.flows.get(&j.flow).map(|f| f.pid))
            .collect();
        serde_json::json!({"name": u.name, "type": "broadcast",
            "layer": u.layer.clone().unwrap_or("-".into()), "dev": "-", "mac": "-",
            "mtu": BROADCAST_MTU, "hash": "SHA3_256", "state": u.state, "io_path": "o7sd floods",
            "registered": Vec::<String>::new(), "address": "-",
            "neighbours": b.nbs.len(), "joined": joined.len(), "joined_pids": joined,
            "bc_from_neighbours": b.from_nbs, "bc_from_joined": b.from_apps,
            "bc_to_neighbours": b.to_nbs, "bc_to_joined": b.to_apps,
            "bc_drop_ring_full": b.drop_full, "bc_drop_too_big": b.drop_too_big,
            "bc_drop_backlog": b.drop_backlog,
            "membership": super::unicast::views::membership(u)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_for_neighbours_are_bounded_and_counted() {
        let mut u = UniIpcp::broadcast_base("b", &[]);
        let mut b = Bcast::default();
        b.nbs.extend([1, 2, 3]);
        u.bcast = Some(b);
        // Each SDU from neighbour 1 is copied for 2 and 3.
        for _ in 0..MAX_PENDING {
            flood(&mut u, 0, &[], From::Nb(1), &[7; 100]);
        }
        assert_eq!(u.pending.len(), MAX_PENDING);
        let b = u.bcast.as_ref().map(|b| (b.to_nbs, b.drop_backlog));
        assert_eq!(b, Some((MAX_PENDING as u64, MAX_PENDING as u64)));
        assert!(
            u.pending.iter().all(|(nb, _)| *nb != 1),
            "never back to its sender"
        );
        // Written by the loop: room again.
        u.pending.clear();
        flood(&mut u, 0, &[], From::Nb(2), &[7; 100]);
        assert_eq!(u.pending.len(), 2);
    }
}
