//! Messages between `o7sd` and the data plane over their channel.

use serde::{Deserialize, Serialize};

/// Byte strings as hex in JSON.
pub mod hexbytes {
    use serde::{Deserialize, Deserializer, Serializer};
    /// Serialises as a hex string.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    /// Parses a hex string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// How a port frames SDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortKind {
    /// eth-dix with this Ethertype.
    Dix {
        /// Ethertype.
        ethertype: u16,
    },
    /// eth-llc.
    Llc,
    /// udp4/udp6 bound to this address and port.
    Udp {
        /// Local address and port.
        addr: std::net::SocketAddr,
    },
}

/// A flow's cipher and key (OAP's result). Its `Debug` leaves the key out: a message
/// logged with `{:?}` (an `AddFlow` for a port no worker has) must not write it.
#[derive(Clone, Serialize, Deserialize)]
pub struct CryptSpec {
    /// OpenSSL NID of the AEAD.
    pub cipher: u16,
    /// The 32-byte key.
    #[serde(with = "hexbytes")]
    pub key: Vec<u8>,
    /// Rotate the key every 2^bits packets (20 as the reference).
    pub rotation_bits: u32,
}

impl std::fmt::Debug for CryptSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptSpec")
            .field("cipher", &self.cipher)
            .field(
                "key",
                &format_args!("<{} bytes, not shown>", self.key.len()),
            )
            .field("rotation_bits", &self.rotation_bits)
            .finish()
    }
}

/// The DT end of a flow over a unicast IPCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniFlowSpec {
    /// The IPCP (as in [`ToDp::UniTable`]).
    pub ipcp: u32,
    /// The peer IPCP's address.
    pub dst: u32,
    /// Our endpoint id (PDUs with it come to this flow).
    pub local_eid: u64,
    /// The peer's endpoint id (put in the PCI of what we send).
    pub remote_eid: u64,
    /// The TTL of what we send (the layer's max_ttl).
    pub ttl: u8,
    /// The layer runs MB-ECN (`congestion = "mb-ecn"`, the default): the worker echoes
    /// the congestion the flow's PDUs met in FLOW_UPDATEs and paces what it sends by the
    /// echo it gets (`o7s_proto::mbecn`).
    #[serde(default)]
    pub mb_ecn: bool,
}

/// Counters of a unicast IPCP's DT path in the data plane.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UniStats {
    /// The IPCP.
    pub ipcp: u32,
    /// PDUs forwarded to another IPCP (TTL decremented).
    pub forwarded: u64,
    /// PDUs delivered to an N+1 flow's ring.
    pub delivered: u64,
    /// PDUs for its components (flow allocator, directory) handed to o7sd.
    pub to_o7sd: u64,
    /// SDUs of its N+1 flows sent in PDUs.
    pub sent: u64,
    /// Dropped: shorter than a PCI.
    pub drop_short: u64,
    /// Dropped: TTL ran out here.
    pub drop_ttl: u64,
    /// Dropped: no route to the destination.
    pub drop_no_route: u64,
    /// Dropped: for us, to an endpoint id that is no flow.
    pub drop_unknown_eid: u64,
    /// Dropped: for us, to an endpoint id below 64 that no component has.
    pub drop_reserved_eid: u64,
    /// Dropped: for another address, its next hop the neighbour it came from (a loop while
    /// routes disagree, e.g. to a member that restarted with a new address).
    #[serde(default)]
    pub drop_loop: u64,
    /// Dropped: the next hop's N-1 flow or the N+1 flow is gone, on another worker (an
    /// N+1 flow's), or its port did not take the frame.
    pub drop_n1: u64,
    /// PDUs to forward whose next hop's N-1 flow is on another worker: handed to o7sd,
    /// which forwards them (`dt_forwarded_in_o7sd`).
    #[serde(default)]
    pub via_o7sd: u64,
    /// PDUs handed to another worker of the data plane (its N-1 flow of the next hop, or
    /// the N+1 flow, is there).
    #[serde(default)]
    pub handed_off: u64,
    /// PDUs another worker handed to this one, sent or delivered here.
    #[serde(default)]
    pub handed_in: u64,
    /// PDUs dropped because the other worker's inbox was full.
    #[serde(default)]
    pub drop_handoff: u64,
    /// PDUs forwarded without a copy (between AF_XDP ports sharing a UMEM; counted in
    /// `forwarded` too).
    #[serde(default)]
    pub forwarded_in_place: u64,
    /// PDUs forwarded in place that the packet path decided in one pass
    /// (`packet_path::step_eth`; counted in `forwarded_in_place` too): the rest went the
    /// full path (a next hop without a made header, tables being changed).
    #[serde(default)]
    pub forwarded_one_pass: u64,
    /// FLOW_UPDATEs (MB-ECN) taken by the worker for its flows.
    #[serde(default)]
    pub ca_updates_in: u64,
    /// FLOW_UPDATEs the worker sent for its flows.
    #[serde(default)]
    pub ca_updates_out: u64,
    /// FLOW_UPDATEs for an endpoint id that is no flow of this IPCP: dropped.
    #[serde(default)]
    pub ca_updates_unknown: u64,
    /// FLOW_UPDATEs for a flow that runs no congestion avoidance: dropped.
    #[serde(default)]
    pub ca_updates_ignored: u64,
}

