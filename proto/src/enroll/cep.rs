//! Connections: the CEP exchange that makes an N-1 flow a component's (Management, Data
//! Transfer, Enrollment), both as the side that connects and the side that accepts.

use super::{Connections, EnrollError, Event, Flow, FlowId, State};
use o7s_wire::unicast::pb::{self, CepMsg, Component, EnrollReqMsg, ENROLL_ID_LEN};
use prost::Message;
use std::time::Instant;

/// Most characters of a peer's string kept for a message (they go to the log).
const SHOWN: usize = 64;

/// A peer's string as a message shows it: quoted, its control characters escaped (a
/// newline cannot start a forged log line) and cut after [`SHOWN`] characters.
fn shown(s: &str) -> String {
    let head: String = s.chars().take(SHOWN).collect();
    if head.len() < s.len() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

impl Connections {
    /// We allocated `flow` for `comp`: our CEP goes first. For an enrolment, `id` is the
    /// request's id (8 random bytes from the caller).
    pub fn connect(
        &mut self,
        now: Instant,
        flow: FlowId,
        comp: Component,
        id: [u8; ENROLL_ID_LEN],
    ) {
        if !self.room(flow, true) {
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
        if !self.room(flow, false) {
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

    /// Our CEP for `comp`: a broadcast IPCP's DT component leaves all but its name empty
    /// (the reference's broadcast `dt.c` zeroes its `conn_info` and sets the name only).
    pub(super) fn cep(&self, comp: Component) -> CepMsg {
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
    pub(super) fn has(&self, comp: Component) -> bool {
        !(self.cfg.broadcast && comp == Component::Management)
    }

    pub(super) fn on_cep_accepted(&mut self, now: Instant, flow: FlowId, sdu: &[u8]) {
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
            return self.fail(flow, EnrollError::UnknownComponent(shown(&cep.comp_name)));
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

    pub(super) fn on_cep_reply(
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
                    shown(&cep.protocol),
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
}

#[cfg(test)]
mod shown_tests {
    use super::shown;

    #[test]
    fn a_peers_string_is_quoted_escaped_and_cut() {
        assert_eq!(shown("LSP"), "\"LSP\"");
        // A newline cannot start a line of its own in the log.
        assert_eq!(shown("a\nINFO forged"), "\"a\\nINFO forged\"");
        let long = "x".repeat(100);
        assert_eq!(shown(&long), format!("{:?}...", "x".repeat(64)));
        assert_eq!(shown(&"y".repeat(64)), format!("{:?}", "y".repeat(64)));
        // Cut on characters, not bytes.
        assert_eq!(shown(&"é".repeat(65)), format!("{:?}...", "é".repeat(64)));
    }
}
