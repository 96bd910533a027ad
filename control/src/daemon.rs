//! The daemon: state, the app/o7sctl request handlers, flow allocation on both sides, and
//! management frames from the data plane.

use crate::config::{Config, IpcpKind, Lb};
use crate::dp::DpHandle;
mod shim_driver;

use crate::eth::{EthIpcp, Peer};
use crate::registry::{exe_of, resolve_prog, Accepted, ProgBind, Registry};
use crate::security::{EncConf, Ephemeral};
use o7s::ipc::{wait_readable, Channel};
use o7s::proto::{Ctl, ErrorCode, FlowInfo, Reply, Request};
use o7s::ring::{FlowMem, Kick, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE};
use o7s_abi::msg::CryptSpec;
use o7s_abi::msg::{FromDp, PortKind, ToDp};
use o7s_wire::ethernet::mac_string;
use o7s_wire::oap::{OapHdr, Role};
use o7s_wire::qos::QosSpec;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
    /// Our endpoint.
    pub local: u32,
    /// Peer's endpoint.
    pub remote: u32,
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
    /// Flows refused: the daemon's or a peer's flow limit.
    pub flow_limit: AtomicU64,
    /// Requests refused: the caller may not do that.
    pub denied: AtomicU64,
    /// Flow requests refused: the name's auto-started program already runs
    /// `MAX_AUTOSTARTED_PER_NAME` times.
    pub autostart_limit: AtomicU64,
    /// Allocations refused: too many name queries in flight.
    pub query_limit: AtomicU64,
    /// FLOW_REQs repeated by their sender (no second flow: ignored, or answered again).
    pub req_duplicate: AtomicU64,
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
    /// Flow requests from the wire not checked yet (the protocol thread takes them).
    fresh: std::collections::VecDeque<shim_driver::Fresh>,
    /// Checked flow requests waiting for an acceptor, in arrival order.
    accept_queue: o7s_proto::accept::AcceptQueue<(usize, o7s_proto::shim::ReqId)>,
    /// What each of them needs when it is served.
    waiting: HashMap<(usize, o7s_proto::shim::ReqId), shim_driver::Waiting>,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    state: Mutex<State>,
    /// Trusted CAs and intermediates (loaded at start).
    trust: Mutex<crate::auth::TrustStore>,
    /// OAP requests seen recently (id -> timestamp), against replays.
    replay: Mutex<crate::replay::ReplayWindow>,
    /// Signalled when a process starts accepting.
    accept_cv: Condvar,
    /// The data plane.
    pub dp: Arc<DpHandle>,
    /// Settings.
    pub settings: Settings,
    /// Counters.
    pub counters: Counters,
    /// Set when shutting down.
    pub stopping: AtomicBool,
    /// Calls of `tick`.
    ticks: AtomicU64,
    /// Capture ids given so far.
    capture_ids: AtomicU64,
}

