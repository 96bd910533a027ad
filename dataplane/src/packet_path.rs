//! A worker's per-packet decision as one pure function (issue 23 item 1): a received frame
//! (or datagram) and the worker's read-only [`Tables`] in, an [`Action`] out; the only
//! bytes written are the DT PCI's TTL of a PDU to forward ([`crate::dt::decide`]) and,
//! for a PDU forwarded in place, the headers [`rewrite_dix`] sets. No socket, no ring, no
//! clock, no counter: the worker's step (`worker::eth_path`, `worker::udp_path`,
//! `worker::dt_path`) applies the action to rings and counters, and `o7s-bench` and the
//! perf gate (`scripts/perf-gate.sh`) measure these same functions.
//!
//! ```text
//!  rx ring / socket ──> classify_eth / classify_udp ──> Action ──> the worker's step
//!                            │  (parse, look up,                  (ring of a flow, o7sd,
//!                            │   dt::decide)                       tx ring, counters)
//!                            └─ Tables: by (port, eid), egress of N-1 flows, DT tables
//! ```

use crate::dt::{self, DtAction, DtTables};
use crate::frames::{self, Parsed, MIN_FRAME};
use crate::msg::PortKind;
use o7s_wire::{dix, ethernet, udp};
use std::net::SocketAddr;
use std::ops::Range;

/// Tables keyed by small integers o7sd chose (a fast non-cryptographic hash).
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A flow as the packet path knows it: whose frames it takes and where they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    /// The flow's id.
    pub flow: u64,
    /// The peer's MAC (Ethernet flows): only it may send on the flow.
    pub mac: [u8; 6],
    /// The peer's address (UDP flows): only it may send on the flow.
    pub addr: Option<SocketAddr>,
    /// Its SDUs are sealed (AES-GCM / ChaCha20-Poly1305): opened by the step.
    pub encrypted: bool,
    /// A DT N-1 flow of this unicast IPCP (never an encrypted one): its PDUs are decided
    /// by [`crate::dt::decide_from`].
    pub dt_of: Option<u32>,
}

/// Where an Ethernet flow's frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthDest {
    /// The port's framing.
    pub kind: PortKind,
    /// The port's MAC.
    pub src: [u8; 6],
    /// The peer's MAC.
    pub dst: [u8; 6],
    /// The peer's endpoint id.
    pub remote: u32,
    /// Ours.
    pub local: u32,
}

/// Where a PDU forwarded onto an N-1 flow leaves: the flow's port and peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// An Ethernet port.
    Eth {
        /// The port.
        port: u32,
        /// Framing and addresses.
        d: EthDest,
    },
    /// A UDP port.
    Udp {
        /// The port.
        port: u32,
        /// The peer's address.
        dst: SocketAddr,
        /// The peer's endpoint id.
        remote: u32,
    },
}

impl Egress {
    /// The port it leaves by.
    pub fn port(&self) -> u32 {
        match self {
            Egress::Eth { port, .. } | Egress::Udp { port, .. } => *port,
        }
    }
}

/// What the packet path reads: kept by the worker as o7sd adds and removes flows and pushes
/// forwarding tables, never written while a packet is decided.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Flows by (port, our endpoint id), the two in one key ([`Tables::flow`]).
    by_eid: Map<u64, FlowEntry>,
    /// Where each unencrypted flow of this worker sends (the N-1 flows PDUs are forwarded
    /// onto).
    pub egress: Map<u64, Egress>,
    /// Each unicast IPCP's address, next hops and N+1 flows: a worker serves a few IPCPs at
    /// most, so a short list is searched faster than a map is hashed.
    unis: Vec<(u32, DtTables)>,
}

/// One key for (port, endpoint id): their eight bytes side by side.
fn eid_key(port: u32, eid: u32) -> u64 {
    let [a, b, c, d] = port.to_ne_bytes();
    let [e, f, g, h] = eid.to_ne_bytes();
    u64::from_ne_bytes([a, b, c, d, e, f, g, h])
}

