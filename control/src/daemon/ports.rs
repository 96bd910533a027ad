//! Bootstrapping an eth or udp IPCP: its port is asked of the data plane on the loop and
//! waited for on the thread that bootstraps it (the admin thread, start-up); the IPCP is
//! made on the loop when the answer comes. The name is taken meanwhile (a second bootstrap
//! of it is refused).

use crate::config::IpcpKind;
use crate::daemon::{Daemon, Owner};
use crate::error::BootstrapError;
use crate::eth::EthIpcp;
use o7s_abi::msg::{FromDp, PortKind, ToDp};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// How long the data plane may take to open a port.
const PORT_WAIT: Duration = Duration::from_secs(5);

/// A port asked for an IPCP being bootstrapped.
#[derive(Debug)]
pub(super) enum PortAsked {
    /// A port of an adopted data plane on the device: open already (its answer).
    Adopted(u32, FromDp),
    /// Asked of the data plane: its answer comes on the receiver.
    Asked(u32, Receiver<FromDp>),
}

impl Daemon {
    /// Creates and bootstraps an eth or udp IPCP, waiting on this thread for its port.
    pub fn ipcp_bootstrap(
        &self,
        name: &str,
        kind: IpcpKind,
        layer: &str,
        dev: &str,
        port_kind: PortKind,
        hash: o7s_wire::hash::HashAlgo,
    ) -> Result<(), BootstrapError> {
        let (n, d) = (name.to_string(), dev.to_string());
        let (port, reply) = match self.on_loop(move |o| o.port_ask(&n, &d, port_kind))?? {
            PortAsked::Adopted(port, reply) => (port, reply),
            PortAsked::Asked(port, rx) => match rx.recv_timeout(PORT_WAIT) {
                Ok(reply) => (port, reply),
                Err(_) => {
                    self.dp.add_port_forget(port);
                    self.port_given_up(name);
                    return Err(BootstrapError::DataPlane(crate::dp::DpError::Silent));
                }
            },
        };
        let (n, l, d) = (name.to_string(), layer.to_string(), dev.to_string());
        match self.on_loop(move |o| o.port_answered(&n, kind, &l, &d, port_kind, hash, port, reply))
        {
            Ok(r) => r,
            Err(e) => {
                self.port_given_up(name);
                Err(e.into())
            }
        }
    }

    /// The name of an IPCP whose bootstrap failed after its port was asked is free again
    /// (best effort: when the loop does not take even that, o7sd is stopping).
    fn port_given_up(&self, name: &str) {
        let n = name.to_string();
        if let Err(e) = self.on_loop(move |o| o.st().opening.remove(&n)) {
            tracing::warn!("IPCP {name}: its name stays taken until o7sd restarts: {e}");
        }
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
            let name = name.to_string();
            self.on_loop(move |o| {
                if let Some(i) = o.st().ipcps.iter_mut().find(|x| x.name == name) {
                    i.dns = Some(d);
                }
            })?;
        }
        Ok(())
    }
}

impl Owner {
    /// The first step of an eth/udp IPCP's bootstrap: its name checked and taken, its port
    /// asked of the data plane (or an adopted one taken).
    fn port_ask(
        &self,
        name: &str,
        dev: &str,
        port_kind: PortKind,
    ) -> Result<PortAsked, BootstrapError> {
        {
            let st = self.st();
            if st.ipcps.iter().any(|i| i.name == name) || st.opening.contains(name) {
                return Err(BootstrapError::Exists(name.to_string()));
            }
        }
        // A port of an adopted data plane on the same device is this IPCP's (its XDP
        // program and its flows stay).
        let asked = match self.take_adopted_port(dev, port_kind) {
            Some(p) => {
                tracing::info!("IPCP {name} takes the adopted port {} on {dev}.", p.port);
                PortAsked::Adopted(
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
                let rx = self
                    .dp
                    .add_port_start(&m, port)
                    .map_err(BootstrapError::DataPlane)?;
                PortAsked::Asked(port, rx)
            }
        };
        self.st().opening.insert(name.to_string());
        Ok(asked)
    }

    /// The last step: the IPCP made with the data plane's answer for its port.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn port_answered(
        &self,
        name: &str,
        kind: IpcpKind,
        layer: &str,
        dev: &str,
        port_kind: PortKind,
        hash: o7s_wire::hash::HashAlgo,
        port: u32,
        reply: FromDp,
    ) -> Result<(), BootstrapError> {
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
        let mut st = self.st();
        st.opening.remove(name);
        // The adopted flows' endpoint ids on this port are theirs (see adopt_flows).
        for &(_, local) in st.adopted_eids.iter().filter(|(p, _)| *p == ipcp.port) {
            ipcp.shim.adopt_eid(local);
        }
        st.ipcps.push(ipcp);
        res
    }
}
