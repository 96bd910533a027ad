//! A unicast IPCP as one machine: enrolment and the CEPs of its N-1 flows
//! ([`Connections`]), link state over its Management flows ([`LinkState`]), the directory
//! ([`Dht`]) and the flow allocator ([`Fa`]) over DT PDUs it routes itself, the flat
//! address authority (a random address, drawn again on a collision), and the DT PDUs that
//! reach it for another IPCP (forwarded along the next hop, TTL decremented).
//!
//! N-1 flows are the driver's: it allocates or accepts them and tells the machine
//! ([`UnicastIpcp::enrol`], [`UnicastIpcp::connect`], [`UnicastIpcp::accept`],
//! [`UnicastIpcp::flow_down`]), with a `link` tag that is the same for every N-1 flow to
//! the same lower-layer peer (a neighbour that moves to a new address moves them all).
//! What arrives on them goes to [`UnicastIpcp::handle_sdu`]; what to send on them comes
//! out of [`UnicastIpcp::poll_transmit`]; what the driver acts on (in the layer, a
//! connection up, the forwarding table changed, a lookup's answer, a flow request, ...)
//! out of [`UnicastIpcp::poll_event`]. Time comes in as `now` and the wall clock as
//! [`UnixTime`]; randomness (addresses, the directory's id, enrolment ids) from a seed.

use super::departures::{Action as Departure, Departures};
use super::dir_join::DirJoin;
use crate::budget::Bucket;
use crate::dht::{self, Dht, DhtConfig, Key, LookupId, ProofError, Proofs};
use crate::enroll::{Connections, EnrollConfig, EnrollError, FlowId};
use crate::fa::{self, AllocId, Fa, FaConfig, FaError, ReqId};
use crate::linkstate::{Collision, Event as LsEvent, LinkState, LsConfig, Policy};
use crate::machine::{machine, UnixTime};
use o7s_wire::qos::QosSpec;
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of a DT PCI: destination address (4, little-endian), QoS cube, TTL, ECN, endpoint
/// id (8, little-endian) (facts §5.1).
pub const PCI_LEN: usize = 15;
/// The flow allocator's endpoint id (unicast facts: reserved eids).
pub const EID_FA: u64 = 0;
/// The directory's endpoint id.
pub const EID_DHT: u64 = 1;

/// At most this many forgotten addresses are remembered for their return.
const MAX_FORGOTTEN: usize = 4_096;

/// Settings.
#[derive(Debug, Clone, Copy)]
pub struct UniConfig {
    /// Enrolment's and the connections' timers.
    pub enroll: EnrollConfig,
    /// Link state's settings; `None`: the layer's, from the configuration it enrols with
    /// (policy and timers), new adjacencies recomputed at most every 100 ms, as o7sd.
    pub ls: Option<LsConfig>,
    /// The directory's settings; `None`: the layer's.
    pub dht: Option<DhtConfig>,
    /// The flow allocator's.
    pub fa: FaConfig,
    /// Messages a second (and in a burst) that one neighbour may make us handle: LSAs on
    /// a Management flow, PDUs on a DT flow (0: no bound).
    pub neighbour_rate: u32,
    /// And in a burst: a new Management neighbour sends its whole LSDB at once (some
    /// 5,000 records in a layer of 1,000 IPCPs; with a burst of a second's worth, 2,000,
    /// the 1000-IPCP simulation never converged).
    pub neighbour_burst: u32,
    /// We move to a new address at most once in this time (a member that forges our
    /// address over and over cannot make us move over and over).
    pub readdress_hold: Duration,
    /// How long a component's message waits for a route to its destination.
    pub hold_for: Duration,
    /// At most this many messages wait for a route.
    pub hold_max: usize,
    /// Between two attempts to join the directory through the enroller.
    pub dht_retry: Duration,
    /// After joining the directory (as soon as the enroller is reachable, for a quick
    /// first allocation), it looks up its own id once more this much later, when the
    /// layer's routes have settled: a layer of 100 IPCPs joining every 50 ms with a
    /// link-state hold-down lost 4 lookups in 100 without it (proto/tests/layer_sim.rs).
    pub dht_again: Duration,
    /// A destination gone from the forwarding table this long has its directory values
    /// dropped; a dropped one back in the table this long makes the directory rejoin
    /// through it ([`super::departures`]).
    pub left_grace: Duration,
}

impl Default for UniConfig {
    /// o7sd's.
    fn default() -> Self {
        Self {
            enroll: EnrollConfig::default(),
            ls: None,
            dht: None,
            fa: FaConfig::default(),
            neighbour_rate: 2_000,
            neighbour_burst: 16_384,
            readdress_hold: Duration::from_secs(60),
            hold_for: Duration::from_secs(3),
            hold_max: 256,
            dht_retry: Duration::from_secs(1),
            dht_again: Duration::from_secs(2),
            left_grace: Duration::from_secs(1),
        }
    }
}

/// The layer's link-state settings (policy and timers) from its configuration.
pub fn ls_config(conf: &IpcpConfigMsg) -> LsConfig {
    let mut cfg = LsConfig {
        hold: Duration::from_millis(100),
        ..LsConfig::default()
    };
    if let Some(ls) = conf.unicast.as_ref().and_then(|u| u.dt.routing.ls.as_ref()) {
        cfg.t_recalc = Duration::from_secs(u64::from(ls.t_recalc.max(1)));
        cfg.t_update = Duration::from_secs(u64::from(ls.t_update.max(1)));
        cfg.t_timeo = Duration::from_secs(u64::from(ls.t_timeo.max(1)));
        cfg.policy = match ls.pol {
            1 => Policy::Lfa,
            2 => Policy::Ecmp,
            _ => Policy::Simple,
        };
    }
    cfg
}

/// The layer's directory settings from its configuration.
pub fn dht_config(conf: &IpcpConfigMsg) -> DhtConfig {
    let mut cfg = DhtConfig::default();
    if let Some(d) = conf.unicast.as_ref().and_then(|u| u.dir.dht.as_ref()) {
        cfg.alpha = d.alpha.max(1) as usize;
        cfg.k = d.k.max(1) as usize;
        cfg.t_expire = d.t_expire;
        cfg.t_refresh = d.t_refresh.max(1);
        cfg.t_replicate = d.t_replicate.max(1);
    }
    cfg
}

/// An SDU to send on an N-1 flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The N-1 flow.
    pub flow: FlowId,
    /// The SDU (a CEP or enrolment message, an LSA, a DT PDU).
    pub sdu: Vec<u8>,
}

/// What the machine tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// In the layer at `addr` (bootstrapped or enrolled): the driver connects Management
    /// and DT flows to the members it is to ([`UnicastIpcp::connect`]).
    InLayer {
        /// Our address.
        addr: u64,
    },
    /// An N-1 flow carries `comp` now, to the neighbour at `peer_addr`.
    Connected {
        /// The N-1 flow.
        flow: FlowId,
        /// Management or Data Transfer.
        comp: Component,
        /// The neighbour's address.
        peer_addr: u64,
    },
    /// Setting up an N-1 flow (or enrolling over it) failed.
    Failed {
        /// The N-1 flow.
        flow: FlowId,
        /// Why.
        why: EnrollError,
    },
    /// Let the N-1 flow go (the enrolment flow, once enrolment is done).
    Close {
        /// The N-1 flow.
        flow: FlowId,
    },
    /// Another IPCP had our address and was as old or older: we moved.
    Moved {
        /// The address before.
        old: u64,
        /// And now.
        new: u64,
    },
    /// Another IPCP had our address and was younger: we kept it.
    CollisionKept,
    /// Another IPCP had our address within `readdress_hold` of our last move: we stayed.
    ReaddressHeld,
    /// A Management neighbour moved to a new address; our N-1 flows `moved` follow it.
    NeighbourMoved {
        /// The Management flow it said so on.
        flow: FlowId,
        /// Its address before.
        old: u64,
        /// And now.
        new: u64,
        /// Our N-1 flows to it.
        moved: Vec<FlowId>,
    },
    /// The forwarding table changed ([`UnicastIpcp::link_state`]'s `table`).
    TableChanged,
    /// The directory: a lookup's answer (`Found` lists the members we have a route to
    /// first, in the directory's order otherwise), or an entry refused.
    Dir(dht::Event),
    /// The flow allocator: a request for a flow, an allocation done or failed.
    Fa(fa::Event),
    /// A directory entry of ours could not be signed (a layer that signs its entries):
    /// not published (counted in [`Counters::sign_failed`]).
    SignFailed {
        /// The name's hash.
        key: Key,
        /// Why.
        why: ProofError,
    },
}

/// How a member of a layer whose members sign their directory entries signs its own
/// (o7sd: with its member certificate's key; docs/SECURITY.md "Names in a secured
/// layer"). The check of others' entries is the directory's [`Proofs`].
pub trait Signer: std::fmt::Debug + Send + Sync {
    /// The proof that `addr` may serve `key`, signed at `unix`.
    fn sign(&self, key: &[u8], addr: u64, unix: UnixTime) -> Result<Vec<u8>, ProofError>;
}

