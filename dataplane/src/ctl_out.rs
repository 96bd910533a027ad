//! Messages from the data plane to `o7sd`, sent without ever blocking the packet path.
//!
//! Every message goes through a bounded queue that is flushed with non-blocking sends
//! whenever the channel has room. Management frames are the first to go when `o7sd` falls
//! behind (they may come from anyone on the wire): they are refused once
//! [`MAX_QUEUED_MGMT`] messages wait; replies and events are kept up to [`MAX_QUEUED`].
//! Whatever is refused is counted by reason and shown by `o7sctl stats`.

use crate::msg::FromDp;
use o7s::ipc::Channel;
use std::collections::VecDeque;
use std::io;

/// Most messages waiting for `o7sd`.
pub const MAX_QUEUED: usize = 4096;
/// Management frames are dropped once this many messages wait.
pub const MAX_QUEUED_MGMT: usize = 1024;

/// Counters of messages that did not reach `o7sd`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutDrops {
    /// Management frames and datagrams dropped: `o7sd` was behind.
    pub mgmt_backlog: u64,
    /// Replies and events dropped: the queue was full.
    pub events_overflow: u64,
    /// Messages larger than the channel takes.
    pub too_large: u64,
}

/// The bounded queue towards `o7sd`.
#[derive(Debug, Default)]
pub struct CtlOut {
    /// Replies and events: sent first, so that a flood of management frames does not
    /// delay o7sd's requests (o7sctl stays responsive).
    first: VecDeque<FromDp>,
    /// Management frames and datagrams.
    q: VecDeque<FromDp>,
    /// The packets of a long message (o7s::ipc::encode) not sent yet: they go before
    /// anything else, so that its fragments stay together.
    partial: VecDeque<Vec<u8>>,
    /// What was dropped.
    pub drops: OutDrops,
}

impl CtlOut {
    /// Queues a management frame or datagram (dropped and counted when `o7sd` is behind).
    pub fn push_mgmt(&mut self, m: FromDp) -> bool {
        if self.q.len() >= MAX_QUEUED_MGMT {
            self.drops.mgmt_backlog += 1;
            return false;
        }
        self.q.push_back(m);
        true
    }

    /// Queues a reply or an event.
    pub fn push(&mut self, m: FromDp) -> bool {
        if self.first.len() >= MAX_QUEUED {
            self.drops.events_overflow += 1;
            tracing::warn!("o7sd does not read the data plane's messages: dropped one");
            return false;
        }
        self.first.push_back(m);
        true
    }

    /// Forgets what waits (o7sd went away: nobody will read it).
    pub fn clear(&mut self) {
        self.q.clear();
        self.first.clear();
        self.partial.clear();
    }

    /// Whether messages wait.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty() && self.first.is_empty() && self.partial.is_empty()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.q.len() + self.first.len()
    }

    /// Sends what the channel takes now. `Err` only when `o7sd` is gone (the channel
    /// is closed); a message too large for the channel is dropped, counted and logged.
    pub fn flush(&mut self, ch: &Channel) -> io::Result<()> {
        loop {
            if let Some(p) = self.partial.front() {
                match ch.try_send_packet(p, &[]) {
                    Ok(()) => {
                        self.partial.pop_front();
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            let q = if self.first.is_empty() {
                &mut self.q
            } else {
                &mut self.first
            };
            let Some(m) = q.pop_front() else {
                return Ok(());
            };
            match o7s::ipc::encode(&m) {
                Ok(packets) => self.partial = packets.into(),
                Err(_) => {
                    self.drops.too_large += 1;
                    tracing::error!("a message to o7sd is too large even in fragments: dropped");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mgmt(i: u32) -> FromDp {
        FromDp::Mgmt {
            port: i,
            src: [2, 0, 0, 0, 0, 1],
            dst: [0xff; 6],
            payload: vec![0; 40],
        }
    }

    #[test]
    fn a_reader_that_stops_reading_costs_dropped_frames_not_a_blocked_sender() {
        let (a, b) = Channel::pair().unwrap();
        let mut out = CtlOut::default();
        // Nobody reads `b`: the socket buffer fills, then the queue, then frames are
        // dropped and counted, and no call blocks.
        for i in 0..20_000 {
            out.push_mgmt(mgmt(i));
            out.flush(&a).unwrap();
        }
        assert!(out.drops.mgmt_backlog > 0);
        assert_eq!(out.len(), MAX_QUEUED_MGMT);
        // Events still get in above the management limit.
        assert!(out.push(FromDp::FlowDown { flow: 7 }));
        // Reading drains everything; the event overtakes the queued management frames
        // (only those already in the socket come before it).
        let mut got = 0u32;
        let mut event_at = None;
        loop {
            out.flush(&a).unwrap();
            match b.recv_timeout::<FromDp>(Some(std::time::Duration::from_millis(50))) {
                Ok((m, _)) => {
                    got += 1;
                    if matches!(m, FromDp::FlowDown { flow: 7 }) {
                        event_at = Some(got);
                    }
                }
                Err(_) => break,
            }
        }
        assert!(out.is_empty());
        let at = event_at.unwrap();
        assert!(
            at < got - (MAX_QUEUED_MGMT as u32) / 2,
            "event at {at} of {got}"
        );
        assert_eq!(u64::from(got) + out.drops.mgmt_backlog, 20_001);
    }

    #[test]
    fn a_long_message_goes_in_fragments_and_a_closed_channel_is_an_error() {
        let (a, b) = Channel::pair().unwrap();
        let mut out = CtlOut::default();
        // 4 MB: far more than the socket takes at once.
        out.push(FromDp::UdpMgmt {
            port: 1,
            src: "127.0.0.1:1".parse().unwrap(),
            payload: vec![0x5a; 2 * 1024 * 1024],
        });
        out.push(FromDp::FlowDown { flow: 1 });
        let reader = std::thread::spawn(move || {
            let first = b.recv::<FromDp>().unwrap().0;
            let second = b.recv::<FromDp>().unwrap().0;
            (first, second, b)
        });
        while !out.is_empty() {
            out.flush(&a).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (first, second, b) = reader.join().unwrap();
        assert!(
            matches!(first, FromDp::UdpMgmt { ref payload, .. } if payload.len() == 2 * 1024 * 1024 && payload.iter().all(|&x| x == 0x5a))
        );
        assert!(matches!(second, FromDp::FlowDown { flow: 1 }));
        assert_eq!(out.drops.too_large, 0);
        drop(b);
        out.push(FromDp::FlowDown { flow: 2 });
        assert!(out.flush(&a).is_err());
    }
}
