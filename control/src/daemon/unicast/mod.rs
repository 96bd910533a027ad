//! Unicast IPCPs in o7sd (issue 15): bootstrap and enrolment. A unicast IPCP is a member
//! of a layer that o7sd runs itself: its N-1 flows are flows o7sd allocates over its
//! eth/udp IPCPs (the same allocation job as an app's, with o7sd as the process) or accepts
//! through an internal acceptor (the IPCP's name and its layer's, bound to o7sd: the
//! reference's `autobind`). While they carry CEP, enrolment and LSAs, o7sd is their app:
//! the event loop reads their rx rings when their kick fires and writes their tx rings. The
//! protocol is `o7s_proto::enroll::Connections`.
//!
//! After enrolment, `conn` connects Management and DT flows to the members named; link state
//! (`o7s_proto::linkstate`) runs over the Management flows and learns the DT neighbours from
//! their CEPs: `o7sctl route list` and `lsdb list` show the result. The directory and flow
//! allocator: unicast/dt.rs, unicast/flows.rs; address collisions: unicast/address.rs; the DT path
//! runs in the data-plane workers (unicast/tend.rs sends them the table).

use crate::daemon::Daemon;
use crate::registry::Accepted;
use o7s::ring::{FlowMem, Kick};
use o7s_wire::qos::QosSpec;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub(super) mod address;
pub(super) mod dt;
pub(super) mod flows;
pub(super) mod pump;
pub(super) mod resume;
pub(super) mod tend;
pub(super) mod views;

use o7s_proto::dht::{Dht, DhtConfig, LookupId};
use o7s_proto::enroll::{Connections, EnrollConfig};
use o7s_proto::fa::{AllocId, Fa, FaConfig, ReqId};
use o7s_proto::linkstate::{LinkState, LsConfig};
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};

/// A unicast IPCP's forwarding state as the data plane has it: (address, (destination, N-1
/// flow of the next hop), DT N-1 flows).
pub(super) type DpTable = (u32, Vec<(u32, u64)>, Vec<u64>);

/// How long an address may be out of the forwarding table before the directory values
/// that name it are dropped here: a route that flaps back within it keeps them.
pub const LEFT_GRACE: Duration = Duration::from_secs(1);

/// Messages a second (and in a burst) that one neighbour may make o7sd handle: LSAs on a
/// Management flow, directory and flow allocator PDUs on a DT flow. A layer of 1000
/// IPCPs refreshing three links every 15 s floods some 200 LSAs a second.
pub const NEIGHBOUR_RATE: u32 = 2_000;

// A second's worth is also the burst: a new Management neighbour's whole LSDB (some 5,000
// records at 1,000 IPCPs) does not fit, so a layer that large would not converge here
// (the 1000-IPCP simulation did not: `o7s_proto::ipcp::unicast::UniConfig::neighbour_burst`
// is 16,384). Not raised in o7sd yet: with 16,384, tests/tests/member_flood.rs's rogue
// flood kept o7sd busy enough that the kernel dropped a quarter of the frames before B's
// data plane (76,080 of 100,000 reached it; 2 vCPUs). To settle when o7sd drives the
// machine (issue 25).

/// The directory asks its bootstrap peer again this often while nobody answers.
pub const DHT_RETRY: Duration = Duration::from_secs(1);

/// And looks its own id up once more this long after the first time (the layer's routes
/// settled).
pub const DHT_AGAIN: Duration = Duration::from_secs(2);

/// An IPCP moves to a new address at most once in this time: a member that forges our
/// address over and over cannot make us move over and over.
pub const READDRESS_HOLD: Duration = Duration::from_secs(60);

/// How long new adjacencies learnt from LSAs wait to be recomputed, at most.
pub const LS_HOLD: Duration = Duration::from_millis(100);

/// SDUs read from one N-1 flow in one turn of the event loop, at most (a ring's worth).
pub const N1_TURN: usize = 256;

