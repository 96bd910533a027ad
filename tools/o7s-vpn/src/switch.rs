//! The virtual switch of `o7s-vpn --tap`: a MAC learning table over ports (the TAP device
//! and each flow), bounded and aged, deciding where an Ethernet frame goes. Pure: time
//! comes in, nothing is sent from here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A port of the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// The local TAP device.
    Tap,
    /// A flow to a peer (its flow id).
    Flow(u64),
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// To one port.
    To(Port),
    /// To every port but the one it came in on (broadcast, multicast, unknown unicast).
    Flood,
    /// Nowhere: its destination is on the port it came from.
    Drop,
}

/// What the switch counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Addresses learnt (new or moved).
    pub learnt: u64,
    /// Addresses that moved to another port.
    pub moved: u64,
    /// New addresses not learnt because the table was full.
    pub table_full: u64,
    /// New addresses not learnt because their flow already has its share of the table
    /// ([`Switch::per_port`]): one member cannot fill the table for everyone.
    pub port_full: u64,
    /// Frames from a flow whose source is a live address of the local TAP side: not
    /// learnt (a member cannot take this host's traffic by sending from its address).
    pub tap_held: u64,
    /// Entries aged out.
    pub aged: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Frames dropped because their destination is behind the port they came from.
    pub same_port: u64,
    /// Frames too short to be Ethernet (14 bytes), or from a multicast source.
    pub malformed: u64,
}

/// A MAC table of at most `max` entries, at most a quarter of them behind one flow, each
/// forgotten `age` after it was last seen.
#[derive(Debug)]
pub struct Switch {
    table: HashMap<[u8; 6], (Port, Instant)>,
    /// Entries per flow.
    per_flow: HashMap<u64, usize>,
    max: usize,
    age: Duration,
    /// When a full table was last swept for aged entries (at most once a second, so that
    /// a MAC flood does not make every frame walk the table).
    swept: Option<Instant>,
    counters: Counters,
}

/// Ethernet header length.
pub const ETH_HEADER: usize = 14;

/// How long an address the local TAP side used stays with it when a flow's member sends
/// from it too: a host's own traffic cannot be taken by a member, and a host that moved
/// away (silent on the TAP since) follows after this.
pub const TAP_HOLD: Duration = Duration::from_secs(10);

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok())
}

impl Switch {
    /// An empty switch.
    pub fn new(max: usize, age: Duration) -> Self {
        Self {
            table: HashMap::new(),
            per_flow: HashMap::new(),
            max,
            age,
            swept: None,
            counters: Counters::default(),
        }
    }

    /// Most entries behind one flow: a quarter of the table (at least one).
    pub fn per_port(&self) -> usize {
        (self.max / 4).max(1)
    }

    /// Entries the local TAP side may have beyond `max`: a sixteenth of it (at least one).
    pub fn tap_reserve(&self) -> usize {
        (self.max / 16).max(1)
    }

