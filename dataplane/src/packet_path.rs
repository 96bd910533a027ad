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
use crate::local_flows::LocalFlows;
use crate::msg::PortKind;
use o7s_wire::{dix, udp};
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
    /// Flows by (port, our endpoint id).
    flows: FlowIndex,
    /// Where each unencrypted flow of this worker sends (the N-1 flows PDUs are forwarded
    /// onto).
    egress: Map<u64, Egress>,
    /// Each unicast IPCP's address, next hops and N+1 flows: a worker serves a few IPCPs at
    /// most, so a short list is searched faster than a map is hashed.
    unis: Vec<Uni>,
}

/// One unicast IPCP's tables.
#[derive(Debug, Clone)]
struct Uni {
    id: u32,
    dt: DtTables,
    /// Where each of `dt.hops()` sends, by the same index (a slot that no longer names its
    /// hop's N-1 flow is not believed: [`Tables::hop_egress`]).
    via: Vec<Option<HopOut>>,
    /// The hops [`step_eth`] forwards to in one pass, by the same index: made with `via`, and
    /// emptied whenever `dt` is lent out to be changed ([`Tables::uni_mut`]), so it is
    /// never stale (empty, every PDU goes the full path until the next refresh).
    fast: Vec<Option<FastHop>>,
}

/// A next hop [`step_eth`] forwards to in one pass: an eth-dix N-1 flow with its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FastHop {
    /// The hop's N-1 flow.
    n1: u64,
    /// Its port.
    port: u32,
    /// Our endpoint id on it.
    local: u32,
    /// Its eth-dix header.
    head: DixHead,
}

impl FastHop {
    fn of(h: &HopOut) -> Option<Self> {
        match h.egress {
            Egress::Eth { port, d } => Some(Self {
                n1: h.n1,
                port,
                local: d.local,
                head: h.head?,
            }),
            Egress::Udp { .. } => None,
        }
    }
}

/// Where one next hop of an IPCP sends, found when the tables change rather than per PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HopOut {
    /// The hop's N-1 flow.
    n1: u64,
    /// Where that flow sends.
    egress: Egress,
    /// Its eth-dix header, for an eth-dix egress whose peer's endpoint id fits one.
    head: Option<DixHead>,
}

impl HopOut {
    fn new(n1: u64, egress: Egress) -> Self {
        let head = match &egress {
            Egress::Eth { d, .. } => DixHead::new(d),
            Egress::Udp { .. } => None,
        };
        Self { n1, egress, head }
    }
}

/// The eth-dix header of the frames to one peer (addresses, Ethertype, the peer's
/// endpoint id), made once; [`rewrite_dix_with`] gives it each PDU's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DixHead([u8; dix::FRAME_HEADER_LEN]);

impl DixHead {
    /// The header of frames to `d`; `None` when `d` is not eth-dix or the peer's endpoint
    /// id does not fit the header's 16 bits.
    pub fn new(d: &EthDest) -> Option<Self> {
        let PortKind::Dix { ethertype } = d.kind else {
            return None;
        };
        let mut h = [0; dix::FRAME_HEADER_LEN];
        dix::FrameHeader {
            dst: d.dst,
            src: d.src,
            ethertype,
            eid: u16::try_from(d.remote).ok()?,
            length: 0,
        }
        .write(&mut h);
        Some(Self(h))
    }
}

impl Uni {
    /// Finds again where each hop sends.
    fn refresh(&mut self, egress: &Map<u64, Egress>) {
        self.via.clear();
        self.via.extend(
            self.dt
                .hops()
                .iter()
                .map(|n1| egress.get(n1).map(|e| HopOut::new(*n1, *e))),
        );
        self.fast.clear();
        self.fast
            .extend(self.via.iter().map(|v| v.as_ref().and_then(FastHop::of)));
    }
    /// Its DT tables, to change: the fast path's hops are forgotten until the next
    /// refresh (they could no longer match the routes).
    fn dt_mut(&mut self) -> &mut DtTables {
        self.fast.clear();
        &mut self.dt
    }
}

/// Endpoint ids below this are looked up by index (o7sd gives each flow the lowest free id
/// of its port, so these are the ids in use); larger ones in a map.
const DENSE_EIDS: u32 = 16_384;

