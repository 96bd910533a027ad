//! Who may ask o7sd for what (docs/SECURITY.md).
//!
//! Every connection to the control socket is identified by `SO_PEERCRED` (the kernel's
//! record of the connecting process: pid, uid, gid). Requests that change what the daemon
//! runs or serves need an administrator: uid 0, or a member of the group given with
//! `o7sd --admin-group`. Reading views, allocating and accepting flows are open to every
//! user, as on the reference. Binding a process is also allowed to its owner for a name
//! that owner created.

use o7s::ipc::PeerCred;
use o7s::proto::Ctl;
use std::os::unix::fs::MetadataExt;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone.
    Anyone,
    /// An administrator.
    Admin,
    /// An administrator, or the owner of the process (and, to bind, of the name).
    AdminOrProcessOwner,
}

/// What `c` needs.
pub fn need(c: &Ctl) -> Need {
    match c {
        Ctl::IpcpList
        | Ctl::RouteList
        | Ctl::LsdbList
        | Ctl::DhtList
        | Ctl::NeighbourList
        | Ctl::NameList
        | Ctl::PortList
        | Ctl::CacheList
        | Ctl::FlowList
        | Ctl::WorkerList
        | Ctl::Stats => Need::Anyone,
        Ctl::BindProcess { .. } | Ctl::UnbindProcess { .. } => Need::AdminOrProcessOwner,
        Ctl::IpcpCreate { .. }
        | Ctl::IpcpBootstrap { .. }
        | Ctl::IpcpEnroll { .. }
        | Ctl::IpcpConnect { .. }
        | Ctl::IpcpDisconnect { .. }
        | Ctl::IpcpDestroy { .. }
        | Ctl::NameCreate { .. }
        | Ctl::NameDestroy { .. }
        | Ctl::NameRegister { .. }
        | Ctl::NameUnregister { .. }
        | Ctl::BindProgram { .. }
        | Ctl::UnbindProgram { .. }
        | Ctl::ConfigLoad { .. }
        | Ctl::PortSet { .. }
        // A capture sees every user's traffic on the port.
        | Ctl::Capture { .. } => Need::Admin,
    }
}

/// The o7sctl words of a request, for messages.
pub fn verb(c: &Ctl) -> &'static str {
    match c {
        Ctl::IpcpList => "ipcp list",
        Ctl::RouteList => "route list",
        Ctl::LsdbList => "lsdb list",
        Ctl::DhtList => "dht list",
        Ctl::NeighbourList => "neighbour list",
        Ctl::IpcpEnroll { .. } => "ipcp enroll",
        Ctl::IpcpConnect { .. } => "ipcp connect",
        Ctl::IpcpDisconnect { .. } => "ipcp disconnect",
        Ctl::IpcpCreate { .. } => "ipcp create",
        Ctl::IpcpBootstrap { .. } => "ipcp bootstrap",
        Ctl::IpcpDestroy { .. } => "ipcp destroy",
        Ctl::NameCreate { .. } => "name create",
        Ctl::NameDestroy { .. } => "name destroy",
        Ctl::NameList => "name list",
        Ctl::NameRegister { .. } => "name register",
        Ctl::NameUnregister { .. } => "name unregister",
        Ctl::BindProgram { .. } => "bind program",
        Ctl::UnbindProgram { .. } => "unbind program",
        Ctl::BindProcess { .. } => "bind process",
        Ctl::UnbindProcess { .. } => "unbind process",
        Ctl::PortList => "port list",
        Ctl::PortSet { .. } => "port set",
        Ctl::CacheList => "cache list",
        Ctl::FlowList => "flow list",
        Ctl::WorkerList => "worker list",
        Ctl::Stats => "stats",
        Ctl::ConfigLoad { .. } => "config load",
        Ctl::Capture { .. } => "capture",
    }
}

/// Why `--admin-group` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group database could not be read.
    #[error("--admin-group {group}: {errno}")]
    Lookup {
        /// The group asked for.
        group: String,
        /// The system's error.
        errno: nix::errno::Errno,
    },
    /// No such group.
    #[error("--admin-group {0}: no such group")]
    NoSuch(String),
}

