//! Work other threads post for the event loop: the only way they reach o7sd's state.
//!
//! The admin thread (o7sctl), the metrics endpoint, start-up and a data-plane restart do
//! their waiting (for the data plane, for a client's socket) on their own thread and hand
//! the loop a closure for each step that reads or changes the state
//! ([`Daemon::on_loop`]). The loop runs them between its own steps ([`Owner::serve_inbox`])
//! and never waits for the thread that posted one.

use crate::daemon::{Daemon, Owner};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// A step for the loop.
pub(crate) type Job = Box<dyn FnOnce(&Owner) + Send>;

/// Most steps waiting for the loop (the admin thread, the metrics endpoint, start-up and a
/// restart post one at a time each); more are refused and counted.
pub(crate) const INBOX_BOUND: usize = 64;

/// How long a thread waits for the loop's answer (the loop never waits: it is late only
/// when it is stuck, which o7sd's log then shows).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

thread_local! {
    /// Set on the thread that owns the state: it must not post to itself.
    static OWNER_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The loop's end of the inbox.
#[derive(Debug)]
pub struct Inbox {
    rx: Receiver<Job>,
}

/// The sending end and the receiving end until the owner takes it.
pub(crate) fn pair() -> (SyncSender<Job>, Receiver<Job>) {
    sync_channel(INBOX_BOUND)
}

impl Inbox {
    pub(crate) fn new(rx: Receiver<Job>) -> Self {
        OWNER_THREAD.with(|t| t.set(true));
        Self { rx }
    }
}

/// Why a step posted for the loop got no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopGone {
    /// The loop has stopped (o7sd is shutting down).
    #[error("o7sd is stopping")]
    Stopped,
    /// Too many steps wait for it already.
    #[error("o7sd is busy: {INBOX_BOUND} requests wait for its loop; try again")]
    Busy,
    /// It did not answer in time.
    #[error("o7sd's loop did not answer within {0:?}")]
    Silent(Duration),
    /// Posted from the loop's own thread (a defect: it would wait for itself).
    #[error("o7sd asked its own loop to wait for itself (a defect; please report it)")]
    FromLoop,
}

impl Daemon {
    /// Runs `f` on the event loop, with the state, and returns its result. Waits on the
    /// calling thread (never on the loop's), at most 30 s: a step not run by then is not
    /// run at all.
    pub fn on_loop<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Owner) -> R + Send + 'static,
    ) -> Result<R, LoopGone> {
        self.on_loop_within(ANSWER_WAIT, f)
    }

    /// [`Daemon::on_loop`], waiting at most `wait`.
    fn on_loop_within<R: Send + 'static>(
        &self,
        wait: Duration,
        f: impl FnOnce(&Owner) -> R + Send + 'static,
    ) -> Result<R, LoopGone> {
        if OWNER_THREAD.with(Cell::get) {
            tracing::error!("a step was posted for the loop from the loop's own thread");
            return Err(LoopGone::FromLoop);
        }
        let (tx, rx) = sync_channel(1);
        // Set when the poster gave up waiting: the step is then not run (its caller was
        // told it failed, so it must not happen later).
        let cancelled = Arc::new(AtomicBool::new(false));
        let gave_up = cancelled.clone();
        let job: Job = Box::new(move |o| {
            if !gave_up.load(Ordering::Acquire) {
                let _ = tx.send(f(o));
            }
        });
        match self.lp.inbox_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.inbox_full.fetch_add(1, Ordering::Relaxed);
                return Err(LoopGone::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(LoopGone::Stopped),
        }
        self.wake();
        match rx.recv_timeout(wait) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => {
                cancelled.store(true, Ordering::Release);
                // It may have run just before: then its answer is here.
                rx.try_recv().map_err(|_| LoopGone::Silent(wait))
            }
            // The loop ended (and dropped the step) before running it.
            Err(RecvTimeoutError::Disconnected) => Err(LoopGone::Stopped),
        }
    }
}

impl Owner {
    /// Runs the steps other threads posted, at most [`INBOX_BOUND`] this turn; how many.
    pub(crate) fn serve_inbox(&self) -> usize {
        let mut n = 0;
        while n < INBOX_BOUND {
            let Ok(job) = self.inbox.rx.try_recv() else {
                break;
            };
            job(self);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use crate::daemon::fake_daemon;

    #[test]
    fn a_step_posted_from_another_thread_runs_on_the_loop_with_the_state() {
        let (o, _dp) = fake_daemon();
        let d = o.daemon().clone();
        let asker = std::thread::spawn(move || {
            d.on_loop(|o| {
                o.st().next_port = 41;
                o.st().next_port + 1
            })
        });
        // The loop's turn: nothing has come until the step is posted.
        let mut served = 0;
        while served == 0 {
            served = o.serve_inbox();
            std::thread::yield_now();
        }
        assert_eq!(served, 1);
        assert_eq!(asker.join().ok(), Some(Ok(42)));
        assert_eq!(o.st().next_port, 41);
    }

    #[test]
    fn a_step_whose_poster_gave_up_is_not_run() {
        let (o, _dp) = fake_daemon();
        let d = o.daemon().clone();
        let asker = std::thread::spawn(move || {
            d.on_loop_within(std::time::Duration::from_millis(20), |o| {
                o.st().next_port = 99;
            })
        });
        // The loop does not take its turn until the poster has given up.
        let r = asker.join().ok();
        assert!(matches!(r, Some(Err(super::LoopGone::Silent(_)))), "{r:?}");
        assert_eq!(o.serve_inbox(), 1);
        assert_eq!(o.st().next_port, 0, "a step given up must not run");
    }

    #[test]
    fn the_loop_may_not_post_to_itself_and_a_stopped_loop_answers_stopped() {
        let (o, _dp) = fake_daemon();
        assert_eq!(o.on_loop(|_| 1), Err(super::LoopGone::FromLoop));
        let d = o.daemon().clone();
        drop(o);
        let r = std::thread::spawn(move || d.on_loop(|_| 1)).join().ok();
        assert_eq!(r, Some(Err(super::LoopGone::Stopped)));
    }
}
