//! A deterministic network on virtual time: N nodes on one Ethernet segment whose links
//! delay, drop, duplicate and reorder frames, all drawn from one seeded generator.
//!
//! Nodes are the machines o7sd runs, wrapped in [`Node`]; the simulator moves their
//! transmits to the other nodes (broadcast MACs to all) and fires their timers, never
//! reading a clock: time starts at the `t0` given and moves from event to event. The same
//! seed gives the same [`Sim::trace`], frame for frame.

use crate::mgmt::{Peer, BROADCAST};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a link does to frames.
#[derive(Debug, Clone, Copy)]
pub struct LinkModel {
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from 0 to this: frames overtake each other.
    pub jitter: Duration,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame arrives twice.
    pub duplicate: f64,
}

impl LinkModel {
    /// A perfect link with `delay`.
    pub fn ideal(delay: Duration) -> Self {
        Self {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A machine on the segment.
pub trait Node {
    /// Its MAC.
    fn mac(&self) -> [u8; 6];
    /// A frame's payload from `src`, sent to `dst`.
    fn handle(&mut self, now: Instant, src: Peer, dst: [u8; 6], payload: &[u8]);
    /// Its timers at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When it wants [`Node::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Its next frame: destination MAC and payload.
    fn poll_transmit(&mut self, now: Instant) -> Option<([u8; 6], Vec<u8>)>;
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: Instant,
    seq: u64,
    to: usize,
    src: [u8; 6],
    dst: [u8; 6],
    payload: Vec<u8>,
}

/// Frame counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Frames nodes sent.
    pub sent: u64,
    /// Copies delivered.
    pub delivered: u64,
    /// Copies lost.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
}

/// The simulated segment.
#[derive(Debug)]
pub struct Sim<N> {
    t0: Instant,
    now: Instant,
    rng: ChaCha8Rng,
    link: LinkModel,
    /// The nodes, by index.
    pub nodes: Vec<N>,
    queue: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    trace: Vec<String>,
    stats: SimStats,
    /// Node index by MAC (MACs do not change).
    by_mac: std::collections::HashMap<[u8; 6], usize>,
    /// Nodes that received a frame or fired a timer since they were last looked at: only
    /// they can have something to send or a new timer (a machine changes only on input).
    dirty: Vec<bool>,
    /// The dirty nodes, in the order they became so (looked at in index order).
    dirty_list: Vec<usize>,
    /// Each node's timer as last polled.
    timers: Vec<Option<Instant>>,
    /// The same timers, ordered: the next one without a scan of every node.
    timer_set: std::collections::BTreeSet<(Instant, usize)>,
    /// Whether [`Sim::trace`] is kept (off for large runs: a line per frame).
    tracing: bool,
}

impl<N: Node> Sim<N> {
    /// A segment of `nodes` whose links follow `link`, drawing from `seed`, starting at `t0`.
    pub fn new(t0: Instant, seed: u64, link: LinkModel, nodes: Vec<N>) -> Self {
        let by_mac = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.mac(), i))
            .collect();
        let n = nodes.len();
        Self {
            by_mac,
            dirty: vec![true; n],
            dirty_list: (0..n).collect(),
            timers: vec![None; n],
            timer_set: std::collections::BTreeSet::new(),
            tracing: true,
            t0,
            now: t0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            link,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            trace: Vec::new(),
            stats: SimStats::default(),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// One line per frame sent, lost, duplicated and delivered, with virtual times.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Keeps the trace (the default) or not (a run of millions of frames).
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    fn mark(&mut self, i: usize) {
        if let Some(d) = self.dirty.get_mut(i) {
            if !*d {
                *d = true;
                self.dirty_list.push(i);
            }
        }
    }

    fn set_timer(&mut self, i: usize, t: Option<Instant>) {
        let Some(old) = self.timers.get_mut(i) else {
            return;
        };
        if let Some(o) = old.take() {
            self.timer_set.remove(&(o, i));
        }
        *old = t;
        if let Some(t) = t {
            self.timer_set.insert((t, i));
        }
    }

    /// Frame counts.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Draws from the simulator's generator (for a test's own choices, so that one seed
    /// decides everything).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    fn collect(&mut self) {
        let mut list = std::mem::take(&mut self.dirty_list);
        list.sort_unstable();
        for &i in &list {
            if let Some(d) = self.dirty.get_mut(i) {
                *d = false;
            }
            let t = self.nodes.get(i).and_then(|n| n.poll_timeout());
            self.set_timer(i, t);
            loop {
                let now = self.now;
                let Some(node) = self.nodes.get_mut(i) else {
                    break;
                };
                let Some((dst, payload)) = node.poll_transmit(now) else {
                    break;
                };
                let src = node.mac();
                self.stats.sent += 1;
                if self.tracing {
                    self.trace.push(format!(
                        "{:>9} us send {} -> {} {}B",
                        self.elapsed().as_micros(),
                        i,
                        Self::mac_label(&dst),
                        payload.len()
                    ));
                }
                let targets: Vec<usize> = if dst == BROADCAST {
                    (0..self.nodes.len()).filter(|j| *j != i).collect()
                } else {
                    self.by_mac
                        .get(&dst)
                        .copied()
                        .filter(|j| *j != i)
                        .into_iter()
                        .collect()
                };
                for to in targets {
                    self.route(to, src, dst, &payload);
                }
            }
        }
    }

    fn route(&mut self, to: usize, src: [u8; 6], dst: [u8; 6], payload: &[u8]) {
        if self.rng.gen_bool(self.link.loss.clamp(0.0, 1.0)) {
            self.stats.lost += 1;
            if self.tracing {
                self.trace
                    .push(format!("{:>9} us lost -> {to}", self.elapsed().as_micros()));
            }
            return;
        }
        let copies = if self.rng.gen_bool(self.link.duplicate.clamp(0.0, 1.0)) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.link.jitter.is_zero() {
                Duration::ZERO
            } else {
                let ns = u64::try_from(self.link.jitter.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(self.rng.gen_range(0..=ns))
            };
            self.seq += 1;
            self.queue.push(Reverse(Delivery {
                at: self.now + self.link.delay + jitter,
                seq: self.seq,
                to,
                src,
                dst,
                payload: payload.to_vec(),
            }));
        }
    }

    fn mac_label(m: &[u8; 6]) -> String {
        if *m == BROADCAST {
            "all".into()
        } else {
            format!("{:02x}{:02x}", m[4], m[5])
        }
    }

    /// Runs until nothing is left to do or virtual time reaches `until`.
    pub fn run_until(&mut self, until: Instant) {
        // The caller may have changed nodes between runs: look at every one once.
        for i in 0..self.nodes.len() {
            self.mark(i);
        }
        loop {
            self.collect();
            let next_frame = self.queue.peek().map(|d| d.0.at);
            let next_timer = self.timer_set.first().map(|(t, _)| *t);
            let next = match (next_frame, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return,
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            while self.queue.peek().is_some_and(|d| d.0.at <= self.now) {
                let Some(Reverse(d)) = self.queue.pop() else {
                    break;
                };
                self.stats.delivered += 1;
                if self.tracing {
                    self.trace.push(format!(
                        "{:>9} us recv {} <- {} {}B",
                        self.elapsed().as_micros(),
                        d.to,
                        Self::mac_label(&d.src),
                        d.payload.len()
                    ));
                }
                let now = self.now;
                if let Some(n) = self.nodes.get_mut(d.to) {
                    n.handle(now, Peer::Mac(d.src), d.dst, &d.payload);
                }
                self.mark(d.to);
            }
            let now = self.now;
            // Due timers, fired in node order.
            let mut due: Vec<usize> = self
                .timer_set
                .iter()
                .take_while(|(t, _)| *t <= now)
                .map(|(_, i)| *i)
                .collect();
            due.sort_unstable();
            for i in due {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.handle_timeout(now);
                }
                self.mark(i);
            }
        }
    }
}
