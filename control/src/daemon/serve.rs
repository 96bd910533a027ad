//! An o7sctl request's way through o7sd, on the thread that serves it (the admin thread,
//! or the metrics endpoint for a listing): what waits (the data plane's counters, a port
//! being opened) waits there; what reads or changes the state is a step on the loop
//! ([`Daemon::on_loop`]), which never waits for either.

use crate::config::IpcpKind;
use crate::daemon::views::{ctl_names, parse_u16};
use crate::daemon::Daemon;
use crate::error::CtlError;
use o7s::ipc::PeerCred;
use o7s::proto::{Ctl, ErrorCode, Reply};
use o7s_abi::msg::PortKind;
use std::collections::BTreeMap;

/// Whether request `c` shows the data plane's counters (asked before its step on the loop).
fn needs_dp_stats(c: &Ctl) -> bool {
    matches!(
        c,
        Ctl::IpcpList
            | Ctl::NeighbourList
            | Ctl::FlowList
            | Ctl::PortList
            | Ctl::WorkerList
            | Ctl::Stats
    )
}

/// The data plane's counters shared by the listings of one metrics scrape
/// ([`Daemon::view_sharing`]): unasked yet, or what the data plane answered (`None`: it did
/// not, in time).
#[derive(Debug, Default)]
pub struct Shared(std::cell::RefCell<Option<Option<o7s_abi::msg::DpStats>>>);

impl Daemon {
    /// A read-only view (a listing or the counters), as o7sctl gets it; anything else is
    /// refused.
    pub fn view(&self, c: Ctl) -> Reply {
        self.view_sharing(c, &Shared::default())
    }

    /// [`Daemon::view`] for one of several listings read together (a metrics scrape): the
    /// data plane's counters are asked for once, by the first listing that shows them, and
    /// `shared` keeps them for the others (one round trip to every worker per scrape, not
    /// one per listing, and every listing from the same moment).
    pub fn view_sharing(&self, c: Ctl, shared: &Shared) -> Reply {
        match crate::authz::need(&c) {
            crate::authz::Need::Anyone => self.serve_with(
                c,
                &PeerCred {
                    pid: 0,
                    uid: 0,
                    gid: 0,
                },
                Some(shared),
            ),
            _ => Reply::Error {
                code: ErrorCode::Denied,
                message: "not a view".into(),
            },
        }
    }

