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

/// Whether process `pid` lives: it exists, is not a zombie, and is not exiting (a process
/// that exits closes its descriptors, which o7sd sees, after the kernel marks it exiting:
/// so a closed connection of a process that exits always finds it dead here).
pub fn process_lives(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_lives(&stat),
        // Not readable (another mount's /proc?): it exists if its folder does.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Path::new(&format!("/proc/{pid}")).exists()
        }
        Err(_) => false,
    }
}

/// `PF_EXITING` in `/proc/PID/stat`'s flags.
const PF_EXITING: u64 = 0x4;

/// Whether the process of `/proc/PID/stat` text `stat` lives (see [`process_lives`]).
fn stat_lives(stat: &str) -> bool {
    // The command may hold anything, ')' too: the fields start after the last one.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return true;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first().copied().unwrap_or("R");
    let flags: u64 = f.get(6).and_then(|x| x.parse().ok()).unwrap_or(0);
    let threads: u64 = f.get(17).and_then(|x| x.parse().ok()).unwrap_or(1);
    // A leader that is a zombie or exits while other threads run is still the process.
    let others_run = threads > 1;
    let ending = matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0;
    others_run || !ending
}

/// The executable of process `pid` (its path even when the file was replaced since, as
/// a rebuilt binary is: `/proc` then says "PATH (deleted)").
pub fn exe_of(pid: i32) -> Option<PathBuf> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => Some(PathBuf::from(s)),
        None => Some(p),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_exiting_processes_do_not_live() {
        assert!(process_lives(std::process::id() as i32));
        assert!(!process_lives(0));
        assert!(!process_lives(i32::MAX));
        let f = |state: &str, flags: u64, threads: u64| {
            format!("42 (a) b) {state} 1 42 42 0 -1 {flags} 0 0 0 0 1 2 0 0 20 0 {threads} 0 5")
        };
        assert!(stat_lives(&f("S", 0x400000, 1)));
        assert!(!stat_lives(&f("Z", 0, 1)));
        assert!(!stat_lives(&f("S", 0x400004, 1)));
        // The leader thread exited, others run: the process lives.
        assert!(stat_lives(&f("Z", 0x4, 3)));
        // A child killed and not yet reaped is a zombie.
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        assert!(process_lives(pid));
        c.kill().unwrap();
        let start = std::time::Instant::now();
        while process_lives(pid) && start.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_lives(pid), "killed, not reaped: a zombie");
        c.wait().unwrap();
        assert!(!process_lives(pid));
    }
}
