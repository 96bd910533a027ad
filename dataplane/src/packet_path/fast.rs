//! The forwarding hop's common case in one pass (issue 23): [`step_eth`] decides a DT
//! PDU of an eth-dix flow from one parse of its header, and for one to forward to a next
//! hop whose eth-dix header is made ([`super::Uni`]'s `fast`), hands back where it goes
//! without writing a byte ([`Step::Forward`]); the caller checks what only it knows (the
//! egress port's ring, its shaper), then [`Fwd::apply`] decrements the TTL and re-heads
//! the frame. Every other frame goes to [`super::classify_eth`]. The two decide alike: the
//! fast path skips the general [`Action`], the second lookup of the hop and the second
//! parse, never a check (`tests/fast_path.rs` and the fuzz target `packet_path` compare
//! them over random frames).

use super::{Action, DixHead, FlowEntry, PortView, Tables, Uni};
use crate::dt::PCI_LEN;
use crate::dt::{self, DtAction};
use crate::msg::PortKind;
use o7s_wire::dix::{self, FrameHeader, FRAME_HEADER_LEN};
use std::ops::Range;

/// A PDU [`step_eth`] found is to be forwarded to a next hop with a made header, and
/// where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fwd {
    /// The unicast IPCP deciding it.
    pub ipcp: u32,
    /// The DT N-1 flow it came on.
    pub from: u64,
    /// The next hop's N-1 flow.
    pub n1: u64,
    /// Its place in the IPCP's hops ([`crate::dt::DtAction::Forward::hop`]).
    pub hop: u32,
    /// The port the next hop's flow leaves by.
    pub port: u32,
    /// Our endpoint id on the next hop's flow (for captures).
    pub local: u32,
    /// The next hop's eth-dix header, without the length.
    pub head: DixHead,
    /// The PDU's length (the eth-dix length field: at least a PCI).
    pub pdu_len: u16,
}

impl Fwd {
    /// Where the PDU lies in its frame.
    pub fn pdu(&self) -> Range<usize> {
        FRAME_HEADER_LEN..FRAME_HEADER_LEN + usize::from(self.pdu_len)
    }

    /// The decision as [`super::classify_eth`] gives it (the TTL decremented by then:
    /// [`Fwd::decrement_ttl`]).
    pub fn action(&self) -> Action {
        Action::Dt {
            ipcp: self.ipcp,
            from: self.from,
            pdu: self.pdu(),
            dt: DtAction::Forward {
                n1: self.n1,
                hop: self.hop,
            },
        }
    }

    /// Decrements the PDU's TTL in `frame` (at least 2 when it was decided).
    #[inline]
    pub fn decrement_ttl(&self, frame: &mut [u8]) {
        if let Some(ttl) = frame.get_mut(FRAME_HEADER_LEN + dt::TTL_AT) {
            *ttl = ttl.saturating_sub(1);
        }
    }

    /// Decrements the PDU's TTL and re-heads `frame` for the next hop (the padding of a
    /// short frame zeroed, as [`super::rewrite_dix_with`] does); the frame's length on the
    /// wire. `None` (nothing written) when `frame` cannot hold that: a runt, shorter than
    /// [`crate::frames::MIN_FRAME`] (or a frame shorter than the PDU `step_eth` found).
    #[inline]
    pub fn apply(&self, frame: &mut [u8]) -> Option<usize> {
        super::rehead_dix::<true>(frame, self.pdu_len, &self.head)
    }
}

/// What [`step_eth`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A DT PDU to forward to a next hop with a made eth-dix header: nothing written yet
    /// ([`Fwd::apply`] decrements the TTL and re-heads the frame; [`Fwd::action`] is the
    /// same decision as an [`Action`], once the TTL is decremented).
    Forward(Fwd),
    /// Anything else, decided as [`super::classify_eth`] decides it (which it is, for
    /// every frame that is not a DT PDU of an eth-dix flow).
    Decided(Action),
}

