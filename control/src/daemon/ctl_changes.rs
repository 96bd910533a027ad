//! o7sctl's requests that change something (IPCPs, names, bindings, ports, configuration):
//! each a call into the daemon, answered in a Reply. The listings: views.rs.

use crate::config::{IpcpKind, Lb};
use crate::daemon::Owner;
use crate::error::CtlError;
use o7s::proto::{Ctl, Reply};
use o7s_abi::msg::{PortKind, ToDp};
use serde_json::Value;
use std::time::Duration;

impl Owner {
    /// Does what request `c` (not a listing) asks, for a client with credentials `cred`.
    pub(super) fn ctl_change(&self, c: Ctl, cred: &o7s::ipc::PeerCred) -> Reply {
        let _table = |rows: Vec<Value>| Reply::Table {
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
        let err = |e: CtlError| e.reply();
        match c {
            Ctl::IpcpEnroll {
                name,
                dst,
                autobind,
            } => match self.uni_cli(&name, None, Some(&dst), autobind) {
                Ok(()) => {
                    self.st().created.remove(&name);
                    Reply::Ok
                }
                Err(e) => err(e),
            },
            Ctl::IpcpConnect {
                name,
                dst,
                component,
            } => match self.uni_connect(&name, &dst, component.as_deref()) {
                Ok(()) => Reply::Ok,
                Err(e) => err(e),
            },
            Ctl::IpcpDisconnect {
                name,
                dst,
                component,
            } => match self.uni_disconnect(&name, &dst, component.as_deref()) {
                Ok(_) => Reply::Ok,
                Err(e) => err(e),
            },
            Ctl::IpcpCreate { name, kind } => match IpcpKind::parse(&kind) {
                Some(k) => {
                    let mut st = self.st();
                    if st.ipcps.iter().any(|i| i.name == name) || st.created.contains_key(&name) {
                        return err(CtlError::Exists(format!("an IPCP named {name} exists")));
                    }
                    st.created.insert(name.clone(), k);
                    tracing::info!(
                        "Created IPCP {name} ({}); bootstrap it to use it.",
                        k.as_str()
                    );
                    Reply::Ok
                }
                None => err(CtlError::Invalid(format!("unknown IPCP type {kind}"))),
            },
            // Served where its port may be waited for (serve.rs), never on the loop.
            Ctl::IpcpBootstrap { .. } => err(CtlError::Invalid(
                "ipcp bootstrap reached the loop (a defect; please report it)".into(),
            )),
            Ctl::IpcpDestroy { name } => {
                let mut st = self.st();
                if st.created.remove(&name).is_some() {
                    return Reply::Ok;
                }
                let Some(pos) = st.ipcps.iter().position(|i| i.name == name) else {
                    return err(CtlError::NotFound(format!("no IPCP named {name}")));
                };
                let flows: Vec<u64> = st
                    .flows
                    .iter()
                    .filter(|(_, f)| f.ipcp == pos)
                    .map(|(k, _)| *k)
                    .collect();
                if !flows.is_empty() {
                    return err(CtlError::Invalid(format!("{name} carries {} flows", flows.len()),
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
                        return err(CtlError::Invalid("lb must be spill or round-robin".into()))
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
                    return err(CtlError::NotFound(format!("no name {name}")));
                }
                for i in &mut st.ipcps {
                    i.reg_remove(&name);
                }
                Reply::Ok
            }
            Ctl::NameRegister { name, targets } => match self.register(&name, &targets) {
                Ok(()) => Reply::Ok,
                Err(e) => err(e),
            },
            Ctl::NameUnregister { name, targets } => {
                let mut st = self.st();
                let mut n = 0;
                let mut dns = vec![];
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
                        dns.push((server, hex::encode(i.hash.hash(&name)), addr.is_ipv4()));
                    }
                }
                drop(st);
                if !dns.is_empty() {
                    // The DNS servers are told on a thread of their own (up to 2 s each):
                    // the loop does not wait for them, and the answer does not depend on
                    // them (a failure is logged, as when registering).
                    let name = name.clone();
                    std::thread::spawn(move || {
                        for (server, hex, v4) in dns {
                            match crate::dns::unregister(server, &hex, v4, Duration::from_secs(2))
                            {
                                Ok(()) => tracing::info!(
                                    "Removed {name} ({hex}) from the DNS server {server}."
                                ),
                                Err(e) => tracing::error!(
                                    "cannot remove {name} from the DNS server {server}: {e}"
                                ),
                            }
                        }
                    });
                }
                if n == 0 {
                    return err(CtlError::NotFound(format!(
                        "{name} is not registered in {}",
                        targets.join(", ")
                    )));
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
                Err(e) => err(e),
            },
            Ctl::UnbindProgram { prog, name } => {
                let mut st = self.st();
                if !st.reg.names.contains_key(&name) {
                    return err(CtlError::NotFound(format!("no name {name}")));
                }
                if !st.reg.unbind_prog(&name, &prog) {
                    return err(CtlError::NotFound(format!("{prog} is not bound to {name}"),
                    ));
                }
                Reply::Ok
            }
            Ctl::BindProcess { pid, name } => {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    return err(CtlError::NotFound(format!("no process {pid}")));
                }
                self.name_create(&name, None);
                {
                    let mut st = self.st();
                    st.reg.bind_pid(pid, &name);
                }
                self.wake();
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
                    err(CtlError::NotFound(format!("process {pid} is not bound to {name}"),
                    ))
                }
            }
            Ctl::PortSet {
                target,
                rate,
                queue,
                loss,
                dup,
                reorder,
                delay,
                corrupt,
            } => match self.port_set(
                &target,
                rate.as_deref(),
                queue,
                [
                    loss.as_deref(),
                    dup.as_deref(),
                    reorder.as_deref(),
                    delay.as_deref(),
                    corrupt.as_deref(),
                ],
            ) {
                Ok(()) => Reply::Ok,
                Err(e) => err(e),
            },
            Ctl::Capture { .. } => err(CtlError::Invalid("a capture streams its frames: o7sctl capture".into(),
            )),
            Ctl::ConfigLoad { path, content: None } => err(CtlError::Invalid(format!("config load {path}: the client sent no text (o7sctl reads the file and sends it; the daemon opens no path a client names)"),
            )),
            Ctl::ConfigLoad {
                path,
                content: Some(text),
            } if text.len() > o7s::proto::MAX_CONFIG_BYTES => err(CtlError::Invalid(format!("config load {path}: larger than {} KiB", o7s::proto::MAX_CONFIG_BYTES / 1024),
            )),
            // Served where its ports may be waited for (serve.rs), never on the loop.
            Ctl::ConfigLoad { .. } => err(CtlError::Invalid(
                "config load reached the loop (a defect; please report it)".into(),
            )),
            // The listings (views.rs).
            c @ (Ctl::IpcpList | Ctl::RouteList | Ctl::LsdbList | Ctl::DhtList | Ctl::NeighbourList | Ctl::NameList | Ctl::PortList | Ctl::CacheList | Ctl::WorkerList | Ctl::FlowList | Ctl::Stats) => self.ctl(c, cred, None),
        }
    }
}
