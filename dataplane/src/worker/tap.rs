//! Packet capture in the data plane (`o7sctl capture`): frames that AF_XDP carries never
//! reach a kernel packet tap, so the worker copies them itself while a capture runs, into
//! a shared ring that o7sctl reads directly (the layout of a flow's memory: no message, no
//! encoding per frame). No cost while none runs (an empty list per frame); while one runs,
//! one bounded copy per frame: a frame that does not fit the ring is dropped and counted in
//! the ring's counter, never waited for.

use super::*;
use o7s_abi::msg::CaptureRecord;

/// Captures of one port at once.
pub(super) const MAX_PER_PORT: usize = 4;

/// A running capture of a port (or of one flow on it).
pub(super) struct Tap {
    pub(super) id: u64,
    /// Only frames of this local endpoint id (a flow capture).
    pub(super) eid: Option<u32>,
    pub(super) snaplen: usize,
    pub(super) ring: FlowMem,
    pub(super) dropped: u64,
}

impl Drop for Tap {
    /// However the capture ends here (stopped, its port removed, o7sd lost), its ring says
    /// so: the client stops waiting on it.
    fn drop(&mut self) {
        self.ring.flags().fetch_or(
            o7s_abi::ring::flags::CLOSED,
            std::sync::atomic::Ordering::Release,
        );
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("id", &self.id).finish()
    }
}

impl Tap {
    /// Copies `frame` (sent when `tx`) of endpoint `eid` if this capture wants it.
    pub(super) fn take(&mut self, frame: &[u8], tx: bool, eid: u32) {
        if self.eid.is_some_and(|e| e != eid) {
            return;
        }
        let ts_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let head = CaptureRecord {
            ts_ns,
            len: frame.len() as u32,
            tx,
        }
        .to_bytes();
        let n = frame.len().min(self.snaplen);
        let body = frame.get(..n).unwrap_or(frame);
        if self.ring.ring(Dir::Rx).push_parts(&[&head, body]).is_err() {
            self.dropped += 1;
            self.ring.counter().fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Dataplane {
    /// Starts capture `id` on `port` (only `flow`'s frames when given) into `mem`.
    pub(super) fn capture_start(
        &mut self,
        id: u64,
        port: u32,
        flow: Option<u64>,
        snaplen: u32,
        mem: Option<std::os::fd::OwnedFd>,
    ) {
        let refuse = |out: &mut crate::ctl_out::CtlOut, error: String| {
            out.push(FromDp::CaptureRefused { id, error });
        };
        let ring = match mem.as_ref().map(FlowMem::open_sealed) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return refuse(&mut self.out, format!("capture ring: {e}")),
            None => {
                return refuse(
                    &mut self.out,
                    "no capture ring came with the request".into(),
                )
            }
        };
        let eid = match flow {
            Some(f) => match self.flows.get(&f) {
                Some(fl) if fl.port == port => Some(fl.local),
                _ => return refuse(&mut self.out, format!("no flow {f} on port {port}")),
            },
            None => None,
        };
        let Some(p) = self.ports.get_mut(&port) else {
            let error = if self.uports.contains_key(&port) {
                "a udp port: its datagrams go through the kernel, where tcpdump sees them".into()
            } else {
                format!("no port {port}")
            };
            return refuse(&mut self.out, error);
        };
        if p.taps.len() >= MAX_PER_PORT {
            let error = format!("port {port} has {MAX_PER_PORT} captures running already");
            return refuse(&mut self.out, error);
        }
        let max = ring.max_sdu().saturating_sub(CaptureRecord::LEN);
        p.taps.push(Tap {
            id,
            eid,
            snaplen: (snaplen as usize).clamp(64, max.max(64)),
            ring,
            dropped: 0,
        });
        tracing::info!("capture {id} on port {port} ({}) started", p.dev);
        self.out.push(FromDp::CaptureStarted { id });
    }

    /// Stops capture `id`.
    pub(super) fn capture_stop(&mut self, id: u64) {
        for p in self.ports.values_mut() {
            if let Some(i) = p.taps.iter().position(|t| t.id == id) {
                let t = p.taps.swap_remove(i);
                tracing::info!(
                    "capture {id} on {} stopped ({} frames dropped: the ring was full)",
                    p.dev,
                    t.dropped
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_copies_what_it_is_asked_for_and_counts_the_rest() {
        let (mem, fd) = FlowMem::create(4, 256).unwrap();
        let mut t = Tap {
            id: 1,
            eid: Some(0x41),
            snaplen: 64,
            ring: FlowMem::open_sealed(&fd).unwrap(),
            dropped: 0,
        };
        t.take(&[7u8; 100], false, 0x42);
        assert!(mem.ring(Dir::Rx).is_empty(), "another flow's frame");
        t.take(&[7u8; 100], true, 0x41);
        let mut buf = [0u8; 512];
        let n = mem.ring(Dir::Rx).pop(&mut buf).unwrap().unwrap();
        let (h, data) = CaptureRecord::parse(&buf[..n]).unwrap();
        assert_eq!((h.len, h.tx, data.len()), (100, true, 64));
        for _ in 0..10 {
            t.take(&[1u8; 60], false, 0x41);
        }
        assert_eq!(t.dropped, 6, "4 slots");
        assert_eq!(mem.counter().load(Ordering::Relaxed), 6);
    }
}
