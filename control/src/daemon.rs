//! The daemon: state, the app/o7sctl request handlers, flow allocation on both sides, and
//! management frames from the data plane.

use crate::config::IpcpKind;
use crate::dp::DpHandle;
mod admin;
mod adopt;
mod alloc;
mod apply;
mod broadcast;
pub(crate) mod ca_views;
mod client_oap;
mod clients;
mod connections;
mod ctl_changes;
mod dp_views;
#[cfg(test)]
mod driver_tests;
mod event_loop;
mod from_dp;
mod inbox;
mod install;
mod local;
mod oap_glue;
mod ports;
mod serve;
mod setup;
mod shim_accept;
mod shim_driver;
mod supervise;
mod unicast;
mod views;

pub use event_loop::Waker;
pub use inbox::LoopGone;
pub use oap_glue::{req_hash, verify_response, verify_response_at, verify_response_requiring};
pub use serve::Shared;
pub use supervise::trim_heap;

use crate::eth::{EthIpcp, Peer};
use crate::registry::Registry;
use o7s::ring::{FlowMem, Kick, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE};
use o7s_wire::qos::QosSpec;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Daemon settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a name query waits for an answer.
    pub query_timeout: Duration,
    /// How long a flow request waits for an auto-started program to accept.
    pub autostart_wait: Duration,
    /// How long a flow request waits for a bound process to (re)enter accept.
    pub accept_wait: Duration,
    /// The security directory (`cacert`, `untrusted`, `server/<name>`, `client/<name>`).
    pub security_dir: std::path::PathBuf,
    /// Encrypted flows rotate their key every 2^bits packets.
    pub key_rotation_bits: u32,
    /// Who may change what the daemon runs or serves.
    pub policy: crate::authz::Policy,
    /// Most flows at once (both sides).
    pub max_flows: usize,
    /// Most flows one peer (a MAC or IP address) may have set up with us at once.
    pub max_flows_per_peer: usize,
    /// Most flows one local process may hold at once.
    pub max_flows_per_process: usize,
    /// The runtime directory (its socket): given to auto-started programs as `O7S_RUNDIR`.
    pub rundir: std::path::PathBuf,
}

/// Instances of a name's auto-started program running at once, at most: a flood of flow
/// requests must not make the daemon start programs without bound.
pub const MAX_AUTOSTARTED_PER_NAME: usize = 4;

/// A flow the daemon knows.
#[derive(Debug, Clone)]
pub struct FlowRec {
    /// IPCP index.
    pub ipcp: usize,
    /// Our endpoint (eth/udp: 16 or 32 bits; over a unicast layer the 64-bit endpoint id
    /// the FA messages and DT PCIs carry).
    pub local: u64,
    /// Peer's endpoint.
    pub remote: u64,
    /// Where the peer is.
    pub peer: Peer,
    /// Name.
    pub name: String,
    /// `alloc` or `accept`.
    pub side: &'static str,
    /// Owning process.
    pub pid: i32,
    /// QoS.
    pub qos: QosSpec,
    /// Peer timed out.
    pub down: bool,
    /// A flow over a unicast layer: the peer IPCP's address (the per-peer limit's key;
    /// `peer` is no station then).
    pub layer_peer: Option<u64>,
}

