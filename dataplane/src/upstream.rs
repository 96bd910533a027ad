//! The data plane's link to its o7sd, and what it does when o7sd goes away: it keeps
//! forwarding the flows it has (an orphan), listens on its own socket
//! (`<rundir>/dataplane.sock`, [`o7s_abi::SOCK_ENV`], mode 0600, only its own user may
//! connect), and a new o7sd adopts it there: the data plane says who it is
//! ([`FromDp::Hello`]), o7sd answers [`ToDp::Adopt`] (or [`ToDp::Shutdown`] when the
//! data plane is of another build), and the connection becomes the control channel.
//! Nothing here waits: the socket and a connection being adopted are polled with the
//! worker's other descriptors.

use crate::msg::{FromDp, ToDp};
use o7s::ipc::{Channel, Listener};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a data plane with neither o7sd nor flows waits for an o7sd before it exits.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How long a connection to the socket may take to say Adopt.
const ADOPT_WAIT: Duration = Duration::from_secs(2);

/// What [`Upstream::on_pending`] and [`Upstream::on_listener`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Nothing yet.
    None,
    /// A new o7sd took over: answer it with the ports and flows ([`FromDp::Adopted`]).
    Adopted,
    /// The new o7sd asked us to stop (it is of another build).
    Stop,
}

/// The control channel, and the socket a new o7sd adopts the data plane on.
#[derive(Debug)]
pub struct Upstream {
    /// The channel to o7sd (a placeholder with nothing on it while orphaned).
    pub ctl: Channel,
    /// Keeps the placeholder's other end open while orphaned.
    spare: Option<Channel>,
    listener: Option<(Listener, PathBuf)>,
    /// The socket file's (device, inode) as bound: it is removed at the end only if it is
    /// still ours (a successor may have bound the path meanwhile).
    file_id: Option<(u64, u64)>,
    /// A connection that got our Hello and has yet to say Adopt.
    pending: Option<(Channel, Instant)>,
    orphan_since: Option<Instant>,
    grace: Duration,
}

impl Upstream {
    /// `ctl` from o7sd; the socket named by `O7S_DP_SOCK`, when set (else an o7sd that goes
    /// away ends the data plane, as before).
    pub fn new(ctl: Channel) -> Self {
        let grace = std::env::var("O7S_DP_ORPHAN_GRACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_GRACE, Duration::from_millis);
        match std::env::var_os(o7s_abi::SOCK_ENV) {
            Some(p) => Self::with_socket(ctl, PathBuf::from(p), grace),
            None => Self::plain(ctl),
        }
    }

    /// `ctl` from o7sd, and a socket at `path` for the next one; an orphan without flows
    /// waits `grace` for one.
    pub fn with_socket(ctl: Channel, path: PathBuf, grace: Duration) -> Self {
        let listener = match bind_private(&path) {
            Ok(l) => Some((l, path)),
            Err(e) => {
                tracing::warn!(
                    "{}: {e}: this data plane stops with its o7sd",
                    path.display()
                );
                None
            }
        };
        let file_id = listener.as_ref().and_then(|(_, p)| file_id(p));
        Self {
            ctl,
            spare: None,
            listener,
            file_id,
            pending: None,
            orphan_since: None,
            grace,
        }
    }

    /// A channel with no socket behind it (a worker behind the router: the router deals
    /// with o7sd).
    pub fn plain(ctl: Channel) -> Self {
        Self {
            ctl,
            spare: None,
            listener: None,
            file_id: None,
            pending: None,
            orphan_since: None,
            grace: DEFAULT_GRACE,
        }
    }

    /// o7sd closed the channel. `false`: the data plane has no socket and must stop.
    pub fn orphan(&mut self) -> bool {
        if self.listener.is_none() {
            return false;
        }
        if self.orphan_since.is_none() {
            match Channel::pair() {
                Ok((a, b)) => {
                    self.ctl = a;
                    self.spare = Some(b);
                }
                Err(e) => {
                    tracing::error!("cannot go on without o7sd: {e}");
                    return false;
                }
            }
            self.orphan_since = Some(Instant::now());
            tracing::warn!(
                "o7sd went away: forwarding the flows there are, and waiting for an o7sd on {}",
                self.sock_path().unwrap_or_default()
            );
        }
        true
    }

    /// Whether no o7sd drives the data plane.
    pub fn is_orphan(&self) -> bool {
        self.orphan_since.is_some()
    }

    /// The socket's path.
    pub fn sock_path(&self) -> Option<String> {
        self.listener.as_ref().map(|(_, p)| p.display().to_string())
    }

    /// Whether an orphan without flows has waited long enough for an o7sd.
    pub fn expired(&self, now: Instant, has_flows: bool) -> bool {
        !has_flows
            && self
                .orphan_since
                .is_some_and(|t| now.duration_since(t) >= self.grace)
    }

    /// Descriptors to poll while orphaned: the socket, and a connection being adopted.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        let orphan = self.is_orphan();
        self.listener
            .iter()
            .filter(move |_| orphan)
            .map(|(l, _)| l.as_fd())
            .chain(self.pending.iter().map(|(c, _)| c.as_fd()))
    }