    /// What was counted.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The table, sorted by address: (MAC, port, seconds since last seen).
    pub fn entries(&self, now: Instant) -> Vec<([u8; 6], Port, f64)> {
        let mut v: Vec<_> = self
            .table
            .iter()
            .map(|(m, (p, t))| (*m, *p, now.saturating_duration_since(*t).as_secs_f64()))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// A frame came in on `port`: learns its source, returns where it goes (`None`: not an
    /// Ethernet frame, counted).
    pub fn frame(&mut self, now: Instant, port: Port, frame: &[u8]) -> Option<Out> {
        let (Some(dst), Some(src)) = (mac(frame), frame.get(6..).and_then(mac)) else {
            self.counters.malformed += 1;
            return None;
        };
        if frame.len() < ETH_HEADER || src[0] & 1 == 1 {
            self.counters.malformed += 1;
            return None;
        }
        self.learn(now, src, port);
        if dst[0] & 1 == 1 {
            self.counters.flooded += 1;
            return Some(Out::Flood);
        }
        match self.table.get(&dst) {
            Some((p, seen)) if now.saturating_duration_since(*seen) <= self.age => {
                if *p == port {
                    self.counters.same_port += 1;
                    Some(Out::Drop)
                } else {
                    Some(Out::To(*p))
                }
            }
            _ => {
                self.counters.flooded += 1;
                Some(Out::Flood)
            }
        }
    }

    fn learn(&mut self, now: Instant, src: [u8; 6], port: Port) {
        let old = match self.table.get_mut(&src) {
            Some(e) if e.0 == port => {
                e.1 = now;
                return;
            }
            // This host's own addresses stay with it while the TAP side keeps using them
            // (a host that moved away, a failed-over virtual MAC, is silent there: after
            // TAP_HOLD it may move).
            Some(e) if e.0 == Port::Tap && now.saturating_duration_since(e.1) <= TAP_HOLD => {
                self.counters.tap_held += 1;
                return;
            }
            Some(e) => Some(e.0),
            None => None,
        };
        // A full share or table may hold aged entries: swept at most once a second, so
        // that a MAC flood does not make every frame walk the table.
        if self.share_full(port) || (old.is_none() && self.table.len() >= self.max) {
            if self
                .swept
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.swept = Some(now);
                self.expire(now);
            }
            if self.share_full(port) {
                self.counters.port_full += 1;
                // A host that moved into a full share is not where its entry says any
                // more: forgotten, its frames are flooded (and reach it) instead of going
                // to its old port.
                if let Some(o) = old {
                    if self.table.remove(&src).is_some() {
                        self.count(o, false);
                    }
                }
                return;
            }
        }
        // (An entry moving may have aged out in the sweep: then it is new.)
        let old = old.filter(|_| self.table.contains_key(&src));
        // The local TAP side has room beyond the flows' table: flows that fill it cannot
        // stop this host's own addresses being learnt.
        let room = match port {
            Port::Tap => self.max + self.tap_reserve(),
            Port::Flow(_) => self.max,
        };
        if old.is_none() && self.table.len() >= room {
            self.counters.table_full += 1;
            return;
        }
        if let Some(o) = old {
            self.counters.moved += 1;
            self.count(o, false);
        }
        self.table.insert(src, (port, now));
        self.count(port, true);
        self.counters.learnt += 1;
    }

    /// Whether `port` is a flow holding its share of the table.
    fn share_full(&self, port: Port) -> bool {
        match port {
            Port::Flow(f) => self.per_flow.get(&f).copied().unwrap_or(0) >= self.per_port(),
            Port::Tap => false,
        }
    }

