//! Why a responder refused a flow request, as far as the 0.23 formats can say it: a
//! FLOW_REPLY carries only an integer `response`, so each cause is a negative errno value
//! (small enough for the 8-bit field of older peers), and the requester maps the values it
//! knows back to a cause. A reference peer, or one that gives no reason, sends -1.

/// Why the responder refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No reason given (-1, `EPERM`: what the reference and older o7s send).
    Unspecified,
    /// The name is not registered there (`ENOENT`).
    NotRegistered,
    /// Nobody accepted in time: no process runs, or none is bound to the name
    /// (`ECONNREFUSED`).
    NoAcceptor,
    /// The name's program could not be started (`ENOEXEC`).
    NoProgram,
    /// Too many requests wait there already (`EBUSY`).
    Busy,
    /// A flow limit of the responder (`EMFILE`).
    Limit,
    /// The responder's security check of the request failed, or its own security settings
    /// for the name are unusable (`EACCES`).
    Security,
    /// The responder ran out of resources: endpoint ids, flow memory, the data plane
    /// (`ENOMEM`).
    NoResources,
}

impl Refusal {
    /// Every cause.
    pub const ALL: [Refusal; 8] = [
        Self::Unspecified,
        Self::NotRegistered,
        Self::NoAcceptor,
        Self::NoProgram,
        Self::Busy,
        Self::Limit,
        Self::Security,
        Self::NoResources,
    ];

    /// The FLOW_REPLY's response for this cause (negative).
    pub fn response(self) -> i32 {
        match self {
            Self::Unspecified => -1,
            Self::NotRegistered => -2,
            Self::NoProgram => -8,
            Self::NoResources => -12,
            Self::Security => -13,
            Self::Busy => -16,
            Self::Limit => -24,
            Self::NoAcceptor => -111,
        }
    }

    /// The cause of a FLOW_REPLY's negative `response`, when it is one of ours.
    pub fn from_response(response: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.response() == response)
    }

    /// What the requester is told (after "refused by the peer: NAME at PEER: "): the cause
    /// and what to do about it, without the word "refused" (its message says it once).
    pub fn cause(self) -> &'static str {
        match self {
            Self::Unspecified => "it gave no reason (response -1); its log says why",
            Self::NotRegistered => {
                "the name is not registered there (o7sctl name register ... on that host)"
            }
            Self::NoAcceptor => {
                "no process accepts flows for it there; start its server on that host (e.g. `oping -l`) or bind a program to the name with auto-start"
            }
            Self::NoProgram => {
                "no process accepts flows for it there and its program could not be started (not found, or it failed); see that host's log"
            }
            Self::Busy => "too many flow requests wait there already; try again",
            Self::Limit => "a flow limit there is reached (o7sd --max-flows, --max-flows-per-peer)",
            Self::Security => {
                "its security check of this request failed (certificate, signature or encryption settings); see its log"
            }
            Self::NoResources => "it is out of resources (endpoint ids, flow memory); see its log",
        }
    }

    /// What the responder logs: the cause as seen from its side.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "refused",
            Self::NotRegistered => "the name is not registered here",
            Self::NoAcceptor => "no process accepts flows for it",
            Self::NoProgram => "no process accepts flows for it and its program cannot start",
            Self::Busy => "too many requests wait",
            Self::Limit => "a flow limit is reached",
            Self::Security => "its security check failed",
            Self::NoResources => "out of resources",
        }
    }
}

/// The requester's text for a FLOW_REPLY's negative `response`: the known cause, or the
/// bare number.
pub fn describe(response: i32) -> String {
    match Refusal::from_response(response) {
        Some(r) => r.cause().to_string(),
        None => format!("response {response}, a cause o7s does not know; see the peer's log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_goes_through_the_response_and_back() {
        for r in Refusal::ALL {
            let v = r.response();
            assert!(
                (-128..0).contains(&v),
                "{r:?}: {v} fits an int8 and is negative"
            );
            assert_eq!(Refusal::from_response(v), Some(r));
            assert!(!r.cause().contains("refused"), "{r:?}: {}", r.cause());
        }
        let mut all: Vec<i32> = Refusal::ALL.iter().map(|r| r.response()).collect();
        all.dedup();
        assert_eq!(all.len(), Refusal::ALL.len(), "distinct values");
        assert_eq!(Refusal::from_response(-99), None);
        assert!(describe(-99).contains("response -99"));
        assert!(describe(-111).contains("oping -l"));
    }

    #[test]
    fn the_responder_logs_a_distinct_cause_for_each_refusal() {
        let texts: std::collections::HashSet<&str> =
            Refusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(texts.len(), Refusal::ALL.len(), "{texts:?}");
        assert!(texts.iter().all(|t| !t.is_empty()));
        assert_eq!(
            Refusal::NotRegistered.as_str(),
            "the name is not registered here"
        );
        assert_eq!(Refusal::Security.as_str(), "its security check failed");
    }
}