/// Flows by (port, endpoint id).
#[derive(Debug, Clone, Default)]
struct FlowIndex {
    /// Per port, the flows of the ids below [`DENSE_EIDS`], by id.
    dense: Vec<(u32, Vec<Option<FlowEntry>>)>,
    /// The rest, by [`eid_key`].
    sparse: Map<u64, FlowEntry>,
}

impl FlowIndex {
    #[inline]
    fn port(&self, port: u32) -> Option<&Vec<Option<FlowEntry>>> {
        first_or_find(&self.dense, |(p, _)| *p == port).map(|(_, v)| v)
    }
    #[inline]
    fn get(&self, port: u32, eid: u32) -> Option<&FlowEntry> {
        if eid < DENSE_EIDS {
            self.port(port)?.get(eid as usize)?.as_ref()
        } else {
            self.sparse.get(&eid_key(port, eid))
        }
    }
    fn get_mut(&mut self, port: u32, eid: u32) -> Option<&mut FlowEntry> {
        if eid < DENSE_EIDS {
            let (_, v) = self.dense.iter_mut().find(|(p, _)| *p == port)?;
            v.get_mut(eid as usize)?.as_mut()
        } else {
            self.sparse.get_mut(&eid_key(port, eid))
        }
    }
    fn insert(&mut self, port: u32, eid: u32, e: FlowEntry) {
        if eid >= DENSE_EIDS {
            self.sparse.insert(eid_key(port, eid), e);
            return;
        }
        let at = match self.dense.iter().position(|(p, _)| *p == port) {
            Some(at) => at,
            None => {
                self.dense.push((port, Vec::new()));
                self.dense.len() - 1
            }
        };
        if let Some((_, v)) = self.dense.get_mut(at) {
            let i = eid as usize;
            if v.len() <= i {
                v.resize(i + 1, None);
            }
            if let Some(slot) = v.get_mut(i) {
                *slot = Some(e);
            }
        }
    }
    /// Flows port `port`'s table has room for without growing (0: it has none).
    #[cfg(test)]
    fn room(&self, port: u32) -> usize {
        self.port(port).map_or(0, Vec::capacity)
    }
    fn remove(&mut self, port: u32, eid: u32) -> Option<FlowEntry> {
        if eid >= DENSE_EIDS {
            return self.sparse.remove(&eid_key(port, eid));
        }
        let at = self.dense.iter().position(|(p, _)| *p == port)?;
        let (_, v) = self.dense.get_mut(at)?;
        let gone = v.get_mut(eid as usize)?.take();
        // A port without flows gives its table back, one with far fewer its spare room.
        while v.last().is_some_and(Option::is_none) {
            v.pop();
        }
        if v.is_empty() {
            self.dense.swap_remove(at);
        } else if v.len() < v.capacity() / 4 {
            v.shrink_to(v.len() * 2);
        }
        gone
    }
}

/// The first element of `v` that `is` takes, the first looked at before a loop is
/// entered (a worker has one port or one IPCP more often than not).
#[inline(always)]
fn first_or_find<T>(v: &[T], is: impl Fn(&T) -> bool) -> Option<&T> {
    match v.split_first() {
        Some((first, _)) if is(first) => Some(first),
        Some((_, rest)) => rest.iter().find(|x| is(x)),
        None => None,
    }
}

/// One key for (port, endpoint id): their eight bytes side by side.
fn eid_key(port: u32, eid: u32) -> u64 {
    let [a, b, c, d] = port.to_ne_bytes();
    let [e, f, g, h] = eid.to_ne_bytes();
    u64::from_ne_bytes([a, b, c, d, e, f, g, h])
}

