//! The UDP packet path: batches of datagrams received (GRO) and delivered, flows' SDUs
//! sent as batches (GSO or sendmmsg).

use super::*;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};

/// Where a datagram lies: in the port's last receive batch, or held by its impairments.
enum Dg<'a> {
    /// Datagram `i` of the batch.
    Batch(usize),
    /// A held copy.
    Held(&'a mut [u8]),
}

/// Bytes of a held datagram's source in front of it: the family (4 or 6), 16 bytes of
/// address, the port, the IPv6 flow info and scope id (so it compares equal to the flow's
/// peer address).
const SRC_LEN: usize = 27;

fn src_prefix(src: SocketAddr) -> [u8; SRC_LEN] {
    let mut b = [0u8; SRC_LEN];
    let (fam, ip, flow, scope) = match src {
        SocketAddr::V4(a) => (4u8, a.ip().to_ipv6_mapped(), 0, 0),
        SocketAddr::V6(a) => (6u8, *a.ip(), a.flowinfo(), a.scope_id()),
    };
    b[0] = fam;
    b[1..17].copy_from_slice(&ip.octets());
    b[17..19].copy_from_slice(&src.port().to_be_bytes());
    b[19..23].copy_from_slice(&flow.to_be_bytes());
    b[23..27].copy_from_slice(&scope.to_be_bytes());
    b
}

