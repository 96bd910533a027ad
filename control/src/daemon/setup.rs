//! Configuration: applying a configuration file, names, bindings, bootstrapping IPCPs,
//! registering names.

use crate::config::{Config, IpcpKind, Lb};
use crate::daemon::Daemon;
use crate::error::{BootstrapError, CtlError};
use crate::eth::EthIpcp;
use crate::registry::{resolve_prog, ProgBind};
use o7s_abi::msg::{FromDp, PortKind, ToDp};
use std::time::Duration;

/// How an IPCP of a configuration stands against the IPCPs that exist.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// No IPCP has its name.
    New,
    /// One does, of the kind, layer and device the configuration gives: left as it is.
    Same,
    /// One does, and is something else (why).
    Conflict(String),
}

/// Where an IPCP of kind `kind` with `dev` and `ip`/`port` from a configuration sits: its
/// device, or for udp its address as the IPCP list shows it.
fn conf_dev(i: &crate::config::IpcpConf) -> String {
    i.ip.as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, i.port).to_string())
        .or_else(|| i.dev.clone())
        .unwrap_or_default()
}

impl Daemon {
    /// How `i` stands against the IPCPs that exist (by name, across every kind).
    pub(super) fn standing(&self, i: &crate::config::IpcpConf) -> Standing {
        let st = self.st();
        let file_says = || {
            format!(
                "{} in layer {}{}",
                i.kind.as_str(),
                i.bootstrap.as_deref().or(i.enrol.as_deref()).unwrap_or("-"),
                if i.kind == IpcpKind::Unicast {
                    String::new()
                } else {
                    format!(" on {}", conf_dev(i))
                }
            )
        };
        if let Some(e) = st.ipcps.iter().find(|e| e.name == i.name) {
            let same = e.kind == i.kind
                && i.bootstrap.as_deref() == Some(e.layer.as_str())
                && e.dev == conf_dev(i);
            return if same {
                Standing::Same
            } else {
                Standing::Conflict(format!(
                    "IPCP {} exists as {} in layer {} on {}, the file makes it {}",
                    i.name,
                    e.kind.as_str(),
                    e.layer,
                    e.dev,
                    file_says()
                ))
            };
        }
        if let Some(u) = st.unicast.iter().find(|u| u.name == i.name) {
            let same =
                i.kind == IpcpKind::Unicast && (i.bootstrap.is_none() || i.bootstrap == u.layer);
            return if same {
                Standing::Same
            } else {
                Standing::Conflict(format!(
                    "IPCP {} exists as unicast in layer {}, the file makes it {}",
                    i.name,
                    u.layer.as_deref().unwrap_or("(none yet)"),
                    file_says()
                ))
            };
        }
        Standing::New
    }

    /// `config load`: what in `cfg` contradicts the IPCPs that exist; the load is refused
    /// whole when anything does.
    pub(super) fn config_conflicts(&self, cfg: &Config) -> Vec<String> {
        cfg.ipcps
            .iter()
            .filter_map(|i| match self.standing(i) {
                Standing::Conflict(why) => Some(why),
                _ => None,
            })
            .collect()
    }

