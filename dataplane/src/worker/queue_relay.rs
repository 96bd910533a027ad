//! A port's RX queues over the workers ([`crate::queue_spread`]): the owner asks the other
//! workers to bind its other queues; they relay what arrives there to it.

use super::*;
use crate::handoff::{Handed, HandedPdu};
use crate::queue_spread::{queues_of, QueueSet, Request, Shared};
use o7s_abi::msg::RxQueueState;
use std::sync::Arc;

/// Sockets a worker bound on another worker's port.
pub(super) struct Relay {
    /// The worker that owns the port.
    owner: usize,
    xdp: crate::xdp::XdpPort,
    shared: Arc<Shared>,
}

/// How long a worker letting a port go waits for the others to close its queues.
const STOP_WAIT: Duration = Duration::from_secs(1);

impl Dataplane {
    /// The queues of `dev` a new port of this worker binds itself: with several workers,
    /// a device of several RX queues and `O7S_DP_SPREAD_QUEUES` not `0`, its share
    /// ([`queues_of`]); else every queue.
    pub(super) fn own_queues(&self, dev: &str) -> (QueueSet, Option<(usize, usize, u32)>) {
        let off = std::env::var("O7S_DP_SPREAD_QUEUES").is_ok_and(|v| v == "0");
        let Some((h, w)) = self
            .handoff
            .as_ref()
            .filter(|(h, _)| h.workers() > 1 && !off)
        else {
            return (QueueSet::ALL, None);
        };
        let queues = crate::xdp::rx_queues(dev);
        if queues < 2 {
            return (QueueSet::ALL, None);
        }
        (
            queues_of(*w, *w, h.workers()),
            Some((*w, h.workers(), queues)),
        )
    }

    /// Asks the other workers to bind the queues of port `id` (on `dev`) that `x`, its
    /// own sockets, leaves to them. What they answer shows in `rx_queues`.
    pub(super) fn spread_port(
        &mut self,
        id: u32,
        dev: &str,
        x: &crate::xdp::XdpPort,
        (owner, workers, queues): (usize, usize, u32),
    ) -> Option<Arc<Shared>> {
        let (h, _) = self.handoff.as_ref()?;
        let shared = Shared::new(id, queues, owner, workers);
        for (w, qs) in shared.others() {
            let fail = |why: String| {
                tracing::warn!("port {id}: {dev}: RX queues {qs:?} not given to worker {w}: {why}; their frames reach this worker through the kernel (AF_PACKET)");
                for q in &qs {
                    shared.set_state(*q, RxQueueState::Failed(why.clone()));
                }
            };
            let Some(xsks) = x.xsks_fd() else {
                fail("the XDP program's socket map cannot be shared".into());
                continue;
            };
            shared.asked();
            let r = Request::Serve {
                dev: dev.to_string(),
                queues: qs.clone(),
                owner,
                xsks,
                shared: shared.clone(),
            };
            if h.request(w, r).is_err() {
                shared.released();
                fail("its request queue is full".into());
            } else {
                tracing::info!("port {id}: {dev}: RX queues {qs:?} go to worker {w}");
            }
        }
        Some(shared)
    }

    /// The port's other queues are let go: asks their workers to close them and waits
    /// (serving its own requests meanwhile) until they did, at most [`STOP_WAIT`].
    pub(super) fn unspread_port(&mut self, shared: &Shared) {
        let Some((h, _)) = self.handoff.clone() else {
            return;
        };
        for (w, _) in shared.others() {
            // (Never refused: Handoff::request.)
            let _ = h.request(
                w,
                Request::Stop {
                    port: shared.port(),
                },
            );
        }
        let until = Instant::now() + STOP_WAIT;
        while shared.live() > 0 && Instant::now() < until {
            self.serve_requests();
            std::thread::sleep(Duration::from_micros(200));
        }
        if shared.live() > 0 {
            tracing::warn!(
                "port {}: {} worker(s) did not close its RX queues within {STOP_WAIT:?}",
                shared.port(),
                shared.live()
            );
        }
    }

    /// Carries out the other workers' requests for this one.
    pub(super) fn serve_requests(&mut self) {
        let Some((h, _)) = self.handoff.clone() else {
            return;
        };
        for r in h.take_requests(self.handoff_index()) {
            match r {
                Request::Serve {
                    dev,
                    queues,
                    owner,
                    xsks,
                    shared,
                } => {
                    let port = shared.port();
                    match crate::xdp::XdpPort::open_relay(&dev, &queues, xsks) {
                        Ok(xdp) => {
                            tracing::info!(
                                "port {port}: {dev}: receiving RX queues {queues:?} for worker {owner}"
                            );
                            for q in &queues {
                                shared.set_state(*q, RxQueueState::Relayed);
                            }
                            let old = self.relays.insert(port, Relay { owner, xdp, shared });
                            if let Some(o) = old {
                                o.shared.released();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(
                                "port {port}: {dev}: cannot bind RX queues {queues:?} for worker {owner}: {e}; their frames reach it through the kernel (AF_PACKET)"
                            );
                            for q in &queues {
                                shared.set_state(*q, RxQueueState::Failed(e.to_string()));
                            }
                            shared.released();
                        }
                    }
                }
                Request::Stop { port } => {
                    if let Some(r) = self.relays.remove(&port) {
                        let queues = r.xdp.queue_ids();
                        drop(r.xdp);
                        r.shared.released();
                        tracing::info!(
                            "port {port}: closed RX queues {queues:?} of worker {}",
                            r.owner
                        );
                    }
                }
            }
            self.tables_changed = true;
        }
    }

    /// Every 100 ms: what the kernel dropped on the relays' sockets, for their owners'
    /// `port list`.
    pub(super) fn report_relays(&self) {
        let w = self.handoff_index();
        for r in self.relays.values() {
            r.shared.set_kernel(w, r.xdp.kernel_drops());
        }
    }

    fn handoff_index(&self) -> usize {
        self.handoff.as_ref().map_or(0, |(_, w)| *w)
    }

    /// Hands a batch of the frames received on the queues this worker binds for port
    /// `port`'s owner to it, each copied into a pooled buffer.
    pub(super) fn rx_relay(&mut self, port: u32) -> usize {
        let (Some((h, _)), Some(r)) = (self.handoff.as_ref(), self.relays.get_mut(&port)) else {
            return 0;
        };
        let owner = r.owner;
        let mut dropped = 0;
        let mut done = 0;
        for _ in 0..16 {
            let n = r.xdp.recv(|frame, _slot| {
                let mut pdu = h.buffer();
                pdu.extend_from_slice(frame);
                let p = HandedPdu {
                    ipcp: 0,
                    what: Handed::Frame { port },
                    pdu,
                };
                if !h.push_frame(owner, p) {
                    dropped += 1;
                }
            });
            done += n;
            if n == 0 {
                break;
            }
        }
        if done > 0 {
            for (q, n) in r.xdp.queue_ids().into_iter().zip(r.xdp.rx_per_queue()) {
                r.shared.set_received(q, n);
            }
            r.shared.add_dropped(dropped);
        }
        done
    }
}

impl Relay {
    /// The queues it binds.
    pub(super) fn queues(&self) -> u32 {
        u32::try_from(self.xdp.queues()).unwrap_or(u32::MAX)
    }

    /// Frames received on them.
    pub(super) fn frames(&self) -> u64 {
        self.xdp.rx_frames
    }

    /// Its sockets, for poll(2).
    pub(super) fn fds(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.xdp.fds()
    }
}