/// `o7sd` to data plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToDp {
    /// Open a port on a device.
    AddPort {
        /// Port id.
        port: u32,
        /// Device name.
        dev: String,
        /// Framing.
        kind: PortKind,
    },
    /// Close a port.
    DelPort {
        /// Port id.
        port: u32,
    },
    /// Send a management message (eid 0 / management SAP) to `dst`.
    SendMgmt {
        /// Port id.
        port: u32,
        /// Destination MAC.
        dst: [u8; 6],
        /// The management message and what follows it.
        #[serde(with = "hexbytes")]
        payload: Vec<u8>,
    },
    /// Send a UDP-layer management datagram (it starts with eid 0) to `dst`.
    SendUdp {
        /// Port id.
        port: u32,
        /// Destination address and port.
        dst: std::net::SocketAddr,
        /// The datagram.
        #[serde(with = "hexbytes")]
        payload: Vec<u8>,
    },
    /// Install a flow; the message carries `[memfd, tx kick, rx kick]`.
    AddFlow {
        /// Flow id.
        flow: u64,
        /// Port id.
        port: u32,
        /// Our endpoint id (eid or SAP).
        local: u32,
        /// The peer's endpoint id.
        remote: u32,
        /// The peer's MAC.
        peer: [u8; 6],
        /// Peer time-out.
        timeout_ms: u64,
        /// The peer's address (UDP layers).
        #[serde(default)]
        peer_addr: Option<std::net::SocketAddr>,
        /// Encryption of the flow's SDUs, when OAP agreed on a key.
        #[serde(default)]
        crypt: Option<CryptSpec>,
        /// The app's process: the data plane frees the flow when it exits (a pidfd), also
        /// while no o7sd runs.
        #[serde(default)]
        pid: i32,
        /// o7sd's record of the flow (opaque to the data plane), handed back to the o7sd
        /// that adopts it ([`FromDp::Adopted`]).
        #[serde(default)]
        record: String,
        /// For a flow over a unicast IPCP (an N+1 flow of the layer): its DT end. Its SDUs
        /// go out with a DT PCI on the N-1 flow of the next hop, PDUs for its endpoint id
        /// come to its rx ring; `port`, `local`, `remote` and `peer` are unused then
        /// (`port` is the next hop's port, which places the flow on that port's worker).
        #[serde(default)]
        uni: Option<UniFlowSpec>,
    },
    /// The forwarding state of unicast IPCP `ipcp` (issue 15): its address, the N-1 flow
    /// towards each destination, and which flows are its DT N-1 flows (PDUs arriving on
    /// them are forwarded, delivered or handed to o7sd by the worker). Replaces the
    /// previous one between two turns of the worker; an empty `n1` takes the IPCP away.
    UniTable {
        /// The IPCP.
        ipcp: u32,
        /// Its address.
        own: u32,
        /// (destination address, N-1 flow of the next hop).
        next_hop: Vec<(u32, u64)>,
        /// Its DT N-1 flows.
        n1: Vec<u64>,
    },
    /// Set port `port`'s egress shaping (`o7sctl port set`, `rate`/`queue` in the layer's
    /// table): what the worker sends on its N-1 flows of a unicast layer waits in a
    /// queue per N-1 flow, bounded, and leaves at most at `rate_bps` (0: no cap, sent at
    /// once). `None` keeps the value as it is.
    PortSet {
        /// Port id.
        port: u32,
        /// Bits per second, 0 for none.
        #[serde(default)]
        rate_bps: Option<u64>,
        /// Most packets waiting per N-1 flow.
        #[serde(default)]
        queue: Option<u32>,
        /// Received data frames lost, per million ([`crate::impair`]).
        #[serde(default)]
        loss_ppm: Option<u32>,
        /// Received data frames delivered twice, per million.
        #[serde(default)]
        dup_ppm: Option<u32>,
        /// Received data frames held back behind later ones, per million.
        #[serde(default)]
        reorder_ppm: Option<u32>,
        /// Every received data frame held this long, microseconds.
        #[serde(default)]
        delay_us: Option<u32>,
        /// Received data frames with one bit of their SDU flipped, per million.
        #[serde(default)]
        corrupt_ppm: Option<u32>,
    },
    /// Remove a flow.
    DelFlow {
        /// Flow id.
        flow: u64,
    },
    /// Give a flow new shared memory; the message carries `[memfd, tx kick, rx kick]`. An
    /// o7sd that adopted the data plane takes back its own N-1 flows this way (the old
    /// memory was the previous o7sd's); what waited in the old rings is dropped.
    FlowMem {
        /// Flow id.
        flow: u64,
    },
    /// Report counters.
    Stats,
    /// Start copying what port `port` sends and receives (only flow `flow`'s frames when
    /// given), each frame cut to `snaplen` bytes, into the capture ring the message carries
    /// (a memfd laid out as a flow's memory; its rx ring; each SDU a [`CaptureRecord`]
    /// header and the frame's bytes; frames that do not fit are counted in its counter).
    CaptureStart {
        /// Capture id (o7sd's).
        id: u64,
        /// Port id.
        port: u32,
        /// Only this flow's frames (its data; no management frames).
        #[serde(default)]
        flow: Option<u64>,
        /// Bytes kept of each frame.
        snaplen: u32,
    },
    /// Stop capture `id`.
    CaptureStop {
        /// Capture id.
        id: u64,
    },
    /// Exit.
    Shutdown,
    /// A new o7sd takes over a data plane whose o7sd went away: the data plane answers
    /// with [`FromDp::Adopted`] (its ports and flows) and takes this connection as its
    /// control channel.
    Adopt,
}

