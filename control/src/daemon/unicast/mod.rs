//! Unicast IPCPs in o7sd (issue 15; issue 25: one machine). A unicast IPCP is a member of
//! a layer that o7sd runs itself: its N-1 flows are flows o7sd allocates over its eth/udp
//! IPCPs (the same allocation job as an app's, with o7sd as the process) or accepts
//! through an internal acceptor (the IPCP's name and its layer's, bound to o7sd: the
//! reference's `autobind`). o7sd is their app: the event loop reads their rx rings when
//! their kick fires and writes their tx rings.
//!
//! The protocol is one machine, `o7s_proto::ipcp::unicast::UnicastIpcp` (enrolment and
//! connections, link state, the directory, the flow allocator, address collisions, its own
//! DT messages), the same that proto/tests/layer_sim.rs runs with 1000 IPCPs: o7sd gives
//! it the SDUs, the N-1 flows and the time, and acts on what it says (pump.rs). What stays
//! here is I/O and o7sd's own: the flows over the layer and their OAP (flows.rs), the
//! forwarding table sent to the data-plane workers and the state saved for a restarted
//! o7sd (tend.rs, resume.rs), the views (views.rs). Broadcast IPCPs (broadcast.rs) share
//! the record and keep their own connection machine.

use crate::daemon::Owner;
use crate::registry::Accepted;
use o7s::ring::{FlowMem, Kick};
use o7s_wire::qos::QosSpec;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub(super) mod create;
pub(super) mod flows;
pub(super) mod pump;
pub(super) mod resume;
pub(super) mod tend;
pub(super) mod views;

use o7s_proto::dht::{Dht, LookupId};
use o7s_proto::enroll::{Connections, EnrollConfig};
use o7s_proto::fa::{AllocId, Fa, ReqId};
use o7s_proto::ipcp::unicast::{UniConfig, UnicastIpcp};
use o7s_proto::linkstate::LinkState;
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};

/// A unicast IPCP's forwarding state as the data plane has it: (address, (destination, N-1
/// flow of the next hop), DT N-1 flows).
pub(super) type DpTable = (u32, Vec<(u32, u64)>, Vec<u64>);
/// What a unicast IPCP's data-plane table is made from: link state's generation, the
/// address, the DT neighbours (address, N-1 flow) in order.
pub(super) type TableFrom = (u64, u64, Vec<(u64, u64)>);

/// How long an address may be out of the forwarding table before the directory values
/// that name it are dropped here: a route that flaps back within it keeps them.
pub const LEFT_GRACE: Duration = Duration::from_secs(1);

/// Messages a second (and in a burst) that one neighbour may make o7sd handle: LSAs on a
/// Management flow, directory and flow allocator PDUs on a DT flow. A layer of 1000
/// IPCPs refreshing three links every 15 s floods some 200 LSAs a second.
pub const NEIGHBOUR_RATE: u32 = 2_000;

// A second's worth is also the burst (`UniConfig::neighbour_burst` is 16,384, the
// simulator's): a new Management neighbour's whole LSDB (some 5,000 records at 1,000
// IPCPs) does not fit, so a layer that large would not converge here. Tried when o7sd
// came to drive the machine (2026-12-06): with 16,384, tests/tests/member_flood.rs's
// rogue gets some 17,000 records into B (2,000: 3,000), and the recomputations over them
// keep B busy enough that the kernel loses a quarter to a half of the rogue's frames
// before B's data plane (47,000 to 67,000 + ring drops of 100,000 reached it in three
// runs; the test wants 90,000; 2 vCPUs, debug build). Kept at a second's worth.

/// The directory asks its bootstrap peer again this often while nobody answers.
pub const DHT_RETRY: Duration = Duration::from_secs(1);

/// And looks its own id up once more this long after the first time (the layer's routes
/// settled).
pub const DHT_AGAIN: Duration = Duration::from_secs(2);

/// An IPCP moves to a new address at most once in this time: a member that forges our
/// address over and over cannot make us move over and over.
pub const READDRESS_HOLD: Duration = Duration::from_secs(60);

/// How long a component's message waits for a route to its destination.
pub const HOLD_FOR: Duration = Duration::from_secs(3);