/// Why a request of the driver was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UniError {
    /// The IPCP is in no layer yet.
    #[error("the IPCP is in no layer yet")]
    NotInLayer,
    /// The directory has as many lookups in progress as it takes.
    #[error("the directory has as many lookups in progress as it takes")]
    TooManyLookups,
    /// The flow allocator's answer.
    #[error(transparent)]
    Fa(#[from] FaError),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// DT PDUs forwarded to another IPCP.
    pub forwarded: u64,
    /// DT PDUs for another IPCP dropped: their TTL ran out.
    pub ttl_dropped: u64,
    /// DT PDUs for another IPCP dropped: no route.
    pub no_route: u64,
    /// DT PDUs for us dropped: shorter than the PCI, or for an endpoint other than the
    /// directory and the flow allocator.
    pub dt_dropped: u64,
    /// Messages of ours that waited for a route.
    pub held: u64,
    /// Messages of ours dropped: no route within `hold_for`, or the wait queue full.
    pub held_dropped: u64,
    /// LSAs dropped: their neighbour sent more than its budget.
    pub lsa_rate_dropped: u64,
    /// DT PDUs dropped: their neighbour sent more than its budget.
    pub dt_rate_dropped: u64,
    /// Times we moved to a new address.
    pub readdressed: u64,
    /// Collisions that would have moved us again within `readdress_hold`.
    pub readdress_held: u64,
    /// Collisions in which we kept our address.
    pub collisions_kept: u64,
    /// Neighbours that told us they moved.
    pub neighbours_moved: u64,
    /// Directory values dropped: the address they name left the forwarding table.
    pub dht_forgotten: u64,
    /// Times the directory rejoined through a member it had forgotten (a healed layer).
    pub dht_rejoined: u64,
    /// Entries of ours that could not be signed (not published).
    pub sign_failed: u64,
}

/// The parts that exist once the IPCP is in a layer.
#[derive(Debug)]
struct Layer {
    addr: u64,
    ls: LinkState<FlowId>,
    dht: Dht,
    fa: Fa,
}

/// A message of ours waiting for a route.
#[derive(Debug)]
struct Held {
    since: Instant,
    dst: u64,
    eid: u64,
    msg: Vec<u8>,
}

/// A unicast IPCP.
#[derive(Debug)]
pub struct UnicastIpcp {
    cfg: UniConfig,
    rng: ChaCha8Rng,
    conn: Connections,
    layer: Option<Layer>,
    /// Each N-1 flow's lower-layer peer, as the driver tagged it.
    links: HashMap<FlowId, u64>,
    /// DT neighbours: address -> N-1 flow.
    dt_nb: HashMap<u64, FlowId>,
    budgets: HashMap<FlowId, Bucket>,
    held: VecDeque<Held>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The wall clock at an instant, as last given.
    clock: Option<(Instant, UnixTime)>,
    /// How the directory joins the layer (through the enroller; none before we are in
    /// a layer, or as its first member).
    dir_join: DirJoin,
    /// Names registered before the directory could store them.
    to_publish: Vec<Key>,
    last_readdress: Option<Instant>,
    /// The next address to take instead of a draw.
    next_addr: Option<u64>,
    max_ttl: u8,
    counters: Counters,
    /// Destinations that leave the table and come back.
    departures: Departures,
    /// A layer whose members sign their directory entries: the check of others' and the
    /// signer of ours.
    signed: Option<(Arc<dyn Proofs>, Arc<dyn Signer>)>,
}

