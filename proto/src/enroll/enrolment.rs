//! Enrolment: the request, the layer's configuration in the response, and the acknowledgement
//! that ends it.

use super::{check_conf, ConfError, Connections, EnrollError, Event, Flow, FlowId, State};
use crate::machine::UnixTime;
use o7s_wire::unicast::pb::{self, EnrollAckMsg, EnrollReqMsg, EnrollRespMsg, ENROLL_ID_LEN};
use prost::Message;
use std::time::Instant;

impl Connections {
    pub(super) fn on_resp(&mut self, flow: FlowId, id: [u8; ENROLL_ID_LEN], sdu: &[u8]) {
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

    pub(super) fn on_req(&mut self, now: Instant, unix: UnixTime, flow: FlowId, sdu: &[u8]) {
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

    pub(super) fn on_ack(&mut self, flow: FlowId, id: &[u8], sdu: &[u8]) {
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
}
