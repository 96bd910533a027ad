//! A unicast layer's directory: the Kademlia DHT of 0.23 (unicast facts §6), wire-compatible
//! (`dht_msg` on PCI eid 1), as a machine without I/O.
//!
//! Node ids are random bytes of the directory hash's length; distance is the XOR of the
//! first 8 bytes read big-endian; contacts live in 64 buckets by the distance's leading
//! zeros, at most k each. Names are published with STORE to the k contacts closest to the
//! key and found with FIND_VALUE. Unlike the reference, a lookup really recurses: each
//! response's closer contacts are asked in turn (alpha at a time) until a value comes or
//! no closer contact is left, so a lookup finds a name in a layer of any size.
//!
//! The driver sends [`Transmit`]s to an address through DT (eid 1) and hands received
//! `dht_msg`s to [`Dht::handle`]; times are passed in (`now` for timers, `unix` seconds for
//! the absolute expiry STORE carries).
//!
//! In a layer whose members sign their entries (issue 26 item 2, [`Proofs`]), a value is
//! the 8-byte address and a proof that its publisher may serve the key; values without a
//! valid proof are refused in STOREs and ignored in responses (counted), and a newer entry
//! of the same publisher supersedes its older ones. Without [`Proofs`] values are the
//! reference's 8 bytes.

use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{DhtContactMsg, DhtMsg};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most bytes of values one FIND_VALUE response carries when values have proofs (at
/// least one value goes): a response with its contacts stays within an Ethernet frame.
pub const PROVEN_VALUE_BYTES: usize = 1024;

/// Why a directory entry's proof does not hold, in the policy's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub String);

impl From<String> for ProofError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ProofError {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// The layer's policy for directory entries with proofs (docs/SECURITY.md "Names in a
/// secured layer"), given by the driver: a pure check, the time comes in.
pub trait Proofs: std::fmt::Debug + Send + Sync {
    /// Checks `proof` (the bytes after the 8-byte address) for `addr` under `key` at
    /// `unix`: who published it and when it was signed, or why not.
    fn check(
        &self,
        key: &[u8],
        addr: u64,
        proof: &[u8],
        unix: UnixTime,
    ) -> Result<Signed, ProofError>;
}

/// Who published a value, and when it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The publisher (its certificate's CN).
    pub publisher: String,
    /// When it signed (UNIX s): a newer entry of the same publisher supersedes older ones.
    pub at: u64,
}

/// A value stored for another IPCP.
#[derive(Debug, Clone)]
struct Stored {
    /// Expiry (UNIX s).
    exp: u32,
    /// When last sent on (replication).
    last: Instant,
    /// The proof sent after the address (empty in an open layer).
    proof: Vec<u8>,
    /// Who signed it, in a layer with proofs.
    signed: Option<Signed>,
}

/// A node id or key.
pub type Key = Vec<u8>;

/// Settings (the layer configuration's `dir_dht_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhtConfig {
    /// Requests in parallel per lookup (3).
    pub alpha: usize,
    /// Contacts per bucket, and copies of a value (8).
    pub k: usize,
    /// Seconds a published value lives (86400).
    pub t_expire: u32,
    /// How long a request waits for its response (2 s).
    pub t_resp: Duration,
    /// Most lookups at once (more are refused).
    pub max_lookups: usize,
    /// Most values stored for others.
    pub max_values: usize,
    /// Seconds between republications of values stored here (900).
    pub t_replicate: u32,
    /// Seconds between lookups of our own id that refresh the buckets (900).
    pub t_refresh: u32,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            alpha: 3,
            k: 8,
            t_expire: 86_400,
            t_resp: Duration::from_secs(2),
            max_lookups: 128,
            max_values: 65_536,
            t_replicate: 900,
            t_refresh: 900,
        }
    }
}

/// A lookup's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What the DHT says to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A value without a valid proof came (counted in [`Counters::proofs_refused`]).
    ProofRefused {
        /// The member that sent it.
        from: u64,
        /// The address it names.
        addr: u64,
        /// Why it was refused.
        why: ProofError,
    },
    /// A name's addresses (at least one).
    Found {
        /// The lookup.
        id: LookupId,
        /// The key.
        key: Key,
        /// Addresses that registered it (other than ours first).
        addrs: Vec<u64>,
    },
    /// Nobody closer has it.
    NotFound {
        /// The lookup.
        id: LookupId,
        /// The key.
        key: Key,
    },
}