type Fail = (ErrorCode, String);

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
        let (trust, warnings) = crate::auth::TrustStore::load(&settings.security_dir);
        for w in warnings {
            tracing::warn!("security: {w}");
        }
        let (cas, ints) = trust.counts();
        tracing::info!(
            "Security directory {}: {cas} CA and {ints} intermediate certificates.",
            settings.security_dir.display()
        );
        Arc::new(Self {
            state: Mutex::new(State {
                accept_queue: o7s_proto::accept::AcceptQueue::new(shim_driver::MAX_WAITING),
                ..State::default()
            }),
            trust: Mutex::new(trust),
            replay: Mutex::new(crate::replay::ReplayWindow::default()),
            accept_cv: Condvar::new(),
            dp,
            settings,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            capture_ids: AtomicU64::new(0),
        })
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable).
    pub fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---------------------------------------------------------------- configuration

    /// The certificate and key of `side` for `name`, when both files exist (TOML overrides
    /// `<side>_crt_file`, `<side>_key_file`, else `<security>/<side>/<name>/{crt,key}.pem`).
    fn signer(&self, side: &str, name: &str) -> Result<Option<crate::auth::Signer>, String> {
        let over = |k: &str| {
            self.st().reg.names.get(name).and_then(|e| {
                e.paths
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, p)| p.clone())
            })
        };
        let dir = self.settings.security_dir.join(side).join(name);
        let crt = over(&format!("{side}_crt_file")).unwrap_or_else(|| dir.join("crt.pem"));
        let key = over(&format!("{side}_key_file")).unwrap_or_else(|| dir.join("key.pem"));
        match (crt.exists(), key.exists()) {
            (true, false) => {
                return Err(format!(
                    "{} exists but {} does not: a certificate without its key cannot authenticate {side} {name}",
                    crt.display(),
                    key.display()
                ))
            }
            (false, true) => {
                return Err(format!(
                    "{} exists but {} does not: a key without its certificate cannot authenticate {side} {name}",
                    key.display(),
                    crt.display()
                ))
            }
            _ => {}
        }
        if !crt.exists() || !key.exists() {
            tracing::debug!(
                "File {} or {} does not exist.",
                crt.display(),
                key.display()
            );
            return Ok(None);
        }
        crate::auth::Signer::load(&crt, &key).map(Some)
    }

    /// Replay protection and client authentication of a request.
    fn check_request(&self, req: &OapHdr, raw: &[u8]) -> Result<(), String> {
        let now = now_ns();
        if req.timestamp > now.saturating_add(100_000_000) {
            return Err("the OAP request is from the future (more than 100 ms ahead)".into());
        }
        if now.saturating_sub(req.timestamp) > 20_000_000_000 {
            return Err("the OAP request is outdated (more than 20 s old)".into());
        }
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(req.id, now)
            .map_err(|e| format!("{e} {}", hex::encode(req.id)))?;
        if req.crt.is_empty() {
            tracing::debug!("No certificate provided by <client>.");
            return Ok(());
        }
        let (_, sig) = req
            .split_tail(Role::Request, 0)
            .map_err(|e| e.to_string())?;
        let signed = raw
            .get(..req.signed_len(Role::Request, 0))
            .ok_or("truncated request")?;
        let trust = self.trust.lock().unwrap_or_else(|p| p.into_inner());
        let cn = crate::auth::common_name(&req.crt)?;
        trust
            .verify(&req.crt, &cn)
            .map_err(|e| format!("client certificate: {e}"))?;
        crate::auth::verify_signature(&req.crt, req.md_nid, signed, sig)
            .map_err(|e| format!("client: {e}"))?;
        crate::wire_log!(info, "Successfully authenticated client {cn}.");
        Ok(())
    }

    /// Signs a response with the server's certificate for `name`, if it has one.
    fn sign_response(&self, name: &str, mut resp: OapHdr) -> Result<OapHdr, String> {
        let Some(sg) = self.signer("server", name)? else {
            return Ok(resp);
        };
        resp.crt = sg.cert.clone();
        resp.md_nid = sg.md_nid;
        let unsigned = resp.to_bytes().map_err(|e| e.to_string())?;
        let sig = sg.sign(&unsigned)?;
        resp.tail.extend_from_slice(&sig);
        Ok(resp)
    }

    /// Verifies the server's certificate (chain, CN = `name`) and signature, when it sent one.
    fn authenticate_server(&self, name: &str, req: &[u8], resp: &[u8]) -> Result<(), String> {
        let trust = self.trust.lock().unwrap_or_else(|p| p.into_inner());
        verify_response(&trust, name, req, resp)
    }

    /// The `enc.conf` of `side` ("client" or "server") for `name`: the TOML override
    /// (`client_enc_file`, `server_enc_file`) or `<security>/<side>/<name>/enc.conf`.
    fn enc_conf(
        &self,
        side: &str,
        name: &str,
    ) -> Result<Option<(EncConf, std::path::PathBuf)>, String> {
        let key = format!("{side}_enc_file");
        let file = self.st().reg.names.get(name).and_then(|e| {
            e.paths
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, p)| p.clone())
        });
        let dir = self.settings.security_dir.join(side).join(name);
        crate::security::load_enc(&dir, file.as_deref())
    }

    /// Applies a configuration: names, bindings, IPCPs, registrations. Run-time failures
    /// (a device that does not exist) are logged; the daemon keeps running.
    pub fn apply(&self, cfg: &Config) {
        for n in &cfg.notes {
            tracing::info!("{n}");
        }
        for n in &cfg.names {
            self.name_create(&n.name, Some(n.lb));
            if let Some(e) = self.st().reg.names.get_mut(&n.name) {
                e.paths.clone_from(&n.paths);
            }
            for (prog, args, auto) in &n.progs {
                if let Err(e) = self.bind_program(prog, &n.name, *auto, args.clone(), None) {
                    tracing::warn!("name {}: {e}", n.name);
                }
            }
        }
        for i in &cfg.ipcps {
            let layer = i
                .bootstrap
                .clone()
                .or_else(|| i.enrol.clone())
                .unwrap_or_default();
            if !matches!(
                i.kind,
                IpcpKind::EthDix | IpcpKind::EthLlc | IpcpKind::Udp4 | IpcpKind::Udp6
            ) {
                tracing::warn!(
                    "IPCP {} (line {}): type {} is not implemented yet (eth-dix, eth-llc, udp4 and udp6 are); skipped",
                    i.name,
                    i.line,
                    i.kind.as_str()
                );
                continue;
            }
            let udp =
                i.ip.as_deref()
                    .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                    .map(|ip| std::net::SocketAddr::new(ip, i.port));
            let dns = match i.dns.as_deref().map(|d| (d, crate::dns::server_addr(d))) {
                Some((d, None)) => {
                    tracing::error!(
                        "IPCP {} (line {}): dns={d} is not an address",
                        i.name,
                        i.line
                    );
                    continue;
                }
                Some((_, a)) => a,
                None => None,
            };
            let dev = match udp {
                Some(a) => a.to_string(),
                None => i.dev.clone().unwrap_or_default(),
            };
            let port_kind = match (i.kind, udp) {
                (IpcpKind::EthDix, _) => PortKind::Dix {
                    ethertype: i.ethertype,
                },
                (IpcpKind::EthLlc, _) => PortKind::Llc,
                (_, Some(addr)) => PortKind::Udp { addr },
                (_, None) => {
                    tracing::error!("IPCP {} (line {}): no usable ip", i.name, i.line);
                    continue;
                }
            };
            match self.ipcp_bootstrap(&i.name, i.kind, &layer, &dev, port_kind, i.hash) {
                Ok(()) => {
                    if let Some(d) = dns {
                        if let Some(ipcp) = self.st().ipcps.iter_mut().find(|x| x.name == i.name) {
                            ipcp.dns = Some(d);
                        }
                        tracing::info!(
                            "IPCP {}: names resolve through the DNS server {d}.",
                            i.name
                        );
                    } else if udp.is_some() {
                        tracing::info!(
                            "IPCP {}: DNS server not in use (system resolver, /etc/hosts).",
                            i.name
                        );
                    }
                    for r in &i.reg {
                        if let Err(e) = self.register(r, std::slice::from_ref(&i.name)) {
                            tracing::warn!("registering {r} in {}: {e:?}", i.name);
                        }
                    }
                }
                Err(e) => tracing::error!("IPCP {} (line {}): {e}", i.name, i.line),
            }
        }
    }

    fn name_create(&self, name: &str, lb: Option<Lb>) {
        if self.st().reg.create(name, lb) {
            tracing::info!("Created new name: {name}.");
        }
    }

    fn bind_program(
        &self,
        prog: &str,
        name: &str,
        auto: bool,
        args: Vec<String>,
        run_as: Option<(u32, u32)>,
    ) -> Result<(), String> {
        let exe = resolve_prog(prog);
        match &exe {
            Some(e) if e.as_path() != std::path::Path::new(prog) => {
                tracing::info!("program {prog} resolves to {}", e.display())
            }
            None => tracing::warn!(
                "program {prog} not found (nor its name in PATH); it cannot be started"
            ),
            _ => {}
        }
        self.name_create(name, None);
        let mut st = self.st();
        let e = st.reg.names.get_mut(name).ok_or("no such name")?;
        e.progs.retain(|p| p.path != prog);
        e.progs.push(ProgBind {
            path: prog.to_string(),
            exe,
            args,
            auto,
            run_as,
        });
        tracing::info!(
            "Bound program {prog} to name {name}{}{}.",
            if auto { " (auto-start)" } else { "" },
            run_as.map_or(String::new(), |(u, g)| format!(", runs as uid {u} gid {g}"))
        );
        Ok(())
    }

    /// Creates and bootstraps an eth IPCP.
    pub fn ipcp_bootstrap(
        &self,
        name: &str,
        kind: IpcpKind,
        layer: &str,
        dev: &str,
        port_kind: PortKind,
        hash: o7s_wire::hash::HashAlgo,
    ) -> Result<(), String> {
        let port = {
            let mut st = self.st();
            if st.ipcps.iter().any(|i| i.name == name) {
                return Err(format!("an IPCP named {name} exists"));
            }
            st.next_port += 1;
            st.next_port
        };
        let reply = self.dp.add_port(
            ToDp::AddPort {
                port,
                dev: dev.to_string(),
                kind: port_kind,
            },
            port,
        )?;
        let mut ipcp = EthIpcp::new(name, layer, kind, port_kind, dev, hash, port);
        let res = match reply {
            FromDp::PortUp {
                mac, mtu, io_path, ..
            } => {
                ipcp.set_mac(mac);
                ipcp.mtu = mtu;
                ipcp.io_path = io_path;
                ipcp.up = true;
                tracing::info!(
                    "Bootstrapped IPCP {name} ({}) in layer {layer} on {dev}: MTU {mtu}{}, hash {}.",
                    kind.as_str(),
                    if let PortKind::Dix { ethertype } = port_kind { format!(", Ethertype {ethertype:#06X}") } else { String::new() },
                    hash.config_name()
                );
                Ok(())
            }
            FromDp::PortError { error, .. } => {
                ipcp.io_path = format!("down: {error}");
                Err(format!("cannot open a port on {dev}: {error}"))
            }
            _ => Err("unexpected answer from the data plane".into()),
        };
        self.st().ipcps.push(ipcp);
        res
    }

    /// Bootstraps a udp4/udp6 IPCP from o7sctl's settings: `ip`, `port` (3435), `dns`.
    fn udp_bootstrap(
        &self,
        name: &str,
        kind: IpcpKind,
        layer: &str,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        if let Some(k) = settings
            .keys()
            .find(|k| !["type", "ip", "port", "dns"].contains(&k.as_str()))
        {
            return Err(format!(
                "{k} is not a setting of a {} IPCP (ip, port, dns)",
                kind.as_str()
            ));
        }
        let ip: std::net::IpAddr = settings
            .get("ip")
            .ok_or("ip is required")?
            .parse()
            .map_err(|_| "ip is not an address".to_string())?;
        if ip.is_ipv4() != (kind == IpcpKind::Udp4) {
            return Err(format!(
                "{ip} is not an address of a {} IPCP",
                kind.as_str()
            ));
        }
        let port: u16 = match settings.get("port") {
            None => 3435,
            Some(p) => p
                .parse()
                .map_err(|_| format!("port {p} is not a port number"))?,
        };
        let dns = match settings.get("dns") {
            None => None,
            Some(d) => {
                Some(crate::dns::server_addr(d).ok_or(format!("dns {d} is not an address"))?)
            }
        };
        let addr = std::net::SocketAddr::new(ip, port);
        self.ipcp_bootstrap(
            name,
            kind,
            layer,
            &addr.to_string(),
            PortKind::Udp { addr },
            o7s_wire::hash::HashAlgo::Md5,
        )?;
        if let Some(d) = dns {
            if let Some(i) = self.st().ipcps.iter_mut().find(|x| x.name == name) {
                i.dns = Some(d);
            }
        }
        Ok(())
    }

    /// Registers `name` in the IPCPs or layers named in `targets`.
    pub fn register(&self, name: &str, targets: &[String]) -> Result<(), Fail> {
        self.name_create(name, None);
        let mut st = self.st();
        let mut done = 0;
        for i in st
            .ipcps
            .iter_mut()
            .filter(|i| targets.contains(&i.name) || targets.contains(&i.layer))
        {
            let h = i.hash.hash(name);
            if let (Some(server), PortKind::Udp { addr }) = (i.dns, i.port_kind) {
                let (hex, ipcp, name) = (hex::encode(&h), i.name.clone(), name.to_string());
                std::thread::spawn(move || {
                    match crate::dns::register(server, &hex, addr.ip(), Duration::from_secs(2)) {
                        Ok(()) => tracing::info!(
                            "Registered {name} ({hex}) with the DNS server {server} for {ipcp}."
                        ),
                        Err(e) => tracing::error!(
                            "{ipcp}: cannot register {name} with the DNS server {server}: {e}"
                        ),
                    }
                });
            }
            tracing::info!(
                "Registered {name} with IPCP {} as {}.",
                i.name,
                hex::encode(h.get(..4).unwrap_or(&h))
            );
            i.reg_insert(h, name);
            done += 1;
        }
        if done == 0 {
            return Err((
                ErrorCode::NotFound,
                format!("no IPCP or layer named {}", targets.join(", ")),
            ));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- connections

    /// Serves one connection (an app or o7sctl) until it closes.
    pub fn serve(self: &Arc<Self>, ch: Channel) {
        let req = match ch.recv::<Request>() {
            Ok((r, _)) => r,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::warn!("bad request: {e}");
                    let _ = ch.send(
                        &Reply::Error {
                            code: ErrorCode::Invalid,
                            message: e.to_string(),
                        },
                        &[],
                    );
                }
                return;
            }
        };
        let cred = match ch.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("a client without credentials: {e}");
                return;
            }
        };
        let pid = cred.pid;
        match req {
            Request::Alloc { name, .. } if o7s::proto::check_name(&name).is_err() => {
                let message = o7s::proto::check_name(&name).err().unwrap_or_default();
                let _ = ch.send(
                    &Reply::Error {
                        code: ErrorCode::Invalid,
                        message,
                    },
                    &[],
                );
            }
            Request::Alloc {
                name,
                qos,
                timeout_ms,
            } => match self.alloc(&name, qos, Duration::from_millis(timeout_ms.max(1)), pid) {
                Ok(acc) => self.deliver_and_hold(ch, acc),
                Err((code, message)) => {
                    tracing::info!("Flow allocation to {name} for process {pid} failed: {message}");
                    let _ = ch.send(&Reply::Error { code, message }, &[]);
                }
            },
            Request::Accept { timeout_ms } => {
                self.accept(ch, pid, cred.uid, timeout_ms.map(Duration::from_millis))
            }
            Request::Ctl(Ctl::Capture {
                target,
                flow,
                snaplen,
                count,
            }) => {
                let c = Ctl::Capture {
                    target: target.clone(),
                    flow,
                    snaplen,
                    count,
                };
                match self.authorize(&c, &cred) {
                    Ok(()) => self.capture(&ch, &target, flow, snaplen),
                    Err(message) => {
                        self.counters.denied.fetch_add(1, Ordering::Relaxed);
                        let _ = ch.send(
                            &Reply::Error {
                                code: ErrorCode::Denied,
                                message,
                            },
                            &[],
                        );
                    }
                }
            }
            Request::Ctl(c) => {
                let r = match self.authorize(&c, &cred) {
                    Ok(()) => self.ctl(c, &cred),
                    Err(message) => {
                        self.counters.denied.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "Refused {} for process {} (uid {}): {message}",
                            crate::authz::verb(&c),
                            cred.pid,
                            cred.uid
                        );
                        Reply::Error {
                            code: ErrorCode::Denied,
                            message,
                        }
                    }
                };
                let _ = ch.send(&r, &[]);
            }
        }
    }

    /// Runs a capture for the client on `ch`: hands it the ring the data plane copies the
    /// frames into, and stops the capture when the client hangs up.
    fn capture(&self, ch: &Channel, target: &str, flow: Option<u64>, snaplen: u32) {
        let fail = |code, message: String| {
            let _ = ch.send(&Reply::Error { code, message }, &[]);
        };
        let port = {
            let st = self.st();
            let by_flow = flow.map(|f| st.flows.get(&f).map(|r| r.ipcp));
            let ipcp = match by_flow {
                Some(Some(i)) => st.ipcps.get(i),
                Some(None) => {
                    drop(st);
                    return fail(
                        ErrorCode::NotFound,
                        format!("no flow {}", flow.unwrap_or(0)),
                    );
                }
                None => st.ipcps.iter().find(|i| {
                    i.name == target || i.dev == target || target.parse::<u32>() == Ok(i.port)
                }),
            };
            match ipcp {
                Some(i) => i.port,
                None => {
                    drop(st);
                    return fail(
                        ErrorCode::NotFound,
                        format!("no port, device or IPCP named {target}"),
                    );
                }
            }
        };
        let id = self.capture_ids.fetch_add(1, Ordering::Relaxed) + 1;
        // The ring the data plane writes and the client reads: 1024 slots of 9216 bytes (a
        // 9000-byte frame and its header), sealed like a flow's memory.
        let (ring, memfd) = match FlowMem::create(1024, DEFAULT_SLOT_SIZE) {
            Ok(x) => x,
            Err(e) => return fail(ErrorCode::NoResources, format!("capture ring: {e}")),
        };
        let room = ring.max_sdu() - o7s_abi::msg::CaptureRecord::LEN;
        let snaplen = snaplen.min(u32::try_from(room).unwrap_or(u32::MAX));
        drop(ring);
        let start = ToDp::CaptureStart {
            id,
            port,
            flow,
            snaplen,
        };
        if let Err(e) = self.dp.capture_start(&start, id, memfd.as_fd()) {
            return fail(ErrorCode::Invalid, e);
        }
        tracing::info!(
            "Capture {id} of port {port}{} started.",
            flow.map(|f| format!(", flow {f}")).unwrap_or_default()
        );
        // The client reads the ring itself (and counts); the capture lasts until it hangs up.
        if ch
            .send(&Reply::Capturing { snaplen }, &[memfd.as_fd()])
            .is_ok()
        {
            while !wait_readable(ch.as_fd(), Some(Duration::from_millis(500))).unwrap_or(true)
                && !self.stopping.load(Ordering::Relaxed)
            {}
        }
        self.dp.capture_end(id);
        tracing::info!("Capture {id} ended.");
    }

    /// Hands a flow to its app, then holds the flow until the app closes the channel.
    fn deliver_and_hold(&self, ch: Channel, acc: Accepted) {
        let fds: Vec<_> = acc.fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = ch.send(&Reply::Flow(acc.info.clone()), &fds) {
            tracing::warn!(
                "flow {}: the process went away before getting it: {e}",
                acc.flow
            );
            self.dealloc(acc.flow);
            return;
        }
        drop(acc.fds);
        // Any message or the close of the channel ends the flow.
        loop {
            match wait_readable(ch.as_fd(), Some(Duration::from_millis(500))) {
                Ok(true) => break,
                Ok(false) if self.stopping.load(Ordering::Relaxed) => break,
                Ok(false) => {
                    if !self.st().flows.contains_key(&acc.flow) {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        self.dealloc(acc.flow);
    }

    /// Frees a flow everywhere.
    pub fn dealloc(&self, flow: u64) {
        let mut st = self.st();
        if let Some(f) = st.flows.remove(&flow) {
            if let Some(i) = st.ipcps.get_mut(f.ipcp) {
                i.shim.release(f.local);
            }
            drop(st);
            self.dp.send(&ToDp::DelFlow { flow }, &[]);
            tracing::info!("Flow {flow} ({} {}) deallocated.", f.side, f.name);
        }
    }

    fn accept(self: &Arc<Self>, ch: Channel, pid: i32, uid: u32, timeout: Option<Duration>) {
        let exe = exe_of(pid);
        let (tx, rx) = sync_channel::<Accepted>(1);
        let id = {
            let mut st = self.st();
            let names = st.reg.names_of(pid, uid, exe.as_deref());
            if names.is_empty() {
                // It may be bound later (o7sctl bind process): it then joins the names.
                tracing::info!(
                    "process {pid} ({}) accepts flows but is bound to no name yet",
                    exe.as_ref()
                        .map(|e| e.display().to_string())
                        .unwrap_or_default()
                );
            }
            tracing::debug!("process {pid} accepts flows for {}", names.join(", "));
            let id = st.reg.add_acceptor(pid, &names, tx);
            self.accept_cv.notify_all();
            id
        };
        let start = Instant::now();
        let got = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => break Some(a),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let gone = wait_readable(ch.as_fd(), Some(Duration::ZERO)).unwrap_or(true);
            let expired = timeout.is_some_and(|t| start.elapsed() >= t);
            if gone || expired || self.stopping.load(Ordering::Relaxed) {
                self.st().reg.remove_acceptor(id);
                // A flow handed over just before the removal is still delivered.
                match rx.try_recv() {
                    Ok(a) if !gone => break Some(a),
                    Ok(a) => {
                        self.dealloc(a.flow);
                        return;
                    }
                    Err(_) if gone => return,
                    Err(_) => {
                        let _ = ch.send(
                            &Reply::Error {
                                code: ErrorCode::Timeout,
                                message: "no flow arrived".into(),
                            },
                            &[],
                        );
                        return;
                    }
                }
            }
        };
        if let Some(a) = got {
            self.deliver_and_hold(ch, a);
        }
    }

    // ---------------------------------------------------------------- allocation

    /// Sets up the shared memory and the data-plane entry of a flow, records it, and returns
    /// what the app gets.
    #[allow(clippy::too_many_arguments)]
    fn install_flow(
        &self,
        ipcp: usize,
        local: u32,
        remote: u32,
        peer: Peer,
        name: &str,
        qos: QosSpec,
        side: &'static str,
        pid: i32,
        crypt: Option<CryptSpec>,
    ) -> Result<Accepted, Fail> {
        self.check_flow_limits(peer)?;
        {
            let st = self.st();
            let of_process = st.flows.values().filter(|f| f.pid == pid).count();
            if pid > 0 && of_process >= self.settings.max_flows_per_process {
                self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
                return Err((
                    ErrorCode::NoResources,
                    format!(
                        "process {pid} has its maximum of {} flows (o7sd --max-flows-per-process)",
                        self.settings.max_flows_per_process
                    ),
                ));
            }
        }
        let overhead = if crypt.is_some() {
            o7s_abi::CRYPT_OVERHEAD
        } else {
            0
        };
        let mtu = self
            .st()
            .ipcps
            .get(ipcp)
            .map(|i| i.mtu)
            .unwrap_or(0)
            .saturating_sub(overhead);
        let (memfd, tx, rx) =
            flow_mem(mtu).map_err(|e| (ErrorCode::NoResources, format!("flow memory: {e}")))?;
        let mut st = self.st();
        st.next_flow += 1;
        let flow = st.next_flow;
        let Some(i) = st.ipcps.get(ipcp) else {
            return Err((ErrorCode::Internal, "IPCP vanished".into()));
        };
        let (port, layer) = (i.port, i.layer.clone());
        st.flows.insert(
            flow,
            FlowRec {
                ipcp,
                local,
                remote,
                peer,
                name: name.to_string(),
                side,
                pid,
                qos,
                down: false,
            },
        );
        drop(st);
        let added = self.dp.add_flow(
            &ToDp::AddFlow {
                flow,
                port,
                local,
                remote,
                peer: peer.mac(),
                timeout_ms: u64::from(qos.timeout.max(1000)),
                peer_addr: peer.addr(),
                crypt,
            },
            flow,
            &[memfd.as_fd(), tx.fd().as_fd(), rx.fd().as_fd()],
        );
        if let Err(e) = added {
            // Forget it here and there (the data plane may install it late).
            self.dealloc(flow);
            return Err((
                ErrorCode::NoResources,
                format!("the data plane cannot install the flow: {e}"),
            ));
        }
        self.counters.flows.fetch_add(1, Ordering::Relaxed);
        let fds = [dup(&memfd), dup(tx.fd()), dup(rx.fd())];
        let fds: Vec<OwnedFd> = fds.into_iter().flatten().collect();
        if fds.len() != 3 {
            self.dealloc(flow);
            return Err((
                ErrorCode::NoResources,
                "cannot duplicate descriptors".into(),
            ));
        }
        Ok(Accepted {
            info: FlowInfo {
                id: flow,
                name: name.to_string(),
                qos,
                mtu,
                layer,
            },
            flow,
            fds,
        })
    }

    /// Whether one more flow with `peer` is within the daemon's limits (`--max-flows`,
    /// `--max-flows-per-peer`); counted and explained when not.
    fn check_flow_limits(&self, peer: Peer) -> Result<(), Fail> {
        let st = self.st();
        if st.flows.len() >= self.settings.max_flows {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err((
                ErrorCode::NoResources,
                format!(
                    "this daemon has its maximum of {} flows (o7sd --max-flows)",
                    self.settings.max_flows
                ),
            ));
        }
        let same_peer = |p: &Peer| match (p, &peer) {
            (Peer::Ip(a), Peer::Ip(b)) => a.ip() == b.ip(),
            (a, b) => a == b,
        };
        let of_peer = st.flows.values().filter(|f| same_peer(&f.peer)).count();
        if of_peer >= self.settings.max_flows_per_peer {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err((
                ErrorCode::NoResources,
                format!(
                    "{peer} has its maximum of {} flows with this daemon (o7sd --max-flows-per-peer)",
                    self.settings.max_flows_per_peer
                ),
            ));
        }
        Ok(())
    }

    /// Finds the IPCP and MAC behind `name`: cache first, then a name query on every eth
    /// IPCP at once.
    fn resolve(&self, name: &str, timeout: Duration) -> Result<(usize, Peer, Vec<u8>), Fail> {
        let (tx, rx) = channel::<(usize, Peer)>();
        let mut asked = vec![];
        let mut out = vec![];
        {
            let mut st = self.st();
            let mut order: Vec<(usize, IpcpKind)> = st
                .ipcps
                .iter()
                .enumerate()
                .filter(|(_, i)| i.up)
                .map(|(n, i)| (n, i.kind))
                .collect();
            order.sort_by_key(|(_, k)| *k);
            let order: Vec<usize> = order.into_iter().map(|(n, _)| n).collect();
            if order.is_empty() {
                return Err((
                    ErrorCode::UnknownName,
                    format!("no layer is up to look {name} up in"),
                ));
            }
            for idx in &order {
                let Some(i) = st.ipcps.get(*idx) else {
                    continue;
                };
                let h = i.hash.hash(name);
                if let Some(peer) = i.shim.cached(Instant::now(), &h) {
                    return Ok((*idx, peer, h));
                }
            }
            for idx in order {
                let Some(i) = st.ipcps.get_mut(idx) else {
                    continue;
                };
                let h = i.hash.hash(name);
                if let PortKind::Udp { addr } = i.port_kind {
                    // udp layers: the hex MD5 through the layer's DNS server, or the system
                    // resolver (so /etc/hosts works).
                    let host = hex::encode(&h);
                    let dns = i.dns;
                    let via = dns
                        .map(|d| format!("DNS server {d}"))
                        .unwrap_or("system resolver".into());
                    asked.push(format!("{} {} ({via}: {host})", i.kind.as_str(), i.name));
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        use std::net::ToSocketAddrs;
                        let found = match dns {
                            Some(server) => {
                                crate::dns::lookup(server, &host, addr.is_ipv4(), timeout)
                                    .ok()
                                    .flatten()
                                    .map(|ip| std::net::SocketAddr::new(ip, addr.port()))
                            }
                            None => (host.as_str(), addr.port())
                                .to_socket_addrs()
                                .ok()
                                .and_then(|mut it| it.find(|a| a.is_ipv4() == addr.is_ipv4())),
                        };
                        if let Some(a) = found {
                            let _ = tx.send((idx, Peer::Ip(a)));
                        }
                    });
                    continue;
                }
                asked.push(format!("{} {}", i.kind.as_str(), i.name));
                // The answer comes on `tx` (the first of any layer wins).
                self.query(&mut st, idx, name, &h, timeout, tx.clone(), &mut out)?;
            }
        }
        self.send_all(out);
        drop(tx);
        match rx.recv_timeout(timeout) {
            Ok((idx, mac)) => {
                let st = self.st();
                let h = st
                    .ipcps
                    .get(idx)
                    .map(|i| i.hash.hash(name))
                    .unwrap_or_default();
                Ok((idx, mac, h))
            }
            Err(_) => Err((
                ErrorCode::UnknownName,
                format!(
                    "no answer for {name} within {} ms (asked {})",
                    timeout.as_millis(),
                    asked.join(", ")
                ),
            )),
        }
    }

    /// Allocates a flow to `name` for process `pid`.
    pub fn alloc(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
    ) -> Result<Accepted, Fail> {
        let start = Instant::now();
        let (idx, peer, hash) = self.resolve(name, self.settings.query_timeout.min(timeout))?;
        let enc = self
            .enc_conf("client", name)
            .map_err(|e| (ErrorCode::Invalid, e))?;
        let mut req_hdr = OapHdr::unsigned(rand::random(), now_ns(), vec![]);
        let eph = match &enc {
            Some((c, path)) => {
                tracing::info!("Encryption enabled for {name} ({}).", path.display());
                let e = Ephemeral::generate(c.kex, &ring::rand::SystemRandom::new())
                    .map_err(|e| (ErrorCode::Internal, e))?;
                tracing::debug!("Generated ephemeral keys for {pid}.");
                req_hdr.cipher_nid = c.cipher.nid();
                req_hdr.kdf_nid = c.kdf.nid();
                req_hdr.md_nid = c.digest;
                req_hdr.kex = e.spki.clone();
                Some(e)
            }
            None => {
                tracing::debug!("No security info for {name}.");
                None
            }
        };
        let signer = self
            .signer("client", name)
            .map_err(|e| (ErrorCode::Invalid, e))?;
        if let Some(sg) = &signer {
            req_hdr.crt = sg.cert.clone();
            req_hdr.md_nid = sg.md_nid;
            let unsigned = req_hdr
                .to_bytes()
                .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
            req_hdr.tail = sg.sign(&unsigned).map_err(|e| (ErrorCode::Internal, e))?;
        }
        let req_oap = req_hdr
            .to_bytes()
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        let (tx, rx) = channel();
        let mut out = vec![];
        let local = {
            let mut st = self.st();
            let i = st
                .ipcps
                .get_mut(idx)
                .ok_or((ErrorCode::Internal, "IPCP vanished".into()))?;
            let left = timeout.saturating_sub(start.elapsed());
            let (id, local) = i
                .shim
                .alloc(Instant::now(), peer, &hash, qos, &req_oap, left)
                .map_err(|e| match e {
                    o7s_proto::shim::ShimError::NoEid => (
                        ErrorCode::NoResources,
                        format!("no free endpoint id in {}", i.name),
                    ),
                    e => (ErrorCode::Busy, format!("{}: {e}", i.name)),
                })?;
            i.alloc_waiters.insert(id.0, tx);
            self.pump(&mut st, idx, &mut out);
            local
        };
        self.send_all(out);
        self.accept_cv.notify_all(); // the protocol thread keeps the new deadline
                                     // The machine ends the wait (reply, refusal or its deadline, on the protocol
                                     // thread); the margin covers a late timer.
        let reply =
            rx.recv_timeout(timeout.saturating_sub(start.elapsed()) + Duration::from_millis(500));
        let free = |st: &mut State| {
            if let Some(i) = st.ipcps.get_mut(idx) {
                i.shim.release(local);
            }
        };
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(o7s_proto::shim::ShimError::Refused(response))) => {
                return Err((
                    ErrorCode::Refused,
                    format!("{name} refused the flow (response {response})"),
                ));
            }
            Ok(Err(_)) | Err(_) => {
                free(&mut self.st());
                return Err((
                    ErrorCode::Timeout,
                    format!("no FLOW_REPLY for {name} within {} ms", timeout.as_millis()),
                ));
            }
        };
        if let Err(why) = o7s_proto::oap::check_response(&req_oap, &reply.oap)
            .map_err(|e| e.to_string())
            .and_then(|()| self.authenticate_server(name, &req_oap, &reply.oap))
        {
            free(&mut self.st());
            tracing::warn!("Flow allocation to {name} refused: {why}");
            return Err((
                ErrorCode::Security,
                format!("bad OAP response from {name}: {why}"),
            ));
        }
        let crypt = match (enc, eph) {
            (Some((conf, _)), Some(eph)) => match client_key(&conf, eph, &reply.oap) {
                Ok(spec) => Some(CryptSpec {
                    rotation_bits: self.settings.key_rotation_bits,
                    ..spec
                }),
                Err(why) => {
                    free(&mut self.st());
                    tracing::warn!("Flow allocation to {name} refused: {why}");
                    return Err((ErrorCode::Security, format!("{name}: {why}")));
                }
            },
            _ => None,
        };
        let acc = self
            .install_flow(
                idx,
                local,
                reply.remote,
                reply.peer,
                name,
                qos,
                "alloc",
                pid,
                crypt,
            )
            .inspect_err(|_| free(&mut self.st()))?;
        tracing::info!(
            "Flow {} allocated to {name} for process {pid}: local {local:#x}, remote {:#x} at {} in {:.3} ms.",
            acc.flow,
            reply.remote,
            reply.peer,
            start.elapsed().as_secs_f64() * 1000.0
        );
        Ok(acc)
    }

    // ---------------------------------------------------------------- management frames

    /// Sends a management message to `dst` on `port`.
    fn send_mgmt(&self, port: u32, dst: Peer, payload: Vec<u8>) {
        let m = match dst {
            Peer::Mac(dst) => ToDp::SendMgmt { port, dst, payload },
            Peer::Ip(dst) => ToDp::SendUdp { port, dst, payload },
        };
        self.dp.send(&m, &[]);
    }

    /// Reads data-plane events; restarts the data plane when it dies (at most 5 times a
    /// minute), re-opening the ports. Flows it carried are lost: their apps see the flow
    /// go down.
    pub fn dp_events(self: &Arc<Self>) {
        let mut restarts: Vec<Instant> = vec![];
        loop {
            let ch = self.dp.channel();
            let m = match ch.recv::<FromDp>() {
                Ok((m, _)) => m,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!("bad message from the data plane: {e}");
                    continue;
                }
                Err(e) => {
                    // A SIGTERM to the whole process group (timeout, systemd) reaches the
                    // data plane and o7sd together: give o7sd's own signal a moment to be
                    // seen before taking the data plane's end for a crash.
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(500)
                        && !self.stopping.load(Ordering::Relaxed)
                        && !crate::stop_requested()
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if self.stopping.load(Ordering::Relaxed) || crate::stop_requested() {
                        return;
                    }
                    restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
                    if restarts.len() >= 5 {
                        tracing::error!(
                            "the data plane died 5 times within a minute ({e}); shutting down"
                        );
                        crate::request_stop();
                        return;
                    }
                    restarts.push(Instant::now());
                    match self.dp.restart() {
                        Ok(how) => tracing::error!("the data plane died ({how}); restarted it"),
                        Err(e) => {
                            tracing::error!(
                                "the data plane died and cannot be restarted: {e}; shutting down"
                            );
                            crate::request_stop();
                            return;
                        }
                    }
                    let d = self.clone();
                    std::thread::spawn(move || d.after_dp_restart());
                    continue;
                }
            };
            match self.dp.route(m) {
                Some(FromDp::Mgmt {
                    port,
                    src,
                    dst,
                    payload,
                }) => self.on_mgmt(port, Peer::Mac(src), Some(dst), &payload),
                Some(FromDp::UdpMgmt { port, src, payload }) => {
                    self.on_mgmt(port, Peer::Ip(src), None, &payload)
                }
                Some(FromDp::FlowDown { flow }) => {
                    if let Some(f) = self.st().flows.get_mut(&flow) {
                        f.down = true;
                        tracing::info!("Flow {flow} ({}): peer timed out.", f.name);
                    }
                }
                _ => {}
            }
        }
    }

    /// Re-opens every port in a new data plane and drops the flows the old one carried.
    fn after_dp_restart(&self) {
        let flows: Vec<u64> = self.st().flows.keys().copied().collect();
        for f in flows {
            self.dealloc(f);
        }
        let ports: Vec<(usize, u32, String, PortKind)> = self
            .st()
            .ipcps
            .iter()
            .enumerate()
            .map(|(n, i)| (n, i.port, i.dev.clone(), i.port_kind))
            .collect();
        for (n, port, dev, kind) in ports {
            let r = self.dp.add_port(
                ToDp::AddPort {
                    port,
                    dev: dev.clone(),
                    kind,
                },
                port,
            );
            let mut st = self.st();
            let Some(i) = st.ipcps.get_mut(n) else {
                continue;
            };
            match r {
                Ok(FromDp::PortUp {
                    mac, mtu, io_path, ..
                }) => {
                    i.set_mac(mac);
                    i.mtu = mtu;
                    i.io_path = io_path;
                    i.up = true;
                    tracing::info!("IPCP {}: port on {dev} re-opened.", i.name);
                }
                Ok(FromDp::PortError { error, .. }) => {
                    i.up = false;
                    i.io_path = format!("down: {error}");
                    tracing::error!("IPCP {}: cannot re-open {dev}: {error}", i.name);
                }
                other => tracing::error!("IPCP {}: {dev}: {other:?}", i.name),
            }
        }
    }

    /// Periodic work: expire caches, reap children.
    pub fn tick(&self) {
        // Every 5 s (50 ticks): hand memory that bursts left in the allocator's per-thread
        // arenas back to the system, so o7sd's size returns to where it was after a flood.
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        if n % 50 == 49 {
            self.replay
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .prune(now_ns());
            trim_heap();
        }
        let mut st = self.st();
        let now = Instant::now();
        for i in &mut st.ipcps {
            // Names learnt stay listed while the machine's cache holds them.
            let shim = &i.shim;
            i.learnt.retain(|h, _| shim.cached(now, h).is_some());
        }
        st.children.retain_mut(|(n, c)| match c.try_wait() {
            Ok(Some(s)) => {
                tracing::info!("Process {} (started for {n}) exited: {s}.", c.id());
                false
            }
            _ => true,
        });
    }

    /// Stops auto-started programs (SIGTERM, then SIGKILL after 2 s).
    pub fn stop_children(&self) {
        let mut kids: Vec<(String, Child)> = std::mem::take(&mut self.st().children);
        for (_, c) in &kids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) && !kids.is_empty() {
            kids.retain_mut(|(_, c)| !matches!(c.try_wait(), Ok(Some(_))));
            std::thread::sleep(Duration::from_millis(10));
        }
        for (_, c) in &mut kids {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    // ---------------------------------------------------------------- o7sctl

    /// A read-only view (a listing or the counters), as o7sctl gets it; anything else is
    /// refused.
    pub fn view(&self, c: Ctl) -> Reply {
        match crate::authz::need(&c) {
            crate::authz::Need::Anyone => self.ctl(
                c,
                &o7s::ipc::PeerCred {
                    pid: 0,
                    uid: 0,
                    gid: 0,
                },
            ),
            _ => Reply::Error {
                code: ErrorCode::Denied,
                message: "not a view".into(),
            },
        }
    }

    /// Whether `cred` may make request `c` (docs/SECURITY.md); why not.
    fn authorize(&self, c: &Ctl, cred: &o7s::ipc::PeerCred) -> Result<(), String> {
        use crate::authz::{need, process_uid, verb, Need};
        let policy = &self.settings.policy;
        match need(c) {
            Need::Anyone => Ok(()),
            _ if policy.is_admin(cred) => Ok(()),
            Need::Admin => Err(format!(
                "{} changes what the daemon runs or serves: only {} may",
                verb(c),
                policy.admins()
            )),
            Need::AdminOrProcessOwner => {
                let (Ctl::BindProcess { pid, name } | Ctl::UnbindProcess { pid, name }) = c else {
                    return Err("not allowed".into());
                };
                if process_uid(*pid) != Some(cred.uid) {
                    return Err(format!(
                        "process {pid} is not yours (only {} may {} another user's process)",
                        policy.admins(),
                        verb(c)
                    ));
                }
                let owner = self.st().reg.names.get(name).map(|e| e.owner);
                if owner != Some(cred.uid) {
                    return Err(format!(
                        "name {name} is not yours (only {} may {} to it)",
                        policy.admins(),
                        verb(c)
                    ));
                }
                Ok(())
            }
        }
    }

    fn ctl(&self, c: Ctl, cred: &o7s::ipc::PeerCred) -> Reply {
        if let Err(e) = ctl_names(&c)
            .into_iter()
            .try_for_each(o7s::proto::check_name)
        {
            return Reply::Error {
                code: ErrorCode::Invalid,
                message: e,
            };
        }
        let table = |rows: Vec<Value>| Reply::Table {
            rows: rows
                .into_iter()
                .filter_map(|v| {
                    if let Value::Object(m) = v {
                        Some(m)
                    } else {
                        None
                    }
                })
                .collect(),
        };
        let err = |(code, message): Fail| Reply::Error { code, message };
        match c {
            Ctl::IpcpList => {
                // The data plane knows whether a port's device is still there.
                let links: HashMap<u32, String> = self
                    .dp
                    .stats()
                    .map(|s| s.ports.into_iter().map(|p| (p.port, p.link)).collect())
                    .unwrap_or_default();
                let st = self.st();
                table(
                    st.ipcps
                        .iter()
                        .map(|i| {
                            let state = match links.get(&i.port) {
                                _ if !i.up => "down".to_string(),
                                Some(l) if l.starts_with("down") => l.clone(),
                                _ => "up".to_string(),
                            };
                            json!({"name": i.name, "type": i.kind.as_str(), "layer": i.layer, "dev": i.dev,
                                   "mac": mac_string(&i.mac), "mtu": i.mtu, "hash": i.hash.config_name(),
                                   "state": state, "io_path": i.io_path,
                                   "registered": i.regs.values().cloned().collect::<Vec<_>>()})
                        })
                        .chain(st.created.iter().map(|(n, k)| {
                            json!({"name": n, "type": k.as_str(), "layer": "-", "dev": "-", "mac": "-", "mtu": 0,
                                   "hash": "-", "state": "created (not bootstrapped)", "io_path": "-", "registered": []})
                        }))
                        .collect(),
                )
            }
            Ctl::IpcpCreate { name, kind } => match IpcpKind::parse(&kind) {
                Some(k) => {
                    let mut st = self.st();
                    if st.ipcps.iter().any(|i| i.name == name) || st.created.contains_key(&name) {
                        return err((ErrorCode::Exists, format!("an IPCP named {name} exists")));
                    }
                    st.created.insert(name.clone(), k);
                    tracing::info!(
                        "Created IPCP {name} ({}); bootstrap it to use it.",
                        k.as_str()
                    );
                    Reply::Ok
                }
                None => err((ErrorCode::Invalid, format!("unknown IPCP type {kind}"))),
            },
            Ctl::IpcpBootstrap {
                name,
                layer,
                settings,
            } => {
                let created = self.st().created.get(&name).copied();
                let kind = settings
                    .get("type")
                    .and_then(|t| IpcpKind::parse(t))
                    .or(created);
                let Some(kind) = kind else {
                    return err((
                        ErrorCode::Invalid,
                        "type is required (eth-dix, eth-llc, udp4, udp6)".into(),
                    ));
                };
                if matches!(kind, IpcpKind::Udp4 | IpcpKind::Udp6) {
                    return match self.udp_bootstrap(&name, kind, &layer, &settings) {
                        Ok(()) => {
                            self.st().created.remove(&name);
                            Reply::Ok
                        }
                        Err(e) => err((ErrorCode::Invalid, e)),
                    };
                }
                let Some(dev) = settings.get("dev") else {
                    return err((ErrorCode::Invalid, "dev is required".into()));
                };
                let ethertype = match settings.get("ethertype").map(|e| parse_u16(e)) {
                    None => o7s_wire::ethernet::ETHERTYPE_OUROBOROS,
                    Some(Some(e)) if e >= 0x0600 && e != 0xffff => e,
                    Some(_) => {
                        return err((
                            ErrorCode::Invalid,
                            "ethertype must be 0x0600..0xFFFE".into(),
                        ))
                    }
                };
                let hash = match settings.get("hash") {
                    None => o7s_wire::hash::HashAlgo::Sha3_256,
                    Some(h) => match o7s_wire::hash::HashAlgo::from_config_name(h) {
                        Some(a) => a,
                        None => return err((ErrorCode::Invalid, format!("unknown hash {h}"))),
                    },
                };
                let port_kind = match kind {
                    IpcpKind::EthDix => PortKind::Dix { ethertype },
                    IpcpKind::EthLlc => PortKind::Llc,
                    other => {
                        return err((
                            ErrorCode::Invalid,
                            format!("o7sctl bootstraps eth-dix and eth-llc IPCPs; {} needs a configuration file (o7sctl config load)", other.as_str()),
                        ))
                    }
                };
                match self.ipcp_bootstrap(&name, kind, &layer, dev, port_kind, hash) {
                    Ok(()) => {
                        self.st().created.remove(&name);
                        Reply::Ok
                    }
                    Err(e) => err((ErrorCode::Invalid, e)),
                }
            }
            Ctl::IpcpDestroy { name } => {
                let mut st = self.st();
                if st.created.remove(&name).is_some() {
                    return Reply::Ok;
                }
                let Some(pos) = st.ipcps.iter().position(|i| i.name == name) else {
                    return err((ErrorCode::NotFound, format!("no IPCP named {name}")));
                };
                let flows: Vec<u64> = st
                    .flows
                    .iter()
                    .filter(|(_, f)| f.ipcp == pos)
                    .map(|(k, _)| *k)
                    .collect();
                if !flows.is_empty() {
                    return err((
                        ErrorCode::Invalid,
                        format!("{name} carries {} flows", flows.len()),
                    ));
                }
                let i = st.ipcps.remove(pos);
                // Flow records refer to IPCPs by index: shift the later ones.
                for f in st.flows.values_mut() {
                    if f.ipcp > pos {
                        f.ipcp -= 1;
                    }
                }
                drop(st);
                self.dp.send(&ToDp::DelPort { port: i.port }, &[]);
                Reply::Ok
            }
            Ctl::NameCreate { name, lb } => {
                let lb = match lb.as_deref().map(Lb::parse) {
                    Some(None) => {
                        return err((ErrorCode::Invalid, "lb must be spill or round-robin".into()))
                    }
                    Some(Some(l)) => Some(l),
                    // The same default as a configuration file's [name] table.
                    None => None,
                };
                self.name_create(&name, lb);
                if let Some(e) = self.st().reg.names.get_mut(&name) {
                    if e.owner == 0 && e.progs.is_empty() && e.pids.is_empty() {
                        e.owner = cred.uid;
                    }
                }
                Reply::Ok
            }
            Ctl::NameDestroy { name } => {
                let mut st = self.st();
                if st.reg.names.remove(&name).is_none() {
                    return err((ErrorCode::NotFound, format!("no name {name}")));
                }
                for i in &mut st.ipcps {
                    i.reg_remove(&name);
                }
                Reply::Ok
            }
            Ctl::NameList => {
                let st = self.st();
                table(
                    st.reg
                        .names
                        .iter()
                        .map(|(n, e)| {
                            let layers: Vec<String> =
                                st.ipcps.iter().filter(|i| i.regs.values().any(|r| r == n)).map(|i| i.name.clone()).collect();
                            json!({"name": n, "lb": e.lb, "programs": e.progs.iter().map(|p| format!("{}{}", p.path, if p.auto { " (auto)" } else { "" })).collect::<Vec<_>>(),
                                   "processes": e.pids.iter().collect::<Vec<_>>(), "registered_in": layers, "accepting": e.active.len()})
                        })
                        .collect(),
                )
            }
            Ctl::NameRegister { name, targets } => match self.register(&name, &targets) {
                Ok(()) => Reply::Ok,
                Err(e) => err(e),
            },
            Ctl::NameUnregister { name, targets } => {
                let mut st = self.st();
                let mut n = 0;
                for i in st
                    .ipcps
                    .iter_mut()
                    .filter(|i| targets.contains(&i.name) || targets.contains(&i.layer))
                {
                    let removed = i.reg_remove(&name);
                    n += removed;
                    if let (true, Some(server), PortKind::Udp { addr }) =
                        (removed > 0, i.dns, i.port_kind)
                    {
                        let hex = hex::encode(i.hash.hash(&name));
                        match crate::dns::unregister(
                            server,
                            &hex,
                            addr.is_ipv4(),
                            Duration::from_secs(2),
                        ) {
                            Ok(()) => tracing::info!(
                                "Removed {name} ({hex}) from the DNS server {server}."
                            ),
                            Err(e) => tracing::error!(
                                "cannot remove {name} from the DNS server {server}: {e}"
                            ),
                        }
                    }
                }
                if n == 0 {
                    return err((
                        ErrorCode::NotFound,
                        format!("{name} is not registered in {}", targets.join(", ")),
                    ));
                }
                Reply::Ok
            }
            Ctl::BindProgram {
                prog,
                name,
                auto,
                args,
            } => match self.bind_program(
                &prog,
                &name,
                auto,
                args,
                (cred.uid != 0).then_some((cred.uid, cred.gid)),
            ) {
                Ok(()) => Reply::Ok,
                Err(e) => err((ErrorCode::Invalid, e)),
            },
            Ctl::UnbindProgram { prog, name } => {
                let mut st = self.st();
                let Some(e) = st.reg.names.get_mut(&name) else {
                    return err((ErrorCode::NotFound, format!("no name {name}")));
                };
                let before = e.progs.len();
                e.progs.retain(|p| p.path != prog);
                if before == e.progs.len() {
                    return err((
                        ErrorCode::NotFound,
                        format!("{prog} is not bound to {name}"),
                    ));
                }
                Reply::Ok
            }
            Ctl::BindProcess { pid, name } => {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    return err((ErrorCode::NotFound, format!("no process {pid}")));
                }
                self.name_create(&name, None);
                {
                    let mut st = self.st();
                    st.reg.bind_pid(pid, &name);
                }
                self.accept_cv.notify_all();
                tracing::info!("Bound process {pid} to name {name}.");
                Reply::Ok
            }
            Ctl::UnbindProcess { pid, name } => {
                let mut st = self.st();
                let removed = st
                    .reg
                    .names
                    .get_mut(&name)
                    .is_some_and(|e| e.pids.remove(&pid));
                if removed {
                    Reply::Ok
                } else {
                    err((
                        ErrorCode::NotFound,
                        format!("process {pid} is not bound to {name}"),
                    ))
                }
            }
            Ctl::PortList => match self.dp.stats() {
                Some(s) => table(
                    s.ports
                        .iter()
                        .map(|p| {
                            let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                            // udp ports have no XDP, UMEM or link: no columns of zeros.
                            if let (Value::Object(m), true) = (&mut v, p.mac == "-") {
                                m.retain(|k, _| {
                                    !(k.contains("xdp") || k.starts_with("umem") || k == "link")
                                });
                            }
                            v
                        })
                        .collect(),
                ),
                None => err((ErrorCode::Internal, "the data plane did not answer".into())),
            },
            Ctl::CacheList => {
                let st = self.st();
                let mut rows = vec![];
                for i in &st.ipcps {
                    for (h, peer, left) in i.shim.cache_entries(Instant::now()) {
                        let (name, learnt) = i.learnt.get(&h).cloned().unwrap_or_else(|| {
                            let n = st
                                .reg
                                .names
                                .keys()
                                .find(|n| i.hash.hash(n) == h)
                                .cloned()
                                .unwrap_or_default();
                            (n, UNIX_EPOCH)
                        });
                        let left = left.as_secs();
                        rows.push(json!({"ipcp": i.name, "hash": hex::encode(&h), "name": name, "mac": mac_string(&peer.mac()),
                                         "expires_in_s": left,
                                         "learnt": learnt.duration_since(UNIX_EPOCH).ok()
                                             .and_then(|d| x509_parser::time::ASN1Time::from_timestamp(i64::try_from(d.as_secs()).unwrap_or(0)).ok())
                                             .map(|t| t.to_string()).unwrap_or_default()}));
                    }
                }
                table(rows)
            }
            Ctl::WorkerList => match self.dp.stats() {
                Some(s) => {
                    let workers = if s.workers.is_empty() {
                        std::slice::from_ref(&s.worker)
                    } else {
                        s.workers.as_slice()
                    };
                    table(
                        workers
                            .iter()
                            .enumerate()
                            .map(|(i, w)| {
                                json!({"worker": i,
                                       "core": w.core.map_or("unpinned".to_string(), |c| c.to_string()),
                                       "polling": if w.busy_poll { "busy".to_string() } else { format!("adaptive, {} us", w.spin_us) },
                                       "ports": w.ports, "flows": w.flows,
                                       "rx_frames": w.rx_frames, "tx_frames": w.tx_frames,
                                       "sleeps": w.sleeps, "yields_for_apps": w.yields_for_apps,
                                       "pin_error": w.pin_error.clone().unwrap_or_default()})
                            })
                            .collect(),
                    )
                }
                None => err((ErrorCode::Internal, "the data plane did not answer".into())),
            },
            Ctl::FlowList => {
                let stats = self.dp.stats().unwrap_or_default();
                let st = self.st();
                let mut rows = vec![];
                let mut ids: Vec<_> = st.flows.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    let Some(f) = st.flows.get(&id) else { continue };
                    let s = stats
                        .flows
                        .iter()
                        .find(|s| s.flow == id)
                        .cloned()
                        .unwrap_or_default();
                    let ipcp = st
                        .ipcps
                        .get(f.ipcp)
                        .map(|i| i.name.clone())
                        .unwrap_or_default();
                    rows.push(json!({"flow": id, "side": f.side, "name": f.name, "pid": f.pid, "ipcp": ipcp,
                                     "local": format!("{:#x}", f.local), "remote": format!("{:#x}", f.remote),
                                     "peer": f.peer.to_string(), "qos": f.qos.preset_name().unwrap_or("custom"),
                                     "rx_sdus": s.rx_sdus, "rx_bytes": s.rx_bytes, "tx_sdus": s.tx_sdus, "tx_bytes": s.tx_bytes,
                                     "drop_ring_full": s.drop_ring_full, "drop_decrypt": s.drop_decrypt,
                                     "cipher": o7s_wire::nid::name(s.cipher).unwrap_or("-"), "key_rotations": s.key_rotations,
                                     "tx_keepalives": s.tx_keepalives, "rx_keepalives": s.rx_keepalives, "state": if f.down || s.down { "peer timed out" } else { "up" }}));
                }
                table(rows)
            }
            Ctl::Capture { .. } => err((
                ErrorCode::Invalid,
                "a capture streams its frames: o7sctl capture".into(),
            )),
            Ctl::ConfigLoad { path, content: None } => err((
                ErrorCode::Invalid,
                format!("config load {path}: the client sent no text (o7sctl reads the file and sends it; the daemon opens no path a client names)"),
            )),
            Ctl::ConfigLoad {
                path,
                content: Some(text),
            } if text.len() > o7s::proto::MAX_CONFIG_BYTES => err((
                ErrorCode::Invalid,
                format!("config load {path}: larger than {} KiB", o7s::proto::MAX_CONFIG_BYTES / 1024),
            )),
            Ctl::ConfigLoad {
                path,
                content: Some(text),
            } => match crate::config::parse(&text, &path) {
                Ok(c) => {
                    tracing::info!("Applying configuration file {path} (o7sctl).");
                    self.apply(&c);
                    Reply::Ok
                }
                Err(e) => {
                    tracing::warn!("configuration refused: {e}");
                    err((ErrorCode::Invalid, format!("configuration refused: {e}")))
                }
            },
            Ctl::Stats => {
                let c = &self.counters;
                let mut m = Map::new();
                for (k, v) in [
                    ("flows_allocated", &c.flows),
                    ("mgmt_malformed", &c.mgmt_malformed),
                    ("flow_reply_unknown_eid", &c.reply_unknown_eid),
                    ("flow_req_bad_eid", &c.req_bad_eid),
                    ("flow_req_unknown_name", &c.req_unknown_name),
                    ("mgmt_not_for_us", &c.not_for_us),
                    ("flow_req_refused", &c.refused),
                    ("flow_req_busy", &c.flow_req_busy),
                    ("flow_req_duplicate", &c.req_duplicate),
                    ("flow_limit", &c.flow_limit),
                    ("name_reply_unsolicited", &c.name_reply_unsolicited),
                    ("name_cache_full", &c.cache_full),
                    ("name_query_limit", &c.query_limit),
                    ("requests_denied", &c.denied),
                    ("autostart_limit", &c.autostart_limit),
                    ("dp_queue_full", &self.dp.queue_full),
                    ("log_lines_suppressed", &crate::wirelog::SUPPRESSED_TOTAL),
                ] {
                    m.insert(k.into(), json!(v.load(Ordering::Relaxed)));
                }
                if let Some(s) = self.dp.stats() {
                    let sum = |f: fn(&o7s_abi::msg::PortStats) -> u64| {
                        s.ports.iter().map(f).sum::<u64>()
                    };
                    m.insert(
                        "dp_drop_unknown_eid".into(),
                        json!(sum(|p| p.drop_unknown_eid)),
                    );
                    m.insert("dp_drop_malformed".into(), json!(sum(|p| p.drop_malformed)));
                    m.insert("dp_rx_mgmt".into(), json!(sum(|p| p.rx_mgmt)));
                    m.insert(
                        "dp_drop_mgmt_rate_source".into(),
                        json!(sum(|p| p.drop_mgmt_rate_source)),
                    );
                    m.insert(
                        "dp_drop_mgmt_rate_port".into(),
                        json!(sum(|p| p.drop_mgmt_rate_port)),
                    );
                    m.insert(
                        "dp_drop_mgmt_backlog".into(),
                        json!(sum(|p| p.drop_mgmt_backlog)),
                    );
                    m.insert(
                        "dp_drop_mgmt_bad_source".into(),
                        json!(sum(|p| p.drop_mgmt_bad_source)),
                    );
                    m.insert("dp_drop_wrong_peer".into(), json!(sum(|p| p.drop_wrong_peer)));
                    m.insert(
                        "dp_drop_socket_buffer".into(),
                        json!(sum(|p| p.drop_socket_buffer)),
                    );
                    let core = |w: &o7s_abi::msg::WorkerInfo| {
                        w.core.map_or("unpinned".to_string(), |c| c.to_string())
                    };
                    let workers = if s.workers.is_empty() {
                        std::slice::from_ref(&s.worker)
                    } else {
                        s.workers.as_slice()
                    };
                    m.insert("dp_workers".into(), json!(workers.len()));
                    m.insert(
                        "dp_worker_core".into(),
                        json!(workers.iter().map(core).collect::<Vec<_>>().join(",")),
                    );
                    m.insert(
                        "dp_yields_for_apps".into(),
                        json!(workers.iter().map(|w| w.yields_for_apps).sum::<u64>()),
                    );
                    let errors: Vec<&String> = workers
                        .iter()
                        .filter_map(|w| w.pin_error.as_ref())
                        .collect();
                    if !errors.is_empty() {
                        m.insert("dp_worker_pin_error".into(), json!(errors));
                    }
                    m.insert(
                        "dp_polling".into(),
                        json!(if s.worker.busy_poll {
                            "busy".to_string()
                        } else {
                            format!("adaptive, {} us", s.worker.spin_us)
                        }),
                    );
                }
                Reply::Table { rows: vec![m] }
            }
        }
    }
}