/// Counters of things dropped or refused.
#[derive(Debug, Default)]
pub struct Counters {
    /// Management messages that did not parse.
    pub mgmt_malformed: AtomicU64,
    /// FLOW_REPLYs for no pending allocation, or with an impossible endpoint id.
    pub reply_unknown_eid: AtomicU64,
    /// FLOW_REQs with an impossible endpoint id.
    pub req_bad_eid: AtomicU64,
    /// FLOW_REQs for names not registered here.
    pub req_unknown_name: AtomicU64,
    /// Management frames addressed to another host.
    pub not_for_us: AtomicU64,
    /// Flow requests answered with a refusal.
    pub refused: AtomicU64,
    /// Flows allocated (both sides).
    pub flows: AtomicU64,
    /// NAME_QUERY_REPLYs for names this host did not ask for (or asked too long ago).
    pub name_reply_unsolicited: AtomicU64,
    /// NAME_QUERY_REPLYs not cached: the cache was full.
    pub cache_full: AtomicU64,
    /// FLOW_REQs dropped: too many being served already.
    pub flow_req_busy: AtomicU64,
    /// Management frames dropped: the event loop's queue from the data plane was full.
    pub mgmt_queue_full: AtomicU64,
    /// Flows refused: the daemon's or a peer's flow limit.
    pub flow_limit: AtomicU64,
    /// Unsigned OAP requests passed without a replay check: the replay window's share for
    /// unsigned requests (or their source's) was full.
    pub oap_replay_unchecked: AtomicU64,
    /// Flows ended because their peer gave a new flow the endpoint id they named (its old
    /// end is gone: it restarted, or ended the flow without a message).
    pub flows_superseded: AtomicU64,
    /// Flows the data plane did not install (it refused, restarted, or did not answer
    /// within `INSTALL_WAIT`): their allocation or acceptance failed.
    pub install_failed: AtomicU64,
    /// Requests refused: the caller may not do that.
    pub denied: AtomicU64,
    /// Flow requests refused: the name's auto-started program already runs
    /// `MAX_AUTOSTARTED_PER_NAME` times.
    pub autostart_limit: AtomicU64,
    /// Allocations refused: too many name queries in flight.
    pub query_limit: AtomicU64,
    /// FLOW_REQs repeated by their sender (no second flow: ignored, or answered again).
    pub req_duplicate: AtomicU64,
    /// FLOW_REPLYs not kept to answer a repeated FLOW_REQ: the shim's memory was full.
    pub replies_not_remembered: AtomicU64,
    /// o7sctl requests refused: the admin thread's queue was full.
    pub admin_busy: AtomicU64,
    /// Steps for the event loop refused: its inbox was full (o7sd answered "busy").
    pub inbox_full: AtomicU64,
    /// Connections closed: no request came within 5 s.
    pub request_slow: AtomicU64,
}

/// Mutable state.
#[derive(Debug, Default)]
pub struct State {
    /// Names and acceptors.
    pub reg: Registry,
    /// IPCPs in creation order.
    pub ipcps: Vec<EthIpcp>,
    /// Flows.
    pub flows: HashMap<u64, FlowRec>,
    next_flow: u64,
    next_port: u32,
    /// Auto-started programs.
    pub children: Vec<(String, Child)>,
    /// IPCPs created (`o7sctl ipcp create`) but not bootstrapped yet: name -> type.
    pub created: HashMap<String, IpcpKind>,
    /// eth/udp IPCPs whose port is being opened (their names are taken).
    opening: std::collections::BTreeSet<String>,
    /// Flow requests from the wire not checked yet (the event loop takes them).
    fresh: std::collections::VecDeque<shim_driver::Fresh>,
    /// Checked flow requests waiting for an acceptor, in arrival order.
    accept_queue: o7s_proto::accept::AcceptQueue<(usize, o7s_proto::shim::ReqId)>,
    /// Accepted requests whose flows the data plane is installing (shim_accept.rs): the
    /// FLOW_REPLY and the process's flow wait for its acknowledgement, the loop does not.
    shim_serving: Vec<(
        shim_driver::Waiting,
        crate::registry::Acceptor,
        install::Installing,
    )>,
    /// What each of them needs when it is served.
    waiting: HashMap<(usize, o7s_proto::shim::ReqId), shim_driver::Waiting>,
    /// Unicast IPCPs (issue 15: bootstrap and enrolment so far).
    pub unicast: Vec<unicast::UniIpcp>,
    /// Ports of an adopted data plane that no IPCP has taken yet.
    adopted_ports: Vec<o7s_abi::msg::AdoptedPort>,
    /// The endpoint ids of the adopted data plane's eth/udp flows, by port: reserved in
    /// the IPCP that takes the port as it is made, so that nothing allocated before the
    /// flows are adopted (the configuration's own flows, a peer's FLOW_REQ) takes one.
    adopted_eids: Vec<(u32, u32)>,
    /// Flows the adopted data plane removed (their app ended) before o7sd knew them: not
    /// adopted afterwards (each would hold its endpoint id for nothing). Bounded by
    /// [`GONE_EARLY_MAX`].
    gone_early: std::collections::HashSet<u64>,
    /// This o7sd adopted a running data plane (unicast IPCPs may resume).
    dp_adopted: bool,
    /// Adopted N-1 flows of the previous o7sd's unicast IPCPs, until one resumes with them.
    adopted_n1: HashMap<u64, Instant>,
    /// Adopted flows over unicast IPCPs, until their IPCP resumes.
    uni_adopted: Vec<(Instant, o7s_abi::msg::AdoptedFlow, install::FlowRecord)>,
    /// N-1 flows a resumed unicast IPCP took back, for the loop to read.
    n1_adopted: Vec<unicast::N1>,
    /// Flows over unicast IPCPs that a resumed IPCP claimed, for the loop to watch.
    uni_flows_adopted: Vec<unicast::flows::UniFlowP>,
    /// When the event loop's protocol work is due next (an earlier timer wakes it).
    proto_wake: Option<Instant>,
    /// Local IPCPs (`[local.X]`).
    pub locals: Vec<local::LocalIpcp>,
    /// Local flows: both ends of each.
    local_pairs: Vec<local::LocalPair>,
    /// Names of IPCPs of secured layers (their own and their layers'): who may have an N-1
    /// flow to them (issue 26).
    pub members: HashMap<String, Arc<crate::membership::Membership>>,
    /// Processes joined to broadcast layers.
    bc_joined: Vec<broadcast::Joined>,
    /// Joined flows that ended, until the loop takes their kicks out of its epoll set.
    bc_left: Vec<broadcast::Joined>,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The data plane.
    pub dp: Arc<DpHandle>,
    /// Settings.
    pub settings: Settings,
    /// Counters.
    pub counters: Counters,
    /// Set when shutting down.
    pub stopping: AtomicBool,
    /// What the event loop shares with other threads (its waker, the admin queue).
    lp: event_loop::LoopShared,
    /// udp name lookups running.
    lookups: Arc<AtomicUsize>,
    /// Calls of `tick`.
    ticks: AtomicU64,
    /// Capture ids given so far.
    capture_ids: AtomicU64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Slots per direction of a flow's rings (as the reference's 1024-slot rbuffs).
