//! Link-state routing of a unicast layer (the "simple", "lfa" and "ecmp" policies), as the
//! reference's
//! `routing/link-state.c` does it (unicast facts §4), as a state machine without I/O.
//!
//! - Management flows carry bare 24-byte LSAs `d_addr | s_addr | seqno` (big-endian): "the
//!   link s_addr -> d_addr is up, version seqno". A new one (unknown pair) is inserted, the
//!   forwarding table recomputed at once, and forwarded to every management neighbour but
//!   the one it came from; a known pair with a higher seqno is updated and forwarded; the
//!   rest is ignored.
//! - A new DT connection: the LSA (self -> neighbour, 0) goes to every management neighbour,
//!   then the own adjacency is inserted. A new management neighbour gets the whole LSDB.
//! - Every `t_update`: records older than `t_timeo` are deleted; the own ones are announced
//!   again with seqno + 1. Every `t_recalc` the table is recomputed if something changed.
//! - A link is used only when both ends announced it; every link weighs 1; shortest paths
//!   with the reference's tie-breaks (lowest address first, strict improvement only).
//!
//! - Policies: simple (one next hop, Dijkstra); LFA (the primary, then every neighbour N with
//!   dist(N, D) < dist(N, self) + dist(self, D) as an alternate; a neighbour whose N-1 flow
//!   is down ([`LinkState::link_down`]) is skipped, so forwarding moves to the first
//!   alternate at once); ECMP (every neighbour on a shortest path; the caller spreads
//!   packets over [`LinkState::next_hops`]).
//!
//! - Withdrawal (an o7s extension, `LsConfig::withdraw`): when a DT connection ends, the
//!   reference deletes its own record and sends nothing, so every other member keeps the
//!   dead link (and routes into it) until the record ages out after `t_timeo`. o7s floods
//!   the record once more with seqno [`WITHDRAWN`] (`u64::MAX`): an o7s member deletes the
//!   pair, recomputes at once and forwards it; an unknown pair is not forwarded, so the
//!   flood ends. The bytes are a plain 0.23 LSA: a reference member takes it as a newer
//!   version of the link (forwarded, not deleted) and ages it out after `t_timeo` as
//!   before; until then it ignores that pair's next announcements (seqno lower than
//!   `u64::MAX`), so a link that comes back at once (same two addresses) is missing in a
//!   reference member's view for up to `t_timeo`, where without the withdrawal a dead link
//!   was present for as long. Own records are never deleted by a received withdrawal: a
//!   live one is announced again a second later (when the withdrawal's flood has died
//!   out), above its seqno, so the members that took the
//!   withdrawal (a forgery, or ours come round a ring) take the link back.
//!
//! Management flows are the caller's handles (`F`); DT neighbours are addresses.

use o7s_wire::field::Writer;
use o7s_wire::unicast::lsa::Lsa;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// A unicast address.
pub type Addr = u64;

/// The seqno of a withdrawal: "the link s_addr -> d_addr is down" (module docs).
pub const WITHDRAWN: u64 = u64::MAX;

/// Timers (the reference's `ls_config` defaults).
#[derive(Debug, Clone, Copy)]
pub struct LsConfig {
    /// Re-announce the own links and age the others out this often.
    pub t_update: Duration,
    /// A record not refreshed for this long is deleted.
    pub t_timeo: Duration,
    /// Recompute the table this often when something changed.
    pub t_recalc: Duration,
    /// How next hops are chosen.
    pub policy: Policy,
    /// Zero (the default, as the reference): the table is recomputed at every new
    /// adjacency learnt from an LSA. Otherwise at most once per `hold` for those (LSAs
    /// arriving in a burst, as when a large layer converges, cost one recomputation); our
    /// own links are recomputed at once either way.
    pub hold: Duration,
    /// Most records the LSDB holds: an LSA for a new pair beyond it is dropped and
    /// counted (`full`), so that a peer inventing links cannot make us allocate without
    /// bound. A layer of 1000 IPCPs with three links each needs some 6,000.
    pub max_records: usize,
    /// Flood a withdrawal ([`WITHDRAWN`]) when an own DT connection ends (default; an o7s
    /// extension). Received withdrawals are honoured either way.
    pub withdraw: bool,
}

/// The next-hop policy (`ls_config.pol`: SIMPLE 0, LFA 1, ECMP 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// One next hop per destination.
    #[default]
    Simple,
    /// Loop-free alternates after the primary.
    Lfa,
    /// Every equal-cost next hop.
    Ecmp,
}

