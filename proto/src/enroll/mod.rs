//! A unicast IPCP's N-1 flows before they carry anything: connection establishment (OCEP,
//! unicast facts §2.2) on every N-1 flow, and enrolment (OEP, §3) on the Enrollment ones,
//! in both roles, as one machine without I/O.
//!
//! The driver allocates or accepts the N-1 flows and names each with a [`FlowId`]; it
//! hands every SDU of them to [`Connections::handle`] and sends what
//! [`Connections::poll_transmit`] gives. Events say when a flow is connected to a component
//! (with the peer's address from its CEP), when an enrolment is done (the enrollee adopts
//! the layer's configuration) and when a flow is to be closed.
//!
//! Where the reference differs: its enroller serves one enrolment at a time and an
//! enrollee that vanishes mid-exchange blocks it for good; here every exchange has its own
//! deadline and any number (up to a bound) run side by side.

use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{
    Component, IpcpConfigMsg, ENROLL_ID_LEN, IPCP_BROADCAST, IPCP_UNICAST,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The driver's name for an N-1 flow.
pub type FlowId = u64;

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollConfig {
    /// How long each step waits for the peer's next message (the reference: 1 s for a
    /// CEP).
    pub step_timeout: Duration,
    /// Most N-1 flows in connection or enrolment at once, for each side: those we open and
    /// those peers open to us have a budget each (more are refused).
    pub max_pending: usize,
    /// A broadcast layer's member: its components are Enrollment and Data Transfer only,
    /// the DT CEP is the broadcast IPCP's (protocol "", version 0, syntax 0, address 0),
    /// and the layer it adopts is of type broadcast.
    pub broadcast: bool,
}

impl Default for EnrollConfig {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(1),
            max_pending: 256,
            broadcast: false,
        }
    }
}

/// Why a connection or an enrolment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// The peer sent something that is not the message expected.
    #[error("bad {what} from the peer: {why}")]
    Bad {
        /// The message expected.
        what: &'static str,
        /// Why it is not acceptable.
        why: String,
    },
    /// The peer's CEP names another protocol, version or syntax.
    #[error("the peer's CEP does not match ours: {0}")]
    Mismatch(String),
    /// The peer asked for a component we do not have.
    #[error("no component named {0}")]
    UnknownComponent(String),
    /// Nothing came in time.
    #[error("no {0} within the time-out")]
    Timeout(&'static str),
    /// The enroller refused.
    #[error("the enroller refused (response {0})")]
    Refused(i32),
    /// This IPCP cannot enrol others yet (it is neither bootstrapped nor enrolled).
    #[error("this IPCP has no layer configuration to give")]
    NotInLayer,
    /// Too many flows in connection or enrolment.
    #[error("too many N-1 flows being set up ({0})")]
    Busy(usize),
    /// The N-1 flow went down.
    #[error("the N-1 flow went down")]
    FlowDown,
}

/// What the machine says to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The flow carries `comp` now; `peer_addr` from the peer's CEP.
    Connected {
        /// The flow.
        flow: FlowId,
        /// Management or Data Transfer.
        comp: Component,
        /// The neighbour's address.
        peer_addr: u64,
    },
    /// This IPCP (the enrollee) has the layer's configuration.
    Enrolled {
        /// The flow.
        flow: FlowId,
        /// What to adopt.
        conf: Box<IpcpConfigMsg>,
        /// The enroller's clock (seconds, nanoseconds).
        enroller_time: (i64, i32),
    },
    /// An enrollee took our configuration (we are the enroller).
    Served {
        /// The flow.
        flow: FlowId,
    },
    /// A connection or enrolment failed.
    Failed {
        /// The flow.
        flow: FlowId,
        /// Why.
        why: EnrollError,
    },
    /// A Management neighbour said (with a CEP on its connected flow) that its address
    /// is `new` now: every connection to `old` was moved to it.
    Readdressed {
        /// The Management flow it came on.
        flow: FlowId,
        /// The neighbour's address before.
        old: u64,
        /// And now.
        new: u64,
        /// The connections that moved (its own: `flow` and those the caller said go to the
        /// same neighbour).
        moved: Vec<FlowId>,
    },
    /// Close the flow (after any transmit for it).
    Close {
        /// The flow.
        flow: FlowId,
    },
}

