//! The unicast IPCPs' turn in o7sd's loop: SDUs from their N-1 flows into their machines, and
//! what the machines want done (SDUs out, enrolment and connection events, flows closed).

use crate::daemon::unicast::{
    ls_config, new_dht, unix_now, UniIncoming, UniRequest, DHT_AGAIN, DHT_RETRY, N1, N1_TURN,
    NEIGHBOUR_RATE,
};
use crate::daemon::Daemon;
use o7s_proto::enroll::Connections;
use o7s_proto::enroll::Event as UniEvent;
use o7s_proto::fa::{Fa, FaConfig};
use o7s_proto::linkstate::LinkState;
use o7s_wire::unicast::pb::Component;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Daemon {
    /// SDUs waiting on N-1 flow `n1` go to its IPCP's machine.
    pub(in crate::daemon) fn uni_read(&self, now: Instant, n1: &N1) {
        n1.rx.drain();
        let mut buf = vec![0u8; 65_536];
        let ring = n1.mem.ring(o7s::ring::Dir::Rx);
        // PDUs for other IPCPs: (next-hop N-1 flow, PDU), written after the lock.
        let mut fwd: Vec<(u64, Vec<u8>)> = vec![];
        // A neighbour's new address (a Management CEP: unicast/address.rs), after the loop.
        let mut updates: Vec<Vec<u8>> = vec![];
        let mut guard = self.st();
        let st = &mut *guard;
        let Some(u) = st.unicast.get_mut(n1.uni) else {
            return;
        };
        let mut taken = 0usize;
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
                let comp = u.conn.connected(n1.flow);
                // A neighbour's LSAs and PDUs for o7sd within its budget (CEP updates and
                // enrolment are bounded by the machine).
                let within = match comp {
                    Some((Component::Management | Component::DataTransfer, _)) => u
                        .budgets
                        .entry(n1.flow)
                        .or_insert_with(|| o7s_proto::budget::Bucket::full(NEIGHBOUR_RATE, now))
                        .take(NEIGHBOUR_RATE, now),
                    _ => true,
                };
                match (comp, u.ls.as_mut()) {
                    (Some((Component::Management, _)), _) if !within => u.lsa_rate_dropped += 1,
                    (Some((Component::DataTransfer, _)), _) if !within => u.dt_rate_dropped += 1,
                    (Some((Component::Management, _)), Some(ls)) => {
                        if Connections::is_update(sdu) {
                            updates.push(sdu.to_vec());
                        } else {
                            ls.handle(now, &n1.flow, sdu);
                        }
                    }
                    (Some((Component::DataTransfer, _)), _) if u.bcast.is_some() => {
                        crate::daemon::broadcast::flood(
                            u,
                            n1.uni,
                            &st.bc_joined,
                            crate::daemon::broadcast::From::Nb(n1.flow),
                            sdu,
                        );
                    }
                    (Some((Component::DataTransfer, _)), _) => {
                        let unix = unix_now();
                        u.on_dt(now, unix, sdu, &mut fwd);
                        u.pending.append(&mut fwd);
                    }
                    _ => u.conn.handle(now, unix_now(), n1.flow, sdu),
                }
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
        // The connections that go to the same neighbour as this flow: N-1 flows of the
        // same lower IPCP to the same peer (another IPCP may still have the old address).
        let peer_of = |f: u64| st.flows.get(&f).map(|r| (r.ipcp, r.peer));
        let here = peer_of(n1.flow);
        for sdu in updates {
            u.conn
                .handle_update(n1.flow, &sdu, |f| here.is_some() && peer_of(f) == here);
        }
        // Another IPCP announced links from our address: keep it or move.
        u.tend_collision(now);
    }

    /// Drains IPCP `uni`'s machine: SDUs into the N-1 flows' tx rings, events acted on.
    /// Returns the N-1 flows to close.
    pub(in crate::daemon) fn uni_pump(
        &self,
        now: Instant,
        n1s: &HashMap<u64, N1>,
        incoming: &mut Vec<UniIncoming>,
    ) -> Vec<u64> {
        let mut close = vec![];
        let mut accept_more = vec![];
        let mut woke = false;
        let mut st = self.st();
        let mut connect = vec![];
        let dp_adopted = st.dp_adopted;
        // N-1 flows whose peer timed out (or that were freed elsewhere): their component
        // forgets them; link state drops the own link (the others age it out) and
        // recomputes.
        let lost: Vec<(usize, u64)> = n1s
            .values()
            .filter(|n| st.flows.get(&n.flow).is_none_or(|f| f.down))
            .map(|n| (n.uni, n.flow))
            .collect();
        for (uni, flow) in lost {
            let Some(u) = st.unicast.get_mut(uni) else {
                continue;
            };
            let comp = u.conn.connected(flow);
            u.conn.flow_down(flow);
            u.budgets.remove(&flow);
            if let Some(b) = u.bcast.as_mut() {
                b.nbs.remove(&flow);
            }
            if let Some(ls) = u.ls.as_mut() {
                match comp {
                    Some((Component::Management, _)) => ls.remove_mgmt(&flow),
                    // Unless a newer DT flow to the same member took its place (the
                    // member reconnected while this one waited for its time-out).
                    Some((Component::DataTransfer, addr)) if u.dt_nb.get(&addr) == Some(&flow) => {
                        u.dt_nb.remove(&addr);
                        ls.remove_dt(addr);
                    }
                    _ => {}
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
            close.push(flow);
        }
        for (idx, u) in st.unicast.iter_mut().enumerate() {
            u.conn.handle_timeout(now);
            let mut out: Vec<(u64, Vec<u8>)> = vec![];
            while let Some(t) = u.conn.poll_transmit() {
                out.push((t.flow, t.sdu));
            }
            if let Some(ls) = u.ls.as_mut() {
                ls.handle_timeout(now);
                while let Some((flow, lsa)) = ls.poll_transmit() {
                    out.push((flow, lsa.to_vec()));
                }
            }
            woke |= u.tend_dht(now);
            out.append(&mut u.pending);
            for mut r in std::mem::take(&mut u.incoming) {
                r.uni = idx;
                incoming.push(r);
            }
            for (flow, sdu) in out {
                match n1s.values().find(|n| n.flow == flow) {
                    Some(n) => {
                        if n.mem.ring(o7s::ring::Dir::Tx).push(&sdu).is_ok() {
                            n.tx.kick();
                        }
                    }
                    None => tracing::debug!("{}: N-1 flow {flow} is gone", u.name),
                }
            }
            while let Some(e) = u.conn.poll_event() {
                match e {
                    UniEvent::Enrolled { conf, .. } if u.bcast.is_some() => {
                        let layer = conf.layer_info.name.clone();
                        u.conn.set_layer(0, *conf);
                        u.layer = Some(layer.clone());
                        u.state = "enrolled".into();
                        // A broadcast IPCP has one component to connect: Data Transfer.
                        for dst in &u.conn_to {
                            connect.push((idx, dst.clone(), Component::DataTransfer));
                        }
                        tracing::info!("IPCP {} enrolled in broadcast layer {layer}.", u.name);
                        accept_more.push((idx, vec![layer]));
                    }
                    UniEvent::Enrolled { conf, .. } => {
                        let layer = conf.layer_info.name.clone();
                        let (addr, resume) =
                            self.resume_or_new_addr(dp_adopted, idx, &u.name, &layer);
                        u.resume = resume;
                        let conf_peer = conf
                            .unicast
                            .as_ref()
                            .and_then(|x| x.dir.dht.as_ref())
                            .map_or(0, |d| d.peer);
                        let mut mine = *conf;
                        if let Some(d) = mine.unicast.as_mut().and_then(|x| x.dir.dht.as_mut()) {
                            d.peer = addr;
                        }
                        u.dir_join = o7s_proto::ipcp::dir_join::DirJoin::new(
                            conf_peer, DHT_RETRY, DHT_AGAIN,
                        );
                        let mut lc = ls_config(&mine);
                        lc.withdraw = u.withdraw;
                        u.ls = Some(LinkState::new(addr, lc, now));
                        u.dht = Some(new_dht(addr, &mine, u.member.as_ref()));
                        u.max_ttl = mine.unicast.as_ref().map_or(60, |x| x.dt.max_ttl);
                        u.mb_ecn = mine.unicast.as_ref().is_none_or(|x| x.cong_avoid != 0);
                        u.conn.set_layer(addr, mine);
                        u.fa = Some(Fa::new(FaConfig::default(), addr, rand::random()));
                        u.addr = addr;
                        u.layer = Some(layer.clone());
                        u.state = "enrolled".into();
                        // conn: Management first, then DT (as the reference); a resumed
                        // IPCP has its connections back.
                        let resumed = u.resume.as_ref().is_some_and(|s| !s.conns.is_empty());
                        for dst in u.conn_to.iter().filter(|_| !resumed) {
                            for comp in [Component::Management, Component::DataTransfer] {
                                connect.push((idx, dst.clone(), comp));
                            }
                        }
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
                    UniEvent::Readdressed {
                        flow,
                        old,
                        new,
                        moved,
                    } => u.neighbour_moved(now, flow, old, new, &moved),
                    UniEvent::Connected {
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
                        if let Some(ls) = u.ls.as_mut() {
                            match comp {
                                Component::Management => ls.add_mgmt(flow),
                                Component::DataTransfer => {
                                    u.dt_nb.insert(peer_addr, flow);
                                    ls.add_dt(now, peer_addr);
                                }
                                Component::Enrollment => {}
                            }
                        }
                    }
                }
            }
        }
        drop(st);
        self.uni_after_pump(now);
        if woke {
            self.wake();
        }
        for (idx, names) in accept_more {
            self.uni_accept(idx, &names);
        }
        for (uni, dst, comp) in connect {
            self.uni_request(UniRequest::Connect { uni, dst, comp });
        }
        close
    }
}