    /// One entry more (`true`) or less behind `port`.
    fn count(&mut self, port: Port, more: bool) {
        let Port::Flow(f) = port else {
            return;
        };
        let n = self.per_flow.entry(f).or_insert(0);
        if more {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_flow.remove(&f);
            }
        }
    }

    /// Entries behind `port` now.
    #[cfg(test)]
    pub fn on_port(&self, port: Port) -> usize {
        match port {
            Port::Flow(f) => self.per_flow.get(&f).copied().unwrap_or(0),
            Port::Tap => self.table.values().filter(|(p, _)| *p == Port::Tap).count(),
        }
    }

    /// Forgets entries not seen for `age`.
    pub fn expire(&mut self, now: Instant) {
        let age = self.age;
        let before = self.table.len();
        let mut gone = Vec::new();
        self.table.retain(|_, (p, t)| {
            let keep = now.saturating_duration_since(*t) <= age;
            if !keep {
                gone.push(*p);
            }
            keep
        });
        for p in gone {
            self.count(p, false);
        }
        self.counters.aged += (before - self.table.len()) as u64;
    }

    /// A port is gone (its flow ended): its addresses are forgotten.
    pub fn forget(&mut self, port: Port) {
        self.table.retain(|_, (p, _)| *p != port);
        if let Port::Flow(f) = port {
            self.per_flow.remove(&f);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::from(dst);
        f.extend(src);
        f.extend([0x08, 0x06]);
        f.extend([0u8; 28]);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const D: [u8; 6] = [2, 0, 0, 0, 0, 0xd];
    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn it_learns_floods_the_unknown_and_sends_the_known_to_its_port() {
        let t0 = Instant::now();
        let mut s = Switch::new(16, Duration::from_secs(300));
        // A's ARP request (broadcast) from the TAP: flooded, A learnt behind the TAP.
        assert_eq!(s.frame(t0, Port::Tap, &frame(BCAST, A)), Some(Out::Flood));
        // B answers from flow 7: A is known, B learnt.
        assert_eq!(
            s.frame(t0, Port::Flow(7), &frame(A, B)),
            Some(Out::To(Port::Tap))
        );
        assert_eq!(
            s.frame(t0, Port::Tap, &frame(B, A)),
            Some(Out::To(Port::Flow(7)))
        );
        // Unknown unicast: flooded. A frame for a host behind the port it came from: dropped.
        assert_eq!(
            s.frame(t0, Port::Tap, &frame([2, 0, 0, 0, 0, 0xc], A)),
            Some(Out::Flood)
        );
        assert_eq!(s.frame(t0, Port::Flow(7), &frame(B, B)), Some(Out::Drop));
        let c = s.counters();
        assert_eq!((c.learnt, c.flooded, c.same_port), (2, 2, 1));
        assert_eq!(
            s.entries(t0).iter().map(|e| e.1).collect::<Vec<_>>(),
            [Port::Tap, Port::Flow(7)]
        );
    }

    #[test]
    fn a_host_that_moves_is_relearnt_and_old_entries_age_out() {
        let t0 = Instant::now();
        let age = Duration::from_secs(10);
        let mut s = Switch::new(16, age);
        s.frame(t0, Port::Flow(7), &frame(BCAST, B));
        s.frame(t0, Port::Flow(9), &frame(BCAST, B));
        assert_eq!(
            s.frame(t0, Port::Tap, &frame(B, A)),
            Some(Out::To(Port::Flow(9)))
        );
        assert_eq!(s.counters().moved, 1);
        // Past its age an entry no longer directs frames (flooded), and expire removes it.
        let later = t0 + age + Duration::from_secs(1);
        assert_eq!(
            s.frame(later, Port::Flow(3), &frame(A, [2, 0, 0, 0, 0, 0xd])),
            Some(Out::Flood)
        );
        assert_eq!(
            s.counters().aged,
            0,
            "no sweep while the table and share have room"
        );
        s.expire(later);
        assert_eq!(s.len(), 1);
        assert_eq!(s.counters().aged, 2);
        // A flow that ends takes its addresses with it.
        s.forget(Port::Flow(3));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_mac_flood_is_bounded_and_counted() {
        let t0 = Instant::now();
        let mut s = Switch::new(1000, Duration::from_secs(300));
        let src = |port: u32, i: u32| {
            let b = i.to_be_bytes();
            [6, port as u8, b[0], b[1], b[2], b[3]]
        };
        // One flow gets a quarter of the table.
        for i in 0..100_000u32 {
            s.frame(t0, Port::Flow(1), &frame(BCAST, src(1, i)));
        }
        assert_eq!(s.len(), 250);
        assert_eq!(s.on_port(Port::Flow(1)), 250);
        assert_eq!(s.counters().port_full, 99_750);
        assert_eq!(s.counters().table_full, 0);
        // Another member still gets its share; and the TAP side.
        s.frame(t0, Port::Flow(2), &frame(BCAST, B));
        assert_eq!(s.on_port(Port::Flow(2)), 1);
        // Four flooding flows fill the table: then it is full for everyone.
        for f in 3..7u32 {
            for i in 0..300 {
                s.frame(t0, Port::Flow(u64::from(f)), &frame(BCAST, src(f, i)));
            }
        }
        assert_eq!(s.len(), 1000);
        assert!(s.counters().table_full > 0);
        // The TAP side has its reserve beyond the flows' table.
        s.frame(t0, Port::Tap, &frame(BCAST, A));
        assert_eq!(s.on_port(Port::Tap), 1);
        for i in 0..100 {
            s.frame(t0, Port::Tap, &frame(BCAST, src(0, i)));
        }
        assert_eq!(s.len(), 1000 + 62, "a sixteenth more for the TAP side");
        // After the age the flood's entries go (swept when a new address finds the table
        // full) and new ones fit.
        let later = t0 + Duration::from_secs(301);
        s.frame(later, Port::Flow(2), &frame(BCAST, D));
        assert_eq!(s.len(), 1);
        assert_eq!(s.counters().aged, 1000 + 62);
        assert_eq!(
            s.on_port(Port::Flow(1)),
            0,
            "aged entries leave their flow's share"
        );
        for i in 0..300 {
            s.frame(later, Port::Flow(1), &frame(BCAST, src(1, i)));
        }
        assert_eq!(s.on_port(Port::Flow(1)), 250);
        // A flow that ends gives its share back.
        s.forget(Port::Flow(1));
        assert_eq!(s.on_port(Port::Flow(1)), 0);
        s.frame(later, Port::Flow(1), &frame(BCAST, B));
        assert_eq!(s.on_port(Port::Flow(1)), 1);
    }

    #[test]
    fn a_member_cannot_take_this_hosts_address_nor_move_into_a_full_share() {
        let t0 = Instant::now();
        let age = Duration::from_secs(300);
        let mut s = Switch::new(8, age);
        // A lives behind the TAP; a member sends from A's address.
        s.frame(t0, Port::Tap, &frame(BCAST, A));
        assert_eq!(
            s.frame(t0, Port::Flow(7), &frame(BCAST, A)),
            Some(Out::Flood)
        );
        assert_eq!(s.counters().tap_held, 1);
        assert_eq!(
            s.frame(t0, Port::Flow(9), &frame(A, B)),
            Some(Out::To(Port::Tap)),
            "A's frames still go to the TAP"
        );
        // Once A is silent on the TAP for TAP_HOLD (long before its age), it may move: a
        // host that went away, a failed-over virtual MAC.
        let later = t0 + TAP_HOLD + Duration::from_secs(1);
        s.frame(later, Port::Flow(7), &frame(BCAST, A));
        assert_eq!(s.counters().moved, 1);
        assert_eq!(s.on_port(Port::Flow(7)), 1);
        // Flow 9 holds its share (2 of 8) with B and C, both live: A cannot move into it.
        // Its entry behind flow 7 is wrong now: forgotten, so that A's frames are flooded
        // (and reach it) instead of going to flow 7.
        s.frame(later, Port::Flow(9), &frame(BCAST, [2, 0, 0, 0, 0, 0xc]));
        assert_eq!(s.on_port(Port::Flow(9)), 2);
        s.frame(later, Port::Flow(9), &frame(BCAST, A));
        assert_eq!(s.counters().port_full, 1);
        assert_eq!(s.on_port(Port::Flow(7)), 0, "A forgotten");
        assert_eq!(s.frame(later, Port::Tap, &frame(A, D)), Some(Out::Flood));
        // A move updates both shares.
        s.frame(later, Port::Flow(3), &frame(BCAST, B));
        assert_eq!((s.on_port(Port::Flow(9)), s.on_port(Port::Flow(3))), (1, 1));
    }

    #[test]
    fn what_is_not_an_ethernet_frame_is_counted() {
        let t0 = Instant::now();
        let mut s = Switch::new(16, Duration::from_secs(300));
        assert_eq!(s.frame(t0, Port::Tap, &[0u8; 13]), None);
        // A multicast source address is not a host.
        assert_eq!(
            s.frame(t0, Port::Flow(1), &frame(A, [1, 0, 0, 0, 0, 1])),
            None
        );
        assert_eq!(s.counters().malformed, 2);
        assert_eq!(s.len(), 0);
    }
}