/// A received Ethernet frame, decided: the forwarding hop's common case in one pass
/// ([`Step::Forward`]: a DT PDU of an eth-dix port, for another address, whose next hop
/// is an eth-dix N-1 flow with its header made), the other DT PDUs of eth-dix flows
/// straight from the same parse, and every other frame by [`super::classify_eth`]. For
/// every frame and tables, [`Step::Decided`] is what `classify_eth` returns, and
/// [`Step::Forward`] is, after [`Fwd::decrement_ttl`], [`Fwd::action`] (property tests in
/// `tests/fast_path.rs`). Writes the frame only as `classify_eth` does (a forwarded PDU's
/// TTL, and not for [`Step::Forward`]).
#[inline(always)]
pub fn step_eth(port: PortView, frame: &mut [u8], t: &Tables) -> Step {
    let Some((e, len)) = flow_of_dix(&port, frame, t) else {
        return Step::Decided(super::classify_eth(port, frame, t));
    };
    if let (Some(ipcp), false) = (e.dt_of, e.encrypted) {
        if let Some(u) = super::first_or_find(&t.unis, |u| u.id == ipcp) {
            if usize::from(len) >= PCI_LEN {
                return step_dt(frame, e, ipcp, u, len);
            }
        }
    }
    let sdu = FRAME_HEADER_LEN..FRAME_HEADER_LEN + usize::from(len);
    Step::Decided(super::on_flow(e, frame, sdu, t))
}

/// Whether two MACs are equal, compared as their first four bytes and their last two (a
/// comparison of `[u8; 6]` assembles each into one word first).
#[inline(always)]
fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let [a0, a1, a2, a3, a4, a5] = *a;
    let [b0, b1, b2, b3, b4, b5] = *b;
    (u32::from_ne_bytes([a0, a1, a2, a3]) == u32::from_ne_bytes([b0, b1, b2, b3]))
        & (u16::from_ne_bytes([a4, a5]) == u16::from_ne_bytes([b4, b5]))
}

/// The flow of an eth-dix data frame to `port` whose SDU lies inside the frame, from the
/// flow's peer, and the SDU's length (as [`super::classify_eth`] finds them). `None` for
/// anything else (not eth-dix, management, for another station, an SDU past the frame's
/// end, no such flow, another sender): `classify_eth` decides those.
#[inline(always)]
fn flow_of_dix<'t>(port: &PortView, frame: &[u8], t: &'t Tables) -> Option<(&'t FlowEntry, u16)> {
    let PortKind::Dix { ethertype } = port.kind else {
        return None;
    };
    let (raw, rest) = frame.split_first_chunk::<FRAME_HEADER_LEN>()?;
    let h = FrameHeader::read(raw);
    if h.ethertype != ethertype || !mac_eq(&h.dst, &port.mac) || h.eid == dix::MGMT_EID {
        return None;
    }
    if usize::from(h.length) > rest.len() {
        return None;
    }
    let e = t.flow(port.id, u32::from(h.eid))?;
    if !mac_eq(&e.mac, &h.src) {
        return None;
    }
    Some((e, h.length))
}

/// A DT PDU of `len` bytes after the eth-dix header of `frame`, on DT N-1 flow `e` of
/// IPCP `ipcp` (tables `u`), decided.
#[inline(always)]
fn step_dt(frame: &mut [u8], e: &FlowEntry, ipcp: u32, u: &Uni, len: u16) -> Step {
    let at = FRAME_HEADER_LEN..FRAME_HEADER_LEN + usize::from(len);
    let Some(pdu) = frame.get_mut(at.clone()) else {
        return Step::Decided(Action::Malformed);
    };
    if let Some(f) = forward_to_fast_hop(pdu, e, ipcp, u, len) {
        return Step::Forward(f);
    }
    Step::Decided(Action::Dt {
        ipcp,
        from: e.flow,
        dt: dt::decide_from(pdu, &u.dt, e.flow),
        pdu: at,
    })
}

/// The PDU `pdu` forwarded to a next hop of [`Uni::fast`], if it is.
#[inline(always)]
fn forward_to_fast_hop(pdu: &[u8], e: &FlowEntry, ipcp: u32, u: &Uni, len: u16) -> Option<Fwd> {
    let [d0, d1, d2, d3, _, ttl, ..] = *pdu.first_chunk::<PCI_LEN>()?;
    let dst = u32::from_le_bytes([d0, d1, d2, d3]);
    if dst == u.dt.own || ttl <= 1 {
        return None;
    }
    let hop = u.dt.route_hop(dst)?;
    let out = u.fast.get(hop as usize)?.as_ref()?;
    // Not back where it came from (a loop: dropped by the full decision).
    if out.n1 == e.flow {
        return None;
    }
    Some(Fwd {
        ipcp,
        from: e.flow,
        n1: out.n1,
        hop,
        port: out.port,
        local: out.local,
        head: out.head,
        pdu_len: len,
    })
}
