//! The messages apps and `o7sctl` exchange with `o7sd` (JSON over [`crate::ipc`]).

use o7s_wire::qos::QosSpec;
use serde::{Deserialize, Serialize};

/// Default path of the daemon's socket, under the runtime directory.
pub const DEFAULT_RUNDIR: &str = "/run/o7s";
/// Socket file name inside the runtime directory.
pub const SOCKET_NAME: &str = "o7sd.sock";
/// Environment variable naming the runtime directory (several daemons on one host).
pub const RUNDIR_ENV: &str = "O7S_RUNDIR";

/// The daemon socket path for `rundir` (or `$O7S_RUNDIR`, or the default).
pub fn socket_path(rundir: Option<&std::path::Path>) -> std::path::PathBuf {
    let dir = rundir
        .map(std::path::Path::to_path_buf)
        .or_else(|| std::env::var_os(RUNDIR_ENV).map(std::path::PathBuf::from))
        .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_RUNDIR));
    dir.join(SOCKET_NAME)
}

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Allocate a flow to `name`.
    Alloc {
        /// Destination name.
        name: String,
        /// Requested QoS.
        qos: QosSpec,
        /// Give up after this many ms.
        timeout_ms: u64,
    },
    /// Join broadcast layer `layer` (the reference's `flow_join`): what the process writes
    /// goes to every other member of the layer, and it reads what they write.
    Join {
        /// The broadcast layer's name (or its IPCP's).
        layer: String,
    },
    /// Accept the next flow for a name this process is bound to.
    Accept {
        /// Give up after this many ms (`None`: wait forever).
        timeout_ms: Option<u64>,
    },
    /// An `o7sctl` command.
    Ctl(Ctl),
}

/// `o7sctl` commands (the reference `irm` verbs and views).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Ctl {
    /// List layers (IPCPs).
    IpcpList,
    /// The unicast IPCPs' forwarding tables: destination, next hop, alternates.
    RouteList,
    /// The unicast IPCPs' link-state databases.
    LsdbList,
    /// The unicast IPCPs' directory entries (DHT).
    DhtList,
    /// Create a layer instance.
    IpcpCreate {
        /// IPCP name.
        name: String,
        /// Type (eth-dix, eth-llc, ...).
        kind: String,
    },
    /// Bootstrap an IPCP into a layer.
    IpcpBootstrap {
        /// IPCP name.
        name: String,
        /// Layer name.
        layer: String,
        /// Type-specific settings (`dev`, `ethertype`, `hash`).
        settings: std::collections::BTreeMap<String, String>,
    },
    /// Enrol a unicast IPCP (created if missing) through the member named `dst`.
    IpcpEnroll {
        /// IPCP name.
        name: String,
        /// The member to enrol through.
        dst: String,
        /// Bind the IPCP's and the layer's names to it (others may enrol or connect).
        #[serde(default)]
        autobind: bool,
    },
    /// Connect a unicast IPCP's components to the member named `dst`.
    IpcpConnect {
        /// IPCP name.
        name: String,
        /// The member.
        dst: String,
        /// `mgmt` or `dt` (none: Management, then DT).
        #[serde(default)]
        component: Option<String>,
    },
    /// Tear down a unicast IPCP's connections to member `dst` (its name, for a connection
    /// this IPCP made, or its address as `route list` shows it): their N-1 flows are
    /// deallocated and leave link state.
    IpcpDisconnect {
        /// IPCP name.
        name: String,
        /// The member.
        dst: String,
        /// `mgmt` or `dt` (none: both).
        #[serde(default)]
        component: Option<String>,
    },
    /// The unicast IPCPs' neighbours: Management and DT connections.
    NeighbourList,
    /// Destroy an IPCP.
    IpcpDestroy {
        /// IPCP name.
        name: String,
    },
    /// Create a name.
    NameCreate {
        /// The name.
        name: String,
        /// `spill` or `round-robin`.
        lb: Option<String>,
    },
    /// Destroy a name.
    NameDestroy {
        /// The name.
        name: String,
    },
    /// List names.
    NameList,
    /// Register a name in IPCPs or layers.
    NameRegister {
        /// The name.
        name: String,
        /// IPCP or layer names.
        targets: Vec<String>,
    },
    /// Unregister a name.
    NameUnregister {
        /// The name.
        name: String,
        /// IPCP or layer names.
        targets: Vec<String>,
    },
    /// Bind a program to a name.
    BindProgram {
        /// Program path.
        prog: String,
        /// Name.
        name: String,
        /// Start it when a flow arrives and nobody accepts.
        auto: bool,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Unbind a program.
    UnbindProgram {
        /// Program path.
        prog: String,
        /// Name.
        name: String,
    },
    /// Bind a process to a name.
    BindProcess {
        /// Process id.
        pid: i32,
        /// Name.
        name: String,
    },
    /// Unbind a process.
    UnbindProcess {
        /// Process id.
        pid: i32,
        /// Name.
        name: String,
    },
    /// Ports of the data plane (device, MTU, I/O path).
    PortList,
    /// The eth layers' name caches.
    CacheList,
    /// Flows with counters.
    FlowList,
    /// The data plane's workers with their counters.
    WorkerList,
    /// Daemon-wide counters (dropped frames and why, ...).
    Stats,
    /// Capture what a port (a port id, device or IPCP name) sends and receives, or one
    /// flow's frames: the daemon answers [`Reply::Capturing`] with the capture ring, and
    /// the capture runs until the client closes the connection.
    Capture {
        /// Port id, device name or IPCP name.
        target: String,
        /// Only this flow's data frames.
        #[serde(default)]
        flow: Option<u64>,
        /// Bytes kept of each frame.
        snaplen: u32,
        /// Frames the client wants (it counts them itself; 0: until it goes).
        count: u64,
    },
    /// Set a port's egress cap and queue (issue 22): what the data plane sends on its
    /// N-1 flows of unicast layers waits in a queue per N-1 flow and leaves at most at
    /// `rate` ("100M", "0" for none); `queue` bounds each queue. Unset values are kept.
    PortSet {
        /// Port id, device name or IPCP name.
        target: String,
        /// The cap, as o7sctl was given it.
        #[serde(default)]
        rate: Option<String>,
        /// Most PDUs waiting per N-1 flow.
        #[serde(default)]
        queue: Option<u32>,
        /// Impairments of the data frames the port receives (issue 27), as o7sctl was
        /// given them: `loss` ("1%"), `dup`, `reorder` (rates), `delay` ("5ms"); "0" removes.
        #[serde(default)]
        loss: Option<String>,
        /// Duplicated, as a rate.
        #[serde(default)]
        dup: Option<String>,
        /// Held back behind later frames, as a rate.
        #[serde(default)]
        reorder: Option<String>,
        /// Every frame held this long.
        #[serde(default)]
        delay: Option<String>,
        /// One bit of the SDU flipped, as a rate.
        #[serde(default)]
        corrupt: Option<String>,
    },
    /// Apply a configuration file (names, bindings, IPCPs are added). o7sctl reads the
    /// file with its caller's rights and sends its text: the daemon never opens a path a
    /// client names. An error names the file, line and key, and nothing of it is applied.
    ConfigLoad {
        /// The file's name (for messages only).
        path: String,
        /// Its text (at most [`MAX_CONFIG_BYTES`]); required.
        #[serde(default)]
        content: Option<String>,
    },
}