/// Data plane to `o7sd`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum FromDp {
    /// A port is open.
    PortUp {
        /// Port id.
        port: u32,
        /// Device MAC.
        mac: [u8; 6],
        /// Layer MTU (device MTU; lo capped at 9000).
        mtu: usize,
        /// The I/O path in use and why.
        io_path: String,
    },
    /// A port could not be opened.
    PortError {
        /// Port id.
        port: u32,
        /// Why.
        error: String,
    },
    /// A management message arrived.
    Mgmt {
        /// Port id.
        port: u32,
        /// Source MAC.
        src: [u8; 6],
        /// Destination MAC.
        dst: [u8; 6],
        /// The message and what follows it.
        #[serde(with = "hexbytes")]
        payload: Vec<u8>,
    },
    /// A UDP-layer management datagram arrived.
    UdpMgmt {
        /// Port id.
        port: u32,
        /// Source address.
        src: std::net::SocketAddr,
        /// The datagram (starting with eid 0).
        #[serde(with = "hexbytes")]
        payload: Vec<u8>,
    },
    /// A flow is installed (its memory mapped).
    FlowAdded {
        /// Flow id.
        flow: u64,
    },
    /// A flow could not be installed.
    FlowError {
        /// Flow id.
        flow: u64,
        /// Why.
        error: String,
    },
    /// A flow timed out (no traffic from the peer within its time-out).
    FlowDown {
        /// Flow id.
        flow: u64,
    },
    /// Counters.
    Stats(DpStats),
    /// Capture `id` cannot run (no such port or flow, or not an Ethernet port).
    CaptureRefused {
        /// Capture id.
        id: u64,
        /// Why.
        error: String,
    },
    /// Capture `id` runs.
    CaptureStarted {
        /// Capture id.
        id: u64,
    },
    /// The first message on a connection to the data plane's socket: who it is, and
    /// whether it can be adopted (it has no o7sd).
    Hello {
        /// Its [`crate::ABI_VERSION`].
        abi: u32,
        /// Its process id.
        pid: u32,
        /// It has an o7sd already: the connection is closed after this message.
        busy: bool,
    },
    /// What a data plane adopted by a new o7sd has (the answer to [`ToDp::Adopt`]).
    Adopted {
        /// Its ports.
        ports: Vec<AdoptedPort>,
        /// Its flows.
        flows: Vec<AdoptedFlow>,
    },
    /// A flow was removed by the data plane: its app exited or let it go.
    FlowGone {
        /// Flow id.
        flow: u64,
        /// Why.
        why: String,
    },
}

