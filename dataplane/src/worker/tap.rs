//! Packet capture in the data plane (`o7sctl capture`): frames that AF_XDP carries never
//! reach a kernel packet tap, so the worker copies them itself while a capture runs. No
//! cost while none runs (one `Option` test per frame); while one runs, a bounded copy: a
//! batch of at most [`MAX_BATCH`] frames, sent to o7sd without blocking, and every frame that
//! does not fit is dropped and counted, never waited for.

use super::*;
use o7s_abi::msg::CapturedFrame;

/// Captures of one port at once.
pub(super) const MAX_PER_PORT: usize = 4;
/// Frames a capture holds before they go to o7sd.
pub(super) const MAX_BATCH: usize = 512;
/// A batch goes to o7sd when it has this many frames, or is this old.
const FLUSH_FRAMES: usize = 64;
const FLUSH_AGE: Duration = Duration::from_millis(20);

/// A running capture of a port (or of one flow on it).
#[derive(Debug)]
pub(super) struct Tap {
    pub(super) id: u64,
    /// Only frames of this local endpoint id (a flow capture).
    pub(super) eid: Option<u32>,
    pub(super) snaplen: usize,
    pub(super) batch: Vec<CapturedFrame>,
    pub(super) dropped: u64,
    pub(super) last_flush: Instant,
}

impl Tap {
    /// Copies `frame` (sent when `tx`) of endpoint `eid` if this capture wants it.
    pub(super) fn take(&mut self, frame: &[u8], tx: bool, eid: u32) {
        if self.eid.is_some_and(|e| e != eid) {
            return;
        }
        if self.batch.len() >= MAX_BATCH {
            self.dropped += 1;
            return;
        }
        let ts_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = frame.len().min(self.snaplen);
        self.batch.push(CapturedFrame {
            ts_ns,
            tx,
            len: frame.len() as u32,
            data: frame.get(..n).unwrap_or(frame).to_vec(),
        });
    }
}

impl Dataplane {
    /// Starts capture `id` on `port` (only `flow`'s frames when given).
    pub(super) fn capture_start(&mut self, id: u64, port: u32, flow: Option<u64>, snaplen: u32) {
        let eid = match flow {
            Some(f) => match self.flows.get(&f) {
                Some(fl) if fl.port == port => Some(fl.local),
                _ => {
                    self.out.push(FromDp::CaptureRefused {
                        id,
                        error: format!("no flow {f} on port {port}"),
                    });
                    return;
                }
            },
            None => None,
        };
        let Some(p) = self.ports.get_mut(&port) else {
            let error = if self.uports.contains_key(&port) {
                "a udp port: its datagrams go through the kernel, where tcpdump sees them".into()
            } else {
                format!("no port {port}")
            };
            self.out.push(FromDp::CaptureRefused { id, error });
            return;
        };
        if p.taps.len() >= MAX_PER_PORT {
            self.out.push(FromDp::CaptureRefused {
                id,
                error: format!("port {port} has {MAX_PER_PORT} captures running already"),
            });
            return;
        }
        p.taps.push(Tap {
            id,
            eid,
            snaplen: snaplen.clamp(64, 65535) as usize,
            batch: Vec::new(),
            dropped: 0,
            last_flush: self.now,
        });
        self.taps += 1;
        tracing::info!("capture {id} on port {port} ({}) started", p.dev);
        // Tell o7sd it runs.
        self.out.push(FromDp::Captured {
            id,
            frames: vec![],
            dropped: 0,
        });
    }

    /// Stops capture `id` (its last frames are sent).
    pub(super) fn capture_stop(&mut self, id: u64) {
        let Some(p) = self
            .ports
            .values_mut()
            .find(|p| p.taps.iter().any(|t| t.id == id))
        else {
            return;
        };
        let i = p.taps.iter().position(|t| t.id == id);
        if let Some(t) = i.map(|i| p.taps.swap_remove(i)) {
            self.taps = self.taps.saturating_sub(1);
            tracing::info!(
                "capture {id} on {} stopped ({} frames dropped)",
                p.dev,
                t.dropped
            );
            let (frames, dropped) = (t.batch, t.dropped);
            if !frames.is_empty() {
                self.out.push_mgmt(FromDp::Captured {
                    id,
                    frames,
                    dropped,
                });
            }
        }
    }

    /// Sends the captures' batches that are full or old enough; when o7sd is behind, the
    /// batch is dropped and counted instead.
    pub(super) fn flush_taps(&mut self) {
        if self.taps == 0 {
            return;
        }
        for t in self.ports.values_mut().flat_map(|p| p.taps.iter_mut()) {
            let due = t.batch.len() >= FLUSH_FRAMES
                || (!t.batch.is_empty() && self.now.duration_since(t.last_flush) >= FLUSH_AGE);
            if !due {
                continue;
            }
            t.last_flush = self.now;
            let frames = std::mem::take(&mut t.batch);
            if self.out.len() >= crate::ctl_out::MAX_QUEUED_MGMT / 2 {
                t.dropped += frames.len() as u64;
                continue;
            }
            let n = frames.len() as u64;
            if !self.out.push_mgmt(FromDp::Captured {
                id: t.id,
                frames,
                dropped: t.dropped,
            }) {
                t.dropped += n;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_copies_what_it_is_asked_for_and_counts_the_rest() {
        let mut t = Tap {
            id: 1,
            eid: Some(0x41),
            snaplen: 64,
            batch: Vec::new(),
            dropped: 0,
            last_flush: Instant::now(),
        };
        t.take(&[7u8; 100], false, 0x42);
        assert!(t.batch.is_empty(), "another flow's frame");
        t.take(&[7u8; 100], true, 0x41);
        assert_eq!(
            (t.batch[0].len, t.batch[0].data.len(), t.batch[0].tx),
            (100, 64, true)
        );
        for _ in 0..MAX_BATCH + 10 {
            t.take(&[1u8; 60], false, 0x41);
        }
        assert_eq!(t.batch.len(), MAX_BATCH);
        assert_eq!(t.dropped, 11);
    }
}