impl Tables {
    /// The flow with endpoint id `eid` on port `port`.
    #[inline]
    pub fn flow(&self, port: u32, eid: u32) -> Option<&FlowEntry> {
        self.flows.get(port, eid)
    }
    /// As [`Tables::flow`], to change.
    pub fn flow_mut(&mut self, port: u32, eid: u32) -> Option<&mut FlowEntry> {
        self.flows.get_mut(port, eid)
    }
    /// Adds (or replaces) the flow with endpoint id `eid` on port `port`.
    pub fn insert_flow(&mut self, port: u32, eid: u32, e: FlowEntry) {
        self.flows.insert(port, eid, e);
    }
    /// Removes the flow with endpoint id `eid` on port `port`.
    pub fn remove_flow(&mut self, port: u32, eid: u32) -> Option<FlowEntry> {
        self.flows.remove(port, eid)
    }
    /// Where unencrypted flow `flow` sends.
    pub fn egress(&self, flow: u64) -> Option<&Egress> {
        self.egress.get(&flow)
    }
    /// Sets where unencrypted flow `flow` sends.
    pub fn set_egress(&mut self, flow: u64, e: Egress) {
        self.egress.insert(flow, e);
        self.refresh_hops_of(flow);
    }
    /// Forgets where flow `flow` sends.
    pub fn remove_egress(&mut self, flow: u64) {
        if self.egress.remove(&flow).is_some() {
            self.refresh_hops_of(flow);
        }
    }
    /// Forgets where the flows of port `port` send.
    pub fn remove_port_egress(&mut self, port: u32) {
        self.egress.retain(|_, e| e.port() != port);
        self.refresh_hops();
    }
    /// The hops of each IPCP that go by `flow`, or whose slots still name it, find again
    /// where they send.
    fn refresh_hops_of(&mut self, flow: u64) {
        for u in &mut self.unis {
            let named = |v: &Option<HopOut>| v.is_some_and(|h| h.n1 == flow);
            if u.dt.hops().contains(&flow) || u.via.iter().any(named) {
                u.refresh(&self.egress);
            }
        }
    }
    /// Every IPCP's hops find again where they send (after its DT tables were changed
    /// through [`Tables::uni_mut`] or [`Tables::uni_entry`]).
    pub fn refresh_hops(&mut self) {
        for u in &mut self.unis {
            u.refresh(&self.egress);
        }
    }
    /// Where the PDU that unicast IPCP `ipcp` decided to forward on N-1 flow `n1`, hop
    /// `hop` of its tables ([`DtAction::Forward`]), leaves, with the eth-dix header made
    /// for it when there is one: found by the hop's index, or by `n1` when the index no
    /// longer holds it (then without a header: [`rewrite_dix`] makes one).
    #[inline]
    pub fn hop_out(&self, ipcp: u32, n1: u64, hop: u32) -> Option<(&Egress, Option<&DixHead>)> {
        match self.hop_slot(ipcp, hop).filter(|h| h.n1 == n1) {
            Some(h) => Some((&h.egress, h.head.as_ref())),
            None => self.egress.get(&n1).map(|e| (e, None)),
        }
    }
    /// [`Tables::hop_out`] without the header.
    #[inline]
    pub fn hop_egress(&self, ipcp: u32, n1: u64, hop: u32) -> Option<&Egress> {
        self.hop_out(ipcp, n1, hop).map(|(e, _)| e)
    }
    /// What hop `hop` of IPCP `ipcp` holds: its N-1 flow and where that sends.
    #[inline]
    fn hop_slot(&self, ipcp: u32, hop: u32) -> Option<&HopOut> {
        let u = self.unis.iter().find(|u| u.id == ipcp)?;
        u.via.get(hop as usize)?.as_ref()
    }
    /// Unicast IPCP `ipcp`'s DT tables.
    #[inline]
    pub fn uni(&self, ipcp: u32) -> Option<&DtTables> {
        self.unis.iter().find(|u| u.id == ipcp).map(|u| &u.dt)
    }
    /// As [`Tables::uni`], to change (routes are set with [`Tables::set_routes`]); the
    /// fast path ([`step_eth`]) forwards none of its PDUs until the next refresh
    /// ([`Tables::refresh_hops`]). N+1 flows: [`Tables::local_flows_mut`].
    pub fn uni_mut(&mut self, ipcp: u32) -> Option<&mut DtTables> {
        self.unis.iter_mut().find(|u| u.id == ipcp).map(Uni::dt_mut)
    }
    /// Unicast IPCP `ipcp`'s N+1 flows, to change (its routes and hops stay as they are,
    /// and so do the fast path's: a flow an app opens or closes does not send PDUs the
    /// full path).
    pub fn local_flows_mut(&mut self, ipcp: u32) -> Option<&mut LocalFlows> {
        let u = self.unis.iter_mut().find(|u| u.id == ipcp)?;
        Some(&mut u.dt.local)
    }
    /// As [`Tables::local_flows_mut`], empty tables made for an IPCP that has none yet.
    pub fn local_flows_entry(&mut self, ipcp: u32) -> &mut LocalFlows {
        let at = self.uni_at(ipcp);
        #[allow(clippy::indexing_slicing)] // `at` was found or just pushed: in range.
        &mut self.unis[at].dt.local
    }
    /// Where unicast IPCP `ipcp` is in `unis`, pushed with empty tables when it is not.
    fn uni_at(&mut self, ipcp: u32) -> usize {
        match self.unis.iter().position(|u| u.id == ipcp) {
            Some(at) => at,
            None => {
                self.unis.push(Uni {
                    id: ipcp,
                    dt: DtTables::default(),
                    via: Vec::new(),
                    fast: Vec::new(),
                });
                self.unis.len() - 1
            }
        }
    }
    /// Unicast IPCP `ipcp`'s DT tables, empty ones made when it has none yet; as with
    /// [`Tables::uni_mut`], the fast path waits for the next refresh.
    pub fn uni_entry(&mut self, ipcp: u32) -> &mut DtTables {
        let at = self.uni_at(ipcp);
        #[allow(clippy::indexing_slicing)] // `at` was found or just pushed: in range.
        self.unis[at].dt_mut()
    }
    /// Replaces unicast IPCP `ipcp`'s DT tables.
    pub fn set_uni(&mut self, ipcp: u32, dt: DtTables) {
        *self.uni_entry(ipcp) = dt;
        self.refresh_hops();
    }
    /// Replaces unicast IPCP `ipcp`'s address and routes.
    pub fn set_routes(&mut self, ipcp: u32, own: u32, routes: &[(u32, u64)]) {
        let t = self.uni_entry(ipcp);
        t.own = own;
        t.set_routes(routes);
        self.refresh_hops();
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
    // Data for another station (a bridge port, a macvlan child, a promiscuous device: the
    // AF_PACKET path sees them; the XDP program passes them to the kernel) is not ours,
    // even when its peer and endpoint id match a flow of ours.
    if dst != port.mac {
        return Action::NotOurs;
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
    rewrite_dix_with(frame, pdu, &DixHead::new(d)?)
}

/// [`rewrite_dix`] with the header made beforehand ([`DixHead`]).
#[inline]
pub fn rewrite_dix_with(frame: &mut [u8], pdu: &Range<usize>, h: &DixHead) -> Option<usize> {
    if pdu.start != dix::FRAME_HEADER_LEN {
        return None;
    }
    // A range ending before it starts is no PDU (`Range::len` would call it empty).
    let len = u16::try_from(pdu.end.checked_sub(pdu.start)?).ok()?;
    rehead_dix::<false>(frame, len, h)
}

/// Puts header `h` with length `len` in front of the PDU of `len` bytes after the eth-dix
/// header of `frame`, and zeroes the padding of a short frame; with `TTL`, decrements the
/// TTL of the PDU's PCI too (a PDU shorter than a PCI is refused). The frame's length on
/// the wire (header and PDU, at least [`MIN_FRAME`]); `None`, nothing written, when the
/// frame is shorter than that (a runt: its buffer cannot hold the padding).
#[inline(always)]
fn rehead_dix<const TTL: bool>(frame: &mut [u8], len: u16, h: &DixHead) -> Option<usize> {
    const DIX_HEADER: usize = dix::FRAME_HEADER_LEN;
    let wire = (DIX_HEADER + usize::from(len)).max(MIN_FRAME);
    let (head, body) = frame
        .get_mut(..wire)?
        .split_first_chunk_mut::<DIX_HEADER>()?;
    let (pdu, pad) = body.split_at_mut_checked(usize::from(len))?;
    if TTL {
        let pci = pdu.first_chunk_mut::<{ dt::PCI_LEN }>()?;
        pci[dt::TTL_AT] = pci[dt::TTL_AT].saturating_sub(1);
    }
    // Nothing below can fail: the frame is re-headed whole or not at all.
    *head = h.0;
    dix::FrameHeader::write_length(head, len);
    // (`fill` calls memset even for nothing, and most frames have no padding.)
    if !pad.is_empty() {
        pad.fill(0);
    }
    Some(wire)
}

mod fast;
pub use fast::{step_eth, Fwd, Step};

#[cfg(test)]
mod tests;
