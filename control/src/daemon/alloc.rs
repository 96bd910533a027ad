//! Flow allocation as requester: resolving names, FLOW_REQ through the shim machine, the
//! flow installed in the data plane.

use super::*;
use crate::error::FlowError;
use o7s_proto::shim::ShimError;

impl Daemon {
    /// Sets up the shared memory and the data-plane entry of a flow, records it, and returns
    /// what the app gets.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn install_flow(
        &self,
        ipcp: usize,
        local: u32,
        remote: u32,
        peer: Peer,
        name: &str,
        qos: QosSpec,
        side: &'static str,
        pid: i32,
        crypt: Option<CryptSpec>,
    ) -> Result<Accepted, FlowError> {
        self.check_flow_limits(peer)?;
        {
            let st = self.st();
            let of_process = st.flows.values().filter(|f| f.pid == pid).count();
            if pid > 0 && of_process >= self.settings.max_flows_per_process {
                self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
                return Err(FlowError::Limit(format!(
                    "process {pid} has its maximum of {} flows (o7sd --max-flows-per-process)",
                    self.settings.max_flows_per_process
                )));
            }
        }
        let overhead = if crypt.is_some() {
            o7s_abi::CRYPT_OVERHEAD
        } else {
            0
        };
        let mtu = self
            .st()
            .ipcps
            .get(ipcp)
            .map(|i| i.mtu)
            .unwrap_or(0)
            .saturating_sub(overhead);
        let (memfd, tx, rx) = flow_mem(mtu).map_err(FlowError::Memory)?;
        let mut st = self.st();
        st.next_flow += 1;
        let flow = st.next_flow;
        let Some(i) = st.ipcps.get(ipcp) else {
            return Err(FlowError::Internal("IPCP vanished".into()));
        };
        let (port, layer) = (i.port, i.layer.clone());
        st.flows.insert(
            flow,
            FlowRec {
                ipcp,
                local,
                remote,
                peer,
                name: name.to_string(),
                side,
                pid,
                qos,
                down: false,
            },
        );
        drop(st);
        let added = self.dp.add_flow(
            &ToDp::AddFlow {
                flow,
                port,
                local,
                remote,
                peer: peer.mac(),
                timeout_ms: u64::from(qos.timeout.max(1000)),
                peer_addr: peer.addr(),
                crypt,
            },
            flow,
            &[memfd.as_fd(), tx.fd().as_fd(), rx.fd().as_fd()],
        );
        if let Err(e) = added {
            // Forget it here and there (the data plane may install it late).
            self.dealloc(flow);
            return Err(FlowError::Install(e));
        }
        self.counters.flows.fetch_add(1, Ordering::Relaxed);
        let fds = [dup(&memfd), dup(tx.fd()), dup(rx.fd())];
        let fds: Vec<OwnedFd> = fds.into_iter().flatten().collect();
        if fds.len() != 3 {
            self.dealloc(flow);
            return Err(FlowError::Descriptors);
        }
        Ok(Accepted {
            info: FlowInfo {
                id: flow,
                name: name.to_string(),
                qos,
                mtu,
                layer,
            },
            flow,
            fds,
        })
    }

    /// Whether one more flow with `peer` is within the daemon's limits (`--max-flows`,
    /// `--max-flows-per-peer`); counted and explained when not.
    pub(super) fn check_flow_limits(&self, peer: Peer) -> Result<(), FlowError> {
        let st = self.st();
        if st.flows.len() >= self.settings.max_flows {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "this daemon has its maximum of {} flows (o7sd --max-flows)",
                self.settings.max_flows
            )));
        }
        let same_peer = |p: &Peer| match (p, &peer) {
            (Peer::Ip(a), Peer::Ip(b)) => a.ip() == b.ip(),
            (a, b) => a == b,
        };
        let of_peer = st.flows.values().filter(|f| same_peer(&f.peer)).count();
        if of_peer >= self.settings.max_flows_per_peer {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "{peer} has its maximum of {} flows with this daemon (o7sd --max-flows-per-peer)",
                self.settings.max_flows_per_peer
            )));
        }
        Ok(())
    }

    /// Finds the IPCP and MAC behind `name`: cache first, then a name query on every eth
    /// IPCP at once.
    pub(super) fn resolve(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(usize, Peer, Vec<u8>), FlowError> {
        let (tx, rx) = channel::<(usize, Peer)>();
        let mut asked = vec![];
        let mut out = vec![];
        {
            let mut st = self.st();
            let mut order: Vec<(usize, IpcpKind)> = st
                .ipcps
                .iter()
                .enumerate()
                .filter(|(_, i)| i.up)
                .map(|(n, i)| (n, i.kind))
                .collect();
            order.sort_by_key(|(_, k)| *k);
            let order: Vec<usize> = order.into_iter().map(|(n, _)| n).collect();
            if order.is_empty() {
                return Err(FlowError::NoLayer {
                    name: name.to_string(),
                });
            }
            for idx in &order {
                let Some(i) = st.ipcps.get(*idx) else {
                    continue;
                };
                let h = i.hash.hash(name);
                if let Some(peer) = i.shim.cached(Instant::now(), &h) {
                    return Ok((*idx, peer, h));
                }
            }
            for idx in order {
                let Some(i) = st.ipcps.get_mut(idx) else {
                    continue;
                };
                let h = i.hash.hash(name);
                if let PortKind::Udp { addr } = i.port_kind {
                    // udp layers: the hex MD5 through the layer's DNS server, or the system
                    // resolver (so /etc/hosts works).
                    let host = hex::encode(&h);
                    let dns = i.dns;
                    let via = dns
                        .map(|d| format!("DNS server {d}"))
                        .unwrap_or("system resolver".into());
                    asked.push(format!("{} {} ({via}: {host})", i.kind.as_str(), i.name));
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        use std::net::ToSocketAddrs;
                        let found = match dns {
                            Some(server) => {
                                crate::dns::lookup(server, &host, addr.is_ipv4(), timeout)
                                    .ok()
                                    .flatten()
                                    .map(|ip| std::net::SocketAddr::new(ip, addr.port()))
                            }
                            None => (host.as_str(), addr.port())
                                .to_socket_addrs()
                                .ok()
                                .and_then(|mut it| it.find(|a| a.is_ipv4() == addr.is_ipv4())),
                        };
                        if let Some(a) = found {
                            let _ = tx.send((idx, Peer::Ip(a)));
                        }
                    });
                    continue;
                }
                asked.push(format!("{} {}", i.kind.as_str(), i.name));
                // The answer comes on `tx` (the first of any layer wins).
                self.query(&mut st, idx, name, &h, timeout, tx.clone(), &mut out)?;
            }
        }
        self.send_all(out);
        drop(tx);
        match rx.recv_timeout(timeout) {
            Ok((idx, mac)) => {
                let st = self.st();
                let h = st
                    .ipcps
                    .get(idx)
                    .map(|i| i.hash.hash(name))
                    .unwrap_or_default();
                Ok((idx, mac, h))
            }
            Err(_) => Err(FlowError::UnknownName {
                name: name.to_string(),
                ms: timeout.as_millis(),
                asked: asked.join(", "),
            }),
        }
    }

    /// Allocates a flow to `name` for process `pid`.
    pub fn alloc(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
    ) -> Result<Accepted, FlowError> {
        let start = Instant::now();
        let (idx, peer, hash) = self.resolve(name, self.settings.query_timeout.min(timeout))?;
        let enc = self.enc_conf("client", name).map_err(FlowError::Settings)?;
        let mut req_hdr = OapHdr::unsigned(rand::random(), now_ns(), vec![]);
        let eph = match &enc {
            Some((c, path)) => {
                tracing::info!("Encryption enabled for {name} ({}).", path.display());
                let e = Ephemeral::generate(c.kex, &ring::rand::SystemRandom::new())
                    .map_err(FlowError::Internal)?;
                tracing::debug!("Generated ephemeral keys for {pid}.");
                req_hdr.cipher_nid = c.cipher.nid();
                req_hdr.kdf_nid = c.kdf.nid();
                req_hdr.md_nid = c.digest;
                req_hdr.kex = e.spki.clone();
                Some(e)
            }
            None => {
                tracing::debug!("No security info for {name}.");
                None
            }
        };
        let signer = self.signer("client", name).map_err(FlowError::Settings)?;
        if let Some(sg) = &signer {
            req_hdr.crt = sg.cert.clone();
            req_hdr.md_nid = sg.md_nid;
            let unsigned = req_hdr
                .to_bytes()
                .map_err(|e| FlowError::Internal(e.to_string()))?;
            req_hdr.tail = sg.sign(&unsigned).map_err(FlowError::Internal)?;
        }
        let req_oap = req_hdr
            .to_bytes()
            .map_err(|e| FlowError::Internal(e.to_string()))?;
        let (tx, rx) = channel();
        let mut out = vec![];
        let local = {
            let mut st = self.st();
            let i = st
                .ipcps
                .get_mut(idx)
                .ok_or_else(|| FlowError::Internal("IPCP vanished".into()))?;
            let left = timeout.saturating_sub(start.elapsed());
            let now = Instant::now();
            // Allocations whose time is up go first (the protocol thread may be asleep).
            i.shim.handle_timeout(now);
            let (id, local) = i
                .shim
                .alloc(now, peer, &hash, qos, &req_oap, left)
                .map_err(|source| FlowError::Layer {
                    ipcp: i.name.clone(),
                    source,
                })?;
            i.alloc_waiters.insert(id.0, tx);
            self.pump(&mut st, idx, &mut out);
            self.wake_for(&st, now + left);
            local
        };
        // The protocol thread fires the deadline (it wakes at least every 500 ms).
        self.send_all(out);
        // The machine ends the wait (reply, refusal or its deadline, on the protocol
        // thread); the margin covers a late timer.
        let reply =
            rx.recv_timeout(timeout.saturating_sub(start.elapsed()) + Duration::from_millis(500));
        let free = |st: &mut State| {
            if let Some(i) = st.ipcps.get_mut(idx) {
                i.shim.release(local);
            }
        };
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(ShimError::Refused(response))) => {
                return Err(FlowError::Refused {
                    name: name.to_string(),
                    response,
                });
            }
            Ok(Err(_)) | Err(_) => {
                free(&mut self.st());
                return Err(FlowError::Timeout {
                    name: name.to_string(),
                    ms: timeout.as_millis(),
                });
            }
        };
        let checked = o7s_proto::oap::check_response(&req_oap, &reply.oap)
            .map_err(|source| FlowError::BadResponse {
                name: name.to_string(),
                source,
            })
            .and_then(|()| {
                self.authenticate_server(name, &req_oap, &reply.oap)
                    .map_err(|why| FlowError::Unauthenticated {
                        name: name.to_string(),
                        why,
                    })
            });
        if let Err(e) = checked {
            free(&mut self.st());
            tracing::warn!("Flow allocation to {name} refused: {e}");
            return Err(e);
        }
        let crypt = match (enc, eph) {
            (Some((conf, _)), Some(eph)) => {
                match o7s_proto::oap::client_key(&conf, eph, &reply.oap) {
                    Ok(k) => Some(CryptSpec {
                        cipher: k.cipher,
                        key: k.key.to_vec(),
                        rotation_bits: self.settings.key_rotation_bits,
                    }),
                    Err(source) => {
                        free(&mut self.st());
                        let e = FlowError::BadResponse {
                            name: name.to_string(),
                            source,
                        };
                        tracing::warn!("Flow allocation to {name} refused: {e}");
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let acc = self
            .install_flow(
                idx,
                local,
                reply.remote,
                reply.peer,
                name,
                qos,
                "alloc",
                pid,
                crypt,
            )
            .inspect_err(|_| free(&mut self.st()))?;
        tracing::info!(
            "Flow {} allocated to {name} for process {pid}: local {local:#x}, remote {:#x} at {} in {:.3} ms.",
            acc.flow,
            reply.remote,
            reply.peer,
            start.elapsed().as_secs_f64() * 1000.0
        );
        Ok(acc)
    }
}
