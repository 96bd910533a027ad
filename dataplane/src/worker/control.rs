//! Control messages from o7sd: ports (AF_XDP with its AF_PACKET fallback, UDP) and flows
//! added and removed, keys installed, counters reported; the worker keeps running.

use super::*;

impl Dataplane {
    /// Handles one control message; `false` to stop.
    pub(super) fn handle_ctl(&mut self) -> io::Result<bool> {
        let (msg, fds) = match self.up.ctl.recv::<ToDp>() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(self.lost_o7sd()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!("ignoring a bad control message: {e}");
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        match msg {
            ToDp::AddPort { port, dev, kind } => {
                let reply = match self.add_port(port, &dev, kind) {
                    Ok((mac, mtu, io_path)) => FromDp::PortUp {
                        port,
                        mac,
                        mtu,
                        io_path,
                    },
                    Err(e) => FromDp::PortError {
                        port,
                        error: if e.kind() == io::ErrorKind::PermissionDenied {
                            format!("{dev}: {e} (raw sockets and XDP need root, or CAP_NET_RAW and CAP_NET_ADMIN)")
                        } else {
                            format!("{dev}: {e}")
                        },
                    },
                };
                self.out.push(reply);
            }
            ToDp::DelPort { port } => {
                // Its queues on other workers are closed before its program goes.
                if let Some(sh) = self.ports.get_mut(&port).and_then(|p| p.spread.take()) {
                    self.unspread_port(&sh);
                }
                self.ports.remove(&port);
                self.uports.remove(&port);
                self.shapers.remove(&port);
                // Its impairments and what they hold go with it (a port made later with
                // the same id, after a restart, would be impaired as this one was).
                self.impairs.remove(&port);
                self.tab.remove_port_egress(port);
                // A UMEM no port uses, or that no port can join any more, is let go.
                if self
                    .umem_pool
                    .as_ref()
                    .is_some_and(|u| u.ports.get() == 0 || u.room() == 0)
                {
                    self.umem_pool = None;
                }
                self.tables_changed = true;
            }
            ToDp::SendMgmt { port, dst, payload } => self.send_mgmt(port, dst, &payload),
            ToDp::SendUdp { port, dst, payload } => {
                if let Some(u) = self.uports.get_mut(&port) {
                    match u.sock.send_to(&payload, &dst) {
                        Ok(()) => u.stats.tx_frames += 1,
                        Err(e) => {
                            u.stats.tx_errors += 1;
                            tracing::warn!("port {port}: send to {dst}: {e}");
                        }
                    }
                }
            }
            ToDp::AddFlow {
                flow,
                port,
                local,
                remote,
                peer,
                timeout_ms,
                peer_addr,
                crypt,
                pid,
                record,
                uni,
            } => {
                let cipher_nid = crypt.as_ref().map(|c| c.cipher).unwrap_or(0);
                let crypt = match crypt {
                    None => None,
                    Some(c) => {
                        let mut key = [0u8; 32];
                        let made = (c.key.len() == 32)
                            .then(|| {
                                key.copy_from_slice(&c.key);
                                crate::crypt::Crypt::new(c.cipher, key, c.rotation_bits)
                            })
                            .flatten();
                        if made.is_none() {
                            tracing::warn!(
                                "flow {flow}: unusable cipher {} or key; flow refused",
                                c.cipher
                            );
                            self.out.push(FromDp::FlowError {
                                flow,
                                error: format!("unusable cipher {} or key", c.cipher),
                            });
                            return Ok(true);
                        }
                        made
                    }
                };
                let mut it = fds.into_iter();
                let (Some(mem), Some(tx), Some(rx)) = (it.next(), it.next(), it.next()) else {
                    tracing::warn!("flow {flow}: AddFlow without descriptors");
                    self.out.push(FromDp::FlowError {
                        flow,
                        error: "its descriptors did not arrive (too many open files?)".into(),
                    });
                    return Ok(true);
                };
                let opened = FlowMem::open_sealed(&mem)
                    .map_err(|e| format!("bad flow memory: {e}"))
                    .and_then(|m| {
                        let kick = |fd| Kick::from_fd(fd).map_err(|e| format!("bad kick: {e}"));
                        Ok((m, kick(tx)?, kick(rx)?))
                    });
                match opened {
                    Ok((mem, tx_kick, rx_kick)) => {
                        match uni {
                            // Its PDUs come by endpoint id through the IPCP's table.
                            Some(u) => {
                                self.unis
                                    .entry(u.ipcp)
                                    .or_insert_with(|| dt_path::UniState::new(u.ipcp));
                                self.tab.local_flows_entry(u.ipcp).insert(u.local_eid, flow);
                            }
                            None => {
                                let e = crate::packet_path::FlowEntry {
                                    flow,
                                    mac: peer,
                                    addr: peer_addr,
                                    encrypted: crypt.is_some(),
                                    dt_of: None,
                                };
                                self.tab.insert_flow(port, local, e);
                            }
                        }
                        self.tables_changed = true;
                        self.flows.insert(
                            flow,
                            Flow {
                                crypt,
                                plain: Vec::with_capacity(65536),
                                peer_addr,
                                port,
                                local,
                                remote,
                                peer,
                                timeout: Duration::from_millis(timeout_ms.max(1)),
                                last_rx: Instant::now(),
                                last_tx: Instant::now(),
                                mem,
                                tx_kick,
                                rx_kick,
                                kick_due: false,
                                pid,
                                pidfd: super::lifecycle::pidfd(pid),
                                record,
                                timeout_ms,
                                uni,
                                ca: uni.filter(|u| u.mb_ecn).map(|_| {
                                    let ns = self.epoch.elapsed().as_nanos();
                                    congestion::FlowCa::new(u64::try_from(ns).unwrap_or(0))
                                }),
                                stats: FlowStats {
                                    flow,
                                    port,
                                    local,
                                    remote,
                                    cipher: cipher_nid,
                                    ..FlowStats::default()
                                },
                            },
                        );
                        // Where PDUs forwarded onto it leave (an unencrypted flow of a port).
                        if let Some(e) = self.flows.get(&flow).and_then(|f| self.egress_of(f)) {
                            self.tab.set_egress(flow, e);
                        }
                        if let Some((h, w)) = &self.handoff {
                            h.own(*w, flow, uni.map(|u| (u.ipcp, u.local_eid)));
                        }
                        tracing::debug!("flow {flow}: port {port} local {local} remote {remote}");
                        self.out.push(FromDp::FlowAdded { flow });
                    }
                    Err(error) => {
                        tracing::warn!("flow {flow}: {error}");
                        self.out.push(FromDp::FlowError { flow, error });
                    }
                }
            }
            ToDp::DelFlow { flow } => self.remove_flow(flow),
            ToDp::FlowMem { flow } => self.flow_mem(flow, fds),
            ToDp::PortSet {
                port,
                rate_bps,
                queue,
                loss_ppm,
                dup_ppm,
                reorder_ppm,
                delay_us,
                corrupt_ppm,
            } => {
                if rate_bps.is_some() || queue.is_some() {
                    self.set_port_shaping(port, rate_bps, queue);
                }
                self.set_port_impair(port, loss_ppm, dup_ppm, reorder_ppm, delay_us, corrupt_ppm);
            }
            ToDp::UniTable {
                ipcp,
                own,
                next_hop,
                n1,
            } => self.set_uni_table(ipcp, own, &next_hop, &n1),
            ToDp::Stats => {
                for f in self.flows.values_mut() {
                    f.stats.key_rotations = f.crypt.as_ref().map(|c| c.rotations).unwrap_or(0);
                    f.stats.frcp = f.mem.frcp();
                    f.stats.crc_errors = f.mem.crc();
                    if let Some(c) = &mut f.ca {
                        c.refresh();
                        f.stats.ca = Some(c.stats.clone());
                    }
                }
                for (port, s) in &self.shapers {
                    let st = match self.ports.get_mut(port) {
                        Some(p) => &mut p.stats,
                        None => match self.uports.get_mut(port) {
                            Some(u) => &mut u.stats,
                            None => continue,
                        },
                    };
                    st.rate_bps = s.rate_bps();
                    st.queue_limit = s.limit();
                    st.queued = s.len() as u64;
                    st.queued_max = s.stats.queued_max;
                    st.shaped = s.stats.shaped;
                }
                for (port, i) in &self.impairs {
                    let stats = match self.ports.get_mut(port) {
                        Some(p) => Some(&mut p.stats),
                        None => self.uports.get_mut(port).map(|u| &mut u.stats),
                    };
                    if let Some(ps) = stats {
                        let (c, st) = (i.conf(), i.stats);
                        ps.impair_loss_ppm = c.loss_ppm;
                        ps.impair_dup_ppm = c.dup_ppm;
                        ps.impair_reorder_ppm = c.reorder_ppm;
                        ps.impair_delay_us = u32::try_from(c.delay.as_micros()).unwrap_or(u32::MAX);
                        ps.impair_lost = st.lost;
                        ps.impair_duplicated = st.duplicated;
                        ps.impair_delayed = st.delayed;
                        ps.impair_reordered = st.reordered;
                        ps.impair_held_full = st.held_full;
                        ps.impair_corrupt_ppm = c.corrupt_ppm;
                        ps.impair_corrupted = st.corrupted;
                    }
                }
                for u in self.uports.values_mut() {
                    if let Some(d) = crate::sockstat::socket_drops(u.sock.as_fd()) {
                        u.stats.drop_socket_buffer = d;
                    }
                }
                for p in self.ports.values_mut() {
                    if let Some(d) = crate::sockstat::socket_drops(p.sock.as_fd()) {
                        p.stats.drop_socket_buffer = d;
                    }
                    if let Some(x) = &mut p.xdp {
                        p.stats.rx_xdp = x.rx_frames;
                        p.stats.tx_xdp = x.tx_frames;
                        p.stats.tx_xdp_dropped = x.tx_dropped;
                        p.stats.xdp_redirected = x.counter(crate::xdp::counter::REDIRECT);
                        p.stats.xdp_mgmt_passed = x.counter(crate::xdp::counter::MGMT);
                        p.stats.umem_frames_accounted = x.accounted_frames();
                        p.stats.umem_frames = x.umem_frames();
                        p.stats.rx_xdp_per_queue = x.rx_per_queue();
                        p.stats.xdp_fill_wakeups = x.fill_wakeups();
                        p.stats.xdp_tx_batches = x.tx_batches;
                        p.stats.xdp_tx_wakeups = x.tx_wakeups;
                        let k = x.kernel_drops();
                        p.stats.xdp_rx_dropped = k.rx_dropped;
                        p.stats.xdp_rx_ring_full = k.rx_ring_full;
                        p.stats.xdp_fill_ring_empty = k.fill_ring_empty;
                        p.stats.xdp_invalid_descs = k.invalid_descs;
                        if let Some(sh) = &p.spread {
                            // Every queue of the device, whichever worker binds it.
                            let own: Vec<(u32, u64)> =
                                x.queue_ids().into_iter().zip(x.rx_per_queue()).collect();
                            p.stats.rx_queues = sh
                                .view(|q| own.iter().find(|(i, _)| *i == q).map_or(0, |(_, n)| *n));
                            p.stats.rx_xdp_per_queue =
                                p.stats.rx_queues.iter().map(|q| q.rx).collect();
                            p.stats.queue_relayed = sh.relayed();
                            p.stats.queue_relay_dropped = sh.dropped();
                            p.stats.rx_xdp += sh.relayed();
                            let k = sh.kernel();
                            p.stats.xdp_rx_dropped += k.rx_dropped;
                            p.stats.xdp_rx_ring_full += k.rx_ring_full;
                            p.stats.xdp_fill_ring_empty += k.fill_ring_empty;
                            p.stats.xdp_invalid_descs += k.invalid_descs;
                        }
                    }
                }
                let s = DpStats {
                    ports: self
                        .ports
                        .values()
                        .map(|p| p.stats.clone())
                        .chain(self.uports.values().map(|u| u.stats.clone()))
                        .collect(),
                    flows: self.flows.values().map(|f| f.stats.clone()).collect(),
                    worker: WorkerInfo {
                        yields_for_apps: self.yields_for_apps,
                        sleeps: self.sleeps,
                        ports: (self.ports.len() + self.uports.len()) as u32,
                        flows: self.flows.len() as u32,
                        rx_frames: self
                            .ports
                            .values()
                            .map(|p| p.stats.rx_frames)
                            .chain(self.uports.values().map(|u| u.stats.rx_frames))
                            .sum(),
                        tx_frames: self
                            .ports
                            .values()
                            .map(|p| p.stats.tx_frames)
                            .chain(self.uports.values().map(|u| u.stats.tx_frames))
                            .sum(),
                        queues_for_others: self.relays.values().map(|r| r.queues()).sum(),
                        relayed_frames: self.relays.values().map(|r| r.frames()).sum(),
                        ..self.worker.clone()
                    },
                    workers: Vec::new(),
                    uni: self.unis.values().map(|u| u.stats.clone()).collect(),
                };
                self.out.push(FromDp::Stats(s));
            }
            ToDp::CaptureStart {
                id,
                port,
                flow,
                snaplen,
            } => self.capture_start(id, port, flow, snaplen, fds.into_iter().next()),
            ToDp::CaptureStop { id } => self.capture_stop(id),
            ToDp::Shutdown => return Ok(false),
            // From the router, when a new o7sd adopts the data plane (a single worker
            // gets it on its socket instead: upstream.rs).
            ToDp::Adopt => {
                let m = self.adopted();
                self.out.push(m);
            }
        }
        Ok(true)
    }

    pub(super) fn add_udp(
        &mut self,
        id: u32,
        addr: SocketAddr,
    ) -> io::Result<([u8; 6], usize, String)> {
        let sock = UdpPort::bind(addr)?;
        let io_path = sock.describe();
        let mtu = o7s_wire::udp::MAX_PACKET - o7s_wire::udp::HEADER_LEN;
        tracing::info!("port {id}: udp {addr} mtu {mtu} via {io_path}");
        let stats = PortStats {
            port: id,
            dev: addr.to_string(),
            mac: "-".into(),
            mtu,
            io_path: io_path.clone(),
            link: "-".into(),
            ..PortStats::default()
        };
        let police = Policer::new(self.rates, Instant::now());
        self.uports.insert(
            id,
            UPort {
                sock,
                addr,
                stats,
                police,
            },
        );
        self.tables_changed = true;
        Ok(([0; 6], mtu, io_path))
    }

    pub(super) fn add_port(
        &mut self,
        id: u32,
        dev: &str,
        kind: PortKind,
    ) -> io::Result<([u8; 6], usize, String)> {
        let proto = match kind {
            PortKind::Dix { ethertype } => ethertype,
            PortKind::Llc => ETH_P_802_2,
            PortKind::Udp { addr } => return self.add_udp(id, addr),
        };
        let info = dev_info(dev)?;
        let sock = PacketSocket::open(info.ifindex, proto)?;
        let mtu = match kind {
            PortKind::Dix { .. } | PortKind::Udp { .. } => info.mtu.saturating_sub(dix::HEADER_LEN),
            PortKind::Llc => info
                .mtu
                .min(usize::from(llc::MAX_LENGTH))
                .saturating_sub(llc::HEADER_LEN),
        };
        // The I/O path: AF_XDP for data frames when it can be had (`O7S_DP_IO`: auto, af_xdp,
        // af_packet; `O7S_XDP_MODE`: skb (default; best on veth), driver or auto).
        let want = std::env::var("O7S_DP_IO").unwrap_or_else(|_| "auto".into());
        let mode_setting = std::env::var("O7S_XDP_MODE").unwrap_or_else(|_| "skb".into());
        let attach = crate::xdp::AttachMode::parse(&mode_setting).ok_or_else(|| {
            io::Error::other(format!(
                "O7S_XDP_MODE={mode_setting}: expected skb, driver or auto"
            ))
        })?;
        let (xdp, io_path) = if want == "af_packet" {
            (
                None,
                "af_packet (AF_XDP off by setting O7S_DP_IO=af_packet)".to_string(),
            )
        } else {
            let (et, llc) = match kind {
                PortKind::Dix { ethertype } => (Some(ethertype), false),
                _ => (None, true),
            };
            let (set, spread) = self.own_queues(dev);
            match crate::xdp::XdpPort::open(
                dev,
                et,
                llc,
                info.mac,
                attach,
                &mut self.umem_pool,
                set,
            ) {
                Ok(x) => {
                    let spread = spread.and_then(|s| self.spread_port(id, dev, &x, s));
                    let path = super::xdp_ports::io_path(&x, spread.as_deref());
                    (Some((x, spread)), path)
                }
                Err(e) if want == "af_xdp" => {
                    return Err(io::Error::other(format!(
                        "AF_XDP required but unavailable: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(
                        "port {id}: {dev}: AF_XDP unavailable ({e}); falling back to AF_PACKET"
                    );
                    (
                        None,
                        format!("af_packet (fallback: AF_XDP unavailable: {e})"),
                    )
                }
            }
        };
        tracing::info!(
            "port {id}: {dev} mac {} mtu {mtu} via {io_path}",
            ethernet::mac_string(&info.mac)
        );
        let stats = PortStats {
            port: id,
            dev: dev.to_string(),
            mac: ethernet::mac_string(&info.mac),
            mtu,
            io_path: io_path.clone(),
            link: "up".into(),
            ..PortStats::default()
        };
        self.tables_changed = true;
        let (xdp, spread) = xdp.map_or((None, None), |(x, s)| (Some(x), s));
        self.ports.insert(
            id,
            Port {
                dev: dev.to_string(),
                ifindex: info.ifindex,
                kind,
                mac: info.mac,
                sock,
                xdp,
                stats,
                police: Policer::new(self.rates, Instant::now()),
                taps: Vec::new(),
                spread,
            },
        );
        Ok((info.mac, mtu, io_path))
    }
}
