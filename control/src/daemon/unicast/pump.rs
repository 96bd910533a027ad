//! The unicast IPCPs' turn in o7sd's loop: SDUs from their N-1 flows into their machines
//! (`o7s_proto::ipcp::unicast::UnicastIpcp`, the one the layer simulator runs), and what
//! the machines want done: SDUs out on the N-1 flows, events acted on (connections to
//! make, flows to close, lookups and allocations answered, requests to serve, logs).
//! Broadcast IPCPs keep their own connection machine and flood (broadcast.rs).

use crate::daemon::unicast::{
    resume::UniSaved, unix_now, UniAllocated, UniIncoming, UniIpcp, UniRequest, N1, N1_TURN,
    NEIGHBOUR_RATE,
};
use crate::daemon::Owner;
use o7s_proto::dht;
use o7s_proto::enroll::Event as ConnEvent;
use o7s_proto::fa;
use o7s_proto::ipcp::unicast::Event;
use o7s_wire::unicast::pb::Component;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a turn of the machines asks of the daemon beyond the IPCP itself.
#[derive(Debug, Default)]
struct Asks {
    /// N-1 flows to close.
    close: Vec<u64>,
    /// IPCPs that accept N-1 flows for these names now (autobind: the layer's name).
    accept_more: Vec<(usize, Vec<String>)>,
    /// Connections to make: (IPCP, member, component).
    connect: Vec<(usize, String, Component)>,
    /// An allocation waiting in the loop got its answer.
    woke: bool,
}

