//! Applying a configuration (o7sd's start, `o7sctl config load`): how its IPCPs stand
//! against those that exist, then names, bindings, IPCPs (their ports opened and waited
//! for on the applying thread), registrations.

use crate::config::{Config, IpcpKind};
use crate::daemon::{Daemon, Owner};
use o7s_abi::msg::PortKind;

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

impl Owner {
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
}

impl Daemon {
    /// Applies a configuration: names, bindings, IPCPs, registrations. Run-time failures
    /// (a device that does not exist) are logged; the daemon keeps running. An IPCP that
    /// exists as the configuration says is left as it is; one that exists as something else
    /// is skipped with an error (`config load` refuses such a file before this). Runs on
    /// the thread that loads it (start-up, the admin thread): each step on the state is a
    /// step on the loop, and the ports are waited for here. Returns what failed, each
    /// logged as well (`config load` answers with them).
    pub fn apply(&self, cfg: &Config) -> Vec<String> {
        let mut failed = Vec::new();
        let mut fail = |m: String| {
            tracing::error!("{m}");
            failed.push(m);
        };
        for n in &cfg.notes {
            tracing::info!("{n}");
        }
        let names = cfg.names.clone();
        match self.on_loop(move |o| o.apply_names(&names)) {
            Ok(e) => e.into_iter().for_each(&mut fail),
            Err(e) => {
                fail(format!("the configuration's names are not applied: {e}"));
                return failed;
            }
        }
        for i in &cfg.ipcps {
            let conf = i.clone();
            let standing = match self.on_loop(move |o| o.standing(&conf)) {
                Ok(s) => s,
                Err(e) => {
                    fail(format!(
                        "IPCP {} (line {}) not applied: {e}",
                        i.name, i.line
                    ));
                    return failed;
                }
            };
            match standing {
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
                    fail(format!("{why} (line {}): skipped.", i.line));
                    continue;
                }
            }
            let layer = i
                .bootstrap
                .clone()
                .or_else(|| i.enrol.clone())
                .unwrap_or_default();
            if matches!(
                i.kind,
                IpcpKind::Unicast | IpcpKind::Broadcast | IpcpKind::Local
            ) {
                let conf = i.clone();
                let made = self.on_loop(move |o| match conf.kind {
                    IpcpKind::Unicast => o.unicast_create(&conf),
                    IpcpKind::Broadcast => o.broadcast_create(&conf),
                    _ => {
                        o.local_create(&conf);
                        Ok(())
                    }
                });
                match made {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => fail(format!("IPCP {} (line {}): {e}", i.name, i.line)),
                    Err(e) => {
                        fail(format!(
                            "IPCP {} (line {}) not applied: {e}",
                            i.name, i.line
                        ));
                        return failed;
                    }
                }
                continue;
            }
            if !matches!(
                i.kind,
                IpcpKind::EthDix | IpcpKind::EthLlc | IpcpKind::Udp4 | IpcpKind::Udp6
            ) {
                fail(format!(
                    "IPCP {} (line {}): type {} is not implemented yet (eth-dix, eth-llc, udp4, udp6, local and unicast are); skipped",
                    i.name,
                    i.line,
                    i.kind.as_str()
                ));
                continue;
            }
            let udp =
                i.ip.as_deref()
                    .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                    .map(|ip| std::net::SocketAddr::new(ip, i.port));
            let dns = match i.dns.as_deref().map(|d| (d, crate::dns::server_addr(d))) {
                Some((d, None)) => {
                    fail(format!(
                        "IPCP {} (line {}): dns={d} is not an address",
                        i.name, i.line
                    ));
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
                    fail(format!("IPCP {} (line {}): no usable ip", i.name, i.line));
                    continue;
                }
            };
            match self.ipcp_bootstrap(&i.name, i.kind, &layer, &dev, port_kind, i.hash) {
                Ok(()) => {
                    let conf = i.clone();
                    let is_udp = udp.is_some();
                    match self.on_loop(move |o| o.after_bootstrap(&conf, dns, is_udp)) {
                        Ok(e) => e.into_iter().for_each(&mut fail),
                        Err(e) => {
                            fail(format!(
                                "IPCP {} (line {}): not finished: {e}",
                                i.name, i.line
                            ));
                            return failed;
                        }
                    }
                }
                Err(e) => fail(format!("IPCP {} (line {}): {e}", i.name, i.line)),
            }
        }
        failed
    }
}

impl Owner {
    /// A configuration's names and their bindings; what failed.
    pub(super) fn apply_names(&self, names: &[crate::config::NameConf]) -> Vec<String> {
        let mut failed = Vec::new();
        for n in names {
            self.name_create(&n.name, Some(n.lb));
            if let Some(e) = self.st().reg.names.get_mut(&n.name) {
                e.paths.clone_from(&n.paths);
                e.server_auth_required = n.server_auth_required;
            }
            for (prog, args, auto) in &n.progs {
                if let Err(e) = self.bind_program(prog, &n.name, *auto, args.clone(), None) {
                    failed.push(format!("name {}: {e}", n.name));
                }
            }
        }
        failed
    }

    /// What a configuration says of an eth/udp IPCP whose port is open: its rate, queue
    /// and impairments, its DNS server (`dns`; `udp`: it is a udp IPCP), its names.
    fn after_bootstrap(
        &self,
        i: &crate::config::IpcpConf,
        dns: Option<std::net::SocketAddr>,
        udp: bool,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        let impair = i.impair.each_ref().map(Option::as_deref);
        if i.rate_bps.is_some() || i.queue.is_some() || impair.iter().any(Option::is_some) {
            let rate = i.rate_bps.map(|r| r.to_string());
            if let Err(e) = self.port_set(&i.name, rate.as_deref(), i.queue, impair) {
                failed.push(format!(
                    "IPCP {} (line {}): rate/queue/impairments: {e}",
                    i.name, i.line
                ));
            }
        }
        if let Some(d) = dns {
            if let Some(ipcp) = self.st().ipcps.iter_mut().find(|x| x.name == i.name) {
                ipcp.dns = Some(d);
            }
            tracing::info!("IPCP {}: names resolve through the DNS server {d}.", i.name);
        } else if udp {
            tracing::info!(
                "IPCP {}: DNS server not in use (system resolver, /etc/hosts).",
                i.name
            );
        }
        for r in &i.reg {
            if let Err(e) = self.register(r, std::slice::from_ref(&i.name)) {
                failed.push(format!("registering {r} in {}: {e}", i.name));
            }
        }
        failed
    }
}