/// At most this many messages wait for a route (the rest are dropped and counted).
pub const HOLD_MAX: usize = 256;

/// SDUs read from one N-1 flow in one turn of the event loop, at most (a ring's worth).
pub const N1_TURN: usize = 256;

/// A unicast IPCP (or a broadcast one: `bcast`): the driver of its protocol machine.
#[derive(Debug)]
pub struct UniIpcp {
    /// Its name.
    pub name: String,
    /// Its layer, once bootstrapped or enrolled.
    pub layer: Option<String>,
    /// Its address (0 until it is in a layer), as its machine last said.
    pub addr: u64,
    /// What it is doing, for `o7sctl ipcp list`.
    pub state: String,
    /// The unicast IPCP: enrolment and connections, link state, the directory, the flow
    /// allocator, address collisions, its own DT messages
    /// (`o7s_proto::ipcp::unicast::UnicastIpcp`, the machine the layer simulator
    /// proves). `None`: a broadcast IPCP.
    pub m: Option<Box<UnicastIpcp>>,
    /// A broadcast IPCP's CEP and enrolment (a unicast IPCP's are its machine's).
    pub conn: Connections,
    /// Members to connect to once enrolled.
    pub conn_to: Vec<String>,
    /// A broadcast IPCP's state (`None`: a unicast IPCP).
    pub bcast: Option<super::broadcast::Bcast>,
    /// Its layer's membership, when secured (`member_ca`, `member_crt`, `member_key`).
    pub member: Option<Arc<crate::membership::Membership>>,
    /// What each neighbour of a broadcast IPCP may make o7sd do, by N-1 flow (a unicast
    /// IPCP's machine keeps its own, `UniConfig::neighbour_rate`).
    pub budgets: HashMap<u64, o7s_proto::budget::Bucket>,
    /// SDUs from a broadcast IPCP's neighbours dropped: they sent more than their budget.
    pub dt_rate_dropped: u64,
    /// Names to publish once in a layer (`reg`).
    pub reg: Vec<String>,
    /// A broadcast IPCP's SDUs to write on N-1 flows at the next pump: (flow, SDU).
    pub(super) pending: Vec<(u64, Vec<u8>)>,
    /// Directory lookups of allocations in progress: their answer (empty: not found).
    pub lookups: HashMap<LookupId, std::sync::mpsc::Sender<Vec<u64>>>,
    /// Flow allocations in progress: (our eid, the peer's, its address, its OAP response).
    pub fa_waiters:
        HashMap<AllocId, std::sync::mpsc::Sender<Result<UniAllocated, o7s_proto::fa::FaError>>>,
    /// The forwarding state last sent to the data plane: (address, (destination, N-1
    /// flow), DT N-1 flows).
    pub(super) dp_table: Option<DpTable>,
    /// What `dp_table` was made from: link state's generation, the address and the DT
    /// neighbours. The loop makes the table again only when this changes (each turn, it
    /// cost a vector per destination).
    pub(super) dp_table_from: Option<TableFrom>,
    /// The table changed since the state was last saved (saved at most once a second for
    /// that).
    pub(super) save_due: bool,
    /// Link state's re-announcements of our links when the state was last saved: each
    /// moves a seqno, which a restarted o7sd must start above.
    pub(super) saved_reasserted: u64,
    /// Messages of its machine (link state, directory, flow allocator, enrolment) dropped
    /// because the N-1 flow's ring to the data plane was full.
    pub(super) n1_tx_dropped: u64,
    /// Flow requests from peers, for the loop to serve.
    pub incoming: Vec<UniIncoming>,
    /// N-1 flows that `o7sctl ipcp disconnect` marked down, until the loop closes them:
    /// asked for, so their end is no failure to warn of.
    pub(super) disconnected: std::collections::HashSet<u64>,
    /// Names this IPCP looked up in the directory, by hash (`dht list` shows them beside
    /// the keys); at most [`LOOKED_UP_MAX`].
    pub(super) looked_up: HashMap<Vec<u8>, String>,
    /// Saved state to claim from the adopted data plane (the IPCP resumes at its old
    /// address: unicast/resume.rs), once it is in that layer at that address.
    pub(super) resume: Option<resume::UniSaved>,
    /// Saved state read at its creation, until it is in a layer (then `resume` if it
    /// is the saved layer and address).
    pub(super) resume_saved: Option<resume::UniSaved>,
    /// It resumed from an adopted data plane.
    pub resumed: bool,
    /// While resuming: the adopted table's routes fill the new one's gaps until it has
    /// none, or until the instant.
    pub(super) adopt_hold: Option<(Instant, Vec<(u32, u64)>)>,
    /// When its state was last saved for a restarted o7sd (unicast/resume.rs).
    pub(super) saved_at: Option<Instant>,
    /// The connections it saved then.
    pub(super) saved_conns: Vec<(u64, String, u64)>,
    /// Directory entries refused for their proofs, when last logged.
    pub(super) proofs_refused_logged: u64,
}