/// The source in front of a held datagram, and the datagram.
fn split_src(held: &mut [u8]) -> Option<(SocketAddr, &mut [u8])> {
    let (pre, dg) = held.split_at_mut_checked(SRC_LEN)?;
    let ip = Ipv6Addr::from(<[u8; 16]>::try_from(pre.get(1..17)?).ok()?);
    let word = |r: std::ops::Range<usize>| -> Option<u32> {
        Some(u32::from_be_bytes(pre.get(r)?.try_into().ok()?))
    };
    let port = u16::from_be_bytes(pre.get(17..19)?.try_into().ok()?);
    let src = match pre.first()? {
        4 => SocketAddr::new(IpAddr::V4(ip.to_ipv4_mapped()?), port),
        6 => SocketAddr::V6(SocketAddrV6::new(ip, port, word(19..23)?, word(23..27)?)),
        _ => return None,
    };
    Some((src, dg))
}

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
                // Impairments (tests and experiments) apply to data, not to management.
                if self.impairs.contains_key(&id)
                    && o7s_wire::udp::Datagram::new_checked(dg).is_ok_and(|d| d.eid() != 0)
                    && !self.impair_udp(id, i, src)
                {
                    continue;
                }
                self.udp_one(id, src, Dg::Batch(i));
            }
            self.kick_apps();
            if n < crate::udp::BATCH {
                return done;
            }
        }
        done
    }

    /// A data datagram through the port's impairments (`crate::impair`): corrupted in
    /// place, lost, held for later (a copy with its source, [`held_udp`]) or delivered twice
    /// (the second copy held until now). Whether to handle it now.
    fn impair_udp(&mut self, id: u32, i: usize, src: SocketAddr) -> bool {
        let Some(imp) = self.impairs.get_mut(&id) else {
            return true;
        };
        let now = std::time::Instant::now();
        let v = imp.decide(now);
        let Some(u) = self.uports.get_mut(&id) else {
            return false;
        };
        if let Some(pick) = v.corrupt {
            if let Some(body) = u
                .sock
                .datagram_mut(i)
                .and_then(|d| d.get_mut(o7s_wire::udp::HEADER_LEN..))
            {
                imp.corrupt_sdu(body, pick);
            }
        }
        if v.copies == 0 {
            return false;
        }
        let Some((dg, _)) = u.sock.datagram(i) else {
            return false;
        };
        let mut copy = Vec::with_capacity(SRC_LEN + dg.len());
        copy.extend_from_slice(&src_prefix(src));
        copy.extend_from_slice(dg);
        match v.at {
            Some(at) => {
                let held = (0..v.copies).filter(|_| imp.hold(at, &copy)).count();
                imp.count(&v, u8::try_from(held).unwrap_or(u8::MAX));
                false
            }
            None => {
                // This one now; a duplicate after it, through the held queue.
                let went = if v.copies == 2 && imp.hold(now, &copy) {
                    2
                } else {
                    1
                };
                imp.count(&v, went);
                true
            }
        }
    }

    /// A datagram the impairments held (its source in front, [`src_prefix`]), handled now.
    pub(super) fn held_udp(&mut self, id: u32, held: &mut [u8]) {
        let Some((src, dg)) = split_src(held) else {
            return;
        };
        self.udp_one(id, src, Dg::Held(dg));
    }

    /// Handles one datagram of UDP port `id` from `src`: decided by
    /// [`crate::packet_path::classify_udp`], then management to o7sd, a DT PDU to the
    /// unicast path, an SDU to its flow.
    fn udp_one(&mut self, id: u32, src: SocketAddr, mut dg: Dg<'_>) {
        use crate::packet_path::{self as path, Action};
        let Some(u) = self.uports.get_mut(&id) else {
            return;
        };
        let bytes: &mut [u8] = match &mut dg {
            Dg::Batch(i) => match u.sock.datagram_mut(*i) {
                Some(b) => b,
                None => return,
            },
            Dg::Held(b) => b,
        };
        let action = path::classify_udp(id, src, bytes, &self.tab);
        if action != Action::Malformed {
            u.stats.rx_frames += 1;
        }
        match action {
            Action::Malformed => u.stats.drop_truncated += 1,
            // Longer than any datagram of the layer (the reference's limit): a peer's
            // 64 KiB FLOW_REQs were kept whole by o7sd for 10 s each.
            Action::UdpMgmt if bytes.len() > crate::udp::MAX_DATAGRAM => {
                u.stats.drop_malformed += 1;
            }
            Action::UdpMgmt => {
                if !policed(u.police.check(Source::Ip(src.ip()), self.now), &mut u.stats) {
                    return;
                }
                u.stats.rx_mgmt += 1;
                let msg = FromDp::UdpMgmt {
                    port: id,
                    src,
                    payload: bytes.to_vec(),
                };
                self.mgmt_to_o7sd(msg, id);
            }
            Action::UnknownEid { .. } => u.stats.drop_unknown_eid += 1,
            Action::WrongPeer { .. } => u.stats.drop_wrong_peer += 1,
            Action::Dt {
                ipcp,
                from,
                pdu: at,
                dt,
            } => {
                // A copy: the datagram lies in the port's buffers.
                let mut pdu = std::mem::take(&mut self.pdu);
                pdu.clear();
                pdu.extend_from_slice(bytes.get(at).unwrap_or(&[]));
                let at = 0..pdu.len();
                self.apply_flow(
                    &mut pdu,
                    Action::Dt {
                        ipcp,
                        from,
                        pdu: at,
                        dt,
                    },
                    None,
                );
                self.pdu = pdu;
            }
            Action::Keepalive { flow } => {
                if let Some(f) = self.flows.get_mut(&flow) {
                    f.deliver_mut(&mut [], self.now);
                }
            }
            Action::Deliver { flow, sdu } | Action::Sealed { flow, sdu } => {
                if let (Some(f), Some(s)) = (self.flows.get_mut(&flow), bytes.get_mut(sdu)) {
                    f.deliver_mut(s, self.now);
                }
            }
            // Not from a UDP port.
            Action::NotOurs | Action::Mgmt { .. } | Action::MgmtBadSource => {}
        }
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
        u.stats.gso_refused = u.sock.gso_refused;
        if u.sock.take_gso_change() {
            u.stats.io_path = u.sock.describe();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_held_datagram_keeps_its_source_exactly() {
        for src in [
            "127.0.0.2:3435".parse::<SocketAddr>().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 3435, 7, 3)),
            "[::2]:1".parse().unwrap(),
        ] {
            let mut held = src_prefix(src).to_vec();
            held.extend_from_slice(b"\0\0\0\x07sdu");
            let (back, dg) = split_src(&mut held).unwrap();
            assert_eq!(back, src);
            assert_eq!(dg, b"\0\0\0\x07sdu");
        }
        assert!(split_src(&mut [4u8; 10]).is_none());
        let mut bad = src_prefix("127.0.0.1:1".parse().unwrap());
        bad[0] = 5;
        assert!(split_src(&mut bad).is_none());
    }
}
