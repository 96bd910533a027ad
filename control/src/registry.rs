//! Names, the programs and processes bound to them, and the processes waiting in accept:
//! the registry itself is `o7s_proto::registry` (no I/O); here is what needs the system
//! (`/proc`, the file system) and what o7sd hands an acceptor.

use o7s::proto::FlowInfo;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

pub use o7s_proto::registry::{Lb, NameEntry, ProgBind};

/// The registry as o7sd keeps it: an acceptor is reached through a channel.
pub type Registry = o7s_proto::registry::Registry<SyncSender<Accepted>>;

/// A process waiting in accept, as o7sd keeps it.
pub type Acceptor = o7s_proto::registry::Acceptor<SyncSender<Accepted>>;

/// A flow handed to an acceptor, with `[memfd, tx kick, rx kick]`.
#[derive(Debug)]
pub struct Accepted {
    /// What the app is told.
    pub info: FlowInfo,
    /// Daemon flow id.
    pub flow: u64,
    /// Descriptors for the app.
    pub fds: Vec<OwnedFd>,
}

/// The canonical executable of `path`, looking in `$PATH` for a bare or missing program.
pub fn resolve_prog(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let base = p.file_name()?;
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(base))
            .find(|c| c.is_file())
            .and_then(|c| c.canonicalize().ok())
    })
}

/// Whether process `pid` exists.
pub fn process_lives(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// The executable of process `pid`.
pub fn exe_of(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}
