//! Configuration: applying a configuration file, names, bindings, bootstrapping IPCPs,
//! registering names.

use crate::config::{IpcpKind, Lb};
use crate::daemon::Owner;
use crate::error::CtlError;
use crate::registry::{resolve_prog, ProgBind};
use o7s_abi::msg::{PortKind, ToDp};
use std::time::Duration;

impl Owner {
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