/// A port of a data plane being adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedPort {
    /// Port id (the first o7sd's).
    pub port: u32,
    /// Device (or `ip:port` for udp).
    pub dev: String,
    /// What it carries.
    pub kind: PortKind,
    /// Device MAC.
    pub mac: [u8; 6],
    /// Layer MTU.
    pub mtu: usize,
    /// The I/O path in use.
    pub io_path: String,
}

/// A flow of a data plane being adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedFlow {
    /// Flow id.
    pub flow: u64,
    /// Port id.
    pub port: u32,
    /// Our endpoint id.
    pub local: u32,
    /// The peer's endpoint id.
    pub remote: u32,
    /// The peer's MAC.
    pub peer: [u8; 6],
    /// The peer's address (udp).
    pub peer_addr: Option<std::net::SocketAddr>,
    /// The app's process.
    pub pid: i32,
    /// Peer time-out.
    pub timeout_ms: u64,
    /// o7sd's record, as it gave it.
    pub record: String,
    /// A flow over a unicast IPCP: its DT end (with the full 64-bit endpoint ids).
    #[serde(default)]
    pub uni: Option<UniFlowSpec>,
}

/// The header of a frame in a capture ring: `ts_ns(8) len(4) tx(1) pad(3)`, native byte
/// order, then the frame's first `snaplen` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureRecord {
    /// When, in ns since the UNIX epoch.
    pub ts_ns: u64,
    /// The frame's length on the wire.
    pub len: u32,
    /// Sent (true) or received.
    pub tx: bool,
}

impl CaptureRecord {
    /// Bytes of the header.
    pub const LEN: usize = 16;

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let (ts, rest) = b.split_at_mut(8);
        ts.copy_from_slice(&self.ts_ns.to_ne_bytes());
        let (len, rest) = rest.split_at_mut(4);
        len.copy_from_slice(&self.len.to_ne_bytes());
        if let Some(t) = rest.first_mut() {
            *t = u8::from(self.tx);
        }
        b
    }

    /// Splits a ring SDU into its header and the frame's bytes.
    pub fn parse(sdu: &[u8]) -> Option<(Self, &[u8])> {
        let (h, data) = (sdu.get(..Self::LEN)?, sdu.get(Self::LEN..)?);
        let ts_ns = u64::from_ne_bytes(h.get(..8)?.try_into().ok()?);
        let len = u32::from_ne_bytes(h.get(8..12)?.try_into().ok()?);
        Some((
            Self {
                ts_ns,
                len,
                tx: h.get(12) == Some(&1),
            },
            data,
        ))
    }
}