impl Owner {
    /// SDUs waiting on N-1 flow `n1` go to its IPCP's machine.
    pub(in crate::daemon) fn uni_read(&self, now: Instant, n1: &N1) {
        n1.rx.drain();
        let mut buf = vec![0u8; 65_536];
        let ring = n1.mem.ring(o7s::ring::Dir::Rx);
        let unix = unix_now();
        let mut guard = self.st();
        let st = &mut *guard;
        let Some(u) = st.unicast.get_mut(n1.uni) else {
            return;
        };
        let mut taken = 0usize;
        // A unicast IPCP's SDUs go to its machine together (it works out what they make
        // it do once).
        let mut batch: Vec<Vec<u8>> = Vec::new();
        loop {
            if taken >= N1_TURN {
                // A neighbour that keeps its ring full must not hold the loop (and the
                // state's lock): the rest next turn (our own kick brings us back).
                n1.rx.kick();
                break;
            }
            while taken < N1_TURN {
                let Ok(Some(n)) = ring.pop(&mut buf) else {
                    break;
                };
                taken += 1;
                let sdu = buf.get(..n).unwrap_or(&[]);
                if u.m.is_some() {
                    batch.push(sdu.to_vec());
                } else {
                    let (joined, uni) = (&st.bc_joined, n1.uni);
                    bc_read(u, joined, uni, now, unix, n1.flow, sdu);
                }
            }
            // The machine bounds each neighbour (its budget), follows CEP updates, takes
            // LSAs, DT PDUs for its components, and forwards the others.
            if let Some(m) = u.m.as_mut() {
                m.handle_sdus(now, unix, n1.flow, batch.iter().map(Vec::as_slice));
                batch.clear();
            }
            if taken >= N1_TURN {
                continue;
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

    /// Drains the IPCPs' machines: SDUs into the N-1 flows' tx rings, events acted on.
    /// Returns the N-1 flows to close.
    pub(super) fn uni_pump(
        &self,
        now: Instant,
        n1s: &HashMap<u64, N1>,
        incoming: &mut Vec<UniIncoming>,
    ) -> Vec<u64> {
        let mut asks = Asks::default();
        let mut st = self.st();
        let dp_adopted = st.dp_adopted;
        // N-1 flows whose peer timed out (or that were freed elsewhere): their machine
        // forgets them (link state drops the own link; the others age it out).
        let lost: Vec<(usize, u64)> = n1s
            .values()
            .filter(|n| st.flows.get(&n.flow).is_none_or(|f| f.down))
            .map(|n| (n.uni, n.flow))
            .collect();
        for (uni, flow) in lost {
            let Some(u) = st.unicast.get_mut(uni) else {
                continue;
            };
            match u.m.as_mut() {
                Some(m) => m.flow_down(now, flow),
                None => {
                    u.conn.flow_down(flow);
                    u.budgets.remove(&flow);
                    if let Some(b) = u.bcast.as_mut() {
                        b.nbs.remove(&flow);
                    }
                }
            }
            if u.disconnected.remove(&flow) {
                tracing::info!(
                    "IPCP {}: N-1 flow {flow} closed (o7sctl ipcp disconnect).",
                    u.name
                );
            } else {
                tracing::warn!("IPCP {}: N-1 flow {flow} is down.", u.name);
            }
            asks.close.push(flow);
        }
        // The N-1 flows by flow id, made once a pump when something is to be sent (a
        // broadcast IPCP may send thousands of copies in one).
        let mut by_flow: Option<HashMap<u64, &N1>> = None;
        for (idx, u) in st.unicast.iter_mut().enumerate() {
            let mut out: Vec<(u64, Vec<u8>)> = vec![];
            match u.m.as_mut() {
                Some(m) => {
                    if m.poll_timeout().is_some_and(|t| t <= now) {
                        m.handle_timeout(now);
                    }
                    while let Some(t) = m.poll_transmit() {
                        out.push((t.flow, t.sdu));
                    }
                    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
                    for e in events {
                        on_event(u, idx, now, dp_adopted, e, &mut asks);
                    }
                }
                None => {
                    u.conn.handle_timeout(now);
                    while let Some(t) = u.conn.poll_transmit() {
                        out.push((t.flow, t.sdu));
                    }
                    out.append(&mut u.pending);
                    while let Some(e) = u.conn.poll_event() {
                        bc_event(u, idx, e, &mut asks);
                    }
                }
            }
            for mut r in std::mem::take(&mut u.incoming) {
                r.uni = idx;
                incoming.push(r);
            }
            let by_flow = match &mut by_flow {
                Some(m) => m,
                None if out.is_empty() => continue,
                None => by_flow.insert(n1s.values().map(|n| (n.flow, n)).collect()),
            };
            for (flow, sdu) in out {
                match by_flow.get(&flow) {
                    Some(n) => {
                        if n.mem.ring(o7s::ring::Dir::Tx).push(&sdu).is_ok() {
                            n.tx.kick();
                        } else {
                            // (A new neighbour's whole LSDB at once can overflow it; the
                            // owners' refreshes fill the gap within `t_update`.)
                            u.n1_tx_dropped += 1;
                        }
                    }
                    None => tracing::debug!("{}: N-1 flow {flow} is gone", u.name),
                }
            }
        }
        drop(st);
        self.uni_after_pump(now);
        if asks.woke {
            self.wake();
        }
        for (idx, names) in asks.accept_more {
            self.uni_accept(idx, &names);
        }
        for (uni, dst, comp) in asks.connect {
            self.uni_request(UniRequest::Connect { uni, dst, comp });
        }
        asks.close
    }
}

/// Acts on an event of unicast IPCP `u`'s machine (index `idx`).
fn on_event(
    u: &mut UniIpcp,
    idx: usize,
    now: Instant,
    dp_adopted: bool,
    e: Event,
    asks: &mut Asks,
) {
    let _ = now;
    match e {
        Event::InLayer { addr } => in_layer(u, idx, dp_adopted, addr, asks),
        Event::Served { flow } => {
            tracing::info!("IPCP {}: enrolment served on N-1 flow {flow}.", u.name);
        }
        // Members cause these at will: at most `wire_log`'s lines a second.
        Event::Failed { flow, why } => {
            crate::wire_log!(warn, "IPCP {}: N-1 flow {flow}: {why}", u.name);
            if u.state.starts_with("enrolling") {
                u.state = format!("enrolment failed: {why}");
            }
        }
        Event::Close { flow } => asks.close.push(flow),
        Event::ClaimRefused { flow, addr } => crate::wire_log!(
            warn,
            "IPCP {}: N-1 flow {flow} named address {addr:#010x}, which is 0, ours, or a DT neighbour's on another link: refused (counted in ipcp list, address_claims_refused).",
            u.name
        ),
        Event::Connected {
            flow,
            comp,
            peer_addr,
        } => tracing::info!(
            "IPCP {}: {} connected to {peer_addr:#010x} on N-1 flow {flow}.",
            u.name,
            comp.comp_name()
        ),
        Event::Moved { old, new } => {
            u.addr = new;
            tracing::warn!(
                "IPCP {}: another IPCP in layer {} has our address {old:#010x} and is as old or older: we move to {new:#010x}. Our Management neighbours are told, our names are published again; flows over the layer to this IPCP end when their peers' PDUs stop (the peers know the old address).",
                u.name,
                u.layer.as_deref().unwrap_or("-"),
            );
        }
        Event::CollisionKept => crate::wire_log!(
            warn,
            "IPCP {}: another IPCP in layer {} announces links from our address {:#010x}: an address collision. It is younger (its links have lower seqnos): we keep the address and it should move (counted in ipcp list, address_collisions).",
            u.name,
            u.layer.as_deref().unwrap_or("-"),
            u.addr
        ),
        // From LSAs and CEPs of members: at most `wire_log`'s lines a second.
        Event::ReaddressHeld => crate::wire_log!(
            warn,
            "IPCP {}: another IPCP in layer {} announces our address {:#010x} again, within {:?} of our last move: we stay (counted in ipcp list, readdress_held).",
            u.name,
            u.layer.as_deref().unwrap_or("-"),
            u.addr,
            super::READDRESS_HOLD
        ),
        Event::NeighbourMoved {
            flow,
            old,
            new,
            moved,
        } => crate::wire_log!(
            info,
            "IPCP {}: neighbour {old:#010x} moved to address {new:#010x} (said on N-1 flow {flow}; N-1 flows {moved:?} follow).",
            u.name
        ),
        // The forwarding table is compared whole each turn (tend.rs `uni_tables`).
        Event::TableChanged => {}
        Event::Dir(dht::Event::Found { id, addrs, .. }) => {
            if let Some(w) = u.lookups.remove(&id) {
                asks.woke = true;
                let _ = w.send(addrs);
            }
        }
        Event::Dir(dht::Event::NotFound { id, .. }) => {
            if let Some(w) = u.lookups.remove(&id) {
                asks.woke = true;
                let _ = w.send(vec![]);
            }
        }
        Event::Dir(dht::Event::ProofRefused { from, addr, why }) => {
            // Logged at the first, second, fourth, ... refusal: every one is counted
            // (`dht_proofs_refused`), the log stays bounded.
            u.proofs_refused_logged += 1;
            let n = u.proofs_refused_logged;
            if n.is_power_of_two() {
                tracing::warn!(
                    "IPCP {}: a directory entry for {addr:#010x} from {from:#010x} ignored: {why} ({n} so far).",
                    u.name
                );
            }
        }
        Event::Fa(fa::Event::Allocated {
            id,
            local,
            remote,
            peer,
            oap,
        }) => {
            if let Some(w) = u.fa_waiters.remove(&id) {
                asks.woke = true;
                let taken = w.send(Ok(UniAllocated {
                    local,
                    remote,
                    peer,
                    oap,
                }));
                if taken.is_err() {
                    if let Some(m) = u.m.as_mut() {
                        m.release_flow(local);
                    }
                }
            }
        }
        Event::Fa(fa::Event::AllocFailed { id, error }) => {
            if let Some(w) = u.fa_waiters.remove(&id) {
                asks.woke = true;
                let _ = w.send(Err(error));
            }
        }
        Event::Fa(fa::Event::Incoming {
            req,
            peer,
            hash,
            qos,
            oap,
        }) => u.incoming.push(UniIncoming {
            uni: idx,
            req,
            peer,
            hash,
            qos,
            oap,
        }),
        Event::Fa(_) => {}
        Event::SignFailed { key, why } => tracing::error!(
            "IPCP {}: cannot sign the directory entry of {}: {why}; not published.",
            u.name,
            name_of(u, &key)
        ),
        Event::DirForgotten { addr, values } => {
            if values > 0 {
                tracing::info!(
                    "IPCP {}: address {addr:#x} left the layer: {values} directory value(s) naming it dropped.",
                    u.name
                );
            }
        }
        Event::DirRejoined { addr } => tracing::info!(
            "IPCP {}: {addr:#x}, a member the directory had dropped, is reachable again (a healed layer): the directory rejoins through it.",
            u.name
        ),
    }
}

/// The name (of those the IPCP publishes) whose hash is `key`, else the key in hex.
fn name_of(u: &UniIpcp, key: &[u8]) -> String {
    u.reg
        .iter()
        .find(|n| o7s_wire::hash::HashAlgo::Sha3_256.hash(n) == key)
        .cloned()
        .unwrap_or_else(|| hex::encode(key))
}

/// Unicast IPCP `u` is in its layer at `addr` (bootstrapped, or enrolled: then it
/// connects to the members it is to, unless it resumed with its connections).
fn in_layer(u: &mut UniIpcp, idx: usize, dp_adopted: bool, addr: u64, asks: &mut Asks) {
    let layer =
        u.m.as_ref()
            .and_then(|m| m.layer_conf())
            .map(|c| c.layer_info.name.clone())
            .unwrap_or_default();
    u.addr = addr;
    // A restarted o7sd that adopted the data plane: the saved state is claimed after
    // this turn (resume.rs) when it is of this layer and address.
    if let Some(s) = u.resume_saved.take() {
        if dp_adopted && s.layer == layer && s.addr == addr {
            u.resume = Some(s);
        } else {
            tracing::info!(
                "IPCP {}: nothing to resume (saved state of layer {} at {:#x}).",
                u.name,
                s.layer,
                s.addr
            );
        }
    }
    if u.state == "bootstrapped" {
        return;
    }
    u.layer = Some(layer.clone());
    u.state = "enrolled".into();
    // conn: Management first, then DT (as the reference); a resumed IPCP has its
    // connections back.
    let resumed = u
        .resume
        .as_ref()
        .is_some_and(|s: &UniSaved| !s.conns.is_empty());
    for dst in u.conn_to.iter().filter(|_| !resumed) {
        for comp in [Component::Management, Component::DataTransfer] {
            asks.connect.push((idx, dst.clone(), comp));
        }
    }
    tracing::info!(
        // (The layer's name comes from the enroller: quoted, its control characters
        // escaped.)
        "IPCP {} enrolled in unicast layer {layer:?} with address {addr:#010x}.",
        u.name
    );
    // Others may enrol through it now (autobind: the layer's name).
    asks.accept_more.push((idx, vec![layer]));
}

/// An SDU on a broadcast IPCP's N-1 flow: a DT neighbour's (within its budget) is
/// flooded, the rest is its connection machine's.
fn bc_read(
    u: &mut UniIpcp,
    joined: &[super::super::broadcast::Joined],
    uni: usize,
    now: Instant,
    unix: o7s_proto::machine::UnixTime,
    flow: u64,
    sdu: &[u8],
) {
    match u.conn.connected(flow) {
        Some((Component::DataTransfer, _)) => {
            let within = u
                .budgets
                .entry(flow)
                .or_insert_with(|| o7s_proto::budget::Bucket::full(NEIGHBOUR_RATE, now))
                .take(NEIGHBOUR_RATE, now);
            if within {
                super::super::broadcast::flood(
                    u,
                    uni,
                    joined,
                    super::super::broadcast::From::Nb(flow),
                    sdu,
                );
            } else {
                u.dt_rate_dropped += 1;
            }
        }
        _ => u.conn.handle(now, unix, flow, sdu),
    }
}

/// An event of a broadcast IPCP's connection machine.
fn bc_event(u: &mut UniIpcp, idx: usize, e: ConnEvent, asks: &mut Asks) {
    match e {
        ConnEvent::Enrolled { conf, .. } => {
            let layer = conf.layer_info.name.clone();
            u.conn.set_layer(0, *conf);
            u.layer = Some(layer.clone());
            u.state = "enrolled".into();
            // A broadcast IPCP has one component to connect: Data Transfer.
            for dst in &u.conn_to {
                asks.connect
                    .push((idx, dst.clone(), Component::DataTransfer));
            }
            tracing::info!("IPCP {} enrolled in broadcast layer {layer}.", u.name);
            asks.accept_more.push((idx, vec![layer]));
        }
        ConnEvent::Served { flow } => {
            tracing::info!("IPCP {}: enrolment served on N-1 flow {flow}.", u.name);
        }
        ConnEvent::Failed { flow, why } => {
            crate::wire_log!(warn, "IPCP {}: N-1 flow {flow}: {why}", u.name);
            if u.state.starts_with("enrolling") {
                u.state = format!("enrolment failed: {why}");
            }
        }
        ConnEvent::Close { flow } => asks.close.push(flow),
        ConnEvent::Connected {
            flow,
            comp,
            peer_addr,
        } => {
            tracing::info!(
                "IPCP {}: {} connected to {peer_addr:#010x} on N-1 flow {flow}.",
                u.name,
                comp.comp_name()
            );
            if let (Some(b), Component::DataTransfer) = (u.bcast.as_mut(), comp) {
                b.nbs.insert(flow);
            }
        }
        ConnEvent::Readdressed { .. } => {}
    }
}
