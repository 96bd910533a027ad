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
    /// Entries aged out.
    pub aged: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Frames dropped because their destination is behind the port they came from.
    pub same_port: u64,
    /// Frames too short to be Ethernet (14 bytes), or from a multicast source.
    pub malformed: u64,
}

/// A MAC table of at most `max` entries, each forgotten `age` after it was last seen.
#[derive(Debug)]
pub struct Switch {
    table: HashMap<[u8; 6], (Port, Instant)>,
    max: usize,
    age: Duration,
    /// When a full table was last swept for aged entries (at most once a second, so that
    /// a MAC flood does not make every frame walk the table).
    swept: Option<Instant>,
    counters: Counters,
}

/// Ethernet header length.
pub const ETH_HEADER: usize = 14;

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok())
}

impl Switch {
    /// An empty switch.
    pub fn new(max: usize, age: Duration) -> Self {
        Self {
            table: HashMap::new(),
            max,
            age,
            swept: None,
            counters: Counters::default(),
        }
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
        if let Some(e) = self.table.get_mut(&src) {
            if e.0 != port {
                self.counters.moved += 1;
                self.counters.learnt += 1;
            }
            *e = (port, now);
            return;
        }
        if self.table.len() >= self.max {
            if self
                .swept
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.swept = Some(now);
                self.expire(now);
            }
            if self.table.len() >= self.max {
                self.counters.table_full += 1;
                return;
            }
        }
        self.table.insert(src, (port, now));
        self.counters.learnt += 1;
    }

    /// Forgets entries not seen for `age`.
    pub fn expire(&mut self, now: Instant) {
        let age = self.age;
        let before = self.table.len();
        self.table
            .retain(|_, (_, t)| now.saturating_duration_since(*t) <= age);
        self.counters.aged += (before - self.table.len()) as u64;
    }

    /// A port is gone (its flow ended): its addresses are forgotten.
    pub fn forget(&mut self, port: Port) {
        self.table.retain(|_, (p, _)| *p != port);
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
        for i in 0..100_000u32 {
            let b = i.to_be_bytes();
            let src = [6, 0, b[0], b[1], b[2], b[3]];
            s.frame(t0, Port::Flow(1), &frame(BCAST, src));
        }
        assert_eq!(s.len(), 1000);
        assert_eq!(s.counters().table_full, 99_000);
        // Known hosts keep working; after the age the flood's entries go and new ones fit.
        let later = t0 + Duration::from_secs(301);
        s.frame(later, Port::Tap, &frame(BCAST, A));
        assert_eq!(s.len(), 1);
        assert_eq!(s.counters().aged, 1000);
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