/// A message to send through DT to `dst` (eid 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination address.
    pub dst: u64,
    /// A `dht_msg`.
    pub msg: Vec<u8>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages sent.
    pub sent: u64,
    /// Messages received and accepted.
    pub received: u64,
    /// Messages dropped: malformed or out of bounds (`pb::decode`), wrong id length, zero
    /// address.
    pub dropped_bad: u64,
    /// Responses for no outstanding request (cookie, key or sender).
    pub dropped_unsolicited: u64,
    /// STOREs refused: expired, the value table full, or the key holding
    /// [`MAX_VALUES_PER_KEY`] values that all expire later.
    pub store_refused: u64,
    /// Lookups refused: too many at once.
    pub lookups_refused: u64,
    /// Values without a valid proof, in a layer with proofs: refused in STOREs, ignored in
    /// responses (and values with a proof in an open layer).
    pub proofs_refused: u64,
    /// Entries superseded by a newer one of the same publisher, or refused as older; and
    /// values that made room, at a key holding [`MAX_VALUES_PER_KEY`], for one that
    /// expires later.
    pub superseded: u64,
    /// Values stored for others that reached their expiry and went.
    pub expired: u64,
    /// Lookups ended because they had asked as many members as one may, or had run for
    /// [`LOOKUP_RESPONSE_TIMES`] response times.
    pub lookups_cut: u64,
    /// Contacts that left the buckets after [`MAX_FAILS`] unanswered requests in a row.
    pub contacts_dropped: u64,
}

#[derive(Debug, Clone)]
struct Contact {
    id: Key,
    addr: u64,
}

#[derive(Debug)]
struct Lookup {
    key: Key,
    /// Looking for values (FIND_VALUE) or nodes (FIND_NODE: bootstrap, refresh).
    value: bool,
    /// Candidates by distance, asked or not.
    shortlist: BTreeMap<u64, Contact>,
    asked: HashSet<u64>,
    /// Outstanding requests: address -> (cookie, deadline).
    waiting: HashMap<u64, (u64, Instant)>,
    /// A registration's node lookup: store the key at the closest found, with this expiry.
    store_exp: Option<u32>,
    /// When it ends whatever it still waits for: [`LOOKUP_RESPONSE_TIMES`] x `t_resp`
    /// after it started (10 s with the default `t_resp` of 2 s).
    ends: Instant,
}

/// A lookup runs at most this many response times (`t_resp`: 10 s with the defaults) in
/// all: members that answer with made-up contacts, slowly, would otherwise keep it and its
/// slot for up to [`lookup::max_asked`] / alpha response times (about 43 s).
pub const LOOKUP_RESPONSE_TIMES: u32 = 5;

/// The directory of one IPCP.
#[derive(Debug)]
pub struct Dht {
    cfg: DhtConfig,
    id: Key,
    addr: u64,
    /// 64 buckets by the distance's leading zeros (bucket 64: distance 0, our own prefix).
    buckets: Vec<VecDeque<Contact>>,
    /// Our own registrations: key -> expiry (UNIX s).
    local: HashMap<Key, u32>,
    /// The proofs of our own registrations (layers with proofs).
    local_proof: HashMap<Key, Vec<u8>>,
    /// Values stored for others: key -> address -> value.
    values: HashMap<Key, HashMap<u64, Stored>>,
    /// The layer's proof policy (`None`: an open layer, values are 8 bytes).
    proofs: Option<Arc<dyn Proofs>>,
    stored: usize,
    lookups: HashMap<LookupId, Lookup>,
    next_lookup: u64,
    /// The cookie of requests to the bootstrap peer (whose id we do not know yet).
    magic: u64,
    /// The bootstrap peer (asked again while we know no one).
    peer: u64,
    /// The wall clock (UNIX s) at an instant, as last given: expiries are absolute.
    clock: Option<(Instant, UnixTime)>,
    /// When the periodic work (expiry, replication, republication, refresh) runs next.
    next_work: Option<Instant>,
    /// When the buckets were last refreshed.
    refreshed: Option<Instant>,
    /// Draws for cookies (the caller seeds it).
    rng: rand_chacha::ChaCha8Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    /// Addresses forgotten ([`Dht::forget_address`]) and not back: other members' answers
    /// do not bring them back into the buckets (one that has not forgotten them yet would
    /// hand them round again); a message from one, or [`Dht::returned`], does. At most
    /// [`MAX_GONE`], the oldest dropped first.
    gone: HashSet<u64>,
    gone_order: VecDeque<u64>,
    /// Requests to a contact of the buckets that went unanswered in a row, by its address:
    /// at [`MAX_FAILS`] it leaves the buckets (a made-up contact does not stay for good),
    /// and an answer to our request starts the count again. Only addresses in the buckets
    /// are counted, and an address leaves it when it leaves them (or is forgotten).
    fails: HashMap<u64, u8>,
}

/// Unanswered requests in a row after which a contact leaves the buckets.
pub const MAX_FAILS: u8 = 3;

/// Most values one key holds (addresses that registered the same name): a lookup's answer
/// carries 8, and one member storing thousands under one key would make every lookup of it
/// copy and sort them all. A new value past it takes the place of the one that expires
/// first, when that expires before it does; else it is refused (`store_refused`).
pub const MAX_VALUES_PER_KEY: usize = 16;