/// Why a request is refused to its process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// Only administrators may.
    #[error("{verb} changes what the daemon runs or serves: only {admins} may")]
    AdminOnly {
        /// What it asked ("bind program", ...).
        verb: String,
        /// Who may.
        admins: String,
    },
    /// The process named is another user's.
    #[error("process {pid} is not yours (only {admins} may {verb} another user's process)")]
    NotYourProcess {
        /// The process.
        pid: i32,
        /// What it asked.
        verb: String,
        /// Who may.
        admins: String,
    },
    /// The name is another user's.
    #[error("name {name} is not yours (only {admins} may {verb} to it)")]
    NotYourName {
        /// The name.
        name: String,
        /// What it asked.
        verb: String,
        /// Who may.
        admins: String,
    },
    /// The name's owner could not be looked up (o7sd is stopping or busy): refused.
    #[error("the owner of name {name} could not be checked ({why}); try again")]
    Unchecked {
        /// The name.
        name: String,
        /// Why not.
        why: String,
    },
}

/// The administrators: root and, when configured, one group.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The admin group's id and name.
    pub admin_group: Option<(u32, String)>,
}

impl Policy {
    /// The policy for `--admin-group GROUP` (a name or a number).
    pub fn new(admin_group: Option<&str>) -> Result<Self, GroupError> {
        let Some(g) = admin_group else {
            return Ok(Self::default());
        };
        let group = match g.parse::<u32>() {
            Ok(n) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(n)),
            Err(_) => nix::unistd::Group::from_name(g),
        }
        .map_err(|errno| GroupError::Lookup {
            group: g.to_string(),
            errno,
        })?
        .ok_or_else(|| GroupError::NoSuch(g.to_string()))?;
        Ok(Self {
            admin_group: Some((group.gid.as_raw(), group.name)),
        })
    }

    /// Whether `c` is an administrator: uid 0, or in the admin group (its primary group as
    /// the kernel recorded it, or a member in the group database).
    pub fn is_admin(&self, c: &PeerCred) -> bool {
        if c.uid == 0 {
            return true;
        }
        let Some((gid, _)) = &self.admin_group else {
            return false;
        };
        if c.gid == *gid {
            return true;
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid))
            .ok()
            .flatten();
        let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(*gid))
            .ok()
            .flatten();
        matches!((user, group), (Some(u), Some(g)) if g.mem.contains(&u.name))
    }

    /// Who may do what, for messages.
    pub fn admins(&self) -> String {
        match &self.admin_group {
            Some((_, name)) => format!("root or a member of group {name}"),
            None => "root (o7sd --admin-group adds a group)".into(),
        }
    }
}

/// The (effective) user that owns process `pid`, if it exists.
pub fn process_uid(pid: i32) -> Option<u32> {
    if pid <= 0 {
        return None;
    }
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred { pid: 1, uid, gid }
    }

    #[test]
    fn everything_that_changes_the_daemon_needs_an_admin() {
        let changing = [
            Ctl::IpcpCreate {
                name: "x".into(),
                kind: "eth-dix".into(),
            },
            Ctl::IpcpDestroy { name: "x".into() },
            Ctl::NameCreate {
                name: "x".into(),
                lb: None,
            },
            Ctl::NameDestroy { name: "x".into() },
            Ctl::NameRegister {
                name: "x".into(),
                targets: vec![],
            },
            Ctl::NameUnregister {
                name: "x".into(),
                targets: vec![],
            },
            Ctl::BindProgram {
                prog: "/bin/sh".into(),
                name: "x".into(),
                auto: true,
                args: vec![],
            },
            Ctl::UnbindProgram {
                prog: "/bin/sh".into(),
                name: "x".into(),
            },
            Ctl::ConfigLoad {
                path: "x".into(),
                content: None,
            },
        ];
        for c in &changing {
            assert_eq!(need(c), Need::Admin, "{}", verb(c));
        }
        assert_eq!(
            need(&Ctl::BindProcess {
                pid: 1,
                name: "x".into()
            }),
            Need::AdminOrProcessOwner
        );
        assert_eq!(need(&Ctl::FlowList), Need::Anyone);
    }

    #[test]
    fn root_and_the_admin_group_are_admins() {
        let none = Policy::default();
        assert!(none.is_admin(&cred(0, 0)));
        assert!(!none.is_admin(&cred(1000, 1000)));
        let p = Policy {
            admin_group: Some((4242, "o7s-test".into())),
        };
        assert!(p.is_admin(&cred(1000, 4242)));
        assert!(!p.is_admin(&cred(1000, 1000)));
        assert!(Policy::new(Some("no-such-group-o7s")).is_err());
        assert_eq!(Policy::new(Some("0")).unwrap().admin_group.unwrap().0, 0);
    }

    #[test]
    fn process_owners() {
        assert_eq!(
            process_uid(std::process::id() as i32),
            Some(nix::unistd::geteuid().as_raw())
        );
        assert_eq!(process_uid(-1), None);
        assert_eq!(process_uid(0), None);
    }
}