/// A unicast IPCP.
#[derive(Debug)]
pub struct UniIpcp {
    /// Its name.
    pub name: String,
    /// Its layer, once bootstrapped or enrolled.
    pub layer: Option<String>,
    /// Its address (0 until it is in a layer).
    pub addr: u64,
    /// What it is doing, for `o7sctl ipcp list`.
    pub state: String,
    /// CEP and enrolment.
    pub conn: Connections,
    /// Link state, once in a layer (its Management flows by N-1 flow id).
    pub ls: Option<LinkState<u64>>,
    /// Members to connect to once enrolled.
    pub conn_to: Vec<String>,
    /// DT neighbours: address -> N-1 flow.
    pub dt_nb: HashMap<u64, u64>,
    /// DT PDUs that reached o7sd and were dropped (malformed, no route, or for an N+1 flow:
    /// the data plane's worker delivers those; o7sd sees them only before the worker has
    /// the IPCP's table).
    pub dt_dropped: u64,
    /// DT PDUs o7sd forwarded to another IPCP itself: only those that reached it before the
    /// worker had the IPCP's table (the worker forwards the rest).
    pub dt_forwarded: u64,
    /// Components' messages waiting for a route (when, to, eid, message; bounded).
    pub held: std::collections::VecDeque<(Instant, u64, u64, Vec<u8>)>,
    /// Messages that had to wait for a route (`dt_held` in `ipcp list`).
    pub dt_held: u64,
    /// The directory, once in a layer.
    pub dht: Option<Dht>,
    /// A broadcast IPCP's state (`None`: a unicast IPCP).
    pub bcast: Option<super::broadcast::Bcast>,
    /// Its layer's membership, when secured (`member_ca`, `member_crt`, `member_key`).
    pub member: Option<Arc<crate::membership::Membership>>,
    /// What each neighbour may make o7sd do (issue 26 item 3), by N-1 flow: LSAs on a
    /// Management flow, PDUs for o7sd on a DT flow, each [`NEIGHBOUR_RATE`] a second.
    pub budgets: HashMap<u64, o7s_proto::budget::Bucket>,
    /// LSAs dropped because their Management neighbour sent more than its budget.
    pub lsa_rate_dropped: u64,
    /// DT PDUs for o7sd (directory, flow allocator) dropped: their neighbour sent more.
    pub dt_rate_dropped: u64,
    /// When this IPCP last moved to a new address (an address collision).
    pub last_readdress: Option<Instant>,
    /// Collisions that would have moved it again within [`READDRESS_HOLD`]: ignored.
    pub readdress_held: u64,
    /// TTL of the PDUs it sends (the layer's max_ttl).
    pub max_ttl: u32,
    /// The layer's congestion avoidance is MB-ECN (`pol_cong_avoid` 1, the default).
    pub mb_ecn: bool,
    /// How its directory joins the layer: through its bootstrap peer (the enroller), asked
    /// again every second while nobody answers, once more 2 s after the first time
    /// (o7s_proto::ipcp::dir_join, the IPCP machine's own).
    pub(super) dir_join: o7s_proto::ipcp::dir_join::DirJoin,
    /// Names to publish once in a layer (`reg`), and whether they are.
    pub reg: Vec<String>,
    pub(super) published: bool,
    /// DT PDUs to write on N-1 flows at the next pump: (flow, PDU).
    pub(super) pending: Vec<(u64, Vec<u8>)>,
    /// The flow allocator, once in a layer.
    pub fa: Option<Fa>,
    /// Directory lookups of allocations in progress: their answer (empty: not found).
    pub lookups: HashMap<LookupId, std::sync::mpsc::Sender<Vec<u64>>>,
    /// Flow allocations in progress: (our eid, the peer's, its address, its OAP response).
    pub fa_waiters:
        HashMap<AllocId, std::sync::mpsc::Sender<Result<UniAllocated, o7s_proto::fa::FaError>>>,
    /// The forwarding state last sent to the data plane: (address, (destination, N-1
    /// flow), DT N-1 flows).
    pub(super) dp_table: Option<DpTable>,
    /// Flow requests from peers, for the loop to serve.
    pub incoming: Vec<UniIncoming>,
    /// Times it moved to a new address (another IPCP had its own).
    pub readdressed: u64,
    /// Destinations that leave the forwarding table (after [`LEFT_GRACE`] their directory
    /// values here are dropped: [`o7s_proto::dht::Dht::forget_address`]) and come back
    /// (the directory rejoins through them and publishes again): the machine o7s-proto's
    /// IPCP has ([`o7s_proto::ipcp::departures`]).
    pub(super) departures: o7s_proto::ipcp::departures::Departures,
    /// Times the directory rejoined through a member it had forgotten (a healed layer).
    pub dht_rejoined: u64,
    /// Directory values dropped because their address left the layer.
    pub dht_forgotten: u64,
    /// `ls_withdraw` (local): withdrawals flooded, own table at once.
    pub withdraw: bool,
    /// N-1 flows that `o7sctl ipcp disconnect` marked down, until the loop closes them:
    /// asked for, so their end is no failure to warn of.
    pub(super) disconnected: std::collections::HashSet<u64>,
    /// Names this IPCP looked up in the directory, by hash (`dht list` shows them beside
    /// the keys); at most [`LOOKED_UP_MAX`].
    pub(super) looked_up: HashMap<Vec<u8>, String>,
    /// Saved state to claim from the adopted data plane (the IPCP resumes at its old
    /// address: unicast/resume.rs).
    pub(super) resume: Option<resume::UniSaved>,
    /// It resumed from an adopted data plane.
    pub resumed: bool,
    /// While resuming: the adopted table's routes fill the new one's gaps until it has
    /// none, or until the instant.
    pub(super) adopt_hold: Option<(Instant, Vec<(u32, u64)>)>,
    /// When its state was last saved for a restarted o7sd (unicast/resume.rs).
    pub(super) saved_at: Option<Instant>,
    /// The connections it saved then.
    pub(super) saved_conns: Vec<(u64, String, u64)>,
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

/// A random non-zero 32-bit address: the flat address authority (facts §3.2).
pub(super) fn random_addr() -> u64 {
    loop {
        let a = u64::from(rand::random::<u32>());
        if a != 0 {
            return a;
        }
    }
}

/// A directory node with a random id (SHA3-256 length, facts §6.2), with the layer's
/// settings; in a secured layer its entries need proofs (signed directory entries).
fn new_dht(
    addr: u64,
    conf: &IpcpConfigMsg,
    member: Option<&Arc<crate::membership::Membership>>,
) -> Dht {
    let id: [u8; 32] = rand::random();
    let mut cfg = DhtConfig::default();
    if let Some(d) = conf.unicast.as_ref().and_then(|u| u.dir.dht.as_ref()) {
        cfg.alpha = d.alpha.max(1) as usize;
        cfg.k = d.k.max(1) as usize;
        cfg.t_expire = d.t_expire;
        cfg.t_refresh = d.t_refresh.max(1);
        cfg.t_replicate = d.t_replicate.max(1);
    }
    let d = Dht::new(cfg, id.to_vec(), addr, rand::random());
    match member {
        Some(m) => d.with_proofs(Arc::new(crate::dir_proof::DirProofs::new(
            m.clone(),
            o7s_wire::hash::HashAlgo::Sha3_256,
        ))),
        None => d,
    }
}

/// The layer's link-state settings (policy and timers).
fn ls_config(conf: &IpcpConfigMsg) -> LsConfig {
    use o7s_proto::linkstate::Policy;
    // New adjacencies learnt from LSAs are recomputed at most every 100 ms (our own links
    // at once): a member flooding LSAs for new pairs (issue 26 item 3) would otherwise
    // make us recompute the table for each one (2,500 recomputations over a graph of
    // 2,500 addresses held o7sd for a second).
    let mut cfg = LsConfig {
        hold: LS_HOLD,
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
    /// `reg`; `withdraw`: `ls_withdraw`.
    pub(super) fn new(name: &str, conn_to: &[String], reg: &[String], withdraw: bool) -> Self {
        UniIpcp {
            name: name.to_string(),
            layer: None,
            addr: 0,
            state: "created".into(),
            conn: Connections::new(EnrollConfig::default(), 0, None),
            ls: None,
            conn_to: conn_to.to_vec(),
            dt_nb: HashMap::new(),
            dt_dropped: 0,
            dt_forwarded: 0,
            held: std::collections::VecDeque::new(),
            dt_held: 0,
            dht: None,
            bcast: None,
            member: None,
            budgets: HashMap::new(),
            lsa_rate_dropped: 0,
            dt_rate_dropped: 0,
            last_readdress: None,
            readdress_held: 0,
            max_ttl: 60,
            mb_ecn: true,
            dir_join: o7s_proto::ipcp::dir_join::DirJoin::new(0, DHT_RETRY, DHT_AGAIN),
            reg: reg.to_vec(),
            published: false,
            pending: vec![],
            fa: None,
            lookups: HashMap::new(),
            fa_waiters: HashMap::new(),
            dp_table: None,
            incoming: vec![],
            disconnected: Default::default(),
            looked_up: HashMap::new(),
            readdressed: 0,
            departures: o7s_proto::ipcp::departures::Departures::new(LEFT_GRACE, 4_096),
            dht_rejoined: 0,
            dht_forgotten: 0,
            withdraw,
            resume: None,
            resumed: false,
            adopt_hold: None,
            saved_at: None,
            saved_conns: vec![],
        }
    }
}

impl Daemon {
    /// Creates the unicast IPCP of a configuration table: bootstrapped, or enrolling.
    pub(super) fn unicast_create(&self, i: &crate::config::IpcpConf) {
        let mut uni = UniIpcp::new(&i.name, &i.conn, &i.reg, i.uni.withdraw);
        if !self.uni_member(i, &mut uni) {
            return;
        }
        let idx = {
            let st = self.st();
            st.unicast.len()
        };
        let mut names = vec![i.name.clone()];
        if let (Some(layer), None) = (&i.bootstrap, &i.enrol) {
            let dp_adopted = self.st().dp_adopted;
            let (addr, resume) = self.resume_or_new_addr(dp_adopted, idx, &i.name, layer);
            uni.resume = resume;
            // The bootstrapper's configuration names itself as the DHT peer of those it
            // enrols (facts §6.5).
            let conf = layer_conf(layer, addr, &i.uni);
            let mut lc = ls_config(&conf);
            lc.withdraw = uni.withdraw;
            uni.ls = Some(LinkState::new(addr, lc, Instant::now()));
            uni.dht = Some(new_dht(addr, &conf, uni.member.as_ref()));
            uni.max_ttl = conf.unicast.as_ref().map_or(60, |u| u.dt.max_ttl);
            uni.mb_ecn = conf.unicast.as_ref().is_none_or(|u| u.cong_avoid != 0);
            uni.conn.set_layer(addr, conf);
            uni.fa = Some(Fa::new(FaConfig::default(), addr, rand::random()));
            uni.addr = addr;
            uni.layer = Some(layer.clone());
            uni.state = "bootstrapped".into();
            names.push(layer.clone());
            tracing::info!(
                "Bootstrapped IPCP {} in unicast layer {layer} with address {addr:#010x}.",
                i.name
            );
        }
        self.st().unicast.push(uni);
        self.uni_accept(idx, &names);
        if let Some(dst) = &i.enrol {
            if let Some(u) = self.st().unicast.get_mut(idx) {
                u.state = format!("enrolling through {dst}");
            }
            tracing::info!("IPCP {}: enrolling through {dst}.", i.name);
            self.uni_request(UniRequest::Enrol {
                uni: idx,
                dst: dst.clone(),
            });
        }
    }

    /// Loads IPCP `i`'s membership (issue 26) into `u`; says once that its layer is open
    /// when it has none. False (logged) when the files cannot be used: the IPCP is not made.
    pub(super) fn uni_member(&self, i: &crate::config::IpcpConf, u: &mut UniIpcp) -> bool {
        let Some(f) = &i.member else {
            tracing::warn!(
                "IPCP {}: its layer is open (no member_ca): any host that reaches it may enrol and connect, as in the reference.",
                i.name
            );
            return true;
        };
        match crate::membership::Membership::load(&i.name, f) {
            Ok((m, warning)) => {
                if let Some(w) = warning {
                    tracing::warn!("IPCP {}: member_crt {w}", i.name);
                }
                tracing::info!(
                    "IPCP {}: members only (member_ca {}): every N-1 flow is authenticated.",
                    i.name,
                    f.ca
                );
                u.member = Some(Arc::new(m));
                true
            }
            Err(e) => {
                tracing::error!("IPCP {} (line {}): not created: {e}", i.name, i.line);
                false
            }
        }
    }

    /// IPCP `uni` accepts N-1 flows for `names` (they are bound to o7sd).
    pub(super) fn uni_accept(&self, uni: usize, names: &[String]) {
        {
            let mut st = self.st();
            if let Some(m) = st.unicast.get(uni).and_then(|u| u.member.clone()) {
                for n in names {
                    st.members.insert(n.clone(), m.clone());
                }
            }
        }
        for n in names {
            self.name_create(n, None);
        }
        let (tx, rx) = sync_channel::<Accepted>(1);
        let pid = std::process::id() as i32;
        let id = {
            let mut st = self.st();
            // Bound to o7sd (autobind): a request that finds the acceptor busy with the
            // previous flow waits for it to come back, as for any bound process.
            for n in names {
                st.reg.bind_pid(pid, n);
            }
            st.reg.add_acceptor(pid, names, tx)
        };
        self.wake();
        self.uni_request(UniRequest::Accept {
            uni,
            names: names.to_vec(),
            id,
            rx,
        });
    }

    pub(super) fn uni_request(&self, r: UniRequest) {
        self.lp_uni_requests().push(r);
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
        let mem = match FlowMem::open(&mem) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("N-1 flow {}: its memory: {e}", acc.flow);
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
            tx: Kick::from_fd(tx),
            rx: Kick::from_fd(rx),
        };
        let known = {
            let mut st = self.st();
            let u = st.unicast.get_mut(uni);
            if let Some(u) = u {
                if let Some(comp) = ours {
                    let id: [u8; 8] = rand::random();
                    u.conn.connect(now, acc.flow, comp, id);
                } else {
                    u.conn.accept(now, acc.flow);
                }
                true
            } else {
                false
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
                    u.conn.poll_timeout(),
                    u.ls.as_ref().and_then(|l| l.poll_timeout()),
                    u.dht.as_ref().and_then(|d| d.poll_timeout()),
                    u.departures.poll_timeout(),
                    // The directory's joining: its retry and its second look-up.
                    u.dht.as_ref().and_then(|d| {
                        let peer = u.dir_join.peer();
                        let reachable = u.ls.as_ref().is_some_and(|l| l.next_hop(peer).is_some());
                        u.dir_join.poll_timeout(d.contacts(), reachable)
                    }),
                    u.fa.as_ref().and_then(|f| f.poll_timeout()),
                    // Retry the messages waiting for a route.
                    (!u.held.is_empty()).then(|| Instant::now() + Duration::from_millis(100)),
                    // Retired N-1 flows to close, the end of a resumption's hold.
                    u.adopt_hold.as_ref().map(|h| h.0),
                    // Bootstrap the directory while it knows no one.
                    u.dht
                        .as_ref()
                        .filter(|d| d.contacts() == 0 && u.dir_join.peer() != 0)
                        .map(|_| Instant::now() + Duration::from_millis(250)),
                ]
            })
            .flatten()
            .min()
    }
}