/// How long a unicast IPCP's flow allocator lets a FLOW_REQ wait for an acceptor: as long
/// as o7sd waits for one (`--accept-wait` and `--autostart-wait`) and a second more, at
/// least the machine's default (10 s). Shorter, the flow allocator refused a request that
/// o7sd still held, and an acceptor that came later found nothing to accept.
pub(super) fn incoming_wait(s: &crate::daemon::Settings) -> Duration {
    (s.accept_wait + s.autostart_wait + Duration::from_secs(1))
        .max(o7s_proto::fa::FaConfig::default().incoming_wait)
}

/// The machine's settings in o7sd: the layer's own (from the configuration it joins
/// with), `ls_withdraw`, and a neighbour's budget of [`NEIGHBOUR_RATE`] a second with a
/// second's worth as its burst.
fn machine_config(withdraw: bool, incoming_wait: Duration) -> UniConfig {
    UniConfig {
        fa: o7s_proto::fa::FaConfig {
            incoming_wait,
            ..o7s_proto::fa::FaConfig::default()
        },
        neighbour_rate: NEIGHBOUR_RATE,
        neighbour_burst: NEIGHBOUR_RATE,
        readdress_hold: READDRESS_HOLD,
        hold_for: HOLD_FOR,
        hold_max: HOLD_MAX,
        dht_retry: DHT_RETRY,
        dht_again: DHT_AGAIN,
        left_grace: LEFT_GRACE,
        ls_withdraw: withdraw,
        ..UniConfig::default()
    }
}

/// A link tag for the machine (`UnicastIpcp::connect`): N-1 flows with one tag go to
/// the same lower-layer peer (the same eth/udp IPCP and the same MAC or IP address), so a
/// neighbour that says it moved takes all of them along.
pub(super) fn link_tag(ipcp: usize, peer: crate::eth::Peer) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ipcp.hash(&mut h);
    peer.to_string().hash(&mut h);
    h.finish()
}

impl UniIpcp {
    /// Link state, once in a layer (a unicast IPCP's).
    pub(super) fn ls(&self) -> Option<&LinkState<u64>> {
        self.m.as_ref().and_then(|m| m.link_state())
    }

    /// The directory, once in a layer.
    pub(super) fn dht(&self) -> Option<&Dht> {
        self.m.as_ref().and_then(|m| m.dht())
    }

    /// The flow allocator, once in a layer.
    pub(super) fn fa(&self) -> Option<&Fa> {
        self.m.as_ref().and_then(|m| m.fa())
    }

    /// The DT neighbours: address -> N-1 flow.
    pub(super) fn dt_nb(&self) -> HashMap<u64, u64> {
        self.m
            .as_ref()
            .map(|m| m.dt_neighbours().clone())
            .unwrap_or_default()
    }

    /// The connections of its N-1 flows.
    pub(super) fn connections(&self) -> &Connections {
        match &self.m {
            Some(m) => m.connections(),
            None => &self.conn,
        }
    }

    /// The machine's counters (zero for a broadcast IPCP).
    pub(super) fn counters(&self) -> o7s_proto::ipcp::unicast::Counters {
        self.m.as_ref().map(|m| m.counters()).unwrap_or_default()
    }

    /// The TTL of its PDUs (the layer's `max_ttl`).
    pub(super) fn max_ttl(&self) -> u8 {
        self.m.as_ref().map_or(60, |m| m.max_ttl())
    }