/// An SDU to send on an N-1 flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The flow.
    pub flow: FlowId,
    /// The SDU.
    pub sdu: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// We allocated the flow and sent our CEP (for an enrolment: `id` next).
    CepSent {
        comp: Component,
        id: Option<[u8; ENROLL_ID_LEN]>,
        /// The address our CEP named (we may move before the reply).
        addr: u64,
    },
    /// We accepted the flow: its CEP comes first.
    CepWait,
    /// Enrollee: request sent.
    ReqSent { id: [u8; ENROLL_ID_LEN] },
    /// Enroller: the request comes next.
    ReqWait,
    /// Enroller: response sent, the acknowledgement comes next.
    AckWait { id: Vec<u8> },
    /// Connected (Management or Data Transfer).
    Up { comp: Component, peer_addr: u64 },
}

#[derive(Debug)]
struct Flow {
    state: State,
    deadline: Option<Instant>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections made (both roles).
    pub connected: u64,
    /// Enrolments done (as enrollee).
    pub enrolled: u64,
    /// Enrolments served (as enroller).
    pub served: u64,
    /// Connections or enrolments that failed.
    pub failed: u64,
    /// Flows refused: too many being set up.
    pub busy: u64,
    /// SDUs for flows the machine does not know, or after the exchange.
    pub unexpected: u64,
    /// Neighbours that moved to a new address.
    pub readdressed: u64,
}