/// Counters of one port.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortStats {
    /// Port id.
    pub port: u32,
    /// Device.
    pub dev: String,
    /// MAC.
    pub mac: String,
    /// MTU.
    pub mtu: usize,
    /// I/O path.
    pub io_path: String,
    /// The device's state as the data plane last saw it: "up", or "down: " and why (the
    /// device is gone or was replaced); "-" for UDP ports.
    #[serde(default)]
    pub link: String,
    /// Frames received for this layer.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Management frames passed to o7sd.
    pub rx_mgmt: u64,
    /// Dropped: no flow with that endpoint id.
    pub drop_unknown_eid: u64,
    /// Dropped: malformed (bad length, truncated header).
    pub drop_malformed: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Dropped: datagram shorter than its header, or cut.
    pub drop_truncated: u64,
    /// Dropped: data for a flow from an address (IP and port, or MAC) that is not the
    /// flow's peer.
    pub drop_wrong_peer: u64,
    /// Management frames dropped: their source sent more than its rate allows.
    #[serde(default)]
    pub drop_mgmt_rate_source: u64,
    /// Management frames dropped: the port received more than its rate allows.
    #[serde(default)]
    pub drop_mgmt_rate_port: u64,
    /// Management frames dropped: o7sd was behind (its queue was full).
    #[serde(default)]
    pub drop_mgmt_backlog: u64,
    /// Egress cap on what the worker sends on the port's N-1 flows, bit/s (0: none).
    #[serde(default)]
    pub rate_bps: u64,
    /// Most PDUs waiting per N-1 flow under the cap.
    #[serde(default)]
    pub queue_limit: u32,
    /// PDUs waiting now.
    #[serde(default)]
    pub queued: u64,
    /// Impairment of received data frames (`o7sctl port set ... loss`): lost per million.
    #[serde(default)]
    pub impair_loss_ppm: u32,
    /// Duplicated per million (`dup`).
    #[serde(default)]
    pub impair_dup_ppm: u32,
    /// Held back behind later ones per million (`reorder`).
    #[serde(default)]
    pub impair_reorder_ppm: u32,
    /// Every one held this long, microseconds (`delay`).
    #[serde(default)]
    pub impair_delay_us: u32,
    /// One bit of the SDU flipped per million (`corrupt`).
    #[serde(default)]
    pub impair_corrupt_ppm: u32,
    /// Received data frames the impairments corrupted.
    #[serde(default)]
    pub impair_corrupted: u64,
    /// Received data frames the impairments dropped as lost.
    #[serde(default)]
    pub impair_lost: u64,
    /// Received data frames they delivered twice.
    #[serde(default)]
    pub impair_duplicated: u64,
    /// Received data frames they held for the delay.
    #[serde(default)]
    pub impair_delayed: u64,
    /// Received data frames they held back behind later ones.
    #[serde(default)]
    pub impair_reordered: u64,
    /// Received data frames dropped because the held queue was full.
    #[serde(default)]
    pub impair_held_full: u64,
    /// The most that ever waited on one N-1 flow.
    #[serde(default)]
    pub queued_max: u64,
    /// PDUs sent through the queue (they waited for the cap).
    #[serde(default)]
    pub shaped: u64,
    /// PDUs dropped: their N-1 flow's queue was full.
    #[serde(default)]
    pub drop_queue_full: u64,
    /// PDUs dropped from the port's queue: their N-1 flow went before they could leave.
    #[serde(default)]
    pub drop_flow_gone: u64,
    /// UDP ports: batches the kernel refused to segment (GSO) and that went one datagram
    /// at a time (segments longer than the path's MTU).
    #[serde(default)]
    pub gso_refused: u64,
    /// PDUs whose ECN byte this port's queue raised (16 or more waiting).
    #[serde(default)]
    pub ecn_marked: u64,
    /// Management frames dropped: multicast or all-zero source address.
    #[serde(default)]
    pub drop_mgmt_bad_source: u64,
    /// Frames or datagrams the kernel dropped before the data plane read them (the
    /// AF_PACKET management socket's or the udp socket's receive buffer was full).
    #[serde(default)]
    pub drop_socket_buffer: u64,
    /// Frames received through the AF_XDP socket.
    pub rx_xdp: u64,
    /// Frames sent through the AF_XDP socket.
    pub tx_xdp: u64,
    /// Frames the AF_XDP socket could not take (no free UMEM frame or ring slot).
    pub tx_xdp_dropped: u64,
    /// Data frames the XDP program redirected to the socket.
    pub xdp_redirected: u64,
    /// Management frames the XDP program passed to the kernel.
    pub xdp_mgmt_passed: u64,
    /// UMEM frames back in the data plane's or the kernel's receive pool (all of them when
    /// nothing leaked; 0 without AF_XDP).
    pub umem_frames_accounted: u32,
    /// Frames in the UMEM (8192 per RX queue + 4096 for sending; 0 without AF_XDP).
    #[serde(default)]
    pub umem_frames: u32,
    /// Frames received through the AF_XDP socket of each RX queue.
    #[serde(default)]
    pub rx_xdp_per_queue: Vec<u64>,
    /// Fill-ring wake-ups the kernel asked for (need_wakeup; zero-copy drivers).
    #[serde(default)]
    pub xdp_fill_wakeups: u64,
    /// Writes of the AF_XDP tx ring: one reservation and producer update per batch of
    /// frames (`tx_xdp / xdp_tx_batches` frames per write).
    #[serde(default)]
    pub xdp_tx_batches: u64,
    /// Kernel wake-ups for sending (sendto(2) on the AF_XDP socket).
    #[serde(default)]
    pub xdp_tx_wakeups: u64,
    /// Frames the kernel dropped on their way to the AF_XDP sockets for want of a buffer
    /// (the fill ring was empty) or for being longer than a UMEM frame (XDP_STATISTICS
    /// `rx_dropped`).
    #[serde(default)]
    pub xdp_rx_dropped: u64,
    /// Frames the kernel dropped because a socket's rx ring was full: the worker fell
    /// behind (XDP_STATISTICS `rx_ring_full`).
    #[serde(default)]
    pub xdp_rx_ring_full: u64,
    /// Times the kernel found a fill ring empty (XDP_STATISTICS `rx_fill_ring_empty_descs`).
    #[serde(default)]
    pub xdp_fill_ring_empty: u64,
    /// Ring descriptors the kernel refused (rx and tx `invalid_descs`): zero unless the data
    /// plane wrote a bad one.
    #[serde(default)]
    pub xdp_invalid_descs: u64,
    /// The worker that owns the port (0 with one worker).
    #[serde(default)]
    pub worker: u32,
    /// Its device's RX queues and the worker that serves each (AF_XDP ports of a data
    /// plane with several workers; empty otherwise).
    #[serde(default)]
    pub rx_queues: Vec<RxQueue>,
    /// Frames received on queues served by another worker (each handed to the owner, or
    /// dropped: `queue_relay_dropped`). They are counted in `rx_xdp` and
    /// `rx_xdp_per_queue` too.
    #[serde(default)]
    pub queue_relayed: u64,
    /// Such frames dropped because the owner's inbox was half full (the other half is kept
    /// for PDUs other workers hand over).
    #[serde(default)]
    pub queue_relay_dropped: u64,
}