impl Tables {
    /// The flow with endpoint id `eid` on port `port`.
    pub fn flow(&self, port: u32, eid: u32) -> Option<&FlowEntry> {
        self.by_eid.get(&eid_key(port, eid))
    }
    /// As [`Tables::flow`], to change.
    pub fn flow_mut(&mut self, port: u32, eid: u32) -> Option<&mut FlowEntry> {
        self.by_eid.get_mut(&eid_key(port, eid))
    }
    /// Adds (or replaces) the flow with endpoint id `eid` on port `port`.
    pub fn insert_flow(&mut self, port: u32, eid: u32, e: FlowEntry) {
        self.by_eid.insert(eid_key(port, eid), e);
    }
    /// Removes the flow with endpoint id `eid` on port `port`.
    pub fn remove_flow(&mut self, port: u32, eid: u32) -> Option<FlowEntry> {
        self.by_eid.remove(&eid_key(port, eid))
    }
    /// Unicast IPCP `ipcp`'s DT tables.
    pub fn uni(&self, ipcp: u32) -> Option<&DtTables> {
        self.unis.iter().find(|(i, _)| *i == ipcp).map(|(_, t)| t)
    }
    /// As [`Tables::uni`], to change.
    pub fn uni_mut(&mut self, ipcp: u32) -> Option<&mut DtTables> {
        self.unis
            .iter_mut()
            .find(|(i, _)| *i == ipcp)
            .map(|(_, t)| t)
    }
    /// Unicast IPCP `ipcp`'s DT tables, empty ones made when it has none yet.
    pub fn uni_entry(&mut self, ipcp: u32) -> &mut DtTables {
        let at = match self.unis.iter().position(|(i, _)| *i == ipcp) {
            Some(at) => at,
            None => {
                self.unis.push((ipcp, DtTables::default()));
                self.unis.len() - 1
            }
        };
        #[allow(clippy::indexing_slicing)] // `at` was found or just pushed: in range.
        &mut self.unis[at].1
    }
    /// Forgets every IPCP's DT tables.
    pub fn clear_unis(&mut self) {
        self.unis.clear();
    }
}

/// The port a frame arrived on, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortView {
    /// The port's id.
    pub id: u32,
    /// Its framing.
    pub kind: PortKind,
    /// Its MAC (all-zero on the loopback device).
    pub mac: [u8; 6],
}

/// What to do with a received frame. Ranges are byte ranges of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not for this port (another Ethertype, an 802.3 length on a DIX port): ignored, not
    /// counted.
    NotOurs,
    /// Ours but malformed (a length past the frame, a bad LLC header, a datagram shorter
    /// than its endpoint id): dropped, counted.
    Malformed,
    /// An Ethernet management frame (endpoint 0) for o7sd.
    Mgmt {
        /// Sender.
        src: [u8; 6],
        /// Receiver (ours or broadcast).
        dst: [u8; 6],
        /// The management message.
        sdu: Range<usize>,
    },
    /// A management frame from a multicast or all-zero source (no station): dropped,
    /// counted.
    MgmtBadSource,
    /// A UDP management datagram (endpoint 0, the whole datagram) for o7sd.
    UdpMgmt,
    /// No flow has this endpoint id on the port: dropped, counted.
    UnknownEid {
        /// The endpoint id.
        eid: u32,
    },
    /// A flow's endpoint id from another sender than its peer: dropped, counted.
    WrongPeer {
        /// The flow.
        flow: u64,
    },
    /// An empty SDU on an unencrypted flow: the peer is alive.
    Keepalive {
        /// The flow.
        flow: u64,
    },
    /// An SDU for a flow's rx ring (an app's, or an N-1 flow's that o7sd reads).
    Deliver {
        /// The flow.
        flow: u64,
        /// The SDU.
        sdu: Range<usize>,
    },
    /// A sealed SDU of an encrypted flow: opened (in place) by the step, then delivered
    /// (or a keepalive, when empty inside).
    Sealed {
        /// The flow.
        flow: u64,
        /// IV, ciphertext and tag.
        sdu: Range<usize>,
    },
    /// A DT PDU on N-1 flow `from` of unicast IPCP `ipcp`, decided (a PDU to forward has
    /// its TTL decremented already).
    Dt {
        /// The IPCP.
        ipcp: u32,
        /// The N-1 flow it came on.
        from: u64,
        /// The PDU (PCI and SDU).
        pdu: Range<usize>,
        /// Forward, deliver, for o7sd, or drop.
        dt: DtAction,
    },
}