impl Default for LsConfig {
    fn default() -> Self {
        Self {
            t_update: Duration::from_secs(15),
            t_timeo: Duration::from_secs(60),
            t_recalc: Duration::from_secs(4),
            policy: Policy::Simple,
            hold: Duration::ZERO,
            max_records: 65_536,
            withdraw: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Adj {
    seqno: u64,
    stamp: Instant,
    /// Insertion order (newest edges are scanned first).
    order: u64,
    /// Withdrawn: a tombstone that keeps the pair's highest seqno until it ages out, so
    /// that a copy of an older announcement still in flight is stale here, not new (without
    /// it, announcement and withdrawal chase each other round every cycle of the layer).
    withdrawn: bool,
}

/// What the machine counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LsCounters {
    /// SDUs that are not 24-byte LSAs, or LSAs with address 0 or a link to itself.
    pub malformed: u64,
    /// LSAs ignored (known pair, seqno not higher).
    pub stale: u64,
    /// LSAs inserted or updated.
    pub accepted: u64,
    /// Records aged out.
    pub timed_out: u64,
    /// LSAs from another IPCP with our address (a link of "ours" we do not have).
    pub collisions: u64,
    /// LSAs of a new pair dropped because the LSDB was full (`LsConfig::max_records`).
    pub full: u64,
    /// Withdrawals received that deleted a record (and were forwarded).
    pub withdrawn: u64,
    /// Our own live links announced again (a second later) because a withdrawal of one came
    /// (another member's forgery, or ours come round after the link came back).
    pub reasserted: u64,
}

/// What an IPCP does when another one announces links from its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collision {
    /// Draw a new address ([`LinkState::readdress`]): the other IPCP is older (its links
    /// have a higher seqno: it re-announced them more often) or as old, or it kept its
    /// address for two update periods after we sat it out (a reference IPCP never moves).
    Readdress,
    /// Keep it: the other IPCP is younger and moves (o7s does the same there).
    Keep,
}

/// What link state tells its driver ([`LinkState::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Another IPCP announces links from our address: what to do (at most one pending; a
    /// decision to move outranks one to stay).
    Collision(Collision),
    /// A recomputation changed the next hops (the forwarding table to push).
    TableChanged,
}

/// A collision sat out: since when, the other IPCP's link it was seen on (ours -> `d`)
/// with its seqno then, and when a colliding LSA came last.
#[derive(Debug, Clone, Copy)]
struct Stay {
    since: Instant,
    d: Addr,
    seen: u64,
    last: Instant,
}

/// One IPCP's link-state routing.
#[derive(Debug)]
pub struct LinkState<F> {
    cfg: LsConfig,
    me: Addr,
    lsdb: BTreeMap<(Addr, Addr), Adj>,
    mgmt: Vec<F>,
    dt: BTreeSet<Addr>,
    pff: BTreeMap<Addr, Addr>,
    /// Next hops in order of preference (LFA: primary then alternates; ECMP: equal costs).
    multi: BTreeMap<Addr, Vec<Addr>>,
    /// DT neighbours whose N-1 flow is down.
    down: BTreeSet<Addr>,
    /// What to do about another IPCP with our address, since the caller last asked.
    collision: Option<Collision>,
    /// A collision we sat out (the other IPCP is the younger one and should move).
    stay: Option<Stay>,
    /// Our live links to announce again (a withdrawal of them came), each when the
    /// withdrawal's flood has died out: one announcement per link however many copies
    /// came, and none that a copy still on its way would withdraw again (the two fed each
    /// other round the cycles of a layer). At most one per DT neighbour.
    reassert_at: BTreeMap<Addr, Instant>,
    /// Every DT neighbour we had (our old records of a lost link still circulate).
    had_dt: BTreeSet<Addr>,
    modified: bool,
    /// The next hops changed since the driver last heard of it.
    table_changed: bool,
    /// Counts the changes of what [`LinkState::table`] and [`LinkState::next_hops`] give.
    generation: u64,
    /// A held recomputation is due then (`LsConfig::hold`).
    held: Option<Instant>,
    next_update: Instant,
    next_recalc: Instant,
    order: u64,
    out: VecDeque<(F, [u8; 24])>,
    counters: LsCounters,
}

fn encode(s: Addr, d: Addr, seqno: u64) -> [u8; 24] {
    let mut w = Writer::default();
    Lsa {
        d_addr: d,
        s_addr: s,
        seqno,
    }
    .write(&mut w);
    let mut b = [0u8; 24];
    for (dst, src) in b.iter_mut().zip(w.0.iter()) {
        *dst = *src;
    }
    b
}