/// One RX queue of an AF_XDP port's device (issue 23 item 4: queues over workers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxQueue {
    /// The device's queue index.
    pub queue: u32,
    /// The worker whose AF_XDP socket receives it.
    pub worker: u32,
    /// Whether that socket is up.
    pub state: RxQueueState,
    /// Frames received on it.
    pub rx: u64,
}

/// The state of an RX queue's AF_XDP socket ([`RxQueue`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RxQueueState {
    /// Received by the port's own worker.
    Owner,
    /// Asked of another worker, not bound yet.
    Starting,
    /// Received by another worker, whose frames go to the owner.
    Relayed,
    /// Its worker could not bind it: its frames go up the kernel's stack to the port's
    /// AF_PACKET socket, which the owner reads.
    Failed(String),
}

/// Counters of one flow.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlowStats {
    /// Flow id.
    pub flow: u64,
    /// Port id.
    pub port: u32,
    /// Local endpoint id.
    pub local: u32,
    /// Remote endpoint id.
    pub remote: u32,
    /// SDUs delivered to the app.
    pub rx_sdus: u64,
    /// Bytes delivered.
    pub rx_bytes: u64,
    /// SDUs sent.
    pub tx_sdus: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Dropped because the app's ring was full.
    pub drop_ring_full: u64,
    /// Dropped because the app wrote something impossible into its ring.
    pub drop_ring_corrupt: u64,
    /// Dropped: did not decrypt (corrupted or forged).
    pub drop_decrypt: u64,
    /// Encrypted (cipher NID), 0 when not.
    pub cipher: u16,
    /// Key rotations done by the sender side.
    pub key_rotations: u64,
    /// Peer timed out.
    pub down: bool,
    /// Keepalives sent: empty SDUs, when the app has sent nothing for a quarter of the
    /// flow's peer timeout (so that a one-way or idle flow stays up at the peer).
    #[serde(default)]
    pub tx_keepalives: u64,
    /// Keepalives received (empty SDUs: they keep the flow up and are not given to the app).
    #[serde(default)]
    pub rx_keepalives: u64,
    /// MB-ECN state of a flow over a unicast layer that runs it.
    #[serde(default)]
    pub ca: Option<CaStats>,
    /// FRCP state of a flow whose QoS cube runs it, as the app's library publishes it in
    /// the flow memory (untrusted: shown, never acted on).
    #[serde(default)]
    pub frcp: Option<FrcpStats>,
    /// The app's CRC32 trailer (cubes with `ber` 0): SDUs that failed it; `None`: no CRC.
    #[serde(default)]
    pub crc_errors: Option<u32>,
}