const FLOW_SLOTS: u32 = 1024;

/// Shared memory and kicks for a flow whose largest SDU is `mtu`: slots sized to the MTU.
fn flow_mem(mtu: usize) -> std::io::Result<(OwnedFd, Kick, Kick)> {
    let slot = (mtu + 8).div_ceil(64) * 64;
    let slot = u32::try_from(slot)
        .unwrap_or(DEFAULT_SLOT_SIZE)
        .clamp(64, DEFAULT_SLOT_SIZE);
    let slots = if slot <= 2048 {
        FLOW_SLOTS
    } else {
        DEFAULT_SLOTS
    };
    let (_map, fd) = FlowMem::create(slots, slot)?;
    Ok((fd, Kick::new()?, Kick::new()?))
}

fn dup(fd: &OwnedFd) -> Option<OwnedFd> {
    fd.try_clone().ok()
}

impl Daemon {
    /// A daemon using `dp`.
    pub fn new(dp: Arc<DpHandle>, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            dp,
            settings,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            lp: event_loop::LoopShared::default(),
            lookups: Arc::new(AtomicUsize::new(0)),
            ticks: AtomicU64::new(0),
            capture_ids: AtomicU64::new(0),
        })
    }
}

/// o7sd's event loop and the one owner of its [`State`]: it lives on the loop's thread
/// (it is not `Sync`: no other thread can reach the state). Other threads (the admin
/// thread, the metrics endpoint, start-up, a data-plane restart) ask it by message
/// ([`Daemon::on_loop`]); what it shares with them is the [`Daemon`] it derefs to.
#[derive(Debug)]
pub struct Owner {
    d: Arc<Daemon>,
    state: std::cell::RefCell<State>,
    /// Work other threads posted for the loop.
    inbox: inbox::Inbox,
    /// Management frames and flow events the events thread queued.
    from_dp: from_dp::FromDpRx,
    /// Work for the unicast IPCPs (enrolments to start, acceptors to watch).
    uni_requests: std::cell::RefCell<Vec<unicast::UniRequest>>,
    /// Trusted CAs and intermediates (loaded at start).
    trust: std::cell::RefCell<crate::auth::TrustStore>,
    /// OAP requests seen recently (id -> timestamp), against replays.
    replay: std::cell::RefCell<crate::replay::ReplayWindow>,
    /// Something this turn wants another turn at once ([`Owner::wake`]).
    again: std::cell::Cell<bool>,
    /// Connections the admin thread handed over (started captures), for the loop to watch.
    handed_back: std::cell::RefCell<Vec<event_loop::Conn>>,
}

