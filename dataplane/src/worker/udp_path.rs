//! The UDP packet path: batches of datagrams received (GRO) and delivered, flows' SDUs
//! sent as batches (GSO or sendmmsg).

use super::*;

impl Dataplane {
    /// Receives a batch of datagrams on a UDP port.
    pub(super) fn rx_udp(&mut self, id: u32) -> usize {
        let mut done = 0;
        for _ in 0..8 {
            let Some(u) = self.uports.get_mut(&id) else {
                return done;
            };
            let n = match u.sock.recv_batch() {
                Ok(0) => return done,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("port {}: recv: {e}", u.stats.dev);
                    return done;
                }
            };
            done += n;
            for i in 0..n {
                let Some(u) = self.uports.get_mut(&id) else {
                    return done;
                };
                let Some((dg, src)) = u.sock.datagram(i) else {
                    u.stats.drop_truncated += 1;
                    continue;
                };
                let Ok(d) = o7s_wire::udp::Datagram::new_checked(dg) else {
                    u.stats.drop_truncated += 1;
                    continue;
                };
                u.stats.rx_frames += 1;
                let eid = d.eid();
                if eid == 0 {
                    if !policed(u.police.check(Source::Ip(src.ip()), self.now), &mut u.stats) {
                        continue;
                    }
                    u.stats.rx_mgmt += 1;
                    let msg = FromDp::UdpMgmt {
                        port: id,
                        src,
                        payload: dg.to_vec(),
                    };
                    self.mgmt_to_o7sd(msg, id);
                    continue;
                }
                let Some((fid, f)) = self
                    .by_local
                    .get(&(id, eid))
                    .and_then(|fid| Some((*fid, self.flows.get_mut(fid)?)))
                else {
                    u.stats.drop_unknown_eid += 1;
                    continue;
                };
                if f.peer_addr != Some(src) {
                    u.stats.drop_wrong_peer += 1;
                    continue;
                }
                // A DT N-1 flow of a unicast IPCP: as on Ethernet (a copy: the datagram
                // lies in the port's buffers).
                let body = dg.get(o7s_wire::udp::HEADER_LEN..).unwrap_or(&[]);
                if let (Some(ipcp), None, false) = (f.dt_of, &f.crypt, body.is_empty()) {
                    f.last_rx = self.now;
                    f.stats.rx_sdus += 1;
                    f.stats.rx_bytes += body.len() as u64;
                    let mut pdu = std::mem::take(&mut self.pdu);
                    pdu.clear();
                    pdu.extend_from_slice(body);
                    let all = 0..pdu.len();
                    if !self.dt_rx(ipcp, fid, &mut pdu, all) {
                        // For o7sd: into the ring (counted there).
                        if let Some(f) = self.flows.get_mut(&fid) {
                            f.stats.rx_sdus -= 1;
                            f.stats.rx_bytes -= pdu.len() as u64;
                            f.deliver(&pdu, self.now);
                        }
                    }
                    self.pdu = pdu;
                    continue;
                }
                if let Some(dg) = u.sock.datagram_mut(i) {
                    f.deliver_mut(
                        dg.get_mut(o7s_wire::udp::HEADER_LEN..).unwrap_or(&mut []),
                        self.now,
                    );
                }
            }
            self.kick_apps();
            if n < crate::udp::BATCH {
                return done;
            }
        }
        done
    }

    /// Sends a flow's waiting SDUs as one batch of datagrams.
    pub(super) fn tx_udp(&mut self, id: u64) -> usize {
        let Some(f) = self.flows.get_mut(&id) else {
            return 0;
        };
        let Some(u) = self.uports.get_mut(&f.port) else {
            return 0;
        };
        let Some(dst) = f.peer_addr else {
            return 0;
        };
        let ring = f.mem.ring(Dir::Tx);
        // Datagrams back to back in one reused buffer, for one GSO send.
        let buf = &mut self.frame;
        buf.clear();
        let mut lens = [0usize; crate::udp::BATCH];
        let mut n = 0;
        while n < crate::udp::BATCH
            && buf.len() + 4 + crate::udp::MAX_DATAGRAM <= crate::udp::MAX_GSO_BYTES
        {
            let crypt = &mut f.crypt;
            match ring.pop_with(|sdu| {
                let start = buf.len();
                buf.extend_from_slice(&f.remote.to_be_bytes());
                match crypt {
                    Some(c) => {
                        if c.seal_appending(buf, |b| sdu.append_to(b)).is_err() {
                            buf.truncate(start);
                            return 0;
                        }
                    }
                    None => sdu.append_to(buf),
                }
                buf.len() - start
            }) {
                Ok(Some(0)) => {}
                Ok(Some(l)) => {
                    if let Some(x) = lens.get_mut(n) {
                        *x = l;
                    }
                    n += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    f.stats.drop_ring_corrupt += 1;
                    break;
                }
            }
        }
        let lens = lens.get(..n).unwrap_or(&[]);
        if lens.is_empty() {
            return 0;
        }
        f.last_tx = self.now;
        match u.sock.send_packed(&dst, buf, lens) {
            Ok(sent) => {
                u.stats.tx_frames += sent as u64;
                f.stats.tx_sdus += sent as u64;
                f.stats.tx_bytes += lens.iter().take(sent).map(|l| *l as u64 - 4).sum::<u64>();
                u.stats.tx_errors += (lens.len() - sent) as u64;
            }
            Err(e) => {
                u.stats.tx_errors += lens.len() as u64;
                tracing::debug!("udp send to {dst}: {e}");
            }
        }
        lens.len()
    }

    /// Sends a keepalive (an empty SDU: the endpoint id alone, or with IV and tag when the
    /// flow is encrypted) on a UDP flow; whether the socket took it.
    pub(super) fn keepalive_udp(&mut self, id: u64) -> bool {
        let Some(f) = self.flows.get_mut(&id) else {
            return false;
        };
        let (Some(u), Some(dst)) = (self.uports.get_mut(&f.port), f.peer_addr) else {
            return false;
        };
        let buf = &mut self.frame;
        buf.clear();
        buf.extend_from_slice(&f.remote.to_be_bytes());
        if let Some(c) = &mut f.crypt {
            if c.seal(&[], buf).is_err() {
                return false;
            }
        }
        let sent = matches!(u.sock.send_batch(&dst, &[buf.as_slice()]), Ok(1));
        if sent {
            u.stats.tx_frames += 1;
        } else {
            u.stats.tx_errors += 1;
        }
        sent
    }
}
