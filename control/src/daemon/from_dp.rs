//! What the data plane tells o7sd, on its way from the events thread to the loop.
//!
//! The events thread reads the data plane's channel and only routes: answers to their
//! waiters ([`crate::dp::DpHandle::route`]), everything else into the loop's queues. The
//! loop alone gives management frames to the shim machines and ends flows
//! ([`Daemon::take_from_dp`], once a turn, with the turn's time), so no protocol machine
//! is driven from two threads. Management frames wait in a bounded queue
//! ([`MAX_MGMT_QUEUE`]): what does not fit is dropped and counted (`mgmt_queue_full`),
//! as the data plane's own policer does before it. A flow's end is never dropped (there is
//! at most one per flow the data plane carries).

use super::{Daemon, Owner};
use crate::eth::Peer;
use o7s_abi::msg::FromDp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::Instant;

/// Most management frames waiting for the loop.
pub const MAX_MGMT_QUEUE: usize = 4096;

/// Most management frames the loop takes in one turn (its other work goes on in a flood).
pub const MGMT_PER_TURN: usize = 512;

/// A management frame from a port.
#[derive(Debug)]
pub(crate) struct MgmtIn {
    port: u32,
    src: Peer,
    /// The destination MAC (eth layers).
    dst: Option<[u8; 6]>,
    payload: Vec<u8>,
}

/// A flow the data plane ended or whose peer went quiet.
#[derive(Debug)]
pub(crate) enum FlowEvent {
    /// Gone (its port went away, its process died...).
    Gone { flow: u64, why: String },
    /// Its peer timed out.
    Down { flow: u64 },
}

/// The queues from the events thread to the loop.
#[derive(Debug)]
pub struct FromDpQueue {
    mgmt_tx: SyncSender<MgmtIn>,
    flows_tx: Sender<FlowEvent>,
    /// The loop's ends, until its owner takes them.
    rx: Mutex<Option<FromDpRx>>,
    /// A wake-up is on its way to the loop (one per batch, not one per frame).
    wake_pending: AtomicBool,
}

/// The loop's ends of the queues from the events thread.
#[derive(Debug)]
pub struct FromDpRx {
    mgmt_rx: Receiver<MgmtIn>,
    flows_rx: Receiver<FlowEvent>,
}

impl Default for FromDpQueue {
    fn default() -> Self {
        let (mgmt_tx, mgmt_rx) = sync_channel(MAX_MGMT_QUEUE);
        let (flows_tx, flows_rx) = channel();
        Self {
            mgmt_tx,
            flows_tx,
            rx: Mutex::new(Some(FromDpRx { mgmt_rx, flows_rx })),
            wake_pending: AtomicBool::new(false),
        }
    }
}

impl FromDpQueue {
    /// The loop's ends, for its one owner (`None` once taken).
    pub(super) fn take_rx(&self) -> Option<FromDpRx> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Daemon {
    /// A message from the data plane (on the events thread): an answer goes to its waiter,
    /// an event to the loop, which is woken.
    pub(super) fn on_dp_message(&self, m: FromDp) {
        // An installation's answer: the loop finishes the allocation or acceptance that
        // waits for it (it does not wait itself).
        let ack = matches!(m, FromDp::FlowAdded { .. } | FromDp::FlowError { .. });
        let routed = self.dp.route(m);
        let q = &self.lp.from_dp;
        let queued = match routed {
            Some(FromDp::Mgmt {
                port,
                src,
                dst,
                payload,
            }) => self.queue_mgmt(MgmtIn {
                port,
                src: Peer::Mac(src),
                dst: Some(dst),
                payload,
            }),
            Some(FromDp::UdpMgmt { port, src, payload }) => self.queue_mgmt(MgmtIn {
                port,
                src: Peer::Ip(src),
                dst: None,
                payload,
            }),
            Some(FromDp::FlowGone { flow, why }) => {
                q.flows_tx.send(FlowEvent::Gone { flow, why }).is_ok()
            }
            Some(FromDp::FlowDown { flow }) => q.flows_tx.send(FlowEvent::Down { flow }).is_ok(),
            _ => false,
        };
        if ack || (queued && !q.wake_pending.swap(true, Ordering::AcqRel)) {
            self.wake();
        }
    }

    fn queue_mgmt(&self, m: MgmtIn) -> bool {
        match self.lp.from_dp.mgmt_tx.try_send(m) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.counters
                    .mgmt_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Owner {
    /// On the loop: the flows' ends, then at most [`MGMT_PER_TURN`] management frames,
    /// given to their machines at `now`. Returns whether frames are left for the next
    /// turn.
    pub(super) fn take_from_dp(&self, now: Instant) -> bool {
        let q = &self.lp.from_dp;
        // Cleared before reading: a frame queued after this read wakes the loop again.
        q.wake_pending.swap(false, Ordering::AcqRel);
        let flows: Vec<FlowEvent> = self.from_dp.flows_rx.try_iter().collect();
        for e in flows {
            match e {
                FlowEvent::Gone { flow, why } => {
                    tracing::info!("Flow {flow}: {why}.");
                    {
                        // An adopted data plane's flow o7sd does not know yet: it is not
                        // to be adopted any more.
                        let mut st = self.st();
                        if st.dp_adopted
                            && !st.flows.contains_key(&flow)
                            && st.gone_early.len() < super::GONE_EARLY_MAX
                        {
                            st.gone_early.insert(flow);
                        }
                    }
                    self.dealloc(flow);
                }
                FlowEvent::Down { flow } => {
                    if let Some(f) = self.st().flows.get_mut(&flow) {
                        f.down = true;
                        tracing::info!("Flow {flow} ({}): peer timed out.", f.name);
                    }
                }
            }
        }
        let frames: Vec<MgmtIn> = self
            .from_dp
            .mgmt_rx
            .try_iter()
            .take(MGMT_PER_TURN)
            .collect();
        let more = frames.len() == MGMT_PER_TURN;
        for m in frames {
            self.on_mgmt(now, m.port, m.src, m.dst, &m.payload);
        }
        more
    }
}