impl<F: Clone + PartialEq> LinkState<F> {
    /// The routing of the IPCP with address `me`, started at `now` (bootstrap or enrolment).
    pub fn new(me: Addr, cfg: LsConfig, now: Instant) -> Self {
        Self {
            cfg,
            me,
            lsdb: BTreeMap::new(),
            mgmt: Vec::new(),
            dt: BTreeSet::new(),
            pff: BTreeMap::new(),
            multi: BTreeMap::new(),
            down: BTreeSet::new(),
            collision: None,
            stay: None,
            reassert_at: BTreeMap::new(),
            had_dt: BTreeSet::new(),
            modified: false,
            table_changed: false,
            generation: 0,
            held: None,
            // The update pass runs once at start, then every t_update.
            next_update: now,
            next_recalc: now + cfg.t_recalc,
            order: 0,
            out: VecDeque::new(),
            counters: LsCounters::default(),
        }
    }

    /// A number that changes whenever the table or the next hops may have changed (a
    /// driver that sends the table on need not look at it again while this stays).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What was counted.
    pub fn counters(&self) -> LsCounters {
        self.counters
    }

    /// The LSDB: (source, destination) -> seqno.
    pub fn lsdb(&self) -> Vec<((Addr, Addr), u64)> {
        self.lsdb
            .iter()
            .filter(|(_, a)| !a.withdrawn)
            .map(|(k, a)| (*k, a.seqno))
            .collect()
    }

    /// The LSDB changed: recompute now, or once `hold` has passed (own links: now).
    fn changed(&mut self, now: Instant, own: bool) {
        if self.cfg.hold.is_zero() || own {
            self.recompute();
        } else if self.held.is_none() {
            self.held = Some(now + self.cfg.hold);
        }
    }

    /// What happened since the last call: a collision first (another IPCP announced links
    /// with our address, and what to do about it), then whether the next hops changed.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(c) = self.collision.take() {
            return Some(Event::Collision(c));
        }
        std::mem::take(&mut self.table_changed).then_some(Event::TableChanged)
    }

    /// Our address.
    pub fn addr(&self) -> Addr {
        self.me
    }

    /// Seconds between announcements of our own links.
    pub fn t_update(&self) -> Duration {
        self.cfg.t_update
    }

    /// Our own links' seqnos move on by this much when a saved LSDB is restored: the
    /// copy may be that many announcements behind what our neighbours hold.
    pub const RESTORE_MARGIN: u64 = 8;

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reassert_due(now);
        if now >= self.next_update {
            self.next_update = now + self.cfg.t_update;
            let timeo = self.cfg.t_timeo;
            let before = self.lsdb.len();
            // Our own live records are refreshed below, never aged out here (with a
            // `t_timeo` below `t_update` they went before their refresh, every pass).
            let me = self.me;
            self.lsdb
                .retain(|(s, _), a| (*s == me && !a.withdrawn) || now <= a.stamp + timeo);
            let gone = before - self.lsdb.len();
            self.counters.timed_out += gone as u64;
            if gone != 0 {
                // The reference forgets to mark this (facts §4.4); o7s recomputes.
                self.modified = true;
            }
            let mine: Vec<(Addr, u64)> = self
                .lsdb
                .iter_mut()
                .filter(|((s, _), a)| *s == self.me && !a.withdrawn)
                .map(|((_, d), a)| {
                    // Never into WITHDRAWN (which would withdraw the link), never round.
                    a.seqno = a.seqno.saturating_add(1).min(WITHDRAWN - 1);
                    a.stamp = now;
                    (*d, a.seqno)
                })
                .collect();
            for (d, seq) in mine {
                let lsa = encode(self.me, d, seq);
                self.send_all(lsa, None);
            }
        }
        if now >= self.next_recalc {
            self.next_recalc = now + self.cfg.t_recalc;
            if self.modified {
                self.recompute();
            }
        }
        if self.held.is_some_and(|t| now >= t) {
            self.recompute();
        }
    }

    /// When the table is next recomputed (if something changed by then).
    pub fn next_recalc(&self) -> Instant {
        self.next_recalc
    }

    /// When [`LinkState::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.next_update.min(self.next_recalc);
        let t = self.reassert_at.values().fold(t, |t, r| t.min(*r));
        Some(self.held.map_or(t, |h| h.min(t)))
    }

    /// The next LSA to send, and on which management flow.
    pub fn poll_transmit(&mut self) -> Option<(F, [u8; 24])> {
        self.out.pop_front()
    }
}

impl<F: Clone + PartialEq> crate::machine::Machine for LinkState<F> {
    /// An LSA and the management flow it goes on.
    type Transmit = (F, [u8; 24]);
    type Event = Event;
    fn handle_timeout(&mut self, now: Instant) {
        LinkState::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        LinkState::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<(F, [u8; 24])> {
        LinkState::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<Event> {
        LinkState::poll_event(self)
    }
}

mod adjacency;
mod lsas;
mod routing;

#[cfg(test)]
mod tests;
