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
    self, CepMsg, Component, EnrollAckMsg, EnrollReqMsg, EnrollRespMsg, IpcpConfigMsg,
    ENROLL_ID_LEN, IPCP_BROADCAST, IPCP_UNICAST,
};
use prost::Message;
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
    /// Most N-1 flows in connection or enrolment at once (more are refused).
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
    #[error("no component named {0:?}")]
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

    /// Our address is now `new` (another IPCP had ours): the configuration we give
    /// enrollees names it as their DHT peer, and every Management neighbour gets a
    /// Management CEP with it on the connected flow (and a connection that completes later,
    /// set up with the old address, has it sent again). 0.23 has no message for this: an
    /// o7s neighbour takes it ([`Connections::handle_update`]), the reference drops it as
    /// no LSA.
    pub fn readdress(&mut self, new: u64) {
        self.own_addr = new;
        if let Some(d) = self
            .conf
            .as_mut()
            .and_then(|c| c.unicast.as_mut())
            .and_then(|u| u.dir.dht.as_mut())
        {
            d.peer = new;
        }
        self.announce_address();
    }

    /// A Management CEP with our address on every connected Management flow.
    fn announce_address(&mut self) {
        let cep = CepMsg::new(Component::Management, self.own_addr).encode_to_vec();
        let mgmt: Vec<FlowId> = self
            .connections()
            .into_iter()
            .filter(|c| c.1 == Component::Management)
            .map(|c| c.0)
            .collect();
        for f in mgmt {
            self.send(f, cep.clone());
        }
    }

    /// Whether an SDU of a Management flow is a Management CEP (a neighbour's new address,
    /// [`Connections::handle_update`]) rather than an LSA (those begin with a zero byte, no
    /// protobuf field).
    pub fn is_update(sdu: &[u8]) -> bool {
        pb::decode::<CepMsg>(sdu).is_ok_and(|c| c.component() == Some(Component::Management))
    }

    /// A Management CEP on connected Management flow `flow`: the neighbour's new address
    /// ([`Connections::readdress`]). Its connections move to it: `flow` and every
    /// connection to its old address that `same` says goes to the same neighbour (another
    /// IPCP may still have the old address). Returns whether it was such a CEP (else the
    /// caller gives the SDU to link state); a CEP with address 0 or ours is counted and
    /// ignored.
    pub fn handle_update(
        &mut self,
        flow: FlowId,
        sdu: &[u8],
        same: impl Fn(FlowId) -> bool,
    ) -> bool {
        let Some((Component::Management, old)) = self.connected(flow) else {
            return false;
        };
        if !Self::is_update(sdu) {
            return false;
        }
        let Ok(cep) = pb::decode::<CepMsg>(sdu) else {
            return false;
        };
        let new = cep.address;
        if new == 0 || new == self.own_addr || new == old {
            self.counters.unexpected += 1;
            return true;
        }
        let mut moved = vec![];
        for (id, f) in &mut self.flows {
            if let State::Up { peer_addr, .. } = &mut f.state {
                if *peer_addr == old && (*id == flow || same(*id)) {
                    *peer_addr = new;
                    moved.push(*id);
                }
            }
        }
        moved.sort_unstable();
        self.counters.readdressed += 1;
        self.events.push_back(Event::Readdressed {
            flow,
            old,
            new,
            moved,
        });
        true
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

    /// Our CEP for `comp`: a broadcast IPCP's DT component leaves all but its name empty
    /// (the reference's broadcast `dt.c` zeroes its `conn_info` and sets the name only).
    fn cep(&self, comp: Component) -> CepMsg {
        if self.cfg.broadcast && comp == Component::DataTransfer {
            CepMsg {
                comp_name: comp.comp_name().into(),
                ..CepMsg::default()
            }
        } else {
            CepMsg::new(comp, self.own_addr)
        }
    }

    /// Whether this IPCP has component `comp`.
    fn has(&self, comp: Component) -> bool {
        !(self.cfg.broadcast && comp == Component::Management)
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

    fn room(&mut self, flow: FlowId) -> bool {
        if self.pending() >= self.cfg.max_pending {
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

    /// We allocated `flow` for `comp`: our CEP goes first. For an enrolment, `id` is the
    /// request's id (8 random bytes from the caller).
    pub fn connect(
        &mut self,
        now: Instant,
        flow: FlowId,
        comp: Component,
        id: [u8; ENROLL_ID_LEN],
    ) {
        if !self.room(flow) {
            return;
        }
        let cep = self.cep(comp);
        self.send(flow, cep.encode_to_vec());
        let id = (comp == Component::Enrollment).then_some(id);
        self.flows.insert(
            flow,
            Flow {
                state: State::CepSent {
                    comp,
                    id,
                    addr: self.own_addr,
                },
                deadline: Some(now + self.cfg.step_timeout),
            },
        );
    }

    /// We accepted `flow`: its CEP comes first.
    pub fn accept(&mut self, now: Instant, flow: FlowId) {
        if !self.room(flow) {
            return;
        }
        self.flows.insert(
            flow,
            Flow {
                state: State::CepWait,
                deadline: Some(now + self.cfg.step_timeout),
            },
        );
    }

    /// A connection (`comp` to the member at `peer_addr` on `flow`) that was up before our
    /// o7sd restarted: up again, with no exchange (the member still has its end).
    pub fn adopt(&mut self, flow: FlowId, comp: Component, peer_addr: u64) {
        self.flows.insert(
            flow,
            Flow {
                state: State::Up { comp, peer_addr },
                deadline: None,
            },
        );
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

    fn on_cep_accepted(&mut self, now: Instant, flow: FlowId, sdu: &[u8]) {
        let cep = match pb::decode::<CepMsg>(sdu) {
            Ok(c) => c,
            Err(e) => {
                return self.fail(
                    flow,
                    EnrollError::Bad {
                        what: "CEP",
                        why: e.to_string(),
                    },
                )
            }
        };
        let Some(comp) = cep.component().filter(|c| self.has(*c)) else {
            // As the reference: an all-default CEP, then the flow is closed.
            self.send(flow, CepMsg::default().encode_to_vec());
            return self.fail(flow, EnrollError::UnknownComponent(cep.comp_name));
        };
        if comp == Component::Enrollment && self.conf.is_none() {
            return self.fail(flow, EnrollError::NotInLayer);
        }
        self.send(flow, self.cep(comp).encode_to_vec());
        let next = match comp {
            Component::Enrollment => Flow {
                state: State::ReqWait,
                deadline: Some(now + self.cfg.step_timeout),
            },
            _ => {
                self.counters.connected += 1;
                self.events.push_back(Event::Connected {
                    flow,
                    comp,
                    peer_addr: cep.address,
                });
                Flow {
                    state: State::Up {
                        comp,
                        peer_addr: cep.address,
                    },
                    deadline: None,
                }
            }
        };
        self.flows.insert(flow, next);
    }

    fn on_cep_reply(
        &mut self,
        now: Instant,
        flow: FlowId,
        comp: Component,
        id: Option<[u8; ENROLL_ID_LEN]>,
        sent_addr: u64,
        sdu: &[u8],
    ) {
        // Not a CEP: ignored and counted; the step's deadline bounds the wait. An N-1
        // layer without a deallocation message (eth) reuses endpoint ids, and the peer's
        // end of an earlier flow with ours may still send on it (an LSA, say) until its
        // time-out: that must not fail the new connection.
        let Ok(cep) = pb::decode::<CepMsg>(sdu) else {
            self.counters.unexpected += 1;
            return;
        };
        // As the reference: protocol, version and syntax must match; the name is not
        // checked.
        let ours = self.cep(comp);
        if cep.protocol != ours.protocol
            || cep.pref_version != ours.pref_version
            || cep.pref_syntax != ours.pref_syntax
        {
            return self.fail(
                flow,
                EnrollError::Mismatch(format!(
                    "{}/{}/{} for {}",
                    cep.protocol,
                    cep.pref_version,
                    cep.pref_syntax,
                    comp.comp_name()
                )),
            );
        }
        match id {
            Some(id) => {
                self.send(flow, EnrollReqMsg { id: id.to_vec() }.encode_to_vec());
                self.flows.insert(
                    flow,
                    Flow {
                        state: State::ReqSent { id },
                        deadline: Some(now + self.cfg.step_timeout),
                    },
                );
            }
            None => {
                self.counters.connected += 1;
                self.events.push_back(Event::Connected {
                    flow,
                    comp,
                    peer_addr: cep.address,
                });
                self.flows.insert(
                    flow,
                    Flow {
                        state: State::Up {
                            comp,
                            peer_addr: cep.address,
                        },
                        deadline: None,
                    },
                );
                // We moved after our CEP left: the peer knows this connection by our old
                // address. Told again on the Management flows (this one too, if it is one),
                // it moves its connections to the old address to the new one.
                if sent_addr != self.own_addr {
                    self.announce_address();
                }
            }
        }
    }

    fn on_resp(&mut self, flow: FlowId, id: [u8; ENROLL_ID_LEN], sdu: &[u8]) {
        let resp = match pb::decode::<EnrollRespMsg>(sdu) {
            Ok(r) => r,
            Err(e) => {
                return self.fail(
                    flow,
                    EnrollError::Bad {
                        what: "enrolment response",
                        why: e.to_string(),
                    },
                )
            }
        };
        if resp.id != id {
            return self.fail(
                flow,
                EnrollError::Bad {
                    what: "enrolment response",
                    why: "not our request's id".into(),
                },
            );
        }
        if resp.response != 0 {
            return self.fail(flow, EnrollError::Refused(resp.response));
        }
        let checked = resp
            .conf
            .ok_or(ConfError::Missing)
            .and_then(|c| check_conf(c, self.cfg.broadcast));
        let conf = match checked {
            Ok(c) => c,
            Err(why) => {
                return self.fail(
                    flow,
                    EnrollError::Bad {
                        what: "layer configuration",
                        why: why.to_string(),
                    },
                )
            }
        };
        self.send(
            flow,
            EnrollAckMsg {
                id: id.to_vec(),
                result: 0,
            }
            .encode_to_vec(),
        );
        self.flows.remove(&flow);
        self.counters.enrolled += 1;
        self.events.push_back(Event::Enrolled {
            flow,
            conf: Box::new(conf),
            enroller_time: (resp.t_sec, resp.t_nsec),
        });
        // As the reference: the enrolment flow is let go after the acknowledgement.
        self.events.push_back(Event::Close { flow });
    }

    fn on_req(&mut self, now: Instant, unix: UnixTime, flow: FlowId, sdu: &[u8]) {
        let req = match pb::decode::<EnrollReqMsg>(sdu) {
            Ok(r) => r,
            Err(e) => {
                return self.fail(
                    flow,
                    EnrollError::Bad {
                        what: "enrolment request",
                        why: e.to_string(),
                    },
                )
            }
        };
        let Some(conf) = self.conf.clone() else {
            return self.fail(flow, EnrollError::NotInLayer);
        };
        let resp = EnrollRespMsg {
            id: req.id.clone(),
            t_sec: i64::try_from(unix.as_secs()).unwrap_or(i64::MAX),
            t_nsec: i32::try_from(unix.subsec_nanos()).unwrap_or(0),
            response: 0,
            conf: Some(conf),
        };
        self.send(flow, resp.encode_to_vec());
        self.flows.insert(
            flow,
            Flow {
                state: State::AckWait { id: req.id },
                deadline: Some(now + self.cfg.step_timeout),
            },
        );
    }

    fn on_ack(&mut self, flow: FlowId, id: &[u8], sdu: &[u8]) {
        match pb::decode::<EnrollAckMsg>(sdu) {
            Ok(a) if a.id == id && a.result == 0 => {
                self.flows.remove(&flow);
                self.counters.served += 1;
                self.events.push_back(Event::Served { flow });
                self.events.push_back(Event::Close { flow });
            }
            Ok(a) => self.fail(
                flow,
                EnrollError::Bad {
                    what: "enrolment acknowledgement",
                    why: format!("result {} (or another id)", a.result),
                },
            ),
            Err(e) => self.fail(
                flow,
                EnrollError::Bad {
                    what: "enrolment acknowledgement",
                    why: e.to_string(),
                },
            ),
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
    #[error("a layer name of 1..=255 bytes")]
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
}

/// What an enrollee can adopt: a layer of its own type (as the reference checks); a
/// unicast one with the sizes this implementation has.
fn check_conf(c: IpcpConfigMsg, broadcast: bool) -> Result<IpcpConfigMsg, ConfError> {
    if c.layer_info.name.is_empty() || c.layer_info.name.len() > 255 {
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
    Ok(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const R: u64 = 0x41dc_5e0b;
    const E: u64 = 0xe30f_5e97;

    fn pump(from: &mut Connections, to: &mut Connections, now: Instant, flow: FlowId) -> usize {
        let mut n = 0;
        while let Some(t) = from.poll_transmit() {
            assert_eq!(t.flow, flow);
            to.handle(now, UnixTime::from_secs(1_796_036_551), flow, &t.sdu);
            n += 1;
        }
        n
    }

    fn events(c: &mut Connections) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn an_adopted_connection_is_up_at_once_and_goes_down_like_any() {
        let mut c = Connections::new(EnrollConfig::default(), 5, None);
        c.adopt(7, Component::DataTransfer, 0x99);
        c.adopt(8, Component::Management, 0x99);
        assert_eq!(c.connected(7), Some((Component::DataTransfer, 0x99)));
        assert_eq!(
            c.connections(),
            [
                (7, Component::DataTransfer, 0x99),
                (8, Component::Management, 0x99)
            ]
        );
        assert_eq!(c.pending(), 0);
        c.flow_down(7);
        assert_eq!(c.connected(7), None);
        assert_eq!(
            c.counters().failed,
            0,
            "an up connection that ends is no failure"
        );
    }

    #[test]
    fn enrolment_gives_the_enrollee_the_layer_and_sends_the_reference_bytes() {
        let t0 = Instant::now();
        let conf = IpcpConfigMsg::unicast_default("ufuni", R);
        let mut r = Connections::new(EnrollConfig::default(), R, Some(conf.clone()));
        let mut e = Connections::new(EnrollConfig::default(), 0, None);
        e.connect(t0, 7, Component::Enrollment, *b"RH\x0fa\x17\xd2>\xcc");
        r.accept(t0, 7);
        // The enrollee's CEP: the reference's 23 bytes.
        let cep = e.transmits.front().unwrap().sdu.clone();
        assert_eq!(
            hex::encode(&cep),
            "0a0a456e726f6c6c6d656e7412034f4550180128004000"
        );
        pump(&mut e, &mut r, t0, 7); // CEP
        pump(&mut r, &mut e, t0, 7); // CEP back, then e sends the request
        let req = e.transmits.front().unwrap().sdu.clone();
        assert_eq!(hex::encode(&req), "0a0852480f6117d23ecc");
        pump(&mut e, &mut r, t0, 7); // request
        pump(&mut r, &mut e, t0, 7); // response
        pump(&mut e, &mut r, t0, 7); // ack
        let ev = events(&mut e);
        assert!(
            matches!(&ev[..], [Event::Enrolled { flow: 7, conf: c, enroller_time: (1_796_036_551, 0) }, Event::Close { flow: 7 }] if **c == conf),
            "{ev:?}"
        );
        assert_eq!(
            events(&mut r),
            vec![Event::Served { flow: 7 }, Event::Close { flow: 7 }]
        );
        assert_eq!((e.counters().enrolled, r.counters().served), (1, 1));
        assert_eq!(r.pending() + e.pending(), 0);
    }

    fn bc() -> EnrollConfig {
        EnrollConfig {
            broadcast: true,
            ..EnrollConfig::default()
        }
    }

    #[test]
    fn a_broadcast_member_enrols_in_a_broadcast_layer_and_connects_dt_with_the_zero_cep() {
        let t0 = Instant::now();
        let conf = IpcpConfigMsg::broadcast("bc");
        let mut r = Connections::new(bc(), 0, Some(conf.clone()));
        let mut e = Connections::new(bc(), 0, None);
        e.connect(t0, 7, Component::Enrollment, [9; 8]);
        r.accept(t0, 7);
        for _ in 0..2 {
            pump(&mut e, &mut r, t0, 7);
            pump(&mut r, &mut e, t0, 7);
        }
        pump(&mut e, &mut r, t0, 7);
        let ev = events(&mut e);
        assert!(
            matches!(&ev[..], [Event::Enrolled { flow: 7, conf: c, .. }, Event::Close { flow: 7 }] if **c == conf && c.ipcp_type == 2 && c.unicast.is_none()),
            "{ev:?}"
        );
        e.set_layer(0, conf);
        // DT: the broadcast IPCP's CEP names the component and nothing else.
        e.connect(t0, 8, Component::DataTransfer, [0; 8]);
        r.accept(t0, 8);
        let cep = e.transmits.front().unwrap().sdu.clone();
        assert_eq!(
            hex::encode(&cep),
            "0a0d44617461205472616e736665721200180028004000"
        );
        pump(&mut e, &mut r, t0, 8);
        pump(&mut r, &mut e, t0, 8);
        let up = |c: &mut Connections| {
            events(c)
                .into_iter()
                .filter(|x| {
                    matches!(
                        x,
                        Event::Connected {
                            flow: 8,
                            comp: Component::DataTransfer,
                            peer_addr: 0
                        }
                    )
                })
                .count()
        };
        assert_eq!((up(&mut e), up(&mut r)), (1, 1));
        assert_eq!(e.connected(8), Some((Component::DataTransfer, 0)));
        // A broadcast IPCP has no Management component: the reference's empty CEP, closed.
        let mut m = Connections::new(EnrollConfig::default(), E, None);
        m.connect(t0, 9, Component::Management, [0; 8]);
        r.accept(t0, 9);
        pump(&mut m, &mut r, t0, 9);
        assert_eq!(
            r.transmits.front().map(|t| t.sdu.clone()),
            Some(CepMsg::default().encode_to_vec())
        );
        r.transmits.clear();
        let ev = events(&mut r);
        assert!(
            matches!(&ev[..], [Event::Failed { flow: 9, why: EnrollError::UnknownComponent(n) }, Event::Close { flow: 9 }] if n == "Management"),
            "{ev:?}"
        );
        // A unicast member's DT CEP does not match a broadcast one's.
        let mut u = Connections::new(EnrollConfig::default(), E, None);
        u.connect(t0, 10, Component::DataTransfer, [0; 8]);
        r.accept(t0, 10);
        pump(&mut u, &mut r, t0, 10);
        pump(&mut r, &mut u, t0, 10);
        let ev = events(&mut u);
        assert!(
            matches!(
                &ev[0],
                Event::Failed {
                    flow: 10,
                    why: EnrollError::Mismatch(_)
                }
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn a_cep_reply_differing_in_protocol_version_or_syntax_alone_fails() {
        let t0 = Instant::now();
        let good = CepMsg::new(Component::Management, R);
        let variants = [
            CepMsg {
                protocol: "LSQ".into(),
                ..good.clone()
            },
            CepMsg {
                pref_version: 2,
                ..good.clone()
            },
            CepMsg {
                pref_syntax: good.pref_syntax + 1,
                ..good.clone()
            },
        ];
        for (i, reply) in variants.into_iter().enumerate() {
            let mut a = Connections::new(EnrollConfig::default(), E, None);
            a.connect(t0, 1, Component::Management, [0; 8]);
            a.transmits.clear();
            a.handle(t0, UnixTime::default(), 1, &reply.encode_to_vec());
            let ev = events(&mut a);
            assert!(
                matches!(
                    &ev[0],
                    Event::Failed {
                        flow: 1,
                        why: EnrollError::Mismatch(_)
                    }
                ),
                "variant {i}: {ev:?}"
            );
        }
        // The same CEP with another name is accepted (the name is not checked).
        let mut a = Connections::new(EnrollConfig::default(), E, None);
        a.connect(t0, 1, Component::Management, [0; 8]);
        let renamed = CepMsg {
            comp_name: "Other".into(),
            ..good
        };
        a.handle(t0, UnixTime::default(), 1, &renamed.encode_to_vec());
        assert_eq!(a.connected(1), Some((Component::Management, R)));
    }

    #[test]
    fn a_layer_name_of_255_bytes_is_adopted_and_256_is_not() {
        for (len, ok) in [(255, true), (256, false), (1, true)] {
            let name = "l".repeat(len);
            assert_eq!(
                check_conf(IpcpConfigMsg::unicast_default(&name, R), false).is_ok(),
                ok,
                "{len}"
            );
            assert_eq!(
                check_conf(IpcpConfigMsg::broadcast(&name), true).is_ok(),
                ok,
                "{len}"
            );
        }
    }

    #[test]
    fn each_kind_of_member_adopts_only_a_layer_of_its_own_kind() {
        for (broadcast, conf, want) in [
            (
                true,
                IpcpConfigMsg::unicast_default("l", R),
                "is not broadcast",
            ),
            (false, IpcpConfigMsg::broadcast("l"), "is not unicast"),
            (true, IpcpConfigMsg::broadcast(""), "1..=255"),
        ] {
            let t0 = Instant::now();
            let cfg = EnrollConfig {
                broadcast,
                ..EnrollConfig::default()
            };
            let mut r = Connections::new(cfg, 0, Some(conf));
            let mut e = Connections::new(cfg, 0, None);
            e.connect(t0, 7, Component::Enrollment, [9; 8]);
            r.accept(t0, 7);
            for _ in 0..2 {
                pump(&mut e, &mut r, t0, 7);
                pump(&mut r, &mut e, t0, 7);
            }
            let ev = events(&mut e);
            assert!(
                matches!(&ev[0], Event::Failed { flow: 7, why: EnrollError::Bad { what: "layer configuration", why } } if why.contains(want)),
                "{broadcast}: {ev:?}"
            );
        }
        assert!(check_conf(IpcpConfigMsg::broadcast("l"), true).is_ok());
    }

    /// `a` (at E) connected Management on flow 1 and DT on flow 2 to `b` (at R, in layer
    /// "l").
    fn connected_pair(t0: Instant) -> (Connections, Connections) {
        let mut a = Connections::new(EnrollConfig::default(), E, None);
        let mut b = Connections::new(
            EnrollConfig::default(),
            R,
            Some(IpcpConfigMsg::unicast_default("l", R)),
        );
        for (flow, comp) in [(1, Component::Management), (2, Component::DataTransfer)] {
            a.connect(t0, flow, comp, [0; 8]);
            b.accept(t0, flow);
            pump(&mut a, &mut b, t0, flow);
            pump(&mut b, &mut a, t0, flow);
        }
        (a, b)
    }

    #[test]
    fn a_readdressed_neighbour_tells_its_management_neighbours() {
        let (mut a, mut b) = connected_pair(Instant::now());
        let _ = (events(&mut a), events(&mut b));
        const N: u64 = 0x0bad_cafe;
        b.readdress(N);
        // One Management CEP with the new address, on the Management flow only.
        let t: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].flow, 1);
        assert_eq!(
            t[0].sdu,
            CepMsg::new(Component::Management, N).encode_to_vec()
        );
        // An LSA is not one (the caller gives it to link state).
        let same = |_| true;
        assert!(!Connections::is_update(&[0u8; 24]));
        assert!(!a.handle_update(1, &[0u8; 24], same));
        assert!(Connections::is_update(&t[0].sdu));
        assert!(a.handle_update(1, &t[0].sdu, same));
        assert_eq!(
            events(&mut a),
            vec![Event::Readdressed {
                flow: 1,
                old: R,
                new: N,
                moved: vec![1, 2]
            }]
        );
        assert_eq!(
            a.connections(),
            vec![
                (1, Component::Management, N),
                (2, Component::DataTransfer, N)
            ]
        );
        // Not on a DT flow; address 0 or ours: counted, nothing moves.
        assert!(!a.handle_update(2, &t[0].sdu, same));
        let before = a.counters().unexpected;
        for bad in [0, E] {
            let cep = CepMsg::new(Component::Management, bad).encode_to_vec();
            assert!(a.handle_update(1, &cep, same));
        }
        assert_eq!(a.counters().unexpected, before + 2);
        assert_eq!(a.counters().readdressed, 1);
        assert!(events(&mut a).is_empty());
        // Enrollees of b now get b's new address as their DHT peer.
        let peer = b
            .conf
            .as_ref()
            .and_then(|c| c.unicast.as_ref())
            .and_then(|u| u.dir.dht.as_ref())
            .map(|d| d.peer);
        assert_eq!(peer, Some(N));
        // Connections to another IPCP that still has the old address stay (the caller
        // says which flows go to the mover).
        let (mut a, _) = connected_pair(Instant::now());
        let _ = events(&mut a);
        let cep = CepMsg::new(Component::Management, N).encode_to_vec();
        assert!(a.handle_update(1, &cep, |f| f == 1));
        assert_eq!(
            a.connections(),
            vec![
                (1, Component::Management, N),
                (2, Component::DataTransfer, R)
            ]
        );
    }

    #[test]
    fn management_and_dt_connect_with_each_others_addresses() {
        let t0 = Instant::now();
        let (a, b) = connected_pair(t0);
        for (flow, comp) in [(1, Component::Management), (2, Component::DataTransfer)] {
            assert_eq!(a.connected(flow), Some((comp, R)));
            assert_eq!(b.connected(flow), Some((comp, E)));
        }
        // The DT CEP is the reference's, FIXED syntax.
        let mut c = Connections::new(EnrollConfig::default(), E, None);
        c.connect(t0, 3, Component::DataTransfer, [0; 8]);
        assert_eq!(
            hex::encode(c.poll_transmit().unwrap().sdu),
            "0a0d44617461205472616e736665721203647470180128024097bdbd980e"
        );
    }

    #[test]
    fn a_vanished_enrollee_times_out_and_blocks_no_one() {
        let t0 = Instant::now();
        let mut r = Connections::new(
            EnrollConfig::default(),
            R,
            Some(IpcpConfigMsg::unicast_default("l", R)),
        );
        // Flow 1's enrollee sends its CEP and request, then nothing.
        r.accept(t0, 1);
        r.handle(
            t0,
            UnixTime::default(),
            1,
            &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
        );
        r.handle(
            t0,
            UnixTime::default(),
            1,
            &EnrollReqMsg { id: vec![1; 8] }.encode_to_vec(),
        );
        // Flow 2 enrols meanwhile.
        let mut e = Connections::new(EnrollConfig::default(), 0, None);
        e.connect(t0, 2, Component::Enrollment, [2; 8]);
        r.accept(t0, 2);
        while let Some(t) = r.poll_transmit() {
            if t.flow == 2 {
                e.handle(t0, UnixTime::default(), 2, &t.sdu);
            }
        }
        for _ in 0..3 {
            pump(&mut e, &mut r, t0, 2);
            while let Some(t) = r.poll_transmit() {
                e.handle(t0, UnixTime::default(), t.flow, &t.sdu);
            }
        }
        assert_eq!(e.counters().enrolled, 1);
        assert_eq!(r.counters().served, 1);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        r.handle_timeout(t0 + Duration::from_secs(1));
        let ev = events(&mut r);
        assert!(ev.contains(&Event::Failed {
            flow: 1,
            why: EnrollError::Timeout("enrolment acknowledgement")
        }));
        assert!(ev.contains(&Event::Close { flow: 1 }));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn bad_peers_get_clear_failures() {
        let t0 = Instant::now();
        let conf = IpcpConfigMsg::unicast_default("l", R);
        let mut r = Connections::new(EnrollConfig::default(), R, Some(conf.clone()));
        // Garbage instead of a CEP.
        r.accept(t0, 1);
        r.handle(t0, UnixTime::default(), 1, &[0xff, 0xff, 0x01]);
        // An unknown component: the all-default CEP, then the flow goes.
        r.accept(t0, 2);
        let mut odd = CepMsg::new(Component::Management, 5);
        odd.comp_name = "Routing".into();
        r.handle(t0, UnixTime::default(), 2, &odd.encode_to_vec());
        let back = r.poll_transmit().unwrap();
        assert_eq!(back.flow, 2);
        assert_eq!(
            CepMsg::decode(back.sdu.as_slice()).unwrap(),
            CepMsg::default()
        );
        let ev = events(&mut r);
        assert!(
            matches!(
                ev[0],
                Event::Failed {
                    flow: 1,
                    why: EnrollError::Bad { what: "CEP", .. }
                }
            ),
            "{ev:?}"
        );
        assert!(ev.contains(&Event::Failed {
            flow: 2,
            why: EnrollError::UnknownComponent("Routing".into())
        }));
        // A CEP reply with the wrong protocol fails the allocator; what is no CEP at all
        // (a stale LSA on a reused endpoint id) is ignored and counted while it waits.
        let mut a = Connections::new(EnrollConfig::default(), E, None);
        a.connect(t0, 3, Component::Management, [0; 8]);
        let _ = a.poll_transmit();
        a.handle(t0, UnixTime::default(), 3, &[0u8; 24]);
        assert!(events(&mut a).is_empty(), "still waiting for the CEP reply");
        assert_eq!(a.counters().unexpected, 1);
        let mut wrong = CepMsg::new(Component::Management, R);
        wrong.protocol = "XYZ".into();
        a.handle(t0, UnixTime::default(), 3, &wrong.encode_to_vec());
        assert!(matches!(
            events(&mut a)[0],
            Event::Failed {
                flow: 3,
                why: EnrollError::Mismatch(_)
            }
        ));
        // An enroller's response with a configuration we cannot use.
        let mut e = Connections::new(EnrollConfig::default(), 0, None);
        e.connect(t0, 4, Component::Enrollment, [4; 8]);
        e.handle(
            t0,
            UnixTime::default(),
            4,
            &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
        );
        let mut bad = conf;
        if let Some(u) = bad.unicast.as_mut() {
            u.dt.addr_size = 2;
        }
        let resp = EnrollRespMsg {
            id: vec![4; 8],
            t_sec: 0,
            t_nsec: 0,
            response: 0,
            conf: Some(bad),
        };
        e.handle(t0, UnixTime::default(), 4, &resp.encode_to_vec());
        let ev = events(&mut e);
        assert!(
            matches!(&ev[0], Event::Failed { flow: 4, why: EnrollError::Bad { what: "layer configuration", why } } if why.contains("addr_size 2")),
            "{ev:?}"
        );
        // Not in a layer: no enrolment is served.
        let mut n = Connections::new(EnrollConfig::default(), 0, None);
        n.accept(t0, 5);
        n.handle(
            t0,
            UnixTime::default(),
            5,
            &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
        );
        assert!(events(&mut n).contains(&Event::Failed {
            flow: 5,
            why: EnrollError::NotInLayer
        }));
    }

    #[test]
    fn pending_flows_are_bounded() {
        let t0 = Instant::now();
        let cfg = EnrollConfig {
            max_pending: 2,
            ..EnrollConfig::default()
        };
        let mut r = Connections::new(cfg, R, None);
        for f in 0..3 {
            r.accept(t0, f);
        }
        assert_eq!(r.pending(), 2);
        assert_eq!(r.counters().busy, 1);
        assert!(events(&mut r).contains(&Event::Failed {
            flow: 2,
            why: EnrollError::Busy(2)
        }));
    }

    #[test]
    fn a_step_waits_its_whole_time_and_failures_are_counted() {
        let t0 = Instant::now();
        let step = EnrollConfig::default().step_timeout;
        let mut c = Connections::new(EnrollConfig::default(), E, None);
        c.connect(t0, 3, Component::DataTransfer, [0; 8]);
        c.accept(t0, 4);
        let _ = c.poll_transmit();
        c.handle_timeout(t0 + step - Duration::from_millis(1));
        assert!(events(&mut c).is_empty(), "not before the step's time");
        assert_eq!(c.pending(), 2);
        c.handle_timeout(t0 + step);
        let ev = events(&mut c);
        for flow in [3, 4] {
            assert!(ev.contains(&Event::Close { flow }), "{ev:?}");
        }
        assert_eq!((c.counters().failed, c.pending()), (2, 0));
    }

    #[test]
    fn set_layer_gives_the_address_and_the_configuration_to_later_connections() {
        let t0 = Instant::now();
        // Started without a layer (an enrollee), then enrolled: it serves enrolments now.
        let mut r = Connections::new(EnrollConfig::default(), 0, None);
        r.set_layer(E, IpcpConfigMsg::unicast_default("l", E));
        r.connect(t0, 3, Component::DataTransfer, [0; 8]);
        assert_eq!(
            hex::encode(r.poll_transmit().unwrap().sdu),
            "0a0d44617461205472616e736665721203647470180128024097bdbd980e",
            "its CEP names the new address"
        );
        let mut e = Connections::new(EnrollConfig::default(), 0, None);
        e.connect(t0, 2, Component::Enrollment, [2; 8]);
        r.accept(t0, 2);
        for _ in 0..4 {
            pump(&mut e, &mut r, t0, 2);
            while let Some(t) = r.poll_transmit() {
                e.handle(t0, UnixTime::default(), t.flow, &t.sdu);
            }
        }
        assert_eq!((e.counters().enrolled, r.counters().served), (1, 1));
    }

    /// An enroller at the point where it waits for the acknowledgement of flow 1's
    /// enrolment (request id `[1; 8]`), at `t0`.
    fn enroller_waiting_for_ack(t0: Instant) -> Connections {
        let mut r = Connections::new(
            EnrollConfig::default(),
            R,
            Some(IpcpConfigMsg::unicast_default("l", R)),
        );
        r.accept(t0, 1);
        r.handle(
            t0,
            UnixTime::default(),
            1,
            &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
        );
        r.handle(
            t0,
            UnixTime::default(),
            1,
            &EnrollReqMsg { id: vec![1; 8] }.encode_to_vec(),
        );
        while r.poll_transmit().is_some() {}
        r
    }

    #[test]
    fn an_acknowledgement_with_another_id_or_a_failure_fails_the_enrolment() {
        let t0 = Instant::now();
        for (id, result) in [(vec![9; 8], 0), (vec![1; 8], 1), (vec![9; 8], 1)] {
            let mut r = enroller_waiting_for_ack(t0);
            r.handle(
                t0,
                UnixTime::default(),
                1,
                &EnrollAckMsg { id, result }.encode_to_vec(),
            );
            let ev = events(&mut r);
            assert!(
                matches!(ev.first(), Some(Event::Failed { flow: 1, .. })),
                "{ev:?}"
            );
            assert_eq!((r.counters().served, r.counters().failed), (0, 1));
        }
        let mut r = enroller_waiting_for_ack(t0);
        r.handle(
            t0,
            UnixTime::default(),
            1,
            &EnrollAckMsg {
                id: vec![1; 8],
                result: 0,
            }
            .encode_to_vec(),
        );
        assert_eq!(r.counters().served, 1);
    }

    #[test]
    fn every_waiting_step_has_the_whole_step_time() {
        let t0 = Instant::now();
        let step = EnrollConfig::default().step_timeout;
        let ms = Duration::from_millis(1);
        // The enroller: its CEP sent, it waits for the request; then for the ack.
        let t1 = t0 + ms * 10;
        let mut r = Connections::new(
            EnrollConfig::default(),
            R,
            Some(IpcpConfigMsg::unicast_default("l", R)),
        );
        r.accept(t0, 1);
        r.handle(
            t1,
            UnixTime::default(),
            1,
            &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
        );
        assert_eq!(r.poll_timeout(), Some(t1 + step));
        // The enrollee: its request sent after the CEP reply, it waits for the response.
        let mut e = Connections::new(EnrollConfig::default(), 0, None);
        e.connect(t0, 2, Component::Enrollment, [2; 8]);
        let _ = e.poll_transmit();
        e.handle(
            t1,
            UnixTime::default(),
            2,
            &CepMsg::new(Component::Enrollment, R).encode_to_vec(),
        );
        assert_eq!(e.poll_timeout(), Some(t1 + step));
        for c in [&mut r, &mut e] {
            c.handle_timeout(t1 + step - ms);
            assert!(events(c).is_empty());
            c.handle_timeout(t1 + step);
            assert_eq!(c.counters().failed, 1);
        }
    }

    #[test]
    fn connections_are_counted_on_both_sides_and_stray_sdus_too() {
        let t0 = Instant::now();
        let (a, b) = connected_pair(t0);
        assert_eq!((a.counters().connected, b.counters().connected), (2, 2));
        let mut c = Connections::new(EnrollConfig::default(), E, None);
        c.adopt(7, Component::DataTransfer, 0x99);
        // An SDU of a flow it does not know, and one of a connection that is up.
        c.handle(t0, UnixTime::default(), 8, &[1, 2, 3]);
        c.handle(t0, UnixTime::default(), 7, &[1, 2, 3]);
        assert_eq!(c.counters().unexpected, 2);
        // A flow that goes down while it is set up is a failure.
        c.accept(t0, 9);
        c.flow_down(9);
        assert_eq!(
            events(&mut c),
            [Event::Failed {
                flow: 9,
                why: EnrollError::FlowDown
            }]
        );
        assert_eq!(c.counters().failed, 1);
    }
}
