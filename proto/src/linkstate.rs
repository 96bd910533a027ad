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
//!   was present for as long. Own records are never deleted by a received withdrawal.
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
    /// Every DT neighbour we had (our old records of a lost link still circulate).
    had_dt: BTreeSet<Addr>,
    modified: bool,
    /// The next hops changed since the driver last heard of it.
    table_changed: bool,
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
            had_dt: BTreeSet::new(),
            modified: false,
            table_changed: false,
            held: None,
            // The update pass runs once at start, then every t_update.
            next_update: now,
            next_recalc: now + cfg.t_recalc,
            order: 0,
            out: VecDeque::new(),
            counters: LsCounters::default(),
        }
    }

    /// What was counted.
    pub fn counters(&self) -> LsCounters {
        self.counters
    }

    /// The next hop towards `dst`, if the table has one: the primary, or under LFA and
    /// ECMP the first one whose N-1 flow is not down.
    pub fn next_hop(&self, dst: Addr) -> Option<Addr> {
        match self.multi.get(&dst) {
            Some(v) => v.iter().copied().find(|h| !self.down.contains(h)),
            None => self
                .pff
                .get(&dst)
                .copied()
                .filter(|h| !self.down.contains(h)),
        }
    }

    /// Every next hop towards `dst` in order of preference (simple: the primary alone).
    pub fn next_hops(&self, dst: Addr) -> Vec<Addr> {
        match self.multi.get(&dst) {
            Some(v) => v
                .iter()
                .copied()
                .filter(|h| !self.down.contains(h))
                .collect(),
            None => self.next_hop(dst).into_iter().collect(),
        }
    }

    /// The N-1 flow to DT neighbour `addr` went down: forwarding avoids it at once (LFA
    /// and ECMP fall back to another next hop; simple has none until the LSAs age out).
    pub fn link_down(&mut self, addr: Addr) {
        self.down.insert(addr);
    }

    /// The N-1 flow to `addr` is up again: it is the primary again where it was.
    pub fn link_up(&mut self, addr: Addr) {
        self.down.remove(&addr);
    }

    /// The whole table: destination -> next hop.
    pub fn table(&self) -> &BTreeMap<Addr, Addr> {
        &self.pff
    }

    /// The LSDB: (source, destination) -> seqno.
    pub fn lsdb(&self) -> Vec<((Addr, Addr), u64)> {
        self.lsdb
            .iter()
            .filter(|(_, a)| !a.withdrawn)
            .map(|(k, a)| (*k, a.seqno))
            .collect()
    }

    fn send_all(&mut self, lsa: [u8; 24], except: Option<&F>) {
        for f in &self.mgmt {
            if except != Some(f) {
                self.out.push_back((f.clone(), lsa));
            }
        }
    }

    fn insert(&mut self, now: Instant, s: Addr, d: Addr, seqno: u64) {
        self.put(now, s, d, seqno);
        self.changed(now, s == self.me);
    }

    /// Stores a live record (the next in insertion order), without recomputing.
    fn put(&mut self, now: Instant, s: Addr, d: Addr, seqno: u64) {
        self.order += 1;
        self.lsdb.insert(
            (s, d),
            Adj {
                seqno,
                stamp: now,
                order: self.order,
                withdrawn: false,
            },
        );
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

    /// A colliding LSA `(me -> d, theirs)`: the younger IPCP moves. Its links have the
    /// lower seqno (seqnos count the update periods since a link came up); equal ones
    /// both move.
    fn on_collision(&mut self, now: Instant, d: Addr, theirs: u64) {
        self.counters.collisions += 1;
        // A collision sat out and quiet for four update periods is over.
        let t = self.cfg.t_update;
        if self.stay.is_some_and(|s| now > s.last + 4 * t) {
            self.stay = None;
        }
        let ours = self
            .lsdb
            .iter()
            .filter(|((s, _), a)| *s == self.me && !a.withdrawn)
            .map(|(_, a)| a.seqno)
            .max()
            .unwrap_or(0);
        let decision = match self.stay.as_mut() {
            _ if theirs >= ours => Collision::Readdress,
            None => {
                self.stay = Some(Stay {
                    since: now,
                    d,
                    seen: theirs,
                    last: now,
                });
                Collision::Keep
            }
            // It still announces the same link, two seqnos on, two update periods after we
            // sat it out: it does not move (records it sent before it moved, replayed to a
            // new neighbour, do not go up).
            Some(s) if s.d == d && theirs >= s.seen + 2 && now >= s.since + 2 * t => {
                Collision::Readdress
            }
            Some(s) => {
                s.last = now;
                return;
            }
        };
        if decision == Collision::Readdress {
            self.stay = None;
        }
        // A decision to move outranks one to stay.
        if self.collision != Some(Collision::Readdress) {
            self.collision = Some(decision);
        }
    }

    /// Our address is now `new`: our records under the old one go, our DT links are
    /// announced under the new one (the others' copies of the old records age out).
    pub fn readdress(&mut self, now: Instant, new: Addr) {
        let old = self.me;
        self.lsdb.retain(|(s, _), _| *s != old);
        self.me = new;
        self.stay = None;
        self.had_dt = self.dt.clone();
        let links: Vec<Addr> = self.dt.iter().copied().collect();
        for d in links {
            self.send_all(encode(new, d, 0), None);
            self.insert(now, new, d, 0);
        }
        self.recompute();
    }

    /// Our address.
    pub fn addr(&self) -> Addr {
        self.me
    }

    /// A management flow `f` is up: it gets every record of the LSDB (not the withdrawn).
    pub fn add_mgmt(&mut self, f: F) {
        for ((s, d), a) in self.lsdb.iter().filter(|(_, a)| !a.withdrawn) {
            self.out.push_back((f.clone(), encode(*s, *d, a.seqno)));
        }
        self.mgmt.push(f);
    }

    /// A management flow is gone: no more flooding to it.
    pub fn remove_mgmt(&mut self, f: &F) {
        self.mgmt.retain(|m| m != f);
    }

    /// A DT connection to `addr` is up: announced with seqno 0, or, when we withdrew the
    /// link before, one above the withdrawn record's (the others still hold it).
    pub fn add_dt(&mut self, now: Instant, addr: Addr) {
        let seqno = self
            .lsdb
            .get(&(self.me, addr))
            .filter(|a| a.withdrawn)
            .map_or(0, |a| a.seqno.saturating_add(1).min(WITHDRAWN - 1));
        let lsa = encode(self.me, addr, seqno);
        self.send_all(lsa, None);
        self.dt.insert(addr);
        self.had_dt.insert(addr);
        self.insert(now, self.me, addr, seqno);
    }

    /// Seconds between announcements of our own links.
    pub fn t_update(&self) -> Duration {
        self.cfg.t_update
    }

    /// Our own links' seqnos move on by this much when a saved LSDB is restored: the
    /// copy may be that many announcements behind what our neighbours hold.
    pub const RESTORE_MARGIN: u64 = 8;

    /// Takes back a saved LSDB (an IPCP that resumes after its o7sd restarted: its
    /// neighbours still hold these records, ours with the seqnos we announced): every
    /// record as fresh, our own links `RESTORE_MARGIN` seqnos on (announced at the next
    /// update, above what the neighbours hold), none of them a collision. Records for
    /// address 0 or from a member to itself are skipped, as from the wire.
    pub fn restore(&mut self, now: Instant, records: &[((Addr, Addr), u64)]) {
        for &((s, d), seqno) in records.iter().take(self.cfg.max_records) {
            if s == 0 || d == 0 || s == d || seqno == WITHDRAWN {
                continue;
            }
            let seqno = if s == self.me {
                self.had_dt.insert(d);
                seqno
                    .saturating_add(Self::RESTORE_MARGIN)
                    .min(WITHDRAWN - 1)
            } else {
                seqno
            };
            self.put(now, s, d, seqno);
        }
        self.changed(now, true);
    }

    /// A DT connection to `addr` that was up before our o7sd restarted: ours again, its
    /// record (restored) kept with its seqno, or new at 0.
    pub fn resume_dt(&mut self, now: Instant, addr: Addr) {
        self.dt.insert(addr);
        self.had_dt.insert(addr);
        if !self.lsdb.contains_key(&(self.me, addr)) {
            self.insert(now, self.me, addr, 0);
        } else {
            self.changed(now, true);
        }
    }

    /// The DT connection to `addr` is gone: the own record goes and the table is
    /// recomputed at once; with `withdraw`, every management neighbour is told (the
    /// reference sends nothing and the others age the record out).
    pub fn remove_dt(&mut self, addr: Addr) {
        self.dt.remove(&addr);
        let key = (self.me, addr);
        if self.cfg.withdraw {
            // Kept as a tombstone (with its seqno, aging out as it would have) so that the
            // link, if it comes back, is announced above what the others hold.
            if let Some(a) = self.lsdb.get_mut(&key).filter(|a| !a.withdrawn) {
                a.withdrawn = true;
                self.send_all(encode(self.me, addr, WITHDRAWN), None);
            }
            // The table at once: this member knows its link is gone.
            self.recompute();
        } else {
            // The reference: the record goes, the table waits for the next recomputation.
            self.lsdb.remove(&key);
            self.modified = true;
        }
    }

    /// An SDU from management flow `from`.
    pub fn handle(&mut self, now: Instant, from: &F, sdu: &[u8]) {
        let Ok(l) = (if sdu.len() == 24 {
            Lsa::parse(sdu)
        } else {
            Err(o7s_wire::Error::Truncated {
                what: "LSA",
                need: 24,
                have: sdu.len(),
            })
        }) else {
            self.counters.malformed += 1;
            return;
        };
        // No IPCP has address 0 (the flat policy draws non-zero ones) and no link goes
        // from an IPCP to itself: such a record is bad input, not a link.
        if l.s_addr == 0 || l.d_addr == 0 || l.s_addr == l.d_addr {
            self.counters.malformed += 1;
            return;
        }
        let key = (l.s_addr, l.d_addr);
        if l.seqno == WITHDRAWN {
            // Our own links are ours to withdraw (this may be our own withdrawal come
            // round a ring after the link came back); an unknown pair, or one withdrawn
            // already, ends the flood. The record stays as a tombstone until it ages out.
            let live = self
                .lsdb
                .get_mut(&key)
                .filter(|a| !a.withdrawn && l.s_addr != self.me);
            let Some(a) = live else {
                self.counters.stale += 1;
                return;
            };
            a.withdrawn = true;
            a.stamp = now;
            self.counters.withdrawn += 1;
            if self.cfg.withdraw {
                self.changed(now, false);
            } else {
                // The reference's pace: the table follows at the next recomputation.
                self.modified = true;
            }
            self.send_all(encode(l.s_addr, l.d_addr, WITHDRAWN), Some(from));
            return;
        }
        // Flat addresses are drawn at random with no coordination: another IPCP with our
        // address shows as "our" link to a neighbour we have no DT connection to (the
        // reference ignores it). Not stored, not flooded: the caller picks a new address.
        if l.s_addr == self.me && !self.had_dt.contains(&l.d_addr) {
            self.on_collision(now, l.d_addr, l.seqno);
            return;
        }
        let full = self.lsdb.len() >= self.cfg.max_records;
        let mut revived = false;
        match self.lsdb.get_mut(&key) {
            None if full => {
                self.counters.full += 1;
                return;
            }
            None => {
                self.counters.accepted += 1;
                self.insert(now, l.s_addr, l.d_addr, l.seqno);
            }
            Some(a) if l.seqno > a.seqno => {
                self.counters.accepted += 1;
                a.seqno = l.seqno;
                a.stamp = now;
                // A withdrawn link announced again, above the withdrawn seqno: back in
                // the graph.
                revived = std::mem::take(&mut a.withdrawn);
            }
            Some(_) => {
                self.counters.stale += 1;
                return;
            }
        }
        if revived {
            self.changed(now, l.s_addr == self.me);
        }
        let mut b = [0u8; 24];
        for (dst, src) in b.iter_mut().zip(sdu.iter()) {
            *dst = *src;
        }
        self.send_all(b, Some(from));
    }

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_update {
            self.next_update = now + self.cfg.t_update;
            let timeo = self.cfg.t_timeo;
            let before = self.lsdb.len();
            self.lsdb.retain(|_, a| now <= a.stamp + timeo);
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
                    a.seqno += 1;
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
        Some(self.held.map_or(t, |h| h.min(t)))
    }

    /// The next LSA to send, and on which management flow.
    pub fn poll_transmit(&mut self) -> Option<(F, [u8; 24])> {
        self.out.pop_front()
    }

    /// Shortest paths (hop count) over the links both ends announced; the next hop of each
    /// destination is the first hop of the first shortest path found, visiting vertices by
    /// (distance, address) and edges newest first, improving only on strictly shorter.
    fn recompute(&mut self) {
        self.modified = false;
        self.held = None;
        // Usable edges: both directions announced.
        let mut adj: BTreeMap<Addr, Vec<(u64, Addr)>> = BTreeMap::new();
        for ((s, d), a) in self.lsdb.iter().filter(|(_, a)| !a.withdrawn) {
            if self.lsdb.get(&(*d, *s)).is_some_and(|b| !b.withdrawn) {
                adj.entry(*s).or_default().push((a.order, *d));
            }
        }
        for edges in adj.values_mut() {
            edges.sort_by_key(|e| std::cmp::Reverse(e.0));
        }
        let mut dist: BTreeMap<Addr, u32> = BTreeMap::new();
        let mut first: BTreeMap<Addr, Addr> = BTreeMap::new();
        dist.insert(self.me, 0);
        // Unit weights: breadth first, one distance at a time, the vertices of a distance
        // in address order (the order of a Dijkstra by (distance, address)); a vertex keeps
        // the first hop of the first path that reached it.
        let mut level = vec![self.me];
        let mut d = 0u32;
        while !level.is_empty() {
            let mut next = vec![];
            for &v in &level {
                for &(_, n) in adj.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
                    if dist.contains_key(&n) {
                        continue;
                    }
                    dist.insert(n, d + 1);
                    let hop = if v == self.me {
                        n
                    } else {
                        first.get(&v).copied().unwrap_or(n)
                    };
                    first.insert(n, hop);
                    next.push(n);
                }
            }
            next.sort_unstable();
            level = next;
            d += 1;
        }
        first.remove(&self.me);
        // A next hop without a DT connection is skipped.
        first.retain(|_, hop| self.dt.contains(hop));
        let multi = if self.cfg.policy == Policy::Simple {
            BTreeMap::new()
        } else {
            self.alternates(&adj, &dist, &first)
        };
        if multi != self.multi || first != self.pff {
            self.table_changed = true;
        }
        self.multi = multi;
        self.pff = first;
    }

    /// LFA or ECMP next hops from the neighbours' distances (unit weights: a breadth-first
    /// search from each DT neighbour).
    fn alternates(
        &self,
        adj: &BTreeMap<Addr, Vec<(u64, Addr)>>,
        dist: &BTreeMap<Addr, u32>,
        primary: &BTreeMap<Addr, Addr>,
    ) -> BTreeMap<Addr, Vec<Addr>> {
        let bfs = |from: Addr| {
            let mut d: BTreeMap<Addr, u32> = BTreeMap::new();
            let mut q = VecDeque::new();
            d.insert(from, 0);
            q.push_back(from);
            while let Some(v) = q.pop_front() {
                let dv = d.get(&v).copied().unwrap_or(0);
                for &(_, n) in adj.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
                    if let std::collections::btree_map::Entry::Vacant(e) = d.entry(n) {
                        e.insert(dv + 1);
                        q.push_back(n);
                    }
                }
            }
            d
        };
        let neighbours: Vec<Addr> = adj
            .get(&self.me)
            .map(|v| {
                v.iter()
                    .map(|e| e.1)
                    .filter(|n| self.dt.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        let from_nb: Vec<(Addr, BTreeMap<Addr, u32>)> =
            neighbours.iter().map(|n| (*n, bfs(*n))).collect();
        let mut out: BTreeMap<Addr, Vec<Addr>> = BTreeMap::new();
        for (&d, &ds) in dist.iter().filter(|(d, _)| **d != self.me) {
            let mut hops: Vec<Addr> = match (self.cfg.policy, primary.get(&d)) {
                (Policy::Lfa, Some(p)) => vec![*p],
                _ => Vec::new(),
            };
            for (n, dn) in &from_nb {
                let Some(&nd) = dn.get(&d) else { continue };
                let keep = match self.cfg.policy {
                    // dist(N, self) is 1 for a neighbour.
                    Policy::Lfa => *n != d && nd < 1 + ds && !hops.contains(n),
                    Policy::Ecmp => nd + 1 == ds,
                    Policy::Simple => false,
                };
                if keep {
                    hops.push(*n);
                }
            }
            if !hops.is_empty() {
                out.insert(d, hops);
            }
        }
        out
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The collision link state reports, if any (other events are passed over).
    fn collision<F: Clone + PartialEq>(ls: &mut LinkState<F>) -> Option<Collision> {
        std::iter::from_fn(|| ls.poll_event()).find_map(|e| match e {
            Event::Collision(c) => Some(c),
            Event::TableChanged => None,
        })
    }

    #[test]
    fn a_changed_table_is_an_event_once_and_an_unchanged_one_none() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
        ls.add_mgmt(10);
        ls.add_dt(t0, 2);
        // Only our half of the link: no route, no change.
        assert_eq!(ls.poll_event(), None);
        ls.handle(t0, &10, &encode(2, 1, 0));
        assert_eq!(ls.next_hop(2), Some(2));
        assert_eq!(ls.poll_event(), Some(Event::TableChanged));
        assert_eq!(ls.poll_event(), None, "told once");
        // A newer seqno of the same link: the LSDB changed, the next hops did not.
        ls.handle(t0, &10, &encode(2, 1, 1));
        ls.handle_timeout(t0 + LsConfig::default().t_recalc);
        assert_eq!(ls.poll_event(), None);
        // A third IPCP behind 2: a new destination.
        ls.handle(t0, &10, &encode(2, 3, 0));
        ls.handle(t0, &10, &encode(3, 2, 0));
        ls.handle_timeout(t0 + 2 * LsConfig::default().t_recalc);
        assert_eq!(ls.next_hop(3), Some(2));
        assert_eq!(ls.poll_event(), Some(Event::TableChanged));
        // The machine's shape, through the trait.
        let (sent, events) = crate::machine::drain(&mut ls);
        assert!(events.is_empty());
        assert!(sent.iter().all(|(f, _)| *f == 10), "{sent:?}");
        assert_eq!(
            crate::machine::Machine::poll_timeout(&ls),
            ls.poll_timeout()
        );
    }

    #[test]
    fn an_lsa_is_inserted_forwarded_once_and_links_need_both_ends() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
        ls.add_mgmt(10);
        ls.add_mgmt(20);
        ls.add_dt(t0, 2);
        // Our own announcement went to both management neighbours.
        assert_eq!(ls.poll_transmit(), Some((10, encode(1, 2, 0))));
        assert_eq!(ls.poll_transmit(), Some((20, encode(1, 2, 0))));
        // Only 1 -> 2 is known: no route yet.
        assert_eq!(ls.next_hop(2), None);
        // 2 -> 1 from flow 10: inserted, forwarded to 20 only, route up.
        ls.handle(t0, &10, &encode(2, 1, 0));
        assert_eq!(ls.poll_transmit(), Some((20, encode(2, 1, 0))));
        assert_eq!(ls.poll_transmit(), None);
        assert_eq!(ls.next_hop(2), Some(2));
        // The same again: ignored, not forwarded.
        ls.handle(t0, &20, &encode(2, 1, 0));
        assert_eq!(ls.poll_transmit(), None);
        assert_eq!(ls.counters().stale, 1);
        // A newer seqno: forwarded. A short SDU: counted.
        ls.handle(t0, &20, &encode(2, 1, 1));
        assert_eq!(ls.poll_transmit(), Some((10, encode(2, 1, 1))));
        ls.handle(t0, &20, &[0; 23]);
        assert_eq!(ls.counters().malformed, 1);
    }

    #[test]
    fn a_restored_lsdb_routes_at_once_and_announces_our_links_above_the_saved_seqnos() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
        // Saved: 1 <-> 2 <-> 3, ours at seqno 40; junk records are skipped.
        let saved = [
            ((1, 2), 40),
            ((2, 1), 41),
            ((2, 3), 7),
            ((3, 2), 9),
            ((0, 2), 1),
            ((3, 3), 1),
            ((2, 4), WITHDRAWN),
        ];
        ls.restore(t0, &saved);
        ls.resume_dt(t0, 2);
        assert_eq!(
            ls.next_hop(3),
            Some(2),
            "a route through the restored records"
        );
        let mut db = ls.lsdb();
        db.sort_unstable();
        assert_eq!(
            db,
            [
                ((1, 2), 40 + LinkState::<u8>::RESTORE_MARGIN),
                ((2, 1), 41),
                ((2, 3), 7),
                ((3, 2), 9)
            ]
        );
        // A neighbour sends our own record back (its copy, older): ours, not a collision.
        ls.add_mgmt(10);
        while ls.poll_transmit().is_some() {}
        ls.handle(t0, &10, &encode(1, 2, 40));
        assert_eq!(ls.counters().collisions, 0);
        assert!(collision(&mut ls).is_none());
        // The next update announces our link above what the neighbours hold.
        ls.handle_timeout(t0 + Duration::from_secs(1));
        let sent: Vec<[u8; 24]> = std::iter::from_fn(|| ls.poll_transmit())
            .map(|(_, l)| l)
            .collect();
        assert!(
            sent.contains(&encode(1, 2, 41 + LinkState::<u8>::RESTORE_MARGIN)),
            "{sent:?}"
        );
        // A DT link with no saved record starts at 0.
        ls.resume_dt(t0, 3);
        assert!(ls.lsdb().contains(&((1, 3), 0)));
        assert_eq!(ls.t_update(), LsConfig::default().t_update);
        // A saved seqno near the top stays below the withdrawal's.
        let mut hi: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
        hi.restore(t0, &[((1, 2), WITHDRAWN - 2)]);
        assert_eq!(hi.lsdb(), [((1, 2), WITHDRAWN - 1)]);
    }

    #[test]
    fn own_links_are_announced_and_others_age_out() {
        let t0 = Instant::now();
        let cfg = LsConfig::default();
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_dt(t0, 2);
        ls.handle(t0, &0, &encode(2, 1, 0));
        ls.add_mgmt(7);
        // The new neighbour got the whole LSDB.
        assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, 0))));
        assert_eq!(ls.poll_transmit(), Some((7, encode(2, 1, 0))));
        ls.handle_timeout(t0); // the pass at start: seqno 1
        assert_eq!(ls.poll_transmit(), Some((7, encode(1, 2, 1))));
        // 2 stops announcing: after t_timeo its record goes, and the route with it, while
        // the own record is re-announced at every pass.
        let mut now = t0;
        for _ in 0..4 {
            now += cfg.t_update;
            ls.handle_timeout(now);
        }
        assert_eq!(ls.counters().timed_out, 0, "60 s old: not yet");
        assert_eq!(ls.next_hop(2), Some(2));
        // The pass that deletes it recomputes in the same turn (the recalculation is due).
        now += cfg.t_update;
        ls.handle_timeout(now);
        assert!(ls.poll_transmit().is_some());
        assert_eq!(ls.counters().timed_out, 1);
        assert_eq!(ls.next_hop(2), None);
        assert!(ls.table().is_empty());
        assert_eq!(ls.lsdb().len(), 1);
        // Next: the recalculation (every t_recalc), before the next pass.
        assert_eq!(ls.poll_timeout(), Some(now + cfg.t_recalc));
    }

    /// A chain A(1) - B(2) - C(3) seen from A and from B, all links known everywhere; A and
    /// B are each other's management neighbours (flows 12 at A, 21 at B; 23 B's to C).
    fn chain(withdraw: bool) -> (LinkState<u8>, LinkState<u8>, Instant) {
        let t0 = Instant::now();
        let cfg = LsConfig {
            withdraw,
            ..LsConfig::default()
        };
        let mut a: LinkState<u8> = LinkState::new(1, cfg, t0);
        let mut b: LinkState<u8> = LinkState::new(2, cfg, t0);
        a.add_dt(t0, 2);
        b.add_dt(t0, 1);
        b.add_dt(t0, 3);
        for (s, d) in [(2, 1), (2, 3), (3, 2)] {
            a.handle(t0, &12, &encode(s, d, 0));
        }
        for (s, d) in [(1, 2), (3, 2)] {
            b.handle(t0, &21, &encode(s, d, 0));
        }
        a.add_mgmt(12);
        b.add_mgmt(21);
        b.add_mgmt(23);
        while a.poll_transmit().is_some() {}
        while b.poll_transmit().is_some() {}
        assert_eq!(a.next_hop(3), Some(2));
        (a, b, t0)
    }

    #[test]
    fn a_lost_link_is_withdrawn_and_the_far_member_drops_the_route_at_once() {
        let (mut a, mut b, t0) = chain(true);
        // B loses C: its own record goes, its table at once, and both management
        // neighbours are told with the withdrawal seqno.
        b.remove_dt(3);
        assert_eq!(b.next_hop(3), None);
        assert_eq!(b.poll_transmit(), Some((21, encode(2, 3, WITHDRAWN))));
        assert_eq!(b.poll_transmit(), Some((23, encode(2, 3, WITHDRAWN))));
        assert_eq!(b.poll_transmit(), None);
        // A deletes the pair and routes C no more, long before t_timeo; it forwards the
        // withdrawal to its other management neighbours (none here but a new one).
        a.add_mgmt(13);
        while a.poll_transmit().is_some() {}
        a.handle(t0, &12, &encode(2, 3, WITHDRAWN));
        assert_eq!(a.next_hop(3), None);
        assert_eq!(a.counters().withdrawn, 1);
        assert!(!a.lsdb().iter().any(|(k, _)| *k == (2, 3)));
        assert_eq!(a.poll_transmit(), Some((13, encode(2, 3, WITHDRAWN))));
        assert_eq!(a.poll_transmit(), None);
        // Again (another path): an unknown pair, not forwarded: the flood ends.
        a.handle(t0, &13, &encode(2, 3, WITHDRAWN));
        assert_eq!(a.poll_transmit(), None);
        assert_eq!(a.counters().withdrawn, 1);
        assert_eq!(a.counters().stale, 1);
        // A copy of the old announcement still in flight is stale at a member that has
        // the tombstone, and goes no further: without the tombstone it would be new again,
        // forwarded, and chase the withdrawal round every cycle of the layer.
        a.handle(t0, &13, &encode(2, 3, 0));
        assert_eq!(a.next_hop(3), None);
        assert_eq!(a.poll_transmit(), None);
        assert_eq!(a.counters().stale, 2);
        // The link comes back: B announces it one above the withdrawn seqno, A takes it.
        b.add_dt(t0, 3);
        assert_eq!(b.poll_transmit(), Some((21, encode(2, 3, 1))));
        a.handle(t0, &12, &encode(2, 3, 1));
        assert_eq!(a.next_hop(3), Some(2));
        assert_eq!(a.poll_transmit(), Some((13, encode(2, 3, 1))));
        // The tombstones age out after t_timeo like any record; then a restarted owner's
        // seqno 0 is new again.
        let (mut c, mut d, t0) = chain(true);
        d.remove_dt(3);
        c.handle(t0, &12, &encode(2, 3, WITHDRAWN));
        let later = t0 + LsConfig::default().t_timeo + Duration::from_secs(1);
        c.handle_timeout(later);
        c.handle(later, &12, &encode(2, 3, 0));
        assert!(c.lsdb().iter().any(|(k, s)| *k == (2, 3) && *s == 0));
    }

    #[test]
    fn without_withdraw_nothing_is_sent_and_a_received_one_never_deletes_an_own_link() {
        let (mut a, mut b, t0) = chain(false);
        b.remove_dt(3);
        assert_eq!(
            b.next_hop(3),
            Some(3),
            "the reference's table waits for its recomputation"
        );
        assert_eq!(
            b.poll_transmit(),
            None,
            "the reference's behaviour: nothing sent"
        );
        b.handle_timeout(t0 + LsConfig::default().t_recalc + Duration::from_millis(1));
        assert_eq!(b.next_hop(3), None);
        // A withdrawal of A's own link to B (its own come round, or a forgery) is ignored.
        a.handle(t0, &12, &encode(1, 2, WITHDRAWN));
        assert!(a.lsdb().iter().any(|(k, _)| *k == (1, 2)));
        assert_eq!(a.next_hop(2), Some(2));
        assert_eq!(a.counters().withdrawn, 0);
        assert_eq!(a.poll_transmit(), None);
        // A withdrawal from an o7s member is honoured at the reference's pace: the record
        // goes now, the table at the next recomputation.
        assert_eq!(a.next_hop(3), Some(2));
        a.handle(t0, &12, &encode(2, 3, WITHDRAWN));
        assert_eq!(a.counters().withdrawn, 1);
        assert_eq!(a.next_hop(3), Some(2));
        a.handle_timeout(t0 + LsConfig::default().t_recalc + Duration::from_millis(1));
        assert_eq!(a.next_hop(3), None);
    }

    #[test]
    fn a_withdrawal_under_hold_waits_for_the_held_recomputation() {
        let t0 = Instant::now();
        let hold = Duration::from_millis(500);
        let cfg = LsConfig {
            hold,
            ..LsConfig::default()
        };
        let mut a: LinkState<u8> = LinkState::new(1, cfg, t0);
        a.add_dt(t0, 2);
        for (s, d) in [(2, 1), (2, 3), (3, 2)] {
            a.handle(t0, &12, &encode(s, d, 0));
        }
        a.handle_timeout(t0 + hold);
        assert_eq!(a.next_hop(3), Some(2));
        let t1 = t0 + 2 * hold;
        a.handle(t1, &12, &encode(2, 3, WITHDRAWN));
        assert_eq!(a.next_hop(3), Some(2), "held");
        assert_eq!(a.poll_timeout(), Some(t1 + hold));
        a.handle_timeout(t1 + hold);
        assert_eq!(a.next_hop(3), None);
        // Announced again above the tombstone: back in the graph at the next held
        // recomputation (a link learnt from an LSA, not our own).
        let t2 = t1 + 2 * hold;
        a.handle(t2, &12, &encode(2, 3, 1));
        assert_eq!(a.next_hop(3), None, "held");
        a.handle_timeout(t2 + hold);
        assert_eq!(a.next_hop(3), Some(2));
    }

    /// A collision is judged by our own live links' seqnos: not by a neighbour's record
    /// (seqno 40), nor by a link of ours we withdrew (seqno 10).
    #[test]
    fn a_collision_is_judged_by_our_live_links_only() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(7, LsConfig::default(), t0);
        ls.add_mgmt(1);
        ls.add_dt(t0, 2);
        ls.add_dt(t0, 5);
        ls.handle(t0, &1, &encode(2, 7, 40));
        ls.handle(t0, &1, &encode(7, 5, 10));
        ls.remove_dt(5);
        while ls.poll_transmit().is_some() {}
        ls.handle(t0, &1, &encode(7, 9, 3));
        assert_eq!(collision(&mut ls), Some(Collision::Readdress));
    }

    /// A link of ours withdrawn at the highest seqno is announced again below the
    /// withdrawal's seqno, never as a withdrawal.
    #[test]
    fn a_link_back_is_never_announced_as_a_withdrawal() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(7, LsConfig::default(), t0);
        ls.add_mgmt(1);
        ls.add_dt(t0, 2);
        ls.handle(t0, &1, &encode(7, 2, WITHDRAWN - 1));
        ls.remove_dt(2);
        while ls.poll_transmit().is_some() {}
        ls.add_dt(t0, 2);
        assert_eq!(ls.poll_transmit(), Some((1, encode(7, 2, WITHDRAWN - 1))));
    }

    /// A ring of four: 1 - 2 - 3 - 4 - 1, seen from 1 (all LSAs in, DT to 2 and 4).
    fn ring(policy: Policy) -> LinkState<u8> {
        let t0 = Instant::now();
        let cfg = LsConfig {
            policy,
            ..LsConfig::default()
        };
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_dt(t0, 2);
        ls.add_dt(t0, 4);
        for (s, d) in [(2, 1), (2, 3), (3, 2), (3, 4), (4, 3), (4, 1)] {
            ls.handle(t0, &0, &encode(s, d, 0));
        }
        ls.recompute();
        ls
    }

    #[test]
    fn lfa_falls_back_to_the_alternate_at_once_and_back_again() {
        let mut ls = ring(Policy::Lfa);
        assert_eq!(
            ls.next_hops(3),
            vec![2, 4],
            "primary 2 (lowest address), alternate 4"
        );
        assert_eq!(ls.next_hop(3), Some(2));
        ls.link_down(2);
        assert_eq!(
            ls.next_hop(3),
            Some(4),
            "the alternate, with no recomputation"
        );
        // No loop-free alternate to 2 itself: 4's shortest paths to 2 may run through 1.
        assert_eq!(ls.next_hop(2), None);
        ls.link_up(2);
        assert_eq!(ls.next_hop(3), Some(2), "the primary again");
        // Simple has no alternate.
        let mut s = ring(Policy::Simple);
        s.link_down(2);
        assert_eq!(s.next_hop(3), None);
    }

    #[test]
    fn ecmp_lists_every_equal_cost_next_hop() {
        let mut ls = ring(Policy::Ecmp);
        let mut both = ls.next_hops(3);
        both.sort_unstable();
        assert_eq!(both, vec![2, 4]);
        ls.link_down(4);
        assert_eq!(ls.next_hops(3), vec![2]);
        assert_eq!(ls.next_hops(2), vec![2], "the direct neighbour only");
    }

    #[test]
    fn another_ipcp_with_our_address_is_found_and_we_readdress() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(7, LsConfig::default(), t0);
        ls.add_mgmt(1);
        ls.add_dt(t0, 2);
        while ls.poll_transmit().is_some() {}
        // Our own link, echoed back: no collision.
        ls.handle(t0, &1, &encode(7, 2, 0));
        assert_eq!(collision(&mut ls), None);
        // "7 -> 9": we have no DT connection to 9: another IPCP uses our address, and
        // it is older (seqno 3 > our 0): we move.
        ls.handle(t0, &1, &encode(7, 9, 3));
        assert_eq!(collision(&mut ls), Some(Collision::Readdress));
        assert_eq!(collision(&mut ls), None, "reported once");
        assert_eq!(ls.counters().collisions, 1);
        assert!(ls.poll_transmit().is_none(), "not flooded");
        ls.readdress(t0, 8);
        assert_eq!(ls.addr(), 8);
        assert_eq!(ls.poll_transmit(), Some((1, encode(8, 2, 0))));
        assert!(ls.lsdb().iter().all(|((s, _), _)| *s != 7));
    }

    #[test]
    fn the_younger_of_two_ipcps_with_one_address_moves() {
        let t0 = Instant::now();
        let cfg = LsConfig::default();
        let mut ls: LinkState<u8> = LinkState::new(7, cfg, t0);
        ls.add_mgmt(1);
        ls.add_dt(t0, 2);
        // Four update passes: our link 7 -> 2 is at seqno 4.
        for i in 0..5u32 {
            ls.handle_timeout(t0 + cfg.t_update * i);
        }
        while ls.poll_transmit().is_some() {}
        // The other one's link is at seqno 1: it is younger; we keep our address.
        let t1 = t0 + cfg.t_update * 4;
        ls.handle(t1, &1, &encode(7, 9, 1));
        assert_eq!(collision(&mut ls), Some(Collision::Keep));
        // Its next announcement within two update periods changes nothing.
        ls.handle(t1 + cfg.t_update, &1, &encode(7, 9, 2));
        assert_eq!(collision(&mut ls), None);
        // Still announcing, newer, two periods on: it does not move (a reference IPCP):
        // we do.
        ls.handle(t1 + cfg.t_update * 2, &1, &encode(7, 9, 3));
        assert_eq!(collision(&mut ls), Some(Collision::Readdress));
        assert_eq!(ls.counters().collisions, 3);
        // Sat out again (the decision cleared it): another of its links with newer
        // seqnos is no sign (stale records replayed); a long quiet ends the sit-out.
        ls.handle(t1, &1, &encode(7, 9, 1));
        assert_eq!(collision(&mut ls), Some(Collision::Keep));
        ls.handle(t1 + cfg.t_update * 3, &1, &encode(7, 10, 4));
        assert_eq!(collision(&mut ls), None, "another link: no sign");
        let later = t1 + cfg.t_update * 8;
        ls.handle(later, &1, &encode(7, 9, 3));
        assert_eq!(collision(&mut ls), Some(Collision::Keep), "a new sit-out");
        // As old as we are: both move.
        let mut b: LinkState<u8> = LinkState::new(5, cfg, t0);
        b.add_dt(t0, 2);
        b.handle(t0, &1, &encode(5, 9, 0));
        assert_eq!(collision(&mut b), Some(Collision::Readdress));
    }

    #[test]
    fn a_hold_down_defers_recomputation_learnt_from_lsas() {
        let t0 = Instant::now();
        let cfg = LsConfig {
            hold: Duration::from_millis(100),
            ..LsConfig::default()
        };
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_mgmt(0);
        // Our own link: at once.
        ls.add_dt(t0, 2);
        // B's link back to us and on to C: held.
        ls.handle(t0, &0, &encode(2, 1, 1));
        ls.handle(t0, &0, &encode(2, 3, 1));
        ls.handle(t0, &0, &encode(3, 2, 1));
        assert_eq!(ls.next_hop(3), None, "not yet computed");
        ls.handle_timeout(t0 + Duration::from_millis(50));
        assert_eq!(ls.next_hop(3), None, "held for 100 ms");
        assert_eq!(ls.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        ls.handle_timeout(t0 + Duration::from_millis(100));
        assert_eq!((ls.next_hop(2), ls.next_hop(3)), (Some(2), Some(2)));
    }

    #[test]
    fn a_full_lsdb_drops_new_pairs_and_keeps_updating_known_ones() {
        let t0 = Instant::now();
        let cfg = LsConfig {
            max_records: 3,
            ..LsConfig::default()
        };
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_mgmt(0);
        ls.add_dt(t0, 2);
        for (s, d) in [(2, 1), (2, 3), (3, 2), (7, 8)] {
            ls.handle(t0, &0, &encode(s, d, 1));
        }
        assert_eq!(ls.lsdb().len(), 3);
        assert_eq!(ls.counters().full, 2, "(3, 2) and (7, 8)");
        // A known pair still refreshes; our own links always go in.
        ls.handle(t0, &0, &encode(2, 3, 5));
        assert!(ls.lsdb().contains(&((2, 3), 5)));
        ls.add_dt(t0, 9);
        assert!(ls.lsdb().iter().any(|(k, _)| *k == (1, 9)));
    }

    #[test]
    fn lsas_with_address_zero_or_a_link_to_itself_are_dropped() {
        let t0 = Instant::now();
        let mut ls: LinkState<u8> = LinkState::new(1, LsConfig::default(), t0);
        ls.add_mgmt(0);
        let _ = std::iter::from_fn(|| ls.poll_transmit()).count();
        for (s, d) in [(0, 2), (2, 0), (5, 5)] {
            ls.handle(t0, &0, &encode(s, d, 1));
        }
        assert_eq!(ls.counters().malformed, 3);
        assert!(ls.lsdb().is_empty(), "{:?}", ls.lsdb());
        assert!(ls.poll_transmit().is_none(), "not flooded");
    }

    #[test]
    fn the_table_ecmp_order_and_the_management_flows_are_as_announced() {
        let t0 = Instant::now();
        let cfg = LsConfig {
            policy: Policy::Ecmp,
            ..LsConfig::default()
        };
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_mgmt(10);
        ls.add_mgmt(20);
        // 2 first, then 3 (the newer link): both reach 4 in two hops.
        ls.add_dt(t0, 2);
        ls.add_dt(t0, 3);
        for (s, d) in [(2, 1), (3, 1), (2, 4), (4, 2), (3, 4), (4, 3)] {
            ls.handle(t0, &10, &encode(s, d, 0));
        }
        assert_eq!(ls.counters().accepted, 6);
        ls.handle(t0, &10, &encode(2, 4, 1));
        assert_eq!(ls.counters().accepted, 7, "a newer seqno is accepted");
        assert_eq!(
            ls.table().iter().map(|(d, h)| (*d, *h)).collect::<Vec<_>>(),
            [(2, 2), (3, 3), (4, 2)]
        );
        // Equal-cost next hops, the newest link first.
        assert_eq!(ls.next_hops(4), [3, 2]);
        // A management flow removed gets no more LSAs.
        while ls.poll_transmit().is_some() {}
        ls.remove_mgmt(&20);
        ls.handle(t0, &10, &encode(4, 5, 0));
        let to: Vec<u8> = std::iter::from_fn(|| ls.poll_transmit())
            .map(|(f, _)| f)
            .collect();
        assert!(to.is_empty(), "flooded back to its sender only: {to:?}");
        ls.handle(t0, &30, &encode(4, 6, 0));
        let to: Vec<u8> = std::iter::from_fn(|| ls.poll_transmit())
            .map(|(f, _)| f)
            .collect();
        assert_eq!(to, [10]);
    }

    #[test]
    fn a_sit_out_lasts_four_quiet_periods_and_needs_two_seqnos_and_two_periods() {
        let t0 = Instant::now();
        let cfg = LsConfig::default();
        let t = cfg.t_update;
        let mut ls: LinkState<u8> = LinkState::new(7, cfg, t0);
        ls.add_mgmt(1);
        ls.add_dt(t0, 2);
        for i in 0..5u32 {
            ls.handle_timeout(t0 + t * i);
        }
        while ls.poll_transmit().is_some() {}
        let t1 = t0 + t * 4;
        ls.handle(t1, &1, &encode(7, 9, 1));
        assert_eq!(collision(&mut ls), Some(Collision::Keep));
        // Two seqnos on but only one period: no move. One seqno on, two periods: no move.
        ls.handle(t1 + t, &1, &encode(7, 9, 3));
        assert_eq!(collision(&mut ls), None);
        ls.handle(t1 + t * 2, &1, &encode(7, 9, 2));
        assert_eq!(collision(&mut ls), None);
        // Quiet for exactly four periods since the last: still the same sit-out.
        ls.handle(t1 + t * 6, &1, &encode(7, 9, 1));
        assert_eq!(collision(&mut ls), None);
        // Past four quiet periods: over, a new one starts.
        ls.handle(t1 + t * 10 + Duration::from_millis(1), &1, &encode(7, 9, 1));
        assert_eq!(collision(&mut ls), Some(Collision::Keep));
    }

    #[test]
    fn a_neighbour_as_far_from_the_destination_as_we_are_is_a_loop_free_alternate() {
        let t0 = Instant::now();
        let cfg = LsConfig {
            policy: Policy::Lfa,
            ..LsConfig::default()
        };
        // A triangle 1 - 2 - 3 - 1: towards 2, neighbour 3 is one hop from 2, as we are
        // (1 < 1 + 1): an alternate.
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_dt(t0, 2);
        ls.add_dt(t0, 3);
        for (s, d) in [(2, 1), (3, 1), (2, 3), (3, 2)] {
            ls.handle(t0, &10, &encode(s, d, 0));
        }
        assert_eq!(ls.next_hops(2), [2, 3]);
        assert_eq!(ls.next_hops(3), [3, 2]);
    }

    #[test]
    fn link_state_is_driven_through_the_machine_trait() {
        use crate::machine::{drain, Machine};
        let t0 = Instant::now();
        let cfg = LsConfig::default();
        let mut ls: LinkState<u8> = LinkState::new(1, cfg, t0);
        ls.add_mgmt(10);
        ls.add_dt(t0, 2);
        let (sent, _) = drain(&mut ls);
        assert_eq!(sent, [(10, encode(1, 2, 0))]);
        ls.handle(t0, &10, &encode(2, 1, 0));
        // The first update pass, through the trait: our link again, seqno 1; the table
        // changed when 2 -> 1 came.
        Machine::handle_timeout(&mut ls, t0);
        let (sent, events) = drain(&mut ls);
        assert_eq!(sent, [(10, encode(1, 2, 1))]);
        assert_eq!(events, [Event::TableChanged]);
        assert_eq!(Machine::poll_timeout(&ls), Some(t0 + cfg.t_recalc));
    }
}
