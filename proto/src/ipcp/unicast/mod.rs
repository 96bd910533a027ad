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
use crate::dht::{self, Dht, DhtConfig, Key, ProofError, Proofs};
use crate::enroll::{Connections, EnrollConfig, EnrollError, FlowId};
use crate::fa::{self, Fa, FaConfig, FaError};
use crate::linkstate::{Event as LsEvent, LinkState, LsConfig, Policy};
use crate::machine::{machine, UnixTime};
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, VecDeque};
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
    /// Link state floods a withdrawal when one of our DT connections ends
    /// (`LsConfig::withdraw`) when `ls` is `None` (the layer's settings); o7sd's
    /// `ls_withdraw` key.
    pub ls_withdraw: bool,
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
            ls_withdraw: true,
        }
    }
}

/// The bounds of a layer's link-state timers in seconds (`ls_t_*` in the configuration
/// file, and the same from an enroller, whose values are otherwise taken unchecked: a
/// `t_timeo` of 2^32 - 1 s keeps a forged record for good).
pub mod ls_bounds {
    /// Between recomputations of the table.
    pub const T_RECALC: (u32, u32) = (1, 3600);
    /// Between announcements of our own links.
    pub const T_UPDATE: (u32, u32) = (1, 3600);
    /// A record not refreshed for this long goes.
    pub const T_TIMEO: (u32, u32) = (1, 86_400);
}

/// The layer's link-state settings (policy and timers) from its configuration, the timers
/// within [`ls_bounds`] and `t_timeo` at least twice `t_update`.
pub fn ls_config(conf: &IpcpConfigMsg) -> LsConfig {
    use ls_bounds::*;
    let secs = |v: u32, (lo, hi): (u32, u32)| Duration::from_secs(u64::from(v.clamp(lo, hi)));
    let mut cfg = LsConfig {
        hold: Duration::from_millis(100),
        ..LsConfig::default()
    };
    if let Some(ls) = conf.unicast.as_ref().and_then(|u| u.dt.routing.ls.as_ref()) {
        cfg.t_recalc = secs(ls.t_recalc, T_RECALC);
        cfg.t_update = secs(ls.t_update, T_UPDATE);
        // A record lives at least two update periods (else every neighbour's half of a
        // link aged out before its refresh: routes flapped at every pass).
        cfg.t_timeo = secs(ls.t_timeo, T_TIMEO).max(2 * cfg.t_update);
        cfg.policy = match ls.pol {
            1 => Policy::Lfa,
            2 => Policy::Ecmp,
            _ => Policy::Simple,
        };
    }
    cfg
}

/// The bounds of a layer's directory settings (`dht_*` in the configuration file, and the
/// same from an enroller, whose values are otherwise taken unchecked: `k = 2^32` would lift
/// the bound on the buckets, `t_replicate = 1` resend every value each second).
pub mod dht_bounds {
    /// Requests in parallel per lookup (and at most `k`).
    pub const ALPHA: (u32, u32) = (1, 10);
    /// Contacts per bucket and copies of a value.
    pub const K: (u32, u32) = (1, 20);
    /// Seconds a published value lives.
    pub const T_EXPIRE: (u32, u32) = (10, 86_400);
    /// Seconds between lookups of our own id.
    pub const T_REFRESH: (u32, u32) = (3, 3600);
    /// Seconds between republications of values stored here.
    pub const T_REPLICATE: (u32, u32) = (3, 3600);
}