    /// The layer's congestion avoidance is MB-ECN (`pol_cong_avoid` 1, the default).
    pub(super) fn mb_ecn(&self) -> bool {
        self.m
            .as_ref()
            .and_then(|m| m.layer_conf())
            .and_then(|c| c.unicast.as_ref())
            .is_none_or(|u| u.cong_avoid != 0)
    }

    /// Its names are in the directory (as far as it knows: the entries it holds as its
    /// own).
    pub(super) fn published(&self) -> bool {
        self.dht().is_some_and(|d| d.entries().iter().any(|e| e.2))
    }
}

/// Most names an IPCP remembers having looked up (for `dht list`).
pub(super) const LOOKED_UP_MAX: usize = 1024;

/// A flow the flow allocator set up as requester.
#[derive(Debug, Clone)]
pub struct UniAllocated {
    /// Our endpoint id.
    pub local: u64,
    /// The peer's.
    pub remote: u64,
    /// The peer IPCP's address.
    pub peer: u64,
    /// Its OAP response.
    pub oap: Vec<u8>,
}

/// A flow request from a peer IPCP.
#[derive(Debug, Clone)]
pub struct UniIncoming {
    /// The IPCP.
    pub uni: usize,
    /// The request.
    pub req: ReqId,
    /// The requester's address.
    pub peer: u64,
    /// The name's hash.
    pub hash: Vec<u8>,
    /// QoS.
    pub qos: QosSpec,
    /// Its OAP request.
    pub oap: Vec<u8>,
}

/// Work for the event loop from outside it.
#[derive(Debug)]
pub(crate) enum UniRequest {
    /// Enrol IPCP `uni` through the member named `dst`.
    Enrol { uni: usize, dst: String },
    /// Connect component `comp` of IPCP `uni` to the member named `dst`.
    Connect {
        uni: usize,
        dst: String,
        comp: Component,
    },
    /// IPCP `uni` accepts N-1 flows for `names` through registry acceptor `id`.
    Accept {
        uni: usize,
        names: Vec<String>,
        id: u64,
        rx: Receiver<Accepted>,
    },
}

/// An N-1 flow o7sd is the app of.
#[derive(Debug)]
pub(crate) struct N1 {
    pub uni: usize,
    pub flow: u64,
    pub mem: FlowMem,
    pub tx: Kick,
    pub rx: Kick,
}

/// The configuration a bootstrapper hands out: the reference's defaults with the table's
/// settings.
fn layer_conf(layer: &str, addr: u64, s: &crate::config::UniSettings) -> IpcpConfigMsg {
    let mut conf = IpcpConfigMsg::unicast_default(layer, addr);
    if let Some(u) = conf.unicast.as_mut() {
        u.dt.max_ttl = s.max_ttl;
        u.cong_avoid = s.cong_avoid;
        if let Some(ls) = u.dt.routing.ls.as_mut() {
            ls.pol = s.routing;
            ls.t_recalc = s.t_recalc;
            ls.t_update = s.t_update;
            ls.t_timeo = s.t_timeo;
        }
        if let Some(d) = u.dir.dht.as_mut() {
            d.alpha = s.dht_alpha;
            d.k = s.dht_k;
            d.t_expire = s.dht_t_expire;
            d.t_refresh = s.dht_t_refresh;
            d.t_replicate = s.dht_t_replicate;
        }
    }
    conf
}

/// The wall clock, read by the driver for the machines (they read none).
pub(super) fn unix_now() -> o7s_proto::machine::UnixTime {
    o7s_proto::machine::UnixTime::from_system(SystemTime::now())
}

impl UniIpcp {
    /// A unicast IPCP, in no layer yet: to connect to `conn_to` once enrolled, to publish
    /// `reg`; `withdraw`: `ls_withdraw`. Its machine draws from a random seed (an address
    /// among them: no two hosts may draw alike).
    /// `incoming_wait`: how long its flow allocator lets a FLOW_REQ wait for an acceptor
    /// ([`incoming_wait`]).
    pub(super) fn new(
        name: &str,
        conn_to: &[String],
        reg: &[String],
        withdraw: bool,
        incoming_wait: Duration,
    ) -> Self {
        let mut u = Self::broadcast_base(name, conn_to);
        u.reg = reg.to_vec();
        u.m = Some(Box::new(UnicastIpcp::new(
            machine_config(withdraw, incoming_wait),
            rand::random(),
        )));
        u
    }