/// Returns free heap memory to the system (glibc's `malloc_trim`; nothing elsewhere).
/// Logs what an auto-started program writes on stderr, line by line (lines of at most
/// 1000 bytes; longer ones are cut in pieces), on a thread of its own that ends with it.
fn log_child_stderr(label: String, pid: u32, err: std::process::ChildStderr) {
    std::thread::spawn(move || {
        use std::io::{BufRead, Read};
        let mut r = std::io::BufReader::new(err);
        let mut line = Vec::new();
        while (&mut r)
            .take(1000)
            .read_until(b'\n', &mut line)
            .is_ok_and(|n| n > 0)
        {
            let text = String::from_utf8_lossy(&line);
            tracing::info!("{label}[{pid}]: {}", text.trim_end());
            line.clear();
        }
    });
}

fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // Safety: malloc_trim only walks the allocator's own free lists; it is thread-safe and
    // takes no pointer from us.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The names a request carries (checked against the reference's limits).
fn ctl_names(c: &Ctl) -> Vec<&str> {
    match c {
        Ctl::NameCreate { name, .. }
        | Ctl::NameDestroy { name }
        | Ctl::NameRegister { name, .. }
        | Ctl::NameUnregister { name, .. }
        | Ctl::BindProgram { name, .. }
        | Ctl::UnbindProgram { name, .. }
        | Ctl::BindProcess { name, .. }
        | Ctl::UnbindProcess { name, .. } => vec![name.as_str()],
        _ => vec![],
    }
}