/// Largest configuration text `config load` sends.
pub const MAX_CONFIG_BYTES: usize = 128 * 1024;
/// Longest name, in bytes (the reference's limit).
pub const MAX_NAME_LEN: usize = 255;

/// Checks a name: 1 to [`MAX_NAME_LEN`] bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a name is at most {MAX_NAME_LEN} bytes; this one has {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a name cannot hold control characters".into());
    }
    Ok(())
}

/// A reply from the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// A flow: its shared memory and kicks travel with the message as
    /// `[memfd, tx kick, rx kick]`.
    Flow(FlowInfo),
    /// Done.
    Ok,
    /// A listing (rows of `column -> value`).
    Table {
        /// Rows.
        rows: Vec<serde_json::Map<String, serde_json::Value>>,
    },
    /// The capture runs: its ring (a memfd, rx direction, [`o7s_abi::msg::CaptureRecord`]s)
    /// travels with the message; close the connection to stop it.
    Capturing {
        /// Bytes kept of each frame.
        snaplen: u32,
    },
    /// Failure.
    Error {
        /// Kind of failure.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
}

/// What an allocated or accepted flow is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowInfo {
    /// Flow id (daemon-wide).
    pub id: u64,
    /// The name at the other end (the destination for alloc, our name for accept).
    pub name: String,
    /// QoS of the flow.
    pub qos: QosSpec,
    /// Largest SDU.
    pub mtu: usize,
    /// The layer carrying it.
    pub layer: String,
    /// A flow of the local layer: the two processes share one flow memory, with no data
    /// plane between them; each end's drop (`APP_CLOSED`) ends it for the other too.
    #[serde(default)]
    pub local: bool,
    /// This end uses the flow memory's rings the other way round (the accepting end of a
    /// local flow: its tx ring is the allocating end's rx ring).
    #[serde(default)]
    pub swapped: bool,
}

/// Failure kinds (the reference's errno values where one exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No layer knows the name.
    #[error("unknown name")]
    UnknownName,
    /// Timed out.
    #[error("timed out")]
    Timeout,
    /// The peer refused.
    #[error("refused by the peer")]
    Refused,
    /// Bad request.
    #[error("invalid request")]
    Invalid,
    /// No such object.
    #[error("not found")]
    NotFound,
    /// Already exists.
    #[error("already exists")]
    Exists,
    /// Internal failure (see the daemon's log).
    #[error("internal error")]
    Internal,
    /// No resources (flows, memory).
    #[error("out of resources")]
    NoResources,
    /// The caller may not do this (see the daemon's docs/SECURITY.md).
    #[error("permission denied")]
    Denied,
    /// This side's security check of the peer failed (its certificate, signature or key
    /// exchange): the peer did not refuse, we did.
    #[error("security check failed")]
    Security,
    /// The daemon is too busy to take the request now; try again.
    #[error("busy")]
    Busy,
}
