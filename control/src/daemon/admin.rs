//! The admin thread: o7sctl requests, one at a time, from the event loop's bounded queue
//! (they may wait on the data plane: opening a port, its counters). A capture, once
//! started, goes back to the loop.

use super::event_loop::{reply_err, AdminWork, Conn, Doing, ADMIN_CLIENT_WAIT};
use crate::conns::Slot;
use crate::daemon::Daemon;
use o7s::ipc::{Channel, PeerCred};
use o7s::proto::{Ctl, ErrorCode, Reply, Request};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Daemon {
    /// The admin thread: o7sctl requests, one at a time, from the loop's bounded queue.
    pub fn run_admin(self: &Arc<Self>) {
        let rx = self
            .lp
            .admin_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(rx) = rx else {
            tracing::error!("the admin thread started twice");
            return;
        };
        while !self.stopping.load(Ordering::Relaxed) {
            let job = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(j) => j,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // One client must not hold the thread: replies it does not take, requests
            // whose rest does not come, fail after a while.
            if let Err(e) = job.ch.set_timeouts(ADMIN_CLIENT_WAIT) {
                tracing::debug!("admin: socket time-outs: {e}");
            }
            let (ctl, cred) = match job.work {
                AdminWork::Ctl(c, cred) => (c, cred),
                // Only administrators send those (config load): anyone else's is refused
                // before its rest is read (it would hold this thread while it trickles in).
                // The check is here, not on the loop: the group database may be slow.
                AdminWork::Long(cred) if !self.settings.policy.is_admin(&cred) => {
                    self.counters.denied.fetch_add(1, Ordering::Relaxed);
                    let admins = self.settings.policy.admins();
                    reply_err(
                        &job.ch,
                        ErrorCode::Denied,
                        format!(
                            "a request longer than one packet (config load): only {admins} may"
                        ),
                    );
                    continue;
                }
                AdminWork::Long(cred) => match job.ch.recv::<Request>() {
                    Ok((Request::Ctl(c), _)) => (c, cred),
                    Ok(_) => {
                        reply_err(
                            &job.ch,
                            ErrorCode::Invalid,
                            "only o7sctl requests may be that long".into(),
                        );
                        continue;
                    }
                    Err(e) => {
                        crate::local_log!(warn, "bad request: {e}");
                        reply_err(&job.ch, ErrorCode::Invalid, e.to_string());
                        continue;
                    }
                },
            };
            self.admin_request(job.ch, job.slot, ctl, &cred);
        }
    }

    /// Serves one o7sctl request on the admin thread.
    fn admin_request(&self, ch: Channel, slot: Option<Slot>, c: Ctl, cred: &PeerCred) {
        // Names first: a refusal's log line quotes the name, which must be one.
        if let Err(message) = super::views::ctl_names(&c)
            .into_iter()
            .try_for_each(o7s::proto::check_name)
        {
            reply_err(&ch, ErrorCode::Invalid, message);
            return;
        }
        if let Err(denied) = self.authorize(&c, cred) {
            let message = denied.to_string();
            self.counters.denied.fetch_add(1, Ordering::Relaxed);
            crate::local_log!(
                warn,
                "Refused {} for process {} (uid {}): {message}",
                crate::authz::verb(&c),
                cred.pid,
                cred.uid
            );
            let _ = ch.send(
                &Reply::Error {
                    code: ErrorCode::Denied,
                    message,
                },
                &[],
            );
            return;
        }
        if let Ctl::Capture {
            target,
            flow,
            snaplen,
            ..
        } = c
        {
            // Started here (the data plane answers); the loop watches the client from
            // then on and stops the capture when it hangs up.
            if let Some(id) = self.capture(&ch, &target, flow, snaplen) {
                let conn = Conn {
                    ch,
                    slot,
                    doing: Doing::Capturing { id },
                };
                if let Err(e) = self.on_loop(move |o| o.hand_back(conn)) {
                    // Nobody would watch the client (its connection closed with the step
                    // not run): the capture ends here.
                    self.dp.capture_end(id);
                    tracing::warn!("Capture {id} ended: the event loop did not take it ({e}).");
                }
            }
            return;
        }
        let r = self.serve(c, cred);
        let _ = ch.send(&r, &[]);
    }
}