/// A flow end's FRCP (run by the app library; `o7s_proto::frcp`), as `o7sctl flow list`
/// shows it. Counters are the low 32 bits (they wrap).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrcpStats {
    /// Retransmission on (the cube's `loss` is 0), else in-order delivery only.
    pub rtx: bool,
    /// The retransmission timeout, microseconds.
    pub rto_us: u32,
    /// The smoothed round-trip time, microseconds (0: no sample yet).
    pub srtt_us: u32,
    /// Packets sent and not yet acknowledged.
    pub in_flight: u32,
    /// Packets the peer's window lets us send beyond what is acknowledged.
    pub window: u32,
    /// Data packets sent the first time.
    pub sent: u32,
    /// Data packets sent again.
    pub retransmits: u32,
    /// SDUs handed to the app, in order.
    pub delivered: u32,
    /// Data packets received again (duplicates dropped).
    pub duplicates: u32,
    /// PDUs from the peer refused or ignored: shorter than the header, acknowledging
    /// what was never sent, a window edge far from ours.
    #[serde(default)]
    pub bad: u32,
}

/// A flow's MB-ECN state and counters (both ends: what it sends and what it echoes).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaStats {
    /// The window as a rate: bytes per slot, in bits per second.
    pub rate_bps: u64,
    /// The window in use: bytes per slot (less the echoed level's part:
    /// `o7s_proto::mbecn::Sender::window`).
    pub window_bytes: u64,
    /// The slot's length, ns.
    pub slot_ns: u64,
    /// In congestion avoidance (left slow start).
    pub cav: bool,
    /// The congestion level the peer last echoed (0: none, or forgotten after 32 packets).
    pub tx_ece: u16,
    /// The congestion level this end echoes for what it receives.
    pub rx_ece: u16,
    /// FLOW_UPDATEs taken from the peer.
    pub updates_in: u64,
    /// FLOW_UPDATEs from the peer ignored: more than the PDUs sent to it (forged).
    #[serde(default)]
    pub updates_refused: u64,
    /// FLOW_UPDATEs sent to the peer.
    pub updates_out: u64,
    /// PDUs received with a non-zero ECN byte.
    pub rx_marked: u64,
    /// Times the writer was held until the next slot.
    pub waits: u64,
}

/// All counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DpStats {
    /// Ports.
    pub ports: Vec<PortStats>,
    /// Flows.
    pub flows: Vec<FlowStats>,
    /// The worker: its CPU and how it polls (the first one when there are several).
    #[serde(default)]
    pub worker: WorkerInfo,
    /// Every worker, when there are several (`o7sd --core 0,1`); empty with one.
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
    /// Unicast IPCPs' DT path, per IPCP (summed over workers).
    #[serde(default)]
    pub uni: Vec<UniStats>,
}

/// How the data plane's worker runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The CPU it is pinned to, if any.
    pub core: Option<usize>,
    /// Why pinning failed, if it was asked for and failed.
    pub pin_error: Option<String>,
    /// It never sleeps (busy polling).
    pub busy_poll: bool,
    /// How long it keeps polling after the last packet before it sleeps, in µs.
    pub spin_us: u64,
    /// Times it gave up the CPU because an app's rx ring was more than half full.
    #[serde(default)]
    pub yields_for_apps: u64,
    /// Ports it owns.
    #[serde(default)]
    pub ports: u32,
    /// Flows it owns.
    #[serde(default)]
    pub flows: u32,
    /// Frames and datagrams its ports received (management included).
    #[serde(default)]
    pub rx_frames: u64,
    /// Frames and datagrams its ports sent.
    #[serde(default)]
    pub tx_frames: u64,
    /// Times it went to sleep in poll(2) (adaptive polling, idle).
    #[serde(default)]
    pub sleeps: u64,
    /// DT PDUs between two AF_XDP ports of its UMEM are copied, not forwarded in place
    /// (`O7S_DP_FORWARD_COPY=1`, for comparison).
    #[serde(default)]
    pub forward_copy: bool,
    /// RX queues of other workers' ports it binds, and frames it received on them and
    /// handed to their owners (`crate::msg::PortStats::rx_queues`).
    #[serde(default)]
    pub queues_for_others: u32,
    /// Frames received on those queues.
    #[serde(default)]
    pub relayed_frames: u64,
}