    /// Whether `cred` may make request `c` (docs/SECURITY.md); why not.
    pub(super) fn authorize(&self, c: &Ctl, cred: &PeerCred) -> Result<(), crate::authz::Denied> {
        use crate::authz::{need, process_uid, verb, Denied, Need};
        let policy = &self.settings.policy;
        let admin_only = || Denied::AdminOnly {
            verb: verb(c).to_string(),
            admins: policy.admins(),
        };
        match need(c) {
            Need::Anyone => Ok(()),
            _ if policy.is_admin(cred) => Ok(()),
            Need::Admin => Err(admin_only()),
            Need::AdminOrProcessOwner => {
                let (Ctl::BindProcess { pid, name } | Ctl::UnbindProcess { pid, name }) = c else {
                    return Err(admin_only());
                };
                if process_uid(*pid) != Some(cred.uid) {
                    return Err(Denied::NotYourProcess {
                        pid: *pid,
                        verb: verb(c).to_string(),
                        admins: policy.admins(),
                    });
                }
                let n = name.clone();
                // Names change owner only by an administrator's request, so the owner
                // read here is the owner when the change runs.
                let owner = self
                    .on_loop(move |o| o.st().reg.names.get(&n).map(|e| e.owner))
                    .map_err(|e| Denied::Unchecked {
                        name: name.clone(),
                        why: e.to_string(),
                    })?;
                if owner != Some(cred.uid) {
                    return Err(Denied::NotYourName {
                        name: name.clone(),
                        verb: verb(c).to_string(),
                        admins: policy.admins(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Serves request `c` (authorized) for a client with credentials `cred`.
    pub(super) fn serve(&self, c: Ctl, cred: &PeerCred) -> Reply {
        self.serve_with(c, cred, None)
    }

    /// [`Daemon::serve`], with the data plane's counters taken from `shared` when it holds
    /// them (and put there when it is asked for them).
    fn serve_with(&self, c: Ctl, cred: &PeerCred, shared: Option<&Shared>) -> Reply {
        if let Err(e) = ctl_names(&c)
            .into_iter()
            .try_for_each(o7s::proto::check_name)
        {
            return Reply::Error {
                code: ErrorCode::Invalid,
                message: e,
            };
        }
        let stats = match shared {
            _ if !needs_dp_stats(&c) => None,
            Some(sh) => {
                sh.0.borrow_mut()
                    .get_or_insert_with(|| self.dp.stats())
                    .clone()
            }
            None => self.dp.stats(),
        };
        match c {
            Ctl::PortList | Ctl::WorkerList | Ctl::Stats => self.dp_view(&c, stats.as_ref()),
            Ctl::IpcpBootstrap {
                name,
                layer,
                settings,
            } => self.bootstrap_cli(name, layer, settings),
            Ctl::ConfigLoad {
                path,
                content: Some(text),
            } if text.len() <= o7s::proto::MAX_CONFIG_BYTES => self.config_load(&path, &text),
            c => {
                let cred = *cred;
                self.on_loop(move |o| o.ctl(c, &cred, stats))
                    .unwrap_or_else(|e| CtlError::from(e).reply())
            }
        }
    }

    /// `ipcp bootstrap`: a unicast IPCP on the loop; an eth or udp IPCP's port is opened
    /// from here.
    fn bootstrap_cli(
        &self,
        name: String,
        layer: String,
        settings: BTreeMap<String, String>,
    ) -> Reply {
        let err = |e: CtlError| e.reply();
        let n = name.clone();
        let created = match self.on_loop(move |o| o.st().created.get(&n).copied()) {
            Ok(c) => c,
            Err(e) => return err(e.into()),
        };
        let kind = settings
            .get("type")
            .and_then(|t| IpcpKind::parse(t))
            .or(created);
        let Some(kind) = kind else {
            return err(CtlError::Invalid(
                "type is required (eth-dix, eth-llc, udp4, udp6)".into(),
            ));
        };
        if kind == IpcpKind::Unicast {
            let n = name.clone();
            let made = self.on_loop(move |o| {
                let r = o.uni_cli(&n, Some(&layer), None, true);
                if r.is_ok() {
                    o.st().created.remove(&n);
                }
                r
            });
            return match made {
                Ok(Ok(())) => Reply::Ok,
                Ok(Err(e)) => err(e),
                Err(e) => err(e.into()),
            };
        }
        let done = if matches!(kind, IpcpKind::Udp4 | IpcpKind::Udp6) {
            self.udp_bootstrap(&name, kind, &layer, &settings)
        } else {
            let Some(dev) = settings.get("dev") else {
                return err(CtlError::Invalid("dev is required".into()));
            };
            if let Some(why) = crate::config::bad_dev(dev) {
                return err(CtlError::Invalid(format!(
                    "dev '{}': {why}",
                    dev.escape_debug()
                )));
            }
            let ethertype = match settings.get("ethertype").map(|e| parse_u16(e)) {
                None => o7s_wire::ethernet::ETHERTYPE_OUROBOROS,
                Some(Some(e)) => match crate::config::ethertype_refused(e) {
                    None => e,
                    Some(why) => return err(CtlError::Invalid(format!("ethertype {why}"))),
                },
                Some(None) => {
                    return err(CtlError::Invalid(
                        "ethertype: expected a 16-bit number such as 0xA000".into(),
                    ))
                }
            };
            let hash = match settings.get("hash") {
                None => o7s_wire::hash::HashAlgo::Sha3_256,
                Some(h) => match o7s_wire::hash::HashAlgo::from_config_name(h) {
                    Some(a) => a,
                    None => return err(CtlError::Invalid(format!("unknown hash {h}"))),
                },
            };
            let port_kind = match kind {
                IpcpKind::EthDix => PortKind::Dix { ethertype },
                IpcpKind::EthLlc => PortKind::Llc,
                other => {
                    return err(CtlError::Invalid(format!(
                        "o7sctl bootstraps eth-dix and eth-llc IPCPs; {} needs a configuration file (o7sctl config load)",
                        other.as_str()
                    )))
                }
            };
            self.ipcp_bootstrap(&name, kind, &layer, dev, port_kind, hash)
        };
        match done {
            Ok(()) => match self.on_loop(move |o| o.st().created.remove(&name)) {
                Ok(_) => Reply::Ok,
                Err(e) => err(e.into()),
            },
            Err(e) => err(e.into()),
        }
    }

    /// `config load` of `text` (from `path`): refused whole when an IPCP in it contradicts
    /// one that exists; applied otherwise (its ports opened from here).
    fn config_load(&self, path: &str, text: &str) -> Reply {
        let err = |e: CtlError| e.reply();
        let c = match crate::config::parse(text, path) {
            Ok(c) => c,
            Err(e) => {
                let e = CtlError::from(e);
                tracing::warn!("{e}");
                return err(e);
            }
        };
        let checked = c.clone();
        let conflicts = match self.on_loop(move |o| o.config_conflicts(&checked)) {
            Ok(c) => c,
            Err(e) => return err(e.into()),
        };
        if !conflicts.is_empty() {
            let e = CtlError::Exists(format!(
                "config load {path}: nothing applied: {}; to change an IPCP, destroy it first (o7sctl ipcp destroy NAME)",
                conflicts.join("; ")
            ));
            tracing::warn!("{e}");
            return err(e);
        }
        tracing::info!("Applying configuration file {path} (o7sctl).");
        let failed = self.apply(&c);
        if failed.is_empty() {
            return Reply::Ok;
        }
        // The rest was applied; what failed is said (and logged).
        Reply::Error {
            code: ErrorCode::Invalid,
            message: format!(
                "config load {path}: applied but for {} failure(s): {}",
                failed.len(),
                failed.join("; ")
            ),
        }
    }
}
