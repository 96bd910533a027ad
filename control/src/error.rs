//! Why a flow could not be set up, as a type: each cause is a variant (with the error it
//! comes from as its source), its message is what the app and the log read, and
//! [`FlowError::code`] is the code the app's library gets on the wire.

use crate::auth::AuthError;
use crate::replay::ReplayError;
use o7s::proto::ErrorCode;
use o7s_proto::oap::OapError;
use o7s_proto::shim::ShimError;

/// Why a flow could not be allocated or installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The peer refused; the app's message starts with its code's "refused by the peer",
    /// so this says the cause ([`o7s_proto::refusal`]) and not "refused" again.
    #[error("{name} at {peer}: {}", o7s_proto::refusal::describe(*response))]
    Refused {
        /// The name.
        name: String,
        /// Where it was asked (a MAC, an IP address and port, a unicast address).
        peer: String,
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
    #[error("bad OAP response from {name}: {source}")]
    Unauthenticated {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: Box<OapCheckError>,
    },
    /// This host's certificate or key for the name is unusable.
    #[error("{0}")]
    Signer(#[source] AuthError),
    /// This host's enc.conf for the name is unusable.
    #[error("{0}")]
    Settings(#[source] crate::security::EncFileError),
    /// A limit of this daemon (`--max-flows`, `--max-flows-per-peer`,
    /// `--max-flows-per-process`).
    #[error("{0}")]
    Limit(String),
    /// The flow's shared memory could not be made.
    #[error("flow memory: {0}")]
    Memory(#[source] std::io::Error),
    /// The data plane could not install the flow.
    #[error("the data plane cannot install the flow: {0}")]
    Install(#[source] crate::dp::DpError),
    /// The app's descriptors could not be made.
    #[error("cannot duplicate descriptors")]
    Descriptors,
    /// Too much in progress already (a bounded queue or pool is full).
    #[error("{0}")]
    Busy(String),
    /// No broadcast layer of that name to join.
    #[error("{0}")]
    NoBroadcast(String),
    /// The layer cannot give what the flow asks for (its QoS needs what o7s lacks).
    #[error("{0}")]
    Unsupported(String),
    /// The unicast layer has no next hop towards the peer IPCP (now).
    #[error("layer {layer}: no route to the peer IPCP {peer:#010x}")]
    NoRoute {
        /// The layer.
        layer: String,
        /// The peer IPCP's address.
        peer: u64,
    },
    /// No process of this host accepted the name in time (the local layer).
    #[error("{layer}: no process accepted {name} in time: {why}")]
    NoAcceptor {
        /// The name.
        name: String,
        /// The local IPCP.
        layer: String,
        /// Why, as o7sd sees it.
        why: String,
    },
    /// A failure of this daemon (see its log).
    #[error("{0}")]
    Internal(String),
}

impl FlowError {
    /// The code the app's library gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoLayer { .. } | Self::UnknownName { .. } | Self::NoBroadcast(_) => {
                ErrorCode::UnknownName
            }
            Self::Layer {
                source: ShimError::NoEid,
                ..
            } => ErrorCode::NoResources,
            Self::Layer { .. } | Self::Busy(_) | Self::NoRoute { .. } => ErrorCode::Busy,
            Self::Timeout { .. } | Self::NoAcceptor { .. } => ErrorCode::Timeout,
            Self::Refused { .. } => ErrorCode::Refused,
            Self::BadResponse { .. } | Self::Unauthenticated { .. } => ErrorCode::Security,
            Self::Settings(_) | Self::Signer(_) | Self::Unsupported(_) => ErrorCode::Invalid,
            Self::Limit(_) | Self::Memory(_) | Self::Install(_) | Self::Descriptors => {
                ErrorCode::NoResources
            }
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Why a peer's OAP message (a request on the server's side, a response on the client's)
/// is not accepted, or this side cannot answer it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OapCheckError {
    /// The header does not parse.
    #[error("bad OAP header: {0}")]
    Malformed(#[from] o7s_wire::Error),
    /// Its time stamp is ahead of ours.
    #[error("the OAP request is from the future (more than 100 ms ahead)")]
    Future,
    /// Its time stamp is too old.
    #[error("the OAP request is outdated (more than 20 s old)")]
    Outdated,
    /// Seen before (or too many seen).
    #[error("{source} {id}")]
    Replay {
        /// The request's id, in hex.
        id: String,
        /// Why.
        #[source]
        source: ReplayError,
    },
    /// Shorter than its signed part.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// The client's certificate does not verify.
    #[error("client certificate: {0}")]
    ClientCertificate(#[source] AuthError),
    /// The client's signature does not verify.
    #[error("client: {0}")]
    ClientSignature(#[source] AuthError),
    /// The server sent no certificate, and the name's configuration requires one
    /// (`server_auth = "required"`).
    #[error(
        "{0} answered without a certificate, and its configuration says server_auth = \"required\""
    )]
    ServerUnauthenticated(String),
    /// The server's certificate does not verify.
    #[error("server certificate: {0}")]
    ServerCertificate(#[source] AuthError),
    /// The server's signature does not verify.
    #[error("{0}")]
    ServerSignature(#[source] AuthError),
    /// Negotiation or keys (`o7s_proto::oap`).
    #[error("{0}")]
    Oap(#[from] o7s_proto::oap::OapError),
    /// This side's certificate or key for the name.
    #[error("{0}")]
    Signer(#[source] AuthError),
    /// This side's enc.conf for the name.
    #[error("{0}")]
    Settings(#[source] crate::security::EncFileError),
    /// A limit of this daemon.
    #[error("{0}")]
    Limit(#[source] Box<FlowError>),
    /// The peer is not a member of a secured layer (issue 26).
    #[error("{0}")]
    NotMember(#[source] Box<crate::membership::NotMember>),
}

impl From<crate::membership::NotMember> for OapCheckError {
    fn from(e: crate::membership::NotMember) -> Self {
        Self::NotMember(Box::new(e))
    }
}

impl OapCheckError {
    /// The certificate or signature error underneath, if that is the cause.
    pub fn auth(&self) -> Option<&AuthError> {
        match self {
            Self::ClientCertificate(a)
            | Self::ClientSignature(a)
            | Self::ServerCertificate(a)
            | Self::ServerSignature(a)
            | Self::Signer(a) => Some(a),
            _ => None,
        }
    }
}

/// Why an IPCP could not be bootstrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// An IPCP of that name exists.
    #[error("an IPCP named {0} exists")]
    Exists(String),
    /// A setting is missing or wrong.
    #[error("{0}")]
    Setting(String),
    /// The data plane could not open the port (the device, rights, an address in use).
    #[error("cannot open a port on {dev}: {error}")]
    Port {
        /// The device or address.
        dev: String,
        /// The data plane's reason.
        error: String,
    },
    /// The data plane did not answer, or is busy.
    #[error("{0}")]
    DataPlane(#[source] crate::dp::DpError),
    /// o7sd's loop did not take the step (stopping, busy).
    #[error(transparent)]
    Loop(#[from] crate::daemon::LoopGone),
}

impl BootstrapError {
    /// The code o7sctl gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Exists(_) => ErrorCode::Exists,
            Self::Setting(_) | Self::Port { .. } => ErrorCode::Invalid,
            Self::DataPlane(_) => ErrorCode::Internal,
            Self::Loop(l) => loop_code(l),
        }
    }
}

/// The code o7sctl gets when o7sd's loop did not take a step.
fn loop_code(l: &crate::daemon::LoopGone) -> ErrorCode {
    match l {
        crate::daemon::LoopGone::Busy => ErrorCode::Busy,
        _ => ErrorCode::Internal,
    }
}

/// Why an o7sctl request was refused (a variant per kind of cause; its message is what
/// o7sctl prints, [`CtlError::code`] the code on the wire).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// The request is malformed or names something impossible.
    #[error("{0}")]
    Invalid(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What it would create exists.
    #[error("{0}")]
    Exists(String),
    /// A configuration's text does not parse or check (file:line:key inside).
    #[error("configuration refused: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// An IPCP could not be bootstrapped.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The data plane did not answer a question of the request.
    #[error("the data plane did not answer")]
    DataPlaneSilent,
    /// The data plane refused or did not answer.
    #[error("{0}")]
    DataPlane(#[source] crate::dp::DpError),
    /// o7sd's loop did not take the request (stopping, busy).
    #[error(transparent)]
    Loop(#[from] crate::daemon::LoopGone),
    /// Memory or descriptors for it could not be had.
    #[error("{what}: {source}")]
    Resources {
        /// What was being made.
        what: &'static str,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
}

impl CtlError {
    /// The code o7sctl gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::Config(_) => ErrorCode::Invalid,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Exists(_) => ErrorCode::Exists,
            Self::DataPlaneSilent => ErrorCode::Internal,
            Self::DataPlane(crate::dp::DpError::Refused(_)) => ErrorCode::Invalid,
            Self::DataPlane(_) => ErrorCode::Internal,
            Self::Resources { .. } => ErrorCode::NoResources,
            Self::Bootstrap(b) => b.code(),
            Self::Loop(l) => loop_code(l),
        }
    }

    /// The error as o7sctl gets it.
    pub fn reply(&self) -> o7s::proto::Reply {
        o7s::proto::Reply::Error {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn ctl_errors_keep_their_config_source() {
        let e = crate::config::parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\nbogus=1\n",
            "t.toml",
        )
        .err()
        .map(CtlError::from);
        let Some(e) = e else {
            panic!("an unknown key is refused");
        };
        assert!(matches!(e, CtlError::Config(_)));
        assert_eq!(e.code(), ErrorCode::Invalid);
        assert!(e
            .source()
            .is_some_and(|s| s.is::<crate::config::ConfigError>()));
        assert!(
            e.to_string().starts_with("configuration refused: t.toml:4"),
            "{e}"
        );
        assert_eq!(
            CtlError::NotFound("no name x".into()).code(),
            ErrorCode::NotFound
        );
        assert_eq!(CtlError::DataPlaneSilent.code(), ErrorCode::Internal);
        let b = CtlError::from(BootstrapError::Exists("e".into()));
        assert_eq!(
            (b.code(), b.to_string()),
            (ErrorCode::Exists, "an IPCP named e exists".into())
        );
    }

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
            peer: "0x00000002".into(),
            response: o7s_proto::refusal::Refusal::NoAcceptor.response(),
        };
        // What the app prints: its code, then the message; "refused" once.
        let app = format!("{}: {r}", r.code());
        assert_eq!(app.matches("refused").count(), 1, "{app}");
        assert!(
            app.starts_with("refused by the peer: n at 0x00000002: no process accepts flows for it there; start"),
            "{app}"
        );
        let r = FlowError::Refused {
            name: "n".into(),
            peer: "p".into(),
            response: -1,
        };
        assert_eq!(
            r.to_string(),
            "n at p: it gave no reason (response -1); its log says why"
        );
    }
}