/// Layer addresses are 32 bits (the DT PCI's `dst_addr`, the flat address policy): a DHT
/// contact or sender beyond that can never be reached, and a reply to it would wait for a
/// route that never comes.
pub const MAX_ADDR: u64 = u32::MAX as u64;

/// At most this many forgotten addresses are kept out of the buckets.
pub const MAX_GONE: usize = 4_096;

/// The distance of two ids: XOR of their first 8 bytes, big-endian.
pub fn distance(a: &[u8], b: &[u8]) -> u64 {
    let w = |x: &[u8]| {
        let mut v = [0u8; 8];
        for (d, s) in v.iter_mut().zip(x) {
            *d = *s;
        }
        u64::from_be_bytes(v)
    };
    w(a) ^ w(b)
}

impl Dht {
    /// The DHT of the IPCP at `addr` with node id `id`; `seed` seeds its cookies.
    pub fn new(cfg: DhtConfig, id: Key, addr: u64, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let magic = rng.gen_range(1..=u64::MAX);
        Self {
            cfg,
            id,
            addr,
            buckets: (0..=64).map(|_| VecDeque::new()).collect(),
            local: HashMap::new(),
            local_proof: HashMap::new(),
            values: HashMap::new(),
            proofs: None,
            stored: 0,
            lookups: HashMap::new(),
            next_lookup: 0,
            magic,
            peer: 0,
            clock: None,
            next_work: None,
            refreshed: None,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            gone: HashSet::new(),
            gone_order: VecDeque::new(),
            fails: HashMap::new(),
        }
    }

    /// Values need proofs checked by `p` (a secured layer); ours are sent with the proof
    /// given to [`Dht::register_signed`].
    pub fn with_proofs(mut self, p: Arc<dyn Proofs>) -> Self {
        self.proofs = Some(p);
        self
    }

    /// Whether values need proofs.
    pub fn has_proofs(&self) -> bool {
        self.proofs.is_some()
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Contacts known.
    pub fn contacts(&self) -> usize {
        self.buckets.iter().map(VecDeque::len).sum()
    }

    /// Our id.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// Our address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    fn cookie(&mut self) -> u64 {
        use rand::Rng;
        self.rng.gen_range(1..=u64::MAX)
    }

    fn bucket_of(&self, id: &[u8]) -> usize {
        distance(&self.id, id).leading_zeros() as usize
    }

    /// Adds or refreshes a contact; a full bucket keeps its older contacts. With `replace`
    /// (the sender of a response that matched our request's cookie: it got a message sent
    /// to that address) the same address or the same id replaces the old entry, at the
    /// tail: a node that moved to another address is found at the new one. Without it (a
    /// request, a STORE, a contact another member listed: what anyone can claim) an entry
    /// that shares only the id or only the address stays as it is, so nobody takes over
    /// another member's entry by claiming its id.
    fn learn(&mut self, c: Contact, replace: bool) {
        if c.addr == self.addr || c.addr == 0 || c.addr > MAX_ADDR || c.id.len() != self.id.len() {
            return;
        }
        let clash = |x: &Contact| (x.addr == c.addr) != (x.id == c.id);
        if !replace && self.buckets.iter().flatten().any(clash) {
            return;
        }
        // (The count of unanswered requests of an address starts again with the answer
        // that makes `replace`: `Dht::handle`.)
        for b in &mut self.buckets {
            b.retain(|x| x.addr != c.addr && x.id != c.id);
        }
        let i = self.bucket_of(&c.id);
        let k = self.cfg.k;
        if let Some(b) = self.buckets.get_mut(i) {
            if b.len() < k {
                b.push_back(c);
            }
        }
    }

    /// The `n` known contacts closest to `key`.
    fn closest(&self, key: &[u8], n: usize) -> Vec<Contact> {
        let mut all: Vec<&Contact> = self.buckets.iter().flatten().collect();
        all.sort_by_key(|c| distance(&c.id, key));
        all.into_iter().take(n).cloned().collect()
    }

    fn me(&self) -> DhtContactMsg {
        DhtContactMsg {
            id: self.id.clone(),
            addr: self.addr,
        }
    }

    fn send(&mut self, dst: u64, m: DhtMsg) {
        self.counters.sent += 1;
        self.transmits.push_back(Transmit {
            dst,
            msg: m.encode_to_vec(),
        });
    }

    /// When [`Dht::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lookups
            .values()
            .flat_map(|l| l.waiting.values().map(|(_, d)| *d).chain([l.ends]))
            .chain(self.next_work)
            .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

crate::machine::machine!(Dht, Transmit, Event);

mod lookup;
mod timers;
mod values;

#[cfg(test)]
mod tests;