/// The layer's directory settings from its configuration, each brought within
/// [`dht_bounds`] (`alpha` also within `k`).
pub fn dht_config(conf: &IpcpConfigMsg) -> DhtConfig {
    use dht_bounds::*;
    let within = |v: u32, (lo, hi): (u32, u32)| v.clamp(lo, hi);
    let mut cfg = DhtConfig::default();
    if let Some(d) = conf.unicast.as_ref().and_then(|u| u.dir.dht.as_ref()) {
        let k = within(d.k, K);
        cfg.k = k as usize;
        cfg.alpha = within(d.alpha, ALPHA).min(k) as usize;
        cfg.t_expire = within(d.t_expire, T_EXPIRE);
        cfg.t_refresh = within(d.t_refresh, T_REFRESH);
        cfg.t_replicate = within(d.t_replicate, T_REPLICATE);
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
    /// A DT connection (or a neighbour's move) named an address that cannot be its peer's:
    /// 0, ours, or that of a DT neighbour on another link (a member claiming another's
    /// address would take its traffic). Refused and counted; a connection is closed
    /// ([`Event::Close`] follows).
    ClaimRefused {
        /// The N-1 flow it came on.
        flow: FlowId,
        /// The address claimed.
        addr: u64,
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
    /// We enrolled a member over N-1 flow `flow` (we are its enroller).
    Served {
        /// The N-1 flow.
        flow: FlowId,
    },
    /// The directory dropped `values` values naming `addr`: it left the forwarding table
    /// more than `left_grace` ago.
    DirForgotten {
        /// The member's address.
        addr: u64,
        /// Values dropped.
        values: usize,
    },
    /// A forgotten member is back in the table: the directory joins again through it
    /// (and our names are stored again a grace later).
    DirRejoined {
        /// The member's address.
        addr: u64,
    },
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
    /// Moves of a neighbour dropped: its link moved within `readdress_hold` already.
    pub neighbour_moves_held: u64,
    /// DT connections and moves refused for the address they named ([`Event::ClaimRefused`]).
    pub address_claims_refused: u64,
    /// Directory values dropped: the address they name left the forwarding table.
    pub dht_forgotten: u64,
    /// Times the directory rejoined through a member it had forgotten (a healed layer).
    pub dht_rejoined: u64,
    /// Entries of ours that could not be signed (not published).
    pub sign_failed: u64,
}

/// A connection that outlived the driver (o7sd restarted; the data plane kept its N-1
/// flow): what [`UnicastIpcp::resume`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// The N-1 flow.
    pub flow: FlowId,
    /// The component it carries.
    pub comp: Component,
    /// The neighbour's address.
    pub peer_addr: u64,
    /// Its lower-layer peer, as the driver tags it ([`UnicastIpcp::connect`]).
    pub link: u64,
}

/// The parts that exist once the IPCP is in a layer.
#[derive(Debug)]
struct Layer {
    addr: u64,
    /// The layer's configuration as we joined it (our address as its directory peer).
    conf: IpcpConfigMsg,
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
    /// When each link's neighbour last moved (at most one move per `readdress_hold`).
    moved_at: HashMap<u64, Instant>,
    budgets: HashMap<FlowId, Bucket>,
    held: VecDeque<Held>,
    /// The routes may have changed (the table, a DT neighbour) since the held messages
    /// were last tried: they are tried again only then, or when the oldest is due to go
    /// (a flood of SDUs must not make every one of them walk the queue).
    routes_changed: bool,
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
    /// The address to take on joining the layer of that name (a resumed IPCP's).
    resume_addr: Option<(String, u64)>,
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
            moved_at: HashMap::new(),
            links: HashMap::new(),
            dt_nb: HashMap::new(),
            budgets: HashMap::new(),
            held: VecDeque::new(),
            routes_changed: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            clock: None,
            dir_join: DirJoin::new(0, cfg.dht_retry, cfg.dht_again),
            to_publish: Vec::new(),
            last_readdress: None,
            next_addr: None,
            resume_addr: None,
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

    /// On joining layer `layer` (and only that one), take `addr` instead of a draw: a
    /// driver that resumes an IPCP after a restart (its neighbours still know the
    /// address). Kept while the IPCP joins no layer or another one.
    pub fn propose_address_in(&mut self, layer: &str, addr: u64) {
        self.resume_addr = Some((layer.to_string(), addr)).filter(|(_, a)| *a != 0);
    }

    /// The layer's configuration as we joined it (name, `max_ttl`, `cong_avoid`, ...; our
    /// address as its directory peer), once in a layer.
    pub fn layer_conf(&self) -> Option<&IpcpConfigMsg> {
        self.layer.as_ref().map(|l| &l.conf)
    }

    /// The DT neighbours: address -> N-1 flow.
    pub fn dt_neighbours(&self) -> &HashMap<u64, FlowId> {
        &self.dt_nb
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

mod address;
mod directory;
mod dt;
mod joining;

#[cfg(test)]
mod tests;