/// The N-1 flows of one unicast IPCP in connection establishment and enrolment.
#[derive(Debug)]
pub struct Connections {
    cfg: EnrollConfig,
    own_addr: u64,
    /// What we give enrollees (bootstrapped or enrolled).
    conf: Option<IpcpConfigMsg>,
    flows: HashMap<FlowId, Flow>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Connections {
    /// Machine of an IPCP at `own_addr` (0 until it has one), giving `conf` to enrollees.
    pub fn new(cfg: EnrollConfig, own_addr: u64, conf: Option<IpcpConfigMsg>) -> Self {
        Self {
            cfg,
            own_addr,
            conf,
            flows: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The configuration to give enrollees (after bootstrap or enrolment), and our address.
    pub fn set_layer(&mut self, own_addr: u64, conf: IpcpConfigMsg) {
        self.own_addr = own_addr;
        self.conf = Some(conf);
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Flows being set up.
    pub fn pending(&self) -> usize {
        self.flows
            .values()
            .filter(|f| !matches!(f.state, State::Up { .. }))
            .count()
    }

    /// Every connected flow: (flow, component, the peer's address).
    pub fn connections(&self) -> Vec<(FlowId, Component, u64)> {
        let mut v: Vec<(FlowId, Component, u64)> = self
            .flows
            .iter()
            .filter_map(|(id, f)| match f.state {
                State::Up { comp, peer_addr } => Some((*id, comp, peer_addr)),
                _ => None,
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// The peer address and component of a connected flow.
    pub fn connected(&self, flow: FlowId) -> Option<(Component, u64)> {
        match self.flows.get(&flow)?.state {
            State::Up { comp, peer_addr } => Some((comp, peer_addr)),
            _ => None,
        }
    }

    fn send(&mut self, flow: FlowId, sdu: Vec<u8>) {
        self.transmits.push_back(Transmit { flow, sdu });
    }

    fn fail(&mut self, flow: FlowId, why: EnrollError) {
        self.flows.remove(&flow);
        self.counters.failed += 1;
        self.events.push_back(Event::Failed { flow, why });
        self.events.push_back(Event::Close { flow });
    }

    /// Flows being set up that we opened (`ours`) or that peers opened to us.
    fn pending_of(&self, ours: bool) -> usize {
        self.flows
            .values()
            .filter(|f| match f.state {
                State::CepSent { .. } | State::ReqSent { .. } => ours,
                State::CepWait | State::ReqWait | State::AckWait { .. } => !ours,
                State::Up { .. } => false,
            })
            .count()
    }

    /// Whether a flow we open (`ours`) or accept may be set up: each side has its own
    /// [`EnrollConfig::max_pending`], so peers holding flows that never send a CEP cannot
    /// stop our own connects and enrolments.
    fn room(&mut self, flow: FlowId, ours: bool) -> bool {
        if self.pending_of(ours) >= self.cfg.max_pending {
            self.counters.busy += 1;
            self.events.push_back(Event::Failed {
                flow,
                why: EnrollError::Busy(self.cfg.max_pending),
            });
            self.events.push_back(Event::Close { flow });
            return false;
        }
        true
    }

    /// `flow` went down (the driver saw it).
    pub fn flow_down(&mut self, flow: FlowId) {
        if let Some(f) = self.flows.remove(&flow) {
            if !matches!(f.state, State::Up { .. }) {
                self.counters.failed += 1;
                self.events.push_back(Event::Failed {
                    flow,
                    why: EnrollError::FlowDown,
                });
            }
        }
    }

    /// An SDU of `flow`; `unix` is the wall clock (since the UNIX epoch), which an enroller
    /// puts in its response.
    pub fn handle(&mut self, now: Instant, unix: UnixTime, flow: FlowId, sdu: &[u8]) {
        let Some(f) = self.flows.get(&flow) else {
            self.counters.unexpected += 1;
            return;
        };
        let state = f.state.clone();
        match state {
            State::CepWait => self.on_cep_accepted(now, flow, sdu),
            State::CepSent { comp, id, addr } => self.on_cep_reply(now, flow, comp, id, addr, sdu),
            State::ReqSent { id } => self.on_resp(flow, id, sdu),
            State::ReqWait => self.on_req(now, unix, flow, sdu),
            State::AckWait { id } => self.on_ack(flow, &id, sdu),
            // Management and DT SDUs are not ours.
            State::Up { .. } => self.counters.unexpected += 1,
        }
    }

    /// Steps whose peer said nothing in time fail.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(FlowId, &'static str)> = self
            .flows
            .iter()
            .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now))
            .map(|(id, f)| {
                let what = match f.state {
                    State::CepSent { .. } | State::CepWait => "CEP",
                    State::ReqSent { .. } => "enrolment response",
                    State::ReqWait => "enrolment request",
                    State::AckWait { .. } => "enrolment acknowledgement",
                    State::Up { .. } => "message",
                };
                (*id, what)
            })
            .collect();
        for (flow, what) in due {
            self.fail(flow, EnrollError::Timeout(what));
        }
    }

    /// When [`Connections::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flows.values().filter_map(|f| f.deadline).min()
    }

    /// The next SDU to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

crate::machine::machine!(Connections, Transmit, Event);

/// Why an enrollee cannot adopt the layer configuration it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// The response carried none.
    #[error("no configuration")]
    Missing,
    /// The layer's name is empty or too long.
    #[error("a layer name of 1..=255 bytes without control characters")]
    Name,
    /// The layer is of another kind than the IPCP.
    #[error("ipcp_type {got} is not {want}")]
    Type {
        /// The configuration's type.
        got: u32,
        /// The IPCP's kind.
        want: &'static str,
    },
    /// A unicast layer without its settings.
    #[error("no unicast settings")]
    NoUnicast,
    /// Address or endpoint id sizes this implementation does not have.
    #[error("addr_size {addr} and eid_size {eid} (only 4 and 8 exist)")]
    Sizes {
        /// addr_size.
        addr: u32,
        /// eid_size.
        eid: u32,
    },
    /// A directory hash other than SHA3-256 (the reference allows SHA3-224/384/512): our
    /// DHT's ids and keys are 32 bytes, so every directory message would be dropped on its
    /// length and names would hash to other keys. Refused, rather than enrolled into a
    /// layer whose names nobody here could find.
    #[error("dir_hash_algo {0} (only SHA3-256, 1, is supported)")]
    DirHash(u32),
}

/// `pol_dir_hash` SHA3-256 (facts §1.6), the only directory hash our DHT has.
const DIR_HASH_SHA3_256: u32 = 1;

/// What an enrollee can adopt: a layer of its own type (as the reference checks); a
/// unicast one with the sizes this implementation has.
fn check_conf(c: IpcpConfigMsg, broadcast: bool) -> Result<IpcpConfigMsg, ConfError> {
    // A name as o7sd takes names from its users: 1..=255 bytes, no control characters
    // (it is shown in listings and logs).
    if c.layer_info.name.is_empty()
        || c.layer_info.name.len() > 255
        || c.layer_info.name.chars().any(char::is_control)
    {
        return Err(ConfError::Name);
    }
    if broadcast {
        return if c.ipcp_type == IPCP_BROADCAST {
            Ok(c)
        } else {
            Err(ConfError::Type {
                got: c.ipcp_type,
                want: "broadcast",
            })
        };
    }
    if c.ipcp_type != IPCP_UNICAST {
        return Err(ConfError::Type {
            got: c.ipcp_type,
            want: "unicast",
        });
    }
    let Some(u) = &c.unicast else {
        return Err(ConfError::NoUnicast);
    };
    if u.dt.addr_size != 4 || u.dt.eid_size != 8 {
        return Err(ConfError::Sizes {
            addr: u.dt.addr_size,
            eid: u.dt.eid_size,
        });
    }
    if c.layer_info.dir_hash_algo != DIR_HASH_SHA3_256 {
        return Err(ConfError::DirHash(c.layer_info.dir_hash_algo));
    }
    Ok(c)
}

mod cep;
mod enrolment;
mod update;

#[cfg(test)]
mod tests;
