//! Why a flow could not be set up, as a type: each cause is a variant (with the error it
//! comes from as its source), its message is what the app and the log read, and
//! [`FlowError::code`] is the code the app's library gets on the wire.

use o7s::proto::ErrorCode;
use o7s_proto::oap::OapError;
use o7s_proto::shim::ShimError;

/// Why a flow could not be allocated or installed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// No layer is up to resolve the name in.
    #[error("no layer is up to look {name} up in")]
    NoLayer {
        /// The name.
        name: String,
    },
    /// No layer knows the name.
    #[error("no answer for {name} within {ms} ms (asked {asked})")]
    UnknownName {
        /// The name.
        name: String,
        /// How long it was asked for.
        ms: u128,
        /// The layers asked.
        asked: String,
    },
    /// A layer's machine refused the request (busy, out of endpoint ids).
    #[error("{ipcp}: {source}")]
    Layer {
        /// The IPCP.
        ipcp: String,
        /// What the machine said.
        #[source]
        source: ShimError,
    },
    /// No FLOW_REPLY came in time.
    #[error("no FLOW_REPLY for {name} within {ms} ms")]
    Timeout {
        /// The name.
        name: String,
        /// The time-out.
        ms: u128,
    },
    /// The peer refused.
    #[error("{name} refused the flow (response {response})")]
    Refused {
        /// The name.
        name: String,
        /// Its response code.
        response: i32,
    },
    /// The peer's OAP response does not answer our request, or its keys are not acceptable.
    #[error("bad OAP response from {name}: {source}")]
    BadResponse {
        /// The name.
        name: String,
        /// What is wrong with it.
        #[source]
        source: OapError,
    },
    /// The peer's certificate or signature does not check out.
    #[error("bad OAP response from {name}: {why}")]
    Unauthenticated {
        /// The name.
        name: String,
        /// Why.
        why: String,
    },
    /// This host's security settings for the name are unusable.
    #[error("{0}")]
    Settings(String),
    /// A limit of this daemon (`--max-flows`, `--max-flows-per-peer`,
    /// `--max-flows-per-process`).
    #[error("{0}")]
    Limit(String),
    /// The flow's shared memory could not be made.
    #[error("flow memory: {0}")]
    Memory(#[source] std::io::Error),
    /// The data plane could not install the flow.
    #[error("the data plane cannot install the flow: {0}")]
    Install(String),
    /// The app's descriptors could not be made.
    #[error("cannot duplicate descriptors")]
    Descriptors,
    /// Too much in progress already (a bounded queue or pool is full).
    #[error("{0}")]
    Busy(String),
    /// A failure of this daemon (see its log).
    #[error("{0}")]
    Internal(String),
}

impl FlowError {
    /// The code the app's library gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoLayer { .. } | Self::UnknownName { .. } => ErrorCode::UnknownName,
            Self::Layer {
                source: ShimError::NoEid,
                ..
            } => ErrorCode::NoResources,
            Self::Layer { .. } | Self::Busy(_) => ErrorCode::Busy,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::Refused { .. } => ErrorCode::Refused,
            Self::BadResponse { .. } | Self::Unauthenticated { .. } => ErrorCode::Security,
            Self::Settings(_) => ErrorCode::Invalid,
            Self::Limit(_) | Self::Memory(_) | Self::Install(_) | Self::Descriptors => {
                ErrorCode::NoResources
            }
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn codes_and_sources() {
        let e = FlowError::Layer {
            ipcp: "e".into(),
            source: ShimError::NoEid,
        };
        assert_eq!(e.code(), ErrorCode::NoResources);
        assert!(matches!(
            e.source().and_then(|s| s.downcast_ref::<ShimError>()),
            Some(ShimError::NoEid)
        ));
        let busy = FlowError::Layer {
            ipcp: "e".into(),
            source: ShimError::Busy {
                what: "name queries",
                limit: 1,
            },
        };
        assert_eq!(busy.code(), ErrorCode::Busy);
        let bad = FlowError::BadResponse {
            name: "n".into(),
            source: OapError::IdMismatch,
        };
        assert_eq!(bad.code(), ErrorCode::Security);
        assert_eq!(
            bad.to_string(),
            "bad OAP response from n: its id is not our request's"
        );
        assert!(matches!(
            bad.source().and_then(|s| s.downcast_ref::<OapError>()),
            Some(OapError::IdMismatch)
        ));
        let r = FlowError::Refused {
            name: "n".into(),
            response: -1,
        };
        assert_eq!(
            (r.code(), r.to_string()),
            (
                ErrorCode::Refused,
                "n refused the flow (response -1)".into()
            )
        );
    }
}