/// Byte range of `part` inside `whole` (`part` borrowed from it).
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// Decides what to do with `frame`, received on Ethernet port `port`.
pub fn classify_eth(port: PortView, frame: &mut [u8], t: &Tables) -> Action {
    let (eid, sdu, src, dst) = match frames::parse(port.kind, frame) {
        Parsed::NotOurs => return Action::NotOurs,
        Parsed::Malformed => return Action::Malformed,
        Parsed::Sdu { eid, sdu, src, dst } => (eid, range_in(frame, sdu), src, dst),
    };
    if eid == 0 {
        // A multicast or all-zero source is no station: nothing to answer, nothing to
        // believe (a flow to it would send its data to everyone). The loopback device is
        // the exception: its own address is all-zero.
        if src[0] & 1 != 0 || (src == [0; 6] && port.mac != [0; 6]) {
            return Action::MgmtBadSource;
        }
        return Action::Mgmt { src, dst, sdu };
    }
    let Some(e) = t.flow(port.id, eid) else {
        return Action::UnknownEid { eid };
    };
    // Only the peer the flow was set up with may send on it.
    if e.mac != src {
        return Action::WrongPeer { flow: e.flow };
    }
    on_flow(e, frame, sdu, t)
}

/// Decides what to do with datagram `dg` from `src`, received on UDP port `port`.
pub fn classify_udp(port: u32, src: SocketAddr, dg: &mut [u8], t: &Tables) -> Action {
    let Ok(d) = udp::Datagram::new_checked(&*dg) else {
        return Action::Malformed;
    };
    let eid = d.eid();
    if eid == 0 {
        return Action::UdpMgmt;
    }
    let Some(e) = t.flow(port, eid) else {
        return Action::UnknownEid { eid };
    };
    if e.addr != Some(src) {
        return Action::WrongPeer { flow: e.flow };
    }
    let body = udp::HEADER_LEN..dg.len();
    on_flow(e, dg, body, t)
}

/// An SDU (`frame[sdu]`) from flow `e`'s peer.
fn on_flow(e: &FlowEntry, frame: &mut [u8], sdu: Range<usize>, t: &Tables) -> Action {
    let flow = e.flow;
    if e.encrypted {
        return Action::Sealed { flow, sdu };
    }
    if sdu.is_empty() {
        return Action::Keepalive { flow };
    }
    // A DT N-1 flow whose IPCP has its table: the PDU is decided here. Without a table (o7sd
    // has not pushed one yet) it goes to the N-1 flow's ring, which o7sd reads.
    let Some((ipcp, tables)) = e.dt_of.and_then(|ipcp| Some((ipcp, t.uni(ipcp)?))) else {
        return Action::Deliver { flow, sdu };
    };
    let Some(pdu) = frame.get_mut(sdu.clone()) else {
        return Action::Malformed;
    };
    Action::Dt {
        ipcp,
        from: flow,
        dt: dt::decide_from(pdu, tables, flow),
        pdu: sdu,
    }
}

/// Re-heads a DT PDU lying at `pdu` in an eth-dix frame for the N-1 flow `d` leaves by, in
/// place: Ethernet addresses and Ethertype, the eth-dix endpoint id and length, zero
/// padding to the minimum frame. The length of the frame on the wire, or `None` when the
/// PDU does not sit right after the eth-dix header, `d` is not eth-dix, or the frame's
/// buffer cannot hold the padding.
pub fn rewrite_dix(frame: &mut [u8], pdu: &Range<usize>, d: &EthDest) -> Option<usize> {
    const DIX_HEADER: usize = ethernet::HEADER_LEN + dix::HEADER_LEN;
    let PortKind::Dix { ethertype } = d.kind else {
        return None;
    };
    if pdu.start != DIX_HEADER {
        return None;
    }
    let eid = u16::try_from(d.remote).ok()?;
    let wire = pdu.end.max(MIN_FRAME);
    let pad_from = pdu.end.checked_sub(ethernet::HEADER_LEN)?;
    let mut eth = ethernet::Frame::new_checked(frame.get_mut(..wire)?).ok()?;
    let body = eth.payload_mut();
    // The eth-dix header first: it refuses (a PDU over 65,535 bytes) before it writes, and
    // nothing after it can fail.
    dix::emit_header(body, eid, pdu.len()).ok()?;
    if let Some(pad) = body.get_mut(pad_from..) {
        if !pad.is_empty() {
            pad.fill(0);
        }
    }
    eth.set_dst(d.dst);
    eth.set_src(d.src);
    eth.set_type_len(ethertype);
    Some(wire)
}

#[cfg(test)]
mod tests;