impl Drop for Owner {
    /// The programs o7sd started go with the loop, also when it panicked (the state is
    /// dropped with it; a panic comes from a defect, a re-entered step for instance).
    fn drop(&mut self) {
        self.stop_children();
    }
}

impl std::ops::Deref for Owner {
    type Target = Daemon;

    fn deref(&self) -> &Daemon {
        &self.d
    }
}

impl Owner {
    /// The owner of a new state for `d`, taking the loop's inbox (`None` when it was taken
    /// already: there is one owner).
    pub fn new(d: &Arc<Daemon>) -> Option<Self> {
        let (trust, warnings) = crate::auth::TrustStore::load(&d.settings.security_dir);
        for w in warnings {
            tracing::warn!("security: {w}");
        }
        let (cas, ints) = trust.counts();
        tracing::info!(
            "Security directory {}: {cas} CA and {ints} intermediate certificates.",
            d.settings.security_dir.display()
        );
        Some(Self {
            inbox: d.lp.take_inbox()?,
            from_dp: d.lp.from_dp.take_rx()?,
            uni_requests: std::cell::RefCell::new(Vec::new()),
            trust: std::cell::RefCell::new(trust),
            replay: std::cell::RefCell::new(crate::replay::ReplayWindow::default()),
            again: std::cell::Cell::new(false),
            handed_back: std::cell::RefCell::new(Vec::new()),
            d: d.clone(),
            state: std::cell::RefCell::new(State {
                accept_queue: o7s_proto::accept::AcceptQueue::new(shim_driver::MAX_WAITING),
                ..State::default()
            }),
        })
    }

    /// The shared part (to hand to another thread).
    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.d
    }

    /// Another turn of the loop at once (what this turn did left work for it): a flag the
    /// loop reads when it sizes its sleep, not a write to its wake socket (which other
    /// threads use: [`Daemon::wake`]).
    pub(crate) fn wake(&self) {
        self.again.set(true);
    }

    /// Whether a step asked for another turn at once (and clears it).
    pub(crate) fn take_again(&self) -> bool {
        self.again.replace(false)
    }

    /// The state, borrowed for this step (one step at a time: the loop is one thread).
    pub fn st(&self) -> std::cell::RefMut<'_, State> {
        self.state.borrow_mut()
    }
}

/// o7sd for unit tests of its driver: its data plane is the test, holding the other end of
/// the channel (what o7sd sends arrives there; answers go to `DpHandle::route` as the events
/// thread would give them). No IPCP, no thread but the data plane's writer.
#[cfg(test)]
pub(crate) fn fake_daemon() -> (Owner, o7s::ipc::Channel) {
    #[allow(clippy::unwrap_used)]
    let (ours, theirs) = o7s::ipc::Channel::pair().unwrap();
    #[allow(clippy::unwrap_used)]
    let dp = DpHandle::fake(ours).unwrap();
    let d = Daemon::new(
        dp,
        Settings {
            query_timeout: Duration::from_secs(1),
            autostart_wait: Duration::from_secs(1),
            accept_wait: Duration::from_secs(1),
            security_dir: std::env::temp_dir().join("o7s-fake-daemon-has-none"),
            key_rotation_bits: 20,
            policy: crate::authz::Policy::default(),
            max_flows: 24,
            max_flows_per_peer: 16,
            max_flows_per_process: 16,
            rundir: std::env::temp_dir(),
        },
    );
    #[allow(clippy::unwrap_used)]
    let o = Owner::new(&d).unwrap();
    (o, theirs)
}

/// Most flow ids remembered as gone before their adoption ([`State::gone_early`]).
pub(crate) const GONE_EARLY_MAX: usize = 65_536;