impl UnicastIpcp {
    /// An IPCP in no layer yet; `seed` makes its random choices.
    pub fn new(cfg: UniConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            conn: Connections::new(cfg.enroll, 0, None),
            layer: None,
            links: HashMap::new(),
            dt_nb: HashMap::new(),
            budgets: HashMap::new(),
            held: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            clock: None,
            dir_join: DirJoin::new(0, cfg.dht_retry, cfg.dht_again),
            to_publish: Vec::new(),
            last_readdress: None,
            next_addr: None,
            max_ttl: 60,
            counters: Counters::default(),
            departures: Departures::new(cfg.left_grace, MAX_FORGOTTEN),
            signed: None,
        }
    }

    /// The layer's members sign their directory entries: others' are checked by
    /// `proofs` (entries without a valid proof are refused and counted by the
    /// directory), ours are signed by `signer` when published, moved or published again.
    pub fn with_signed_entries(mut self, proofs: Arc<dyn Proofs>, signer: Arc<dyn Signer>) -> Self {
        self.signed = Some((proofs, signer));
        self
    }

    /// The next address taken (on joining a layer, or moving) is `addr` instead of a
    /// random one: a driver that resumes its address after a restart, a test that makes
    /// a collision.
    pub fn propose_address(&mut self, addr: u64) {
        self.next_addr = Some(addr).filter(|a| *a != 0);
    }

    /// Our address, once in a layer.
    pub fn addr(&self) -> Option<u64> {
        self.layer.as_ref().map(|l| l.addr)
    }

    /// Link state, once in a layer.
    pub fn link_state(&self) -> Option<&LinkState<FlowId>> {
        self.layer.as_ref().map(|l| &l.ls)
    }

    /// The directory, once in a layer.
    pub fn dht(&self) -> Option<&Dht> {
        self.layer.as_ref().map(|l| &l.dht)
    }

    /// The flow allocator, once in a layer.
    pub fn fa(&self) -> Option<&Fa> {
        self.layer.as_ref().map(|l| &l.fa)
    }

    /// The connections of the N-1 flows.
    pub fn connections(&self) -> &Connections {
        &self.conn
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The TTL of the PDUs we send (the layer's `max_ttl`).
    pub fn max_ttl(&self) -> u8 {
        self.max_ttl
    }

    /// The N-1 flow of the next hop towards `dst`, if link state has a route.
    pub fn next_hop(&self, dst: u64) -> Option<FlowId> {
        self.layer
            .as_ref()
            .and_then(|l| l.ls.next_hop(dst))
            .and_then(|a| self.dt_nb.get(&a).copied())
    }

    fn tick(&mut self, now: Instant, unix: UnixTime) {
        self.clock = Some((now, unix));
    }

    /// The wall clock at `now`, from the last one given.
    fn unix_at(&self, now: Instant) -> UnixTime {
        self.clock
            .map(|(t, u)| u + now.saturating_duration_since(t))
            .unwrap_or_default()
    }

    /// A random non-zero 32-bit address not in `avoid` (the flat address authority), or
    /// the one proposed.
    fn draw_addr(&mut self, avoid: &BTreeSet<u64>) -> u64 {
        if let Some(a) = self.next_addr.take() {
            return a;
        }
        loop {
            let a = u64::from(self.rng.gen_range(1..=u32::MAX));
            if !avoid.contains(&a) {
                return a;
            }
        }
    }

    /// Starts a layer with configuration `conf` (the first member; the configuration it
    /// hands to those it enrols names it as their directory peer). Returns our address
    /// (the one we have if already in a layer).
    pub fn bootstrap(&mut self, now: Instant, conf: IpcpConfigMsg) -> u64 {
        if let Some(a) = self.addr() {
            return a;
        }
        self.join(now, conf, false);
        self.tend(now);
        self.addr().unwrap_or(0)
    }

    /// Takes the layer's configuration (ours by bootstrap, or the enroller's): an
    /// address, the parts.
    fn join(&mut self, now: Instant, conf: IpcpConfigMsg, enrolled: bool) {
        let addr = self.draw_addr(&BTreeSet::new());
        let peer = conf
            .unicast
            .as_ref()
            .and_then(|u| u.dir.dht.as_ref())
            .map_or(0, |d| d.peer);
        let peer = if enrolled && peer != addr { peer } else { 0 };
        self.dir_join = DirJoin::new(peer, self.cfg.dht_retry, self.cfg.dht_again);
        self.max_ttl = conf
            .unicast
            .as_ref()
            .map_or(60, |u| u8::try_from(u.dt.max_ttl).unwrap_or(u8::MAX));
        let ls_cfg = self.cfg.ls.unwrap_or_else(|| ls_config(&conf));
        let dht_cfg = self.cfg.dht.unwrap_or_else(|| dht_config(&conf));
        let mut mine = conf;
        if let Some(d) = mine.unicast.as_mut().and_then(|u| u.dir.dht.as_mut()) {
            d.peer = addr;
        }
        self.conn.set_layer(addr, mine);
        let mut id = vec![0u8; 32];
        self.rng.fill(id.as_mut_slice());
        let (dht_seed, fa_seed) = (self.rng.gen(), self.rng.gen());
        self.layer = Some(Layer {
            addr,
            ls: LinkState::new(addr, ls_cfg, now),
            dht: match &self.signed {
                Some((p, _)) => Dht::new(dht_cfg, id, addr, dht_seed).with_proofs(Arc::clone(p)),
                None => Dht::new(dht_cfg, id, addr, dht_seed),
            },
            fa: Fa::new(self.cfg.fa, addr, fa_seed),
        });
        self.events.push_back(Event::InLayer { addr });
    }

    /// Enrols over N-1 flow `flow` (allocated by the driver to a member; `link`: its
    /// lower-layer peer).
    pub fn enrol(&mut self, now: Instant, flow: FlowId, link: u64) {
        let id: [u8; 8] = self.rng.gen();
        self.links.insert(flow, link);
        self.conn.connect(now, flow, Component::Enrollment, id);
        self.tend(now);
    }

    /// Sets up `comp` over N-1 flow `flow` (allocated by the driver to a member).
    pub fn connect(&mut self, now: Instant, flow: FlowId, comp: Component, link: u64) {
        let id: [u8; 8] = self.rng.gen();
        self.links.insert(flow, link);
        self.conn.connect(now, flow, comp, id);
        self.tend(now);
    }

    /// N-1 flow `flow` was allocated to us: its CEP comes first.
    pub fn accept(&mut self, now: Instant, flow: FlowId, link: u64) {
        self.links.insert(flow, link);
        self.conn.accept(now, flow);
        self.tend(now);
    }

    /// N-1 flow `flow` is gone: its connection is forgotten and link state drops the link
    /// it carried (the other members age it out).
    pub fn flow_down(&mut self, now: Instant, flow: FlowId) {
        let comp = self.conn.connected(flow);
        self.conn.flow_down(flow);
        self.budgets.remove(&flow);
        self.links.remove(&flow);
        if let Some(l) = self.layer.as_mut() {
            match comp {
                Some((Component::Management, _)) => l.ls.remove_mgmt(&flow),
                // Unless a newer DT flow to the same member took its place.
                Some((Component::DataTransfer, addr)) if self.dt_nb.get(&addr) == Some(&flow) => {
                    self.dt_nb.remove(&addr);
                    l.ls.remove_dt(addr);
                }
                _ => {}
            }
        }
        self.tend(now);
    }

    /// An SDU arrived on N-1 flow `flow`.
    pub fn handle_sdu(&mut self, now: Instant, unix: UnixTime, flow: FlowId, sdu: &[u8]) {
        self.tick(now, unix);
        let comp = self.conn.connected(flow).map(|(c, _)| c);
        match comp {
            Some(Component::Management) if !self.within_budget(flow, now) => {
                self.counters.lsa_rate_dropped += 1;
            }
            Some(Component::DataTransfer) if !self.within_budget(flow, now) => {
                self.counters.dt_rate_dropped += 1;
            }
            Some(Component::Management) if Connections::is_update(sdu) => {
                // The neighbour's new address: its flows are those of the same link.
                let here = self.links.get(&flow).copied();
                let links = &self.links;
                self.conn.handle_update(flow, sdu, |f| {
                    here.is_some_and(|h| links.get(&f) == Some(&h))
                });
            }
            Some(Component::Management) => {
                if let Some(l) = self.layer.as_mut() {
                    l.ls.handle(now, &flow, sdu);
                }
            }
            Some(Component::DataTransfer) => self.on_dt(now, unix, sdu),
            _ => self.conn.handle(now, unix, flow, sdu),
        }
        self.tend(now);
    }

    /// Whether the neighbour on `flow` may make us handle one more message at `now`
    /// (`neighbour_rate` a second, `neighbour_burst` at once; a rate of 0: no bound).
    fn within_budget(&mut self, flow: FlowId, now: Instant) -> bool {
        let rate = self.cfg.neighbour_rate;
        if rate == 0 {
            return true;
        }
        let burst = self.cfg.neighbour_burst.max(rate);
        self.budgets
            .entry(flow)
            .or_insert_with(|| Bucket::with_burst(burst, now))
            .take(rate, now)
    }

    /// A DT PDU: for us, to the directory or the flow allocator; for another IPCP,
    /// forwarded along the next hop with its TTL decremented.
    fn on_dt(&mut self, now: Instant, unix: UnixTime, pdu: &[u8]) {
        let Some(l) = self.layer.as_mut() else {
            self.counters.dt_dropped += 1;
            return;
        };
        let (Some(dst), Some(&ttl), Some(eid)) = (
            pdu.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()),
            pdu.get(5),
            pdu.get(7..PCI_LEN)
                .and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            self.counters.dt_dropped += 1;
            return;
        };
        let dst = u64::from(u32::from_le_bytes(dst));
        if dst == l.addr {
            let body = pdu.get(PCI_LEN..).unwrap_or_default();
            match u64::from_le_bytes(eid) {
                EID_FA => l.fa.handle(now, body),
                EID_DHT => l.dht.handle(now, unix, body),
                _ => self.counters.dt_dropped += 1,
            }
            return;
        }
        if ttl <= 1 {
            self.counters.ttl_dropped += 1;
            return;
        }
        match self.next_hop(dst) {
            Some(flow) => {
                let mut p = pdu.to_vec();
                if let Some(t) = p.get_mut(5) {
                    *t = ttl - 1;
                }
                self.counters.forwarded += 1;
                self.out.push_back(Transmit { flow, sdu: p });
            }
            None => self.counters.no_route += 1,
        }
    }

    /// A DT PDU for component `eid` at `dst`, along the next hop; with no route yet (a
    /// member just learnt of from the directory, before link state has it) it waits up
    /// to `hold_for`, at most `hold_max` of them.
    fn dt_send(&mut self, now: Instant, dst: u64, eid: u64, msg: Vec<u8>) {
        match self.next_hop(dst) {
            Some(flow) => {
                let sdu = dt_pdu(dst, eid, self.max_ttl, &msg);
                self.out.push_back(Transmit { flow, sdu });
            }
            None if self.held.len() < self.cfg.hold_max => {
                self.counters.held += 1;
                self.held.push_back(Held {
                    since: now,
                    dst,
                    eid,
                    msg,
                });
            }
            None => self.counters.held_dropped += 1,
        }
    }

    /// Sends the held messages that have a route now; drops those that waited too long.
    fn send_held(&mut self, now: Instant) {
        for h in std::mem::take(&mut self.held) {
            if let Some(flow) = self.next_hop(h.dst) {
                let sdu = dt_pdu(h.dst, h.eid, self.max_ttl, &h.msg);
                self.out.push_back(Transmit { flow, sdu });
            } else if now.saturating_duration_since(h.since) >= self.cfg.hold_for {
                self.counters.held_dropped += 1;
            } else {
                self.held.push_back(h);
            }
        }
    }

    /// Publishes `key` (a name's hash) in the directory: at once when it can store it
    /// (in a layer, and its first contact known unless it is the first member), else as
    /// soon as it can.
    pub fn register(&mut self, now: Instant, unix: UnixTime, key: Key) {
        self.tick(now, unix);
        if !self.to_publish.contains(&key) {
            self.to_publish.push(key);
        }
        self.tend(now);
    }

    /// Withdraws `key` (copies elsewhere expire, as in the reference).
    pub fn unregister(&mut self, key: &[u8]) {
        self.to_publish.retain(|k| k != key);
        if let Some(l) = self.layer.as_mut() {
            l.dht.unregister(key);
        }
    }

    /// Looks `key` up in the directory: the answer is an [`Event::Dir`].
    pub fn lookup(&mut self, now: Instant, unix: UnixTime, key: Key) -> Result<LookupId, UniError> {
        self.tick(now, unix);
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let id = l.dht.lookup(now, unix, key);
        self.tend(now);
        // The directory refuses a lookup beyond its bound (counted there).
        id.ok_or(UniError::TooManyLookups)
    }

    /// Asks the IPCP at `dst` for a flow to the name whose hash is `hash`: the answer is
    /// an [`Event::Fa`]. Returns the allocation and our endpoint id.
    pub fn alloc(
        &mut self,
        now: Instant,
        dst: u64,
        hash: &[u8],
        qos: QosSpec,
        oap: &[u8],
        timeout: Duration,
    ) -> Result<(AllocId, u64), UniError> {
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let r = l.fa.alloc(now, dst, hash, qos, oap, timeout)?;
        self.tend(now);
        Ok(r)
    }

    /// Accepts flow request `req` (an [`fa::Event::Incoming`]): returns our endpoint id,
    /// the peer's and its address.
    pub fn accept_flow(
        &mut self,
        now: Instant,
        req: ReqId,
        oap: &[u8],
    ) -> Result<(u64, u64, u64), UniError> {
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let r = l.fa.accept(req, oap);
        self.tend(now);
        Ok(r?)
    }

    /// Refuses flow request `req` with `response` (negative).
    pub fn refuse_flow(&mut self, now: Instant, req: ReqId, response: i32) -> Result<(), UniError> {
        let l = self.layer.as_mut().ok_or(UniError::NotInLayer)?;
        let r = l.fa.refuse(req, response);
        self.tend(now);
        Ok(r?)
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        if let Some(l) = self.layer.as_mut() {
            l.ls.handle_timeout(now);
            l.dht.handle_timeout(now);
            l.fa.handle_timeout(now);
        }
        self.tend(now);
        self.depart(now);
    }

    /// The directory's part in members leaving and coming back ([`Departures`]).
    fn depart(&mut self, now: Instant) {
        let unix = self.unix_at(now);
        while let Some(a) = self.departures.poll(now) {
            let Some(l) = self.layer.as_mut() else {
                continue;
            };
            match a {
                Departure::Forget(addr) => {
                    self.counters.dht_forgotten += l.dht.forget_address(addr) as u64;
                }
                Departure::Rejoin(addr) => {
                    self.counters.dht_rejoined += 1;
                    l.dht.bootstrap(now, addr);
                }
                Departure::Republish => {
                    let own: Vec<Key> = l
                        .dht
                        .entries()
                        .into_iter()
                        .filter(|e| e.2)
                        .map(|e| e.0)
                        .collect();
                    let signer = self.signed.as_ref().map(|(_, s)| s.as_ref());
                    for key in own {
                        if let Err(e) = publish(&mut l.dht, signer, now, unix, key) {
                            self.counters.sign_failed += 1;
                            self.events.push_back(e);
                        }
                    }
                }
            }
        }
        self.tend(now);
    }

    /// When [`UnicastIpcp::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let l = self.layer.as_ref();
        // (The retry counts only while the enroller is reachable: a directory that lost
        // every contact in a partition away from its enroller spun on this timer.)
        let join = l.and_then(|l| {
            let reachable = l.ls.next_hop(self.dir_join.peer()).is_some();
            self.dir_join.poll_timeout(l.dht.contacts(), reachable)
        });
        [
            self.conn.poll_timeout(),
            l.and_then(|l| l.ls.poll_timeout()),
            l.and_then(|l| l.dht.poll_timeout()),
            l.and_then(|l| l.fa.poll_timeout()),
            self.held.front().map(|h| h.since + self.cfg.hold_for),
            join,
            self.departures.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next SDU to send on an N-1 flow.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Acts on what the parts produced: their messages go out, their events are acted
    /// on or passed on.
    fn tend(&mut self, now: Instant) {
        self.tend_connections(now);
        self.tend_collision(now);
        self.tend_dht(now);
        let mut dts = vec![];
        if let Some(l) = self.layer.as_mut() {
            while let Some((flow, lsa)) = l.ls.poll_transmit() {
                self.out.push_back(Transmit {
                    flow,
                    sdu: lsa.to_vec(),
                });
            }
            while let Some(t) = l.fa.poll_transmit() {
                dts.push((t.dst, EID_FA, t.msg));
            }
            while let Some(e) = l.fa.poll_event() {
                self.events.push_back(Event::Fa(e));
            }
        }
        for (dst, eid, msg) in dts {
            self.dt_send(now, dst, eid, msg);
        }
        self.send_held(now);
    }

    fn tend_connections(&mut self, now: Instant) {
        while let Some(t) = self.conn.poll_transmit() {
            self.out.push_back(Transmit {
                flow: t.flow,
                sdu: t.sdu,
            });
        }
        while let Some(e) = self.conn.poll_event() {
            use crate::enroll::Event as E;
            match e {
                E::Enrolled { conf, .. } => {
                    if self.layer.is_none() {
                        self.join(now, *conf, true);
                    }
                }
                E::Connected {
                    flow,
                    comp,
                    peer_addr,
                } => {
                    if let Some(l) = self.layer.as_mut() {
                        match comp {
                            Component::Management => l.ls.add_mgmt(flow),
                            Component::DataTransfer => {
                                self.dt_nb.insert(peer_addr, flow);
                                l.ls.add_dt(now, peer_addr);
                            }
                            _ => {}
                        }
                    }
                    self.events.push_back(Event::Connected {
                        flow,
                        comp,
                        peer_addr,
                    });
                }
                E::Failed { flow, why } => self.events.push_back(Event::Failed { flow, why }),
                E::Close { flow } => self.events.push_back(Event::Close { flow }),
                E::Readdressed {
                    flow,
                    old,
                    new,
                    moved,
                } => {
                    self.counters.neighbours_moved += 1;
                    let dt = self.dt_nb.get(&old).copied().filter(|f| moved.contains(f));
                    if let (Some(f), Some(l)) = (dt, self.layer.as_mut()) {
                        self.dt_nb.remove(&old);
                        self.dt_nb.insert(new, f);
                        l.ls.remove_dt(old);
                        l.ls.link_up(old);
                        l.ls.add_dt(now, new);
                    }
                    self.events.push_back(Event::NeighbourMoved {
                        flow,
                        old,
                        new,
                        moved,
                    });
                }
                E::Served { .. } => {}
            }
        }
    }

    /// Link state's events: the table changed (said once), another IPCP with our
    /// address (the younger one moves).
    fn tend_collision(&mut self, now: Instant) {
        let Some(l) = self.layer.as_mut() else {
            return;
        };
        let mut changed = false;
        let mut collision = None;
        while let Some(e) = l.ls.poll_event() {
            match e {
                LsEvent::TableChanged => changed = true,
                LsEvent::Collision(c) => collision = collision.or(Some(c)),
            }
        }
        if changed {
            for back in self
                .departures
                .table_changed(now, l.ls.table().keys().copied())
            {
                l.dht.returned(back);
            }
            self.events.push_back(Event::TableChanged);
        }
        match collision {
            Some(Collision::Keep) => {
                self.counters.collisions_kept += 1;
                self.events.push_back(Event::CollisionKept);
            }
            Some(Collision::Readdress)
                if self.last_readdress.is_some_and(|t| {
                    now.saturating_duration_since(t) < self.cfg.readdress_hold
                }) =>
            {
                self.counters.readdress_held += 1;
                self.events.push_back(Event::ReaddressHeld);
            }
            Some(Collision::Readdress) => self.readdress(now),
            None => {}
        }
    }

    /// Moves to a new address that no LSA names: link state announces our links under
    /// it, the directory stores our names again, the Management neighbours are told (a
    /// CEP on each Management flow).
    fn readdress(&mut self, now: Instant) {
        let taken: BTreeSet<u64> = self
            .layer
            .as_ref()
            .map(|l| {
                l.ls.lsdb()
                    .iter()
                    .flat_map(|((s, d), _)| [*s, *d])
                    .collect()
            })
            .unwrap_or_default();
        let new = self.draw_addr(&taken);
        let unix = self.unix_at(now);
        let Some(l) = self.layer.as_mut() else {
            return;
        };
        let old = l.addr;
        if new == old {
            return;
        }
        l.addr = new;
        l.ls.readdress(now, new);
        match self.signed.as_ref().map(|(_, s)| Arc::clone(s)) {
            Some(signer) => {
                let mut failed = vec![];
                l.dht.readdress_signed(now, unix, new, &mut |key, addr| {
                    signer.sign(key, addr, unix).unwrap_or_else(|why| {
                        failed.push((key.to_vec(), why));
                        Vec::new()
                    })
                });
                for (key, why) in failed {
                    self.counters.sign_failed += 1;
                    self.events.push_back(Event::SignFailed { key, why });
                }
            }
            None => l.dht.readdress(now, unix, new),
        }
        l.fa.readdress(new);
        self.conn.readdress(new);
        self.last_readdress = Some(now);
        self.counters.readdressed += 1;
        self.events.push_back(Event::Moved { old, new });
        self.tend_connections(now);
    }

    /// The directory: joined through the enroller once it is reachable (asked again
    /// every `dht_retry` until it answers), names published once it can store them, its
    /// messages sent, its answers passed on.
    fn tend_dht(&mut self, now: Instant) {
        let unix = self.unix_at(now);
        let Some(l) = self.layer.as_mut() else {
            return;
        };
        let reachable = l.ls.next_hop(self.dir_join.peer()).is_some();
        if let Some(peer) = self.dir_join.due(now, l.dht.contacts(), reachable) {
            l.dht.bootstrap(now, peer);
        }
        if self.dir_join.can_publish(l.dht.contacts()) {
            let signer = self.signed.as_ref().map(|(_, s)| s.as_ref());
            for key in std::mem::take(&mut self.to_publish) {
                if let Err(e) = publish(&mut l.dht, signer, now, unix, key) {
                    self.counters.sign_failed += 1;
                    self.events.push_back(e);
                }
            }
        }
        let mut dts = vec![];
        while let Some(t) = l.dht.poll_transmit() {
            dts.push((t.dst, t.msg));
        }
        while let Some(mut e) = l.dht.poll_event() {
            if let dht::Event::Found { addrs, .. } = &mut e {
                // Members we have a route to first (a name can keep the old address of a
                // member that moved until it expires), in the directory's order.
                addrs.sort_by_key(|a| l.ls.next_hop(*a).is_none());
            }
            self.events.push_back(Event::Dir(e));
        }
        for (dst, msg) in dts {
            self.dt_send(now, dst, EID_DHT, msg);
        }
    }
}

machine!(UnicastIpcp, Transmit, Event);

/// Publishes our `key` in the directory, signed by `signer` in a layer that signs; the
/// event that says why not when it cannot be signed.
fn publish(
    dht: &mut Dht,
    signer: Option<&dyn Signer>,
    now: Instant,
    unix: UnixTime,
    key: Key,
) -> Result<(), Event> {
    match signer {
        None => dht.register(now, unix, key),
        Some(s) => match s.sign(&key, dht.addr(), unix) {
            Ok(proof) => dht.register_signed(now, unix, key, proof),
            Err(why) => return Err(Event::SignFailed { key, why }),
        },
    }
    Ok(())
}

/// A DT PDU: the PCI (to `dst`, endpoint `eid`, TTL `ttl`) and `sdu`.
pub fn dt_pdu(dst: u64, eid: u64, ttl: u8, sdu: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PCI_LEN + sdu.len());
    p.extend_from_slice(&(dst as u32).to_le_bytes());
    p.extend_from_slice(&[0, ttl, 0]);
    p.extend_from_slice(&eid.to_le_bytes());
    p.extend_from_slice(sdu);
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use o7s_wire::unicast::pb::CepMsg;
    use prost::Message;
    use std::collections::HashSet;

    const A: u64 = 0x0a0a_0001;
    const B: u64 = 0x0b0b_0002;
    const UNIX: UnixTime = UnixTime::from_secs(1_796_083_200);
    /// A's end of an N-1 flow is B's + this (the two ends name a flow differently).
    const OFF: u64 = 100;

    /// Two IPCPs joined by N-1 flows, B's flow `f` being A's `f + OFF`.
    struct Pair {
        a: UnicastIpcp,
        b: UnicastIpcp,
        ev_a: Vec<Event>,
        ev_b: Vec<Event>,
        accepted: HashSet<u64>,
        /// The virtual time.
        now: Instant,
        /// A's directory messages to B are lost.
        drop_a_dht: bool,
    }

    impl Pair {
        fn new(cfg: UniConfig) -> Self {
            Self::new_with(cfg, &|m, _| m)
        }

        /// [`Pair::new`] with each machine (A's, B's, by address) made by `f`.
        fn new_with(cfg: UniConfig, f: &dyn Fn(UnicastIpcp, u64) -> UnicastIpcp) -> Self {
            let now = Instant::now();
            let mut a = f(UnicastIpcp::new(cfg, 1), A);
            a.propose_address(A);
            assert_eq!(a.bootstrap(now, IpcpConfigMsg::unicast_default("l", 0)), A);
            let mut b = f(UnicastIpcp::new(cfg, 2), B);
            b.propose_address(B);
            let mut p = Self {
                a,
                b,
                ev_a: vec![],
                ev_b: vec![],
                accepted: HashSet::new(),
                now,
                drop_a_dht: false,
            };
            p.pump();
            p
        }

        /// Delivers everything in flight, both ways, until nothing moves.
        fn pump(&mut self) {
            let now = self.now;
            for _ in 0..100_000 {
                let mut moved = false;
                while let Some(t) = self.a.poll_transmit() {
                    moved = true;
                    let dht = t.sdu.get(7..PCI_LEN) == Some(&EID_DHT.to_le_bytes()[..]);
                    if !(self.drop_a_dht && t.flow == 3 + OFF && dht) {
                        self.b.handle_sdu(now, UNIX, t.flow - OFF, &t.sdu);
                    }
                }
                while let Some(t) = self.b.poll_transmit() {
                    moved = true;
                    let f = t.flow + OFF;
                    if self.accepted.insert(f) {
                        self.a.accept(now, f, 7);
                    }
                    self.a.handle_sdu(now, UNIX, f, &t.sdu);
                }
                while let Some(e) = self.a.poll_event() {
                    moved = true;
                    self.ev_a.push(e);
                }
                while let Some(e) = self.b.poll_event() {
                    moved = true;
                    self.ev_b.push(e);
                }
                if !moved {
                    return;
                }
            }
            panic!("the two IPCPs talk without end");
        }

        /// Runs both machines' timers up to `until`.
        fn run(&mut self, until: Instant) {
            for _ in 0..100_000 {
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= until => {
                        self.now = self.now.max(t);
                        self.a.handle_timeout(self.now);
                        self.b.handle_timeout(self.now);
                        self.pump();
                    }
                    _ => {
                        self.now = until;
                        return;
                    }
                }
            }
            panic!("a timer that does not go away");
        }

        /// B enrols through A (flow 1), then connects Management (2) and DT (3); link
        /// state computes the routes.
        fn join(cfg: UniConfig) -> Self {
            Self::join_with(cfg, &|m, _| m)
        }

        /// [`Pair::join`] with each machine made by `f` (see [`Pair::new_with`]).
        fn join_with(cfg: UniConfig, f: &dyn Fn(UnicastIpcp, u64) -> UnicastIpcp) -> Self {
            let mut p = Self::new_with(cfg, f);
            let now = p.now;
            p.b.enrol(now, 1, 7);
            p.pump();
            p.b.connect(now, 2, Component::Management, 7);
            p.b.connect(now, 3, Component::DataTransfer, 7);
            p.pump();
            let until = p.now + Duration::from_secs(10);
            p.run(until);
            p
        }
    }

    fn key(s: &str) -> Key {
        o7s_wire::hash::HashAlgo::Sha3_256.hash(s)
    }

    #[test]
    fn an_enrolled_ipcp_connects_routes_and_each_end_names_the_other() {
        let p = Pair::join(UniConfig::default());
        assert_eq!(p.ev_a.first(), Some(&Event::InLayer { addr: A }));
        assert!(p.ev_b.contains(&Event::InLayer { addr: B }));
        assert!(p.ev_b.contains(&Event::Close { flow: 1 }));
        for (flow, comp) in [(2, Component::Management), (3, Component::DataTransfer)] {
            assert!(p.ev_b.contains(&Event::Connected {
                flow,
                comp,
                peer_addr: A
            }));
            assert!(p.ev_a.contains(&Event::Connected {
                flow: flow + OFF,
                comp,
                peer_addr: B
            }));
        }
        assert!(p.ev_a.contains(&Event::TableChanged));
        assert!(p.ev_b.contains(&Event::TableChanged));
        assert_eq!((p.a.addr(), p.b.addr()), (Some(A), Some(B)));
        assert_eq!(p.b.next_hop(A), Some(3));
        assert_eq!(p.a.next_hop(B), Some(3 + OFF));
        assert_eq!(p.b.next_hop(0x0c0c_0003), None);
        assert_eq!(p.b.link_state().unwrap().addr(), B);
        assert_eq!(
            p.b.connections().connected(2),
            Some((Component::Management, A))
        );
        // The layer's TTL came with the configuration.
        assert_eq!(p.b.max_ttl(), 60);
        // The directory joined through the enroller (A), once at once and once again.
        assert_eq!(p.b.dht().unwrap().contacts(), 1);
        assert!(p.a.dht().unwrap().contacts() >= 1);
        assert_eq!(p.b.fa().unwrap().counters(), fa::Counters::default());
        // Bootstrapping again changes nothing.
        let mut a = p.a;
        assert_eq!(
            a.bootstrap(p.now, IpcpConfigMsg::unicast_default("x", 0)),
            A
        );
    }

    #[test]
    fn a_name_published_at_one_end_is_found_and_a_flow_allocated_from_the_other() {
        let mut p = Pair::join(UniConfig::default());
        let now = p.now;
        p.a.register(now, UNIX, key("srv"));
        p.a.register(now, UNIX, key("srv"));
        p.pump();
        let id = p.b.lookup(now, UNIX, key("srv")).unwrap();
        p.pump();
        let until = now + Duration::from_secs(3);
        p.run(until);
        let found = p.ev_b.iter().find_map(|e| match e {
            Event::Dir(dht::Event::Found { id: i, addrs, .. }) if *i == id => Some(addrs.clone()),
            _ => None,
        });
        assert_eq!(found, Some(vec![A]));
        let (alloc, local) =
            p.b.alloc(
                p.now,
                A,
                &key("srv"),
                QosSpec::RAW,
                b"oap",
                Duration::from_secs(5),
            )
            .unwrap();
        p.pump();
        let req = p
            .ev_a
            .iter()
            .find_map(|e| match e {
                Event::Fa(fa::Event::Incoming {
                    req, peer, hash, ..
                }) => {
                    assert_eq!((*peer, hash.as_slice()), (B, key("srv").as_slice()));
                    Some(*req)
                }
                _ => None,
            })
            .unwrap();
        let (a_local, a_remote, a_peer) = p.a.accept_flow(p.now, req, b"ok").unwrap();
        assert_eq!((a_remote, a_peer), (local, B));
        p.pump();
        let got = p.ev_b.iter().find_map(|e| match e {
            Event::Fa(fa::Event::Allocated {
                id,
                local: l,
                remote,
                peer,
                ..
            }) if *id == alloc => Some((*l, *remote, *peer)),
            _ => None,
        });
        assert_eq!(got, Some((local, a_local, A)));
        // A second request, refused: B hears of it.
        let (alloc2, _) =
            p.b.alloc(
                p.now,
                A,
                &key("srv"),
                QosSpec::RAW,
                &[],
                Duration::from_secs(5),
            )
            .unwrap();
        p.pump();
        let req2 = p
            .ev_a
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Fa(fa::Event::Incoming { req, .. }) => Some(*req),
                _ => None,
            })
            .unwrap();
        assert_ne!(req2, req);
        p.a.refuse_flow(p.now, req2, -1).unwrap();
        assert_eq!(
            p.a.refuse_flow(p.now, req2, -1),
            Err(UniError::Fa(FaError::UnknownRequest))
        );
        assert_eq!(
            p.a.accept_flow(p.now, req2, &[]),
            Err(UniError::Fa(FaError::UnknownRequest))
        );
        p.pump();
        assert!(p.ev_b.iter().any(|e| matches!(
            e,
            Event::Fa(fa::Event::AllocFailed { id, .. }) if *id == alloc2
        )));
        // Withdrawn: A's own copy goes (others expire).
        p.a.unregister(&key("srv"));
        assert!(p.a.dht().unwrap().known(&key("srv"), UNIX).is_empty());
    }

    #[test]
    fn a_name_registered_before_the_directory_can_store_it_waits_for_it() {
        let cfg = UniConfig::default();
        let mut p = Pair::new(cfg);
        let now = p.now;
        // B is in no layer: it keeps the name.
        p.b.register(now, UNIX, key("early"));
        assert_eq!(p.b.lookup(now, UNIX, key("x")), Err(UniError::NotInLayer));
        assert_eq!(
            p.b.alloc(now, A, &key("x"), QosSpec::RAW, &[], Duration::from_secs(1)),
            Err(UniError::NotInLayer)
        );
        assert_eq!(
            p.b.accept_flow(now, fa::ReqId(1), &[]),
            Err(UniError::NotInLayer)
        );
        assert_eq!(
            p.b.refuse_flow(now, fa::ReqId(1), -1),
            Err(UniError::NotInLayer)
        );
        p.b.enrol(now, 1, 7);
        p.pump();
        p.b.connect(now, 2, Component::Management, 7);
        p.b.connect(now, 3, Component::DataTransfer, 7);
        p.pump();
        // In the layer, but its directory has no contact yet: still kept.
        assert!(p.b.dht().unwrap().known(&key("early"), UNIX).is_empty());
        let until = p.now + Duration::from_secs(10);
        p.run(until);
        // Published once it had one: A, its closest, stores it.
        assert_eq!(p.b.dht().unwrap().known(&key("early"), UNIX), [B]);
        assert_eq!(p.a.dht().unwrap().known(&key("early"), UNIX), [B]);
    }

    #[test]
    fn dt_pdus_for_others_are_forwarded_with_the_ttl_down_and_bad_ones_counted() {
        let mut p = Pair::join(UniConfig::default());
        let now = p.now;
        let c = p.b.counters();
        // For A, arriving at B on its DT flow (from a third IPCP, say): forwarded to A.
        let pdu = dt_pdu(A, 9, 5, b"hop");
        p.b.handle_sdu(now, UNIX, 3, &pdu);
        let t = p.b.poll_transmit().unwrap();
        assert_eq!(t.flow, 3);
        assert_eq!(t.sdu, dt_pdu(A, 9, 4, b"hop"));
        assert_eq!(p.b.counters().forwarded, c.forwarded + 1);
        // Its TTL at 1: dropped. Nowhere to go: dropped.
        p.b.handle_sdu(now, UNIX, 3, &dt_pdu(A, 9, 1, b"x"));
        p.b.handle_sdu(now, UNIX, 3, &dt_pdu(0x0c0c_0003, 9, 9, b"x"));
        // For B: too short, or an endpoint that is neither the directory nor the FA.
        p.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 9, 9, b"x")[..PCI_LEN - 1]);
        p.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
        assert_eq!(p.b.poll_transmit(), None);
        let d = p.b.counters();
        assert_eq!(
            (d.ttl_dropped, d.no_route, d.dt_dropped),
            (c.ttl_dropped + 1, c.no_route + 1, c.dt_dropped + 2)
        );
        // A PDU on a flow that carries no DT is not one (its CEP is awaited).
        let mut lone = UnicastIpcp::new(UniConfig::default(), 3);
        lone.handle_sdu(now, UNIX, 3, &dt_pdu(B, 1, 9, b"x"));
        assert_eq!(lone.counters(), Counters::default());
        // An IPCP in no layer that took a DT flow: its PDUs are dropped and counted.
        lone.accept(now, 4, 1);
        let cep = CepMsg::new(Component::DataTransfer, B).encode_to_vec();
        lone.handle_sdu(now, UNIX, 4, &cep);
        assert_eq!(
            lone.connections().connected(4),
            Some((Component::DataTransfer, B))
        );
        lone.handle_sdu(now, UNIX, 4, &dt_pdu(B, 1, 9, b"x"));
        assert_eq!(lone.counters().dt_dropped, 1);
    }

    #[test]
    fn a_message_without_a_route_waits_and_is_dropped_after_the_hold() {
        let cfg = UniConfig {
            hold_max: 2,
            ..UniConfig::default()
        };
        let mut p = Pair::join(cfg);
        let t = p.now;
        let far = 0x0c0c_0003;
        for _ in 0..3 {
            p.b.alloc(
                t,
                far,
                &key("x"),
                QosSpec::RAW,
                &[],
                Duration::from_secs(60),
            )
            .unwrap();
        }
        assert_eq!(p.b.poll_transmit(), None);
        let c = p.b.counters();
        assert_eq!(
            (c.held, c.held_dropped),
            (2, 1),
            "two wait, the third is dropped"
        );
        // The hold's end is a timer; at it both go.
        let due = p.b.poll_timeout().unwrap();
        assert!(due > t && due <= t + cfg.hold_for, "{:?}", due - t);
        p.b.handle_timeout(t + cfg.hold_for - Duration::from_millis(1));
        assert_eq!(p.b.counters().held_dropped, 1);
        p.b.handle_timeout(t + cfg.hold_for);
        assert_eq!(p.b.counters().held_dropped, 3);
        // A message to A (which has a route) is not held.
        p.b.alloc(t, A, &key("x"), QosSpec::RAW, &[], Duration::from_secs(60))
            .unwrap();
        let out = p.b.poll_transmit().unwrap();
        assert_eq!(out.flow, 3);
        assert_eq!(&out.sdu[..4], &(A as u32).to_le_bytes());
        assert_eq!(out.sdu[5], 60, "the layer's TTL");
        assert_eq!(p.b.counters().held, 2);
    }

    #[test]
    fn a_neighbour_beyond_its_budget_is_dropped_and_counted() {
        let cfg = UniConfig {
            neighbour_rate: 4,
            neighbour_burst: 0,
            ..UniConfig::default()
        };
        let mut p = Pair::join(cfg);
        let now = p.now + Duration::from_secs(5);
        let c = p.b.counters();
        for _ in 0..10 {
            p.b.handle_sdu(now, UNIX, 2, &[0u8; 24]);
            p.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
        }
        let d = p.b.counters();
        assert_eq!(d.lsa_rate_dropped - c.lsa_rate_dropped, 6);
        assert_eq!(d.dt_rate_dropped - c.dt_rate_dropped, 6);
        assert_eq!(d.dt_dropped - c.dt_dropped, 4);
        // A burst of its own: 10 at once, then 4 a second.
        let mut w = Pair::join(UniConfig {
            neighbour_rate: 4,
            neighbour_burst: 10,
            ..UniConfig::default()
        });
        let now = w.now + Duration::from_secs(5);
        for _ in 0..20 {
            w.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
        }
        let before = w.b.counters().dt_rate_dropped;
        assert_eq!(before, 10);
        w.b.handle_sdu(
            now + Duration::from_millis(250),
            UNIX,
            3,
            &dt_pdu(B, 2, 9, b"x"),
        );
        assert_eq!(
            w.b.counters().dt_rate_dropped,
            before,
            "a token a quarter second"
        );
        // Unbounded with a rate of 0.
        let mut q = Pair::join(UniConfig {
            neighbour_rate: 0,
            ..UniConfig::default()
        });
        let now = q.now;
        for _ in 0..3000 {
            q.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
        }
        assert_eq!(q.b.counters().dt_rate_dropped, 0);
    }

    #[test]
    fn a_neighbour_that_moves_takes_the_flows_of_its_link_along() {
        let mut p = Pair::join(UniConfig::default());
        let now = p.now;
        let new = 0x0b0b_0099;
        // Another IPCP with B's address (a collision not yet resolved) on another link (8):
        // its Management flow to A stays where it is when B moves.
        p.a.accept(now, 200, 8);
        let cep = CepMsg::new(Component::Management, B).encode_to_vec();
        p.a.handle_sdu(now, UNIX, 200, &cep);
        assert_eq!(
            p.a.connections().connected(200),
            Some((Component::Management, B))
        );
        while p.a.poll_transmit().is_some() {}
        while p.a.poll_event().is_some() {}
        // B's Management CEP with its new address, on A's Management flow.
        let cep = CepMsg::new(Component::Management, new).encode_to_vec();
        p.a.handle_sdu(now, UNIX, 2 + OFF, &cep);
        let moved = p.a.poll_event();
        assert_eq!(
            moved,
            Some(Event::NeighbourMoved {
                flow: 2 + OFF,
                old: B,
                new,
                moved: vec![2 + OFF, 3 + OFF],
            })
        );
        assert_eq!(p.a.counters().neighbours_moved, 1);
        assert_eq!(
            p.a.connections().connected(3 + OFF),
            Some((Component::DataTransfer, new))
        );
        assert_eq!(
            p.a.connections().connected(200),
            Some((Component::Management, B))
        );
        // A's own link now names the new address (B, which did not really move, still
        // announces the old one: no route either way until it does).
        let own: Vec<u64> =
            p.a.link_state()
                .unwrap()
                .lsdb()
                .iter()
                .filter(|((s, _), _)| *s == A)
                .map(|((_, d), _)| *d)
                .collect();
        assert_eq!(own, [new]);
        while p.a.poll_event().is_some() {}
        // A CEP naming no new address (0, ours, the same) is counted and changes nothing.
        for bad in [0, A, new] {
            let cep = CepMsg::new(Component::Management, bad).encode_to_vec();
            p.a.handle_sdu(now, UNIX, 2 + OFF, &cep);
        }
        assert_eq!(p.a.counters().neighbours_moved, 1);
        assert_eq!(p.a.poll_event(), None);
    }

    #[test]
    fn a_flow_down_takes_its_link_out_of_the_routes() {
        let mut p = Pair::join(UniConfig::default());
        let now = p.now;
        // A second DT flow to A takes the place of the first: the first going down
        // leaves the link up.
        p.b.connect(now, 4, Component::DataTransfer, 7);
        p.pump();
        assert!(p.ev_b.contains(&Event::Connected {
            flow: 4,
            comp: Component::DataTransfer,
            peer_addr: A
        }));
        let until = p.now + Duration::from_secs(10);
        p.run(until);
        assert_eq!(p.b.next_hop(A), Some(4));
        p.b.flow_down(p.now, 3);
        assert_eq!(p.b.connections().connected(3), None);
        let until = p.now + Duration::from_secs(10);
        p.run(until);
        assert_eq!(p.b.next_hop(A), Some(4));
        // The Management flow down: link state sends nothing on it any more (the DT
        // link's removal below is flooded to no one).
        p.b.flow_down(p.now, 2);
        assert_eq!(p.b.connections().connected(2), None);
        while p.b.poll_transmit().is_some() {}
        let t = p.now;
        p.b.flow_down(t, 4);
        // B's own transmits for 20 s, kept from A: none on the flow that is down.
        let mut flows = vec![];
        for i in 0..200u32 {
            p.b.handle_timeout(t + Duration::from_millis(100) * i);
            flows.extend(std::iter::from_fn(|| p.b.poll_transmit()).map(|t| t.flow));
        }
        assert_eq!(p.b.next_hop(A), None);
        assert!(
            !flows.contains(&2),
            "an LSA on a flow that is down: {flows:?}"
        );
    }

    #[test]
    fn a_bootstrapper_joins_no_directory_through_the_peer_its_configuration_names() {
        let now = Instant::now();
        let mut a = UnicastIpcp::new(UniConfig::default(), 1);
        a.propose_address(A);
        a.bootstrap(now, IpcpConfigMsg::unicast_default("l", 0x77));
        a.register(now, UNIX, key("n"));
        assert_eq!(
            a.dht().unwrap().known(&key("n"), UNIX),
            [A],
            "published at once"
        );
    }

    #[test]
    fn the_layer_configuration_sets_link_state_and_the_directory() {
        let mut conf = IpcpConfigMsg::unicast_default("l", 0);
        let u = conf.unicast.as_mut().unwrap();
        let ls = u.dt.routing.ls.as_mut().unwrap();
        (ls.t_recalc, ls.t_update, ls.t_timeo, ls.pol) = (3, 20, 70, 1);
        let d = u.dir.dht.as_mut().unwrap();
        (d.alpha, d.k, d.t_expire, d.t_refresh, d.t_replicate) = (2, 5, 100, 50, 40);
        let l = ls_config(&conf);
        assert_eq!(
            (l.t_recalc, l.t_update, l.t_timeo, l.policy, l.hold),
            (
                Duration::from_secs(3),
                Duration::from_secs(20),
                Duration::from_secs(70),
                Policy::Lfa,
                Duration::from_millis(100)
            )
        );
        let ls = conf
            .unicast
            .as_mut()
            .unwrap()
            .dt
            .routing
            .ls
            .as_mut()
            .unwrap();
        (ls.t_recalc, ls.pol) = (0, 2);
        let l = ls_config(&conf);
        assert_eq!(
            (l.t_recalc, l.policy),
            (Duration::from_secs(1), Policy::Ecmp)
        );
        conf.unicast
            .as_mut()
            .unwrap()
            .dt
            .routing
            .ls
            .as_mut()
            .unwrap()
            .pol = 7;
        assert_eq!(ls_config(&conf).policy, Policy::Simple);
        let d = dht_config(&conf);
        assert_eq!(
            (d.alpha, d.k, d.t_expire, d.t_refresh, d.t_replicate),
            (2, 5, 100, 50, 40)
        );
        let d = conf.unicast.as_mut().unwrap().dir.dht.as_mut().unwrap();
        (d.alpha, d.k, d.t_refresh, d.t_replicate) = (0, 0, 0, 0);
        let d = dht_config(&conf);
        assert_eq!((d.alpha, d.k, d.t_refresh, d.t_replicate), (1, 1, 1, 1));
    }

    #[test]
    fn addresses_are_drawn_non_zero_from_the_seed_and_a_proposal_wins_once() {
        let now = Instant::now();
        let conf = IpcpConfigMsg::unicast_default("l", 0);
        let draw = |seed| UnicastIpcp::new(UniConfig::default(), seed).bootstrap(now, conf.clone());
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        assert!((1..=u64::from(u32::MAX)).contains(&draw(5)));
        let mut x = UnicastIpcp::new(UniConfig::default(), 5);
        x.propose_address(0);
        assert_eq!(x.bootstrap(now, conf.clone()), draw(5), "0 is no proposal");
        let mut avoid = BTreeSet::new();
        let mut y = UnicastIpcp::new(UniConfig::default(), 5);
        let first = y.draw_addr(&avoid);
        avoid.insert(UnicastIpcp::new(UniConfig::default(), 5).draw_addr(&BTreeSet::new()));
        let mut z = UnicastIpcp::new(UniConfig::default(), 5);
        assert_ne!(z.draw_addr(&avoid), first, "a taken address is drawn again");
    }

    /// An LSA from `src` to `dst` at `seqno`.
    fn lsa(src: u64, dst: u64, seqno: u64) -> Vec<u8> {
        let mut w = o7s_wire::field::Writer(vec![]);
        o7s_wire::unicast::lsa::Lsa {
            d_addr: dst,
            s_addr: src,
            seqno,
        }
        .write(&mut w);
        w.0
    }

    #[test]
    fn of_two_ipcps_with_one_address_the_older_stays_and_the_younger_moves_once_a_while() {
        let mut p = Pair::join(UniConfig::default());
        while p.a.poll_event().is_some() {}
        let t = p.now;
        // A link "A -> X" that A does not have, older than A's own (seqno 100): another IPCP
        // had A's address first. A moves, to an address no LSA names.
        p.a.handle_sdu(t, UNIX, 2 + OFF, &lsa(A, 0x0c0c_0003, 100));
        let new = p.a.addr().unwrap();
        assert!(![A, B, 0x0c0c_0003].contains(&new));
        assert_eq!(p.a.poll_event(), Some(Event::Moved { old: A, new }));
        assert_eq!(p.a.counters().readdressed, 1);
        assert_eq!(p.a.fa().unwrap().counters(), fa::Counters::default());
        assert_eq!(p.a.link_state().unwrap().addr(), new);
        // B is told (a Management CEP) and follows.
        p.pump();
        assert!(p.ev_b.iter().any(|e| matches!(
            e,
            Event::NeighbourMoved { old: A, new: n, .. } if *n == new
        )));
        // Again within the hold: A stays, and says so.
        let t1 = t + Duration::from_secs(59);
        p.a.handle_sdu(t1, UNIX, 2 + OFF, &lsa(new, 0x0c0c_0004, 200));
        assert_eq!(p.a.addr(), Some(new));
        assert_eq!(p.a.counters().readdress_held, 1);
        assert!(std::iter::from_fn(|| p.a.poll_event()).any(|e| e == Event::ReaddressHeld));
        // At the hold's end it moves again; a proposed address is taken.
        p.a.propose_address(0x0a0a_0777);
        let t2 = t + UniConfig::default().readdress_hold;
        p.a.handle_sdu(t2, UNIX, 2 + OFF, &lsa(new, 0x0c0c_0005, 300));
        assert_eq!(p.a.addr(), Some(0x0a0a_0777));
        assert_eq!(p.a.counters().readdressed, 2);
        assert!(std::iter::from_fn(|| p.a.poll_event()).any(|e| e
            == Event::Moved {
                old: new,
                new: 0x0a0a_0777
            }));
        // A proposal of the address it has: no move.
        p.a.propose_address(0x0a0a_0777);
        let t3 = t2 + Duration::from_secs(120);
        p.a.handle_sdu(t3, UNIX, 2 + OFF, &lsa(0x0a0a_0777, 0x0c0c_0006, 400));
        assert_eq!(
            (p.a.addr(), p.a.counters().readdressed),
            (Some(0x0a0a_0777), 2)
        );
        assert!(std::iter::from_fn(|| p.a.poll_event()).all(|e| !matches!(e, Event::Moved { .. })));
    }

    #[test]
    fn of_two_ipcps_with_one_address_the_younger_one_s_links_leave_us_in_place() {
        let mut p = Pair::join(UniConfig::default());
        // A's own link ages a few update periods (its seqno goes up).
        let until = p.now + Duration::from_secs(60);
        p.run(until);
        while p.a.poll_event().is_some() {}
        p.a.handle_sdu(p.now, UNIX, 2 + OFF, &lsa(A, 0x0c0c_0003, 0));
        assert_eq!(p.a.addr(), Some(A));
        assert_eq!(p.a.counters().collisions_kept, 1);
        assert_eq!(p.a.poll_event(), Some(Event::CollisionKept));
    }

    #[test]
    fn a_directory_without_an_answer_asks_the_enroller_again_every_retry() {
        let mut p = Pair::new(UniConfig::default());
        let now = p.now;
        p.b.enrol(now, 1, 7);
        p.pump();
        p.b.connect(now, 2, Component::Management, 7);
        p.b.connect(now, 3, Component::DataTransfer, 7);
        p.pump();
        // A's directory's answers are lost. Step by 100 ms.
        p.drop_a_dht = true;
        let mut asks = vec![];
        for _ in 0..200 {
            let until = p.now + Duration::from_millis(100);
            p.run(until);
            if let Some(t) = p.b.dir_join.asked() {
                if asks.last() != Some(&t) {
                    asks.push(t);
                    // The next ask is a timer of its own, a retry away.
                    let due = p.b.poll_timeout().unwrap();
                    assert!(due > p.now && due <= t + UniConfig::default().dht_retry);
                }
            }
            if asks.len() == 1 {
                let again = p.b.dir_join.again().unwrap();
                assert_eq!(again, asks[0] + UniConfig::default().dht_again);
            }
        }
        assert_eq!(p.b.dht().unwrap().contacts(), 0);
        assert!(asks.len() >= 10, "{} asks in 20 s", asks.len());
        for w in asks.windows(2) {
            assert!(w[1] - w[0] >= UniConfig::default().dht_retry);
        }
    }

    #[test]
    fn the_directory_asks_once_more_when_the_routes_have_settled() {
        let mut p = Pair::new(UniConfig::default());
        let now = p.now;
        p.b.enrol(now, 1, 7);
        p.pump();
        p.b.connect(now, 2, Component::Management, 7);
        p.b.connect(now, 3, Component::DataTransfer, 7);
        p.pump();
        for _ in 0..100 {
            if p.b.dir_join.asked().is_some() {
                break;
            }
            let until = p.now + Duration::from_millis(100);
            p.run(until);
        }
        let asked = p.b.dir_join.asked().unwrap();
        let again = asked + UniConfig::default().dht_again;
        p.run(again - Duration::from_millis(100));
        assert_eq!(p.b.dir_join.again(), Some(again), "not before its time");
        let sent = p.b.dht().unwrap().counters().sent;
        p.run(again + Duration::from_millis(100));
        assert_eq!(p.b.dir_join.again(), None);
        assert!(p.b.dht().unwrap().counters().sent > sent, "asked again");
    }

    #[test]
    fn a_name_withdrawn_before_it_was_published_is_never_published() {
        let mut p = Pair::new(UniConfig::default());
        let now = p.now;
        p.b.register(now, UNIX, key("gone"));
        p.b.register(now, UNIX, key("kept"));
        p.b.unregister(&key("gone"));
        p.b.enrol(now, 1, 7);
        p.pump();
        p.b.connect(now, 2, Component::Management, 7);
        p.b.connect(now, 3, Component::DataTransfer, 7);
        p.pump();
        let until = p.now + Duration::from_secs(10);
        p.run(until);
        assert!(p.b.dht().unwrap().known(&key("gone"), UNIX).is_empty());
        assert_eq!(p.b.dht().unwrap().known(&key("kept"), UNIX), [B]);
    }

    #[test]
    fn the_machine_trait_drives_the_ipcp() {
        use crate::machine::Machine;
        let mut p = Pair::new(UniConfig::default());
        let now = p.now;
        p.b.enrol(now, 1, 7);
        let t = Machine::poll_transmit(&mut p.b).unwrap();
        assert_eq!(t.flow, 1);
        assert!(Machine::poll_timeout(&p.b).is_some());
        Machine::handle_timeout(&mut p.b, now + Duration::from_secs(60));
        assert!(matches!(
            Machine::poll_event(&mut p.b),
            Some(Event::Failed { flow: 1, .. })
        ));
    }

    /// A test policy: a proof is `publisher:key[0]:addr` in text, signed "now"; valid
    /// when it names the key and the address.
    #[derive(Debug)]
    struct TextProofs;

    impl Proofs for TextProofs {
        fn check(
            &self,
            key: &[u8],
            addr: u64,
            proof: &[u8],
            unix: UnixTime,
        ) -> Result<dht::Signed, ProofError> {
            let t = String::from_utf8_lossy(proof);
            let v: Vec<&str> = t.split(':').collect();
            if v.len() != 3 || v[1] != key[0].to_string() || v[2] != addr.to_string() {
                return Err(ProofError(format!("bad proof {t}")));
            }
            Ok(dht::Signed {
                publisher: v[0].into(),
                at: unix.as_secs(),
            })
        }
    }

    /// Signs as `publisher`, except the keys starting with `refuse`.
    #[derive(Debug)]
    struct TextSigner {
        publisher: &'static str,
        refuse: Arc<std::sync::atomic::AtomicU8>,
    }

    impl Signer for TextSigner {
        fn sign(&self, key: &[u8], addr: u64, _unix: UnixTime) -> Result<Vec<u8>, ProofError> {
            if key[0] == self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(ProofError("no key for it".into()));
            }
            Ok(format!("{}:{}:{addr}", self.publisher, key[0]).into_bytes())
        }
    }

    fn signed_pair(sign_a: bool) -> Pair {
        signed_pair_refusing(sign_a, &Arc::new(0xee.into()))
    }

    /// Both sign (A only with `sign_a`), refusing the keys that start with `refuse`.
    fn signed_pair_refusing(sign_a: bool, refuse: &Arc<std::sync::atomic::AtomicU8>) -> Pair {
        Pair::join_with(UniConfig::default(), &move |m, addr| {
            if addr == A && !sign_a {
                return m;
            }
            let publisher = if addr == A { "a" } else { "b" };
            m.with_signed_entries(
                Arc::new(TextProofs),
                Arc::new(TextSigner {
                    publisher,
                    refuse: Arc::clone(refuse),
                }),
            )
        })
    }

    /// A key whose first byte is `b`.
    fn key_at(b: u8) -> Key {
        let mut k = key("srv");
        k[0] = b;
        k
    }

    /// B looks `k` up: the addresses found (empty: NotFound).
    fn look(p: &mut Pair, k: &Key) -> Option<Vec<u64>> {
        let now = p.now;
        let id = p.b.lookup(now, UNIX, k.clone()).unwrap();
        p.pump();
        let until = now + Duration::from_secs(5);
        p.run(until);
        p.ev_b.iter().find_map(|e| match e {
            Event::Dir(dht::Event::Found { id: i, addrs, .. }) if *i == id => Some(addrs.clone()),
            Event::Dir(dht::Event::NotFound { id: i, .. }) if *i == id => Some(vec![]),
            _ => None,
        })
    }

    #[test]
    fn a_layer_that_signs_its_entries_publishes_signed_ones_and_moves_them_signed() {
        let mut p = signed_pair(true);
        let now = p.now;
        let k = key_at(0x11);
        p.a.register(now, UNIX, k.clone());
        p.pump();
        assert_eq!(look(&mut p, &k), Some(vec![A]));
        // B holds A's copy with A's signature.
        let signer =
            p.b.dht()
                .unwrap()
                .signer(&k, A)
                .map(|s| s.publisher.clone());
        assert_eq!(signer.as_deref(), Some("a"));
        // A key A cannot sign: not published, said and counted.
        let bad = key_at(0xee);
        p.a.register(now, UNIX, bad.clone());
        p.pump();
        assert!(p.ev_a.contains(&Event::SignFailed {
            key: bad.clone(),
            why: ProofError("no key for it".into())
        }));
        assert_eq!(p.a.counters().sign_failed, 1);
        assert_eq!(look(&mut p, &bad), Some(vec![]));
        // A moves: its entry is stored again at the new address, signed for it.
        let now = p.now;
        // (As a collision does, inside the machine's turn: the rest of the turn sends what
        // the move produced.)
        p.a.readdress(now);
        p.a.handle_timeout(now);
        p.pump();
        let until = now + Duration::from_secs(1);
        p.run(until);
        let new = p.a.addr().unwrap();
        assert_ne!(new, A);
        let signer =
            p.b.dht()
                .unwrap()
                .signer(&k, new)
                .map(|s| s.publisher.clone());
        assert_eq!(
            signer.as_deref(),
            Some("a"),
            "{:?} {:?} {:?} {:?} {:?}",
            p.b.dht().unwrap().entries(),
            p.b.dht().unwrap().counters(),
            p.a.counters(),
            p.b.counters(),
            p.a.dht().unwrap().counters()
        );
        // The key it cannot sign stays unpublished (nothing to move) and nothing else failed.
        assert_eq!(p.a.counters().sign_failed, 1);
    }

    #[test]
    fn a_member_that_does_not_sign_is_not_believed_in_a_layer_that_does() {
        let mut p = signed_pair(false);
        let now = p.now;
        let k = key_at(0x22);
        p.a.register(now, UNIX, k.clone());
        p.pump();
        assert_eq!(look(&mut p, &k), Some(vec![]));
        assert!(p.b.dht().unwrap().counters().proofs_refused >= 1);
        assert!(p.ev_b.iter().any(|e| matches!(
            e,
            Event::Dir(dht::Event::ProofRefused { addr, .. }) if *addr == A
        )));
    }

    #[test]
    fn a_link_back_makes_both_directories_rejoin_and_publish_again_signed_anew() {
        use std::sync::atomic::{AtomicU8, Ordering};
        let refuse = Arc::new(AtomicU8::new(0xee));
        let mut p = signed_pair_refusing(true, &refuse);
        let now = p.now;
        p.a.register(now, UNIX, key_at(0x11));
        p.b.register(now, UNIX, key_at(0x33));
        p.pump();
        let until = p.now + Duration::from_secs(3);
        p.run(until);
        assert!(p.a.dht().unwrap().signer(&key_at(0x33), B).is_some());
        // The link goes (both ends see their flows end): each drops the other's value.
        let now = p.now;
        for f in [2, 3] {
            p.a.flow_down(now, f + OFF);
            p.b.flow_down(now, f);
            p.accepted.remove(&(f + OFF));
        }
        p.pump();
        let until = p.now + Duration::from_secs(3);
        p.run(until);
        assert_eq!(p.a.next_hop(B), None);
        let (ca, cb) = (p.a.counters(), p.b.counters());
        assert_eq!((ca.dht_forgotten, cb.dht_forgotten), (1, 1));
        assert_eq!((ca.dht_rejoined, cb.dht_rejoined), (0, 0));
        // A can no longer sign its key; the link comes back: both rejoin, B publishes
        // again, A's publication fails (said, counted).
        refuse.store(0x11, Ordering::Relaxed);
        let now = p.now;
        p.b.connect(now, 2, Component::Management, 7);
        p.b.connect(now, 3, Component::DataTransfer, 7);
        p.pump();
        let until = p.now + Duration::from_secs(6);
        p.run(until);
        let (ca, cb) = (p.a.counters(), p.b.counters());
        assert_eq!((ca.dht_rejoined, cb.dht_rejoined), (1, 1));
        assert_eq!((ca.sign_failed, cb.sign_failed), (1, 0));
        assert!(p.a.dht().unwrap().signer(&key_at(0x33), B).is_some());
        assert!(p.ev_a.contains(&Event::SignFailed {
            key: key_at(0x11),
            why: ProofError("no key for it".into())
        }));
        // Moving cannot sign it either: counted once more.
        let now = p.now;
        p.a.readdress(now);
        assert_eq!(p.a.counters().sign_failed, 2);
    }
}