    /// What a broadcast IPCP has (and a unicast one before its machine).
    pub(super) fn broadcast_base(name: &str, conn_to: &[String]) -> Self {
        UniIpcp {
            name: name.to_string(),
            layer: None,
            addr: 0,
            state: "created".into(),
            m: None,
            conn: Connections::new(EnrollConfig::default(), 0, None),
            conn_to: conn_to.to_vec(),
            bcast: None,
            member: None,
            budgets: HashMap::new(),
            dt_rate_dropped: 0,
            reg: vec![],
            pending: vec![],
            lookups: HashMap::new(),
            fa_waiters: HashMap::new(),
            dp_table: None,
            dp_table_from: None,
            save_due: false,
            saved_reasserted: 0,
            n1_tx_dropped: 0,
            incoming: vec![],
            disconnected: Default::default(),
            looked_up: HashMap::new(),
            resume: None,
            resume_saved: None,
            resumed: false,
            adopt_hold: None,
            saved_at: None,
            saved_conns: vec![],
            proofs_refused_logged: 0,
        }
    }
}

impl Owner {
    pub(super) fn uni_request(&self, r: UniRequest) {
        self.uni_requests.borrow_mut().push(r);
        self.wake();
    }

    /// An N-1 flow for IPCP `uni` (allocated by us for component `ours`, else accepted):
    /// o7sd is its app.
    pub(super) fn uni_flow(
        &self,
        now: Instant,
        uni: usize,
        acc: Accepted,
        ours: Option<Component>,
    ) -> Option<N1> {
        let mut fds = acc.fds.into_iter();
        let (Some(mem), Some(tx), Some(rx)) = (fds.next(), fds.next(), fds.next()) else {
            self.dealloc(acc.flow);
            return None;
        };
        let opened = FlowMem::open(&mem)
            .map_err(|e| format!("its memory: {e}"))
            .and_then(|m| {
                let kick = |fd| Kick::from_fd(fd).map_err(|e| format!("its kick: {e}"));
                Ok((m, kick(tx)?, kick(rx)?))
            });
        let (mem, tx, rx) = match opened {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("N-1 flow {}: {e}", acc.flow);
                self.dealloc(acc.flow);
                return None;
            }
        };
        // Kick us whenever an SDU arrives (we never spin on the ring).
        mem.ring(o7s::ring::Dir::Rx)
            .waiting()
            .store(1, Ordering::SeqCst);
        let n1 = N1 {
            uni,
            flow: acc.flow,
            mem,
            tx,
            rx,
        };
        let known = {
            let mut st = self.st();
            // The lower-layer peer it goes to (a neighbour that moves takes all of them).
            let link = st
                .flows
                .get(&acc.flow)
                .map_or(0, |r| link_tag(r.ipcp, r.peer));
            let u = st.unicast.get_mut(uni);
            match (u, ours) {
                (Some(u), ours) if u.m.is_some() => {
                    if let Some(m) = u.m.as_mut() {
                        match ours {
                            Some(Component::Enrollment) => m.enrol(now, acc.flow, link),
                            Some(comp) => m.connect(now, acc.flow, comp, link),
                            None => m.accept(now, acc.flow, link),
                        }
                    }
                    true
                }
                (Some(u), Some(comp)) => {
                    let id: [u8; 8] = rand::random();
                    u.conn.connect(now, acc.flow, comp, id);
                    true
                }
                (Some(u), None) => {
                    u.conn.accept(now, acc.flow);
                    true
                }
                (None, _) => false,
            }
        };
        if !known {
            self.dealloc(acc.flow);
            return None;
        }
        Some(n1)
    }

    /// When IPCP machines want their timers.
    pub(super) fn uni_timeout(&self) -> Option<Instant> {
        self.st()
            .unicast
            .iter()
            .flat_map(|u| {
                [
                    match &u.m {
                        Some(m) => m.poll_timeout(),
                        None => u.conn.poll_timeout(),
                    },
                    // The end of a resumption's hold.
                    u.adopt_hold.as_ref().map(|h| h.0),
                ]
            })
            .flatten()
            .min()
    }
}