    /// Applies a configuration: names, bindings, IPCPs, registrations. Run-time failures
    /// (a device that does not exist) are logged; the daemon keeps running. An IPCP that
    /// exists as the configuration says is left as it is; one that exists as something else
    /// is skipped with an error (`config load` refuses such a file before this).
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
            match self.standing(i) {
                Standing::New => {}
                Standing::Same => {
                    tracing::info!(
                        "IPCP {} (line {}) exists as the configuration says: left as it is.",
                        i.name,
                        i.line
                    );
                    continue;
                }
                Standing::Conflict(why) => {
                    tracing::error!("{why} (line {}): skipped.", i.line);
                    continue;
                }
            }
            let layer = i
                .bootstrap
                .clone()
                .or_else(|| i.enrol.clone())
                .unwrap_or_default();
            if i.kind == IpcpKind::Unicast {
                self.unicast_create(i);
                continue;
            }
            if i.kind == IpcpKind::Broadcast {
                self.broadcast_create(i);
                continue;
            }
            if i.kind == IpcpKind::Local {
                self.local_create(i);
                continue;
            }
            if !matches!(
                i.kind,
                IpcpKind::EthDix | IpcpKind::EthLlc | IpcpKind::Udp4 | IpcpKind::Udp6
            ) {
                tracing::warn!(
                    "IPCP {} (line {}): type {} is not implemented yet (eth-dix, eth-llc, udp4, udp6, local and unicast are); skipped",
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
                    let impair = i.impair.each_ref().map(Option::as_deref);
                    if i.rate_bps.is_some()
                        || i.queue.is_some()
                        || impair.iter().any(Option::is_some)
                    {
                        let rate = i.rate_bps.map(|r| r.to_string());
                        if let Err(e) = self.port_set(&i.name, rate.as_deref(), i.queue, impair) {
                            tracing::error!(
                                "IPCP {} (line {}): rate/queue/impairments: {e}",
                                i.name,
                                i.line
                            );
                        }
                    }
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
                            tracing::warn!("registering {r} in {}: {e}", i.name);
                        }
                    }
                }
                Err(e) => tracing::error!("IPCP {} (line {}): {e}", i.name, i.line),
            }
        }
    }

    /// `o7sctl port set` and the `rate`/`queue` keys: the egress cap and queue bound of the
    /// port of IPCP, device or port id `target`, kept with the IPCP (sent again when its
    /// port is opened again) and sent to the data plane.
    pub(super) fn port_set(
        &self,
        target: &str,
        rate: Option<&str>,
        queue: Option<u32>,
        impair: [Option<&str>; 5],
    ) -> Result<(), CtlError> {
        let rate_bps = rate
            .map(o7s_abi::rate::parse_rate)
            .transpose()
            .map_err(CtlError::Invalid)?;
        let [loss, dup, reorder, delay, corrupt] = impair;
        let ppm = |k: &str, v: Option<&str>| {
            v.map(o7s_abi::impair::parse_ppm)
                .transpose()
                .map_err(|e| CtlError::Invalid(format!("{k} {e}")))
        };
        let delay_us = delay
            .map(o7s_abi::impair::parse_delay)
            .transpose()
            .map_err(|e| CtlError::Invalid(format!("delay {e}")))?
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        let impair = [
            ppm("loss", loss)?,
            ppm("dup", dup)?,
            ppm("reorder", reorder)?,
            delay_us,
            ppm("corrupt", corrupt)?,
        ];
        if let Some(q) = queue.filter(|q| !(1..=o7s_abi::rate::MAX_QUEUE).contains(q)) {
            return Err(CtlError::Invalid(format!(
                "queue {q}: expected 1 to {} PDUs",
                o7s_abi::rate::MAX_QUEUE
            )));
        }
        if rate_bps.is_none() && queue.is_none() && impair.iter().all(Option::is_none) {
            return Err(CtlError::Invalid(
                "port set: give rate RATE (e.g. 100M, 0 for none), queue PDUS, and/or loss/dup/reorder/corrupt RATE (1%), delay TIME (5ms)".into(),
            ));
        }
        let (name, port, shaping, impair) = {
            let mut st = self.st();
            let i = st
                .ipcps
                .iter_mut()
                .find(|i| {
                    i.name == target || i.dev == target || target.parse::<u32>() == Ok(i.port)
                })
                .ok_or_else(|| {
                    CtlError::NotFound(format!("no port, device or IPCP named {target}"))
                })?;
            if rate_bps.is_some() {
                i.shaping.0 = rate_bps;
            }
            if queue.is_some() {
                i.shaping.1 = queue;
            }
            if impair.iter().any(Option::is_some) {
                if !matches!(
                    i.kind,
                    IpcpKind::EthDix | IpcpKind::EthLlc | IpcpKind::Udp4 | IpcpKind::Udp6
                ) {
                    return Err(CtlError::Invalid(format!(
                        "port set: loss, dup, reorder, delay and corrupt apply to Ethernet and UDP ports; {} is {}",
                        i.name,
                        i.kind.as_str()
                    )));
                }
                for (was, new) in i.impair.iter_mut().zip(impair) {
                    if new.is_some() {
                        *was = new;
                    }
                }
            }
            (i.name.clone(), i.port, i.shaping, i.impair)
        };
        self.send_shaping(port, shaping, impair)?;
        if rate_bps.is_some() || queue.is_some() {
            tracing::info!(
                "IPCP {name}: port {port} egress cap {} bit/s, queue {} PDUs per N-1 flow.",
                shaping.0.unwrap_or(0),
                shaping.1.map_or("default".to_string(), |q| q.to_string())
            );
        }
        if impair.iter().any(Option::is_some) {
            let [l, d, r, t, c] = impair.map(Option::unwrap_or_default);
            tracing::info!(
                "IPCP {name}: port {port} impairs the data frames it receives: loss {}%, dup {}%, reorder {}%, delay {} us, corrupt {}%.",
                f64::from(l) / 1e4,
                f64::from(d) / 1e4,
                f64::from(r) / 1e4,
                t,
                f64::from(c) / 1e4
            );
        }
        Ok(())
    }

    /// Sends a port's shaping and impairments to the data plane.
    pub(super) fn send_shaping(
        &self,
        port: u32,
        (rate_bps, queue): (Option<u64>, Option<u32>),
        [loss_ppm, dup_ppm, reorder_ppm, delay_us, corrupt_ppm]: [Option<u32>; 5],
    ) -> Result<(), CtlError> {
        let m = ToDp::PortSet {
            port,
            rate_bps,
            queue,
            loss_ppm,
            dup_ppm,
            reorder_ppm,
            delay_us,
            corrupt_ppm,
        };
        if self.dp.send(&m, &[]) {
            Ok(())
        } else {
            Err(CtlError::Invalid(
                "the data plane did not take the setting (is it running?)".into(),
            ))
        }
    }

    pub(super) fn name_create(&self, name: &str, lb: Option<Lb>) {
        if self.st().reg.create(name, lb) {
            tracing::info!("Created new name: {name}.");
        }
    }

    pub(super) fn bind_program(
        &self,
        prog: &str,
        name: &str,
        auto: bool,
        args: Vec<String>,
        run_as: Option<(u32, u32)>,
    ) -> Result<(), CtlError> {
        let exe = resolve_prog(prog);
        match &exe {
            Some(e) if e.as_path() != std::path::Path::new(prog) => {
                tracing::info!("program {prog} resolves to {}", e.display())
            }
            None => tracing::warn!(
                "program {prog} not found (nor {} in o7sd's PATH): o7sd cannot start it, but a process running a program of that file name started by hand accepts flows for {name}",
                std::path::Path::new(prog)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            _ => {}
        }
        self.name_create(name, None);
        let replaced = self.st().reg.bind_prog(
            name,
            ProgBind {
                path: prog.to_string(),
                exe,
                args,
                auto,
                run_as,
            },
        );
        let replaced: Vec<&str> = replaced.iter().map(|p| p.path.as_str()).collect();
        tracing::info!(
            "Bound program {prog} to name {name}{}{}{}.",
            if auto { " (auto-start)" } else { "" },
            run_as.map_or(String::new(), |(u, g)| format!(", runs as uid {u} gid {g}")),
            if replaced.is_empty() {
                String::new()
            } else {
                format!(" (replaces the binding of {})", replaced.join(", "))
            }
        );
        // Processes waiting in accept that run it may serve the name now.
        self.wake();
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
    ) -> Result<(), BootstrapError> {
        if self.st().ipcps.iter().any(|i| i.name == name) {
            return Err(BootstrapError::Exists(name.to_string()));
        }
        // A port of an adopted data plane on the same device is this IPCP's (its XDP
        // program and its flows stay).
        let (port, reply) = match self.take_adopted_port(dev, port_kind) {
            Some(p) => {
                tracing::info!("IPCP {name} takes the adopted port {} on {dev}.", p.port);
                (
                    p.port,
                    FromDp::PortUp {
                        port: p.port,
                        mac: p.mac,
                        mtu: p.mtu,
                        io_path: p.io_path,
                    },
                )
            }
            None => {
                let port = {
                    let mut st = self.st();
                    st.next_port += 1;
                    st.next_port
                };
                let m = ToDp::AddPort {
                    port,
                    dev: dev.to_string(),
                    kind: port_kind,
                };
                (
                    port,
                    self.dp
                        .add_port(m, port)
                        .map_err(BootstrapError::DataPlane)?,
                )
            }
        };
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
                Err(BootstrapError::Port {
                    dev: dev.to_string(),
                    error,
                })
            }
            _ => Err(BootstrapError::DataPlane(crate::dp::DpError::Refused(
                "unexpected answer".into(),
            ))),
        };
        self.st().ipcps.push(ipcp);
        res
    }

    /// Bootstraps a udp4/udp6 IPCP from o7sctl's settings: `ip`, `port` (3435), `dns`.
    pub(super) fn udp_bootstrap(
        &self,
        name: &str,
        kind: IpcpKind,
        layer: &str,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), BootstrapError> {
        let bad = BootstrapError::Setting;
        if let Some(k) = settings
            .keys()
            .find(|k| !["type", "ip", "port", "dns"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "{k} is not a setting of a {} IPCP (ip, port, dns)",
                kind.as_str()
            )));
        }
        let ip: std::net::IpAddr = settings
            .get("ip")
            .ok_or(bad("ip is required".into()))?
            .parse()
            .map_err(|_| bad("ip is not an address".into()))?;
        if ip.is_ipv4() != (kind == IpcpKind::Udp4) {
            return Err(bad(format!(
                "{ip} is not an address of a {} IPCP",
                kind.as_str()
            )));
        }
        let port: u16 = match settings.get("port") {
            None => 3435,
            Some(p) => p
                .parse()
                .map_err(|_| bad(format!("port {p} is not a port number")))?,
        };
        let dns = match settings.get("dns") {
            None => None,
            Some(d) => {
                Some(crate::dns::server_addr(d).ok_or(bad(format!("dns {d} is not an address")))?)
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
    pub fn register(&self, name: &str, targets: &[String]) -> Result<(), CtlError> {
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
        drop(st);
        for t in targets {
            if self.local_register(name, t) {
                tracing::info!("Registered {name} with local IPCP {t}.");
                done += 1;
            }
        }
        if done == 0 {
            return Err(CtlError::NotFound(format!(
                "no IPCP or layer named {}",
                targets.join(", ")
            )));
        }
        Ok(())
    }
}