fn parse_u16(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The hash of a request as its response carries it (`o7s_proto::oap::req_hash`).
pub fn req_hash(req: &[u8], md_nid: u16) -> Result<Vec<u8>, String> {
    o7s_proto::oap::req_hash(req, md_nid).map_err(|e| e.to_string())
}

/// Verifies a response's certificate (chain up to `trust`, CN = `name`) and its signature
/// over every byte before it, when the server sent a certificate.
pub fn verify_response(
    trust: &crate::auth::TrustStore,
    name: &str,
    req: &[u8],
    resp: &[u8],
) -> Result<(), String> {
    let r = OapHdr::parse(resp).map_err(|e| e.to_string())?;
    if r.crt.is_empty() {
        tracing::info!("No certificate provided by {name}.");
        return Ok(());
    }
    tracing::debug!("Loaded peer certificate for {name}.");
    let q = OapHdr::parse(req).map_err(|e| e.to_string())?;
    let hl = req_hash(req, q.md_nid)?.len();
    let (_, sig) = r
        .split_tail(Role::Response, hl)
        .map_err(|e| e.to_string())?;
    let signed = resp
        .get(..r.signed_len(Role::Response, hl))
        .ok_or("truncated response")?;
    trust
        .verify(&r.crt, name)
        .map_err(|e| format!("server certificate: {e}"))?;
    tracing::info!("Successfully verified peer certificate for {name}.");
    crate::auth::verify_signature(&r.crt, r.md_nid, signed, sig)?;
    tracing::info!("Successfully authenticated {name}.");
    Ok(())
}

/// The client's key of an encrypted flow, as the data plane takes it.
fn client_key(conf: &EncConf, eph: Ephemeral, resp: &[u8]) -> Result<CryptSpec, String> {
    let k = o7s_proto::oap::client_key(conf, eph, resp).map_err(|e| e.to_string())?;
    Ok(CryptSpec {
        cipher: k.cipher,
        key: k.key.to_vec(),
        rotation_bits: 0,
    })
}

/// The server's OAP response and flow key (`o7s_proto::oap::server_key`), with the time
/// and randomness of this host.
fn server_key(
    conf: Option<EncConf>,
    req: &OapHdr,
    raw_req: &[u8],
) -> Result<(OapHdr, Option<CryptSpec>), String> {
    let rng = ring::rand::SystemRandom::new();
    let (resp, key) = o7s_proto::oap::server_key(conf, req, raw_req, now_ns(), &rng)
        .map_err(|e| e.to_string())?;
    if resp.cipher_nid != req.cipher_nid || resp.kdf_nid != req.kdf_nid {
        tracing::info!(
            "The client asked for cipher {} / KDF {}; this server requires at least {} / {}: using those.",
            req.cipher_nid,
            req.kdf_nid,
            resp.cipher_nid,
            resp.kdf_nid
        );
    }
    Ok((
        resp,
        key.map(|k| CryptSpec {
            cipher: k.cipher,
            key: k.key.to_vec(),
            rotation_bits: 0,
        }),
    ))
}