    /// The socket is readable: takes the connection, says who we are; it is adopted later
    /// ([`Upstream::on_pending`]). A connection from another user is closed.
    pub fn on_listener(&mut self) {
        let Some((l, _)) = &self.listener else {
            return;
        };
        let ch = match l.accept() {
            Ok(c) => c,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!("data-plane socket: {e}");
                }
                return;
            }
        };
        let me = nix::unistd::geteuid().as_raw();
        match ch.peer_cred() {
            Ok(c) if c.uid == me => {}
            Ok(c) => {
                tracing::warn!(
                    "data-plane socket: refused a connection of uid {} (pid {})",
                    c.uid,
                    c.pid
                );
                return;
            }
            Err(e) => {
                tracing::warn!("data-plane socket: {e}");
                return;
            }
        }
        let hello = FromDp::Hello {
            abi: o7s_abi::ABI_VERSION,
            pid: std::process::id(),
            busy: !self.is_orphan() || self.pending.is_some(),
        };
        if ch.try_send(&hello, &[]).is_err() || !self.is_orphan() || self.pending.is_some() {
            return;
        }
        self.pending = Some((ch, Instant::now()));
    }

    /// The connection being adopted is readable (or its time is up).
    pub fn on_pending(&mut self, now: Instant) -> Adoption {
        let Some((ch, since)) = self.pending.take() else {
            return Adoption::None;
        };
        if !o7s::ipc::wait_readable(ch.as_fd(), Some(Duration::ZERO)).unwrap_or(true) {
            if now.duration_since(since) < ADOPT_WAIT {
                self.pending = Some((ch, since));
            }
            return Adoption::None;
        }
        match ch.recv::<ToDp>() {
            Ok((ToDp::Adopt, _)) => {
                self.ctl = ch;
                self.spare = None;
                if let Some(t) = self.orphan_since.take() {
                    tracing::info!(
                        "adopted by a new o7sd after {:.1} s without one",
                        now.duration_since(t).as_secs_f64()
                    );
                }
                Adoption::Adopted
            }
            Ok((ToDp::Shutdown, _)) => {
                tracing::info!("the new o7sd is of another build: stopping");
                Adoption::Stop
            }
            Ok(_) | Err(_) => Adoption::None,
        }
    }

    /// Whether a connection waits to be adopted (poll it even when not orphaned).
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some((_, p)) = &self.listener {
            // Only our own file: a data plane that stops after its successor started
            // must not remove the successor's socket.
            if self.file_id.is_some() && file_id(p) == self.file_id {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The (device, inode) of the file at `path`.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A listening socket at `path` that only this user may connect to.
fn bind_private(path: &std::path::Path) -> io::Result<Listener> {
    let l = Listener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking()?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(n: &str) -> PathBuf {
        std::env::temp_dir().join(format!("o7s-up-test-{}-{n}.sock", std::process::id()))
    }

    fn hello(c: &Channel) -> Option<(u32, bool)> {
        match c.recv_timeout::<FromDp>(Some(Duration::from_secs(2))) {
            Ok((FromDp::Hello { abi, busy, .. }, _)) => Some((abi, busy)),
            _ => None,
        }
    }

    #[test]
    fn a_data_plane_that_stops_after_its_successor_bound_leaves_the_successor_s_socket() {
        let p = path("successor");
        let (_o1, c1) = Channel::pair().unwrap_or_else(|e| panic!("{e}"));
        let old = Upstream::with_socket(c1, p.clone(), Duration::from_secs(60));
        let (_o2, c2) = Channel::pair().unwrap_or_else(|e| panic!("{e}"));
        // The successor binds the same path (a new file).
        let new = Upstream::with_socket(c2, p.clone(), Duration::from_secs(60));
        drop(old);
        assert!(p.exists(), "the successor's socket stays");
        assert!(Channel::connect(&p).is_ok(), "and still answers");
        drop(new);
        assert!(!p.exists(), "its own goes with it");
    }

    #[test]
    fn an_orphan_is_adopted_by_the_next_o7sd_and_only_then() {
        let (o7sd, ours) = Channel::pair().unwrap_or_else(|e| panic!("{e}"));
        let p = path("adopt");
        let mut up = Upstream::with_socket(ours, p.clone(), Duration::from_secs(60));
        // While o7sd is there, a second one is told so and not taken.
        let early = Channel::connect(&p).unwrap_or_else(|e| panic!("{e}"));
        up.on_listener();
        assert_eq!(hello(&early), Some((o7s_abi::ABI_VERSION, true)));
        assert!(!up.has_pending());
        drop(o7sd);
        assert!(up.orphan());
        assert!(up.is_orphan());
        assert_eq!(up.fds().count(), 1, "the socket is polled");
        let next = Channel::connect(&p).unwrap_or_else(|e| panic!("{e}"));
        up.on_listener();
        assert_eq!(hello(&next), Some((o7s_abi::ABI_VERSION, false)));
        assert!(up.has_pending());
        assert_eq!(
            up.on_pending(Instant::now()),
            Adoption::None,
            "nothing said yet"
        );
        next.send(&ToDp::Adopt, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up.on_pending(Instant::now()), Adoption::Adopted);
        assert!(!up.is_orphan());
        // The adopting connection is the control channel now.
        next.send(&ToDp::Stats, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(up.ctl.recv::<ToDp>(), Ok((ToDp::Stats, _))));
        drop(up);
        assert!(!p.exists(), "the socket goes with the data plane");
    }

    #[test]
    fn another_build_stops_an_orphan_and_an_empty_orphan_expires() {
        let (o7sd, ours) = Channel::pair().unwrap_or_else(|e| panic!("{e}"));
        let p = path("stop");
        let mut up = Upstream::with_socket(ours, p, Duration::from_millis(50));
        drop(o7sd);
        assert!(up.orphan());
        let t0 = Instant::now();
        assert!(!up.expired(t0, true), "flows keep it");
        std::thread::sleep(Duration::from_millis(60));
        assert!(up.expired(Instant::now(), false));
        assert!(!up.expired(Instant::now(), true));
        let next = Channel::connect(&up.sock_path().map(PathBuf::from).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        up.on_listener();
        assert!(hello(&next).is_some());
        next.send(&ToDp::Shutdown, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up.on_pending(Instant::now()), Adoption::Stop);
    }

    #[test]
    fn without_a_socket_o7sd_going_away_ends_the_data_plane() {
        let (_o7sd, ours) = Channel::pair().unwrap_or_else(|e| panic!("{e}"));
        let mut up = Upstream::plain(ours);
        assert!(!up.orphan());
        assert_eq!(up.fds().count(), 0);
    }
}
