//! Captures and freeing flows (what the event loop and the admin thread share).

use crate::daemon::{Daemon, Owner};
use crate::error::CtlError;
use o7s::ipc::Channel;
use o7s::proto::Reply;
use o7s::ring::{FlowMem, DEFAULT_SLOT_SIZE};
use o7s_abi::msg::ToDp;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

impl Daemon {
    /// Starts a capture for the client on `ch`: hands it the ring the data plane copies
    /// the frames into. Returns the capture's id (to stop it when the client hangs up), or
    /// `None` when it could not start (the client is told why).
    pub(super) fn capture(
        &self,
        ch: &Channel,
        target: &str,
        flow: Option<u64>,
        snaplen: u32,
    ) -> Option<u64> {
        let fail = |e: CtlError| {
            let _ = ch.send(&e.reply(), &[]);
            None
        };
        let t = target.to_string();
        let port = match self.on_loop(move |o| o.capture_port(&t, flow)) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => return fail(e),
            Err(e) => return fail(e.into()),
        };
        let id = self.capture_ids.fetch_add(1, Ordering::Relaxed) + 1;
        // The ring the data plane writes and the client reads: 1024 slots of 9216 bytes (a
        // 9000-byte frame and its header), sealed like a flow's memory.
        let (ring, memfd) = match FlowMem::create(1024, DEFAULT_SLOT_SIZE) {
            Ok(x) => x,
            Err(source) => {
                return fail(CtlError::Resources {
                    what: "capture ring",
                    source,
                })
            }
        };
        let room = ring.max_sdu() - o7s_abi::msg::CaptureRecord::LEN;
        let snaplen = snaplen.min(u32::try_from(room).unwrap_or(u32::MAX));
        drop(ring);
        let start = ToDp::CaptureStart {
            id,
            port,
            flow,
            snaplen,
        };
        if let Err(e) = self.dp.capture_start(&start, id, memfd.as_fd()) {
            return fail(CtlError::DataPlane(e));
        }
        tracing::info!(
            "Capture {id} of port {port}{} started.",
            flow.map(|f| format!(", flow {f}")).unwrap_or_default()
        );
        // The client reads the ring itself (and counts); the capture lasts until it hangs up.
        if ch
            .send(&Reply::Capturing { snaplen }, &[memfd.as_fd()])
            .is_ok()
        {
            return Some(id);
        }
        self.dp.capture_end(id);
        tracing::info!("Capture {id} ended.");
        None
    }
}

impl Owner {
    /// The port a capture of `target` (an IPCP's name, a device, a port id) or of flow
    /// `flow` reads.
    fn capture_port(&self, target: &str, flow: Option<u64>) -> Result<u32, CtlError> {
        let st = self.st();
        let by_flow = flow.map(|f| st.flows.get(&f).map(|r| r.ipcp));
        let ipcp = match by_flow {
            Some(Some(i)) => st.ipcps.get(i),
            Some(None) => return Err(CtlError::NotFound(format!("no flow {}", flow.unwrap_or(0)))),
            None => st.ipcps.iter().find(|i| {
                i.name == target || i.dev == target || target.parse::<u32>() == Ok(i.port)
            }),
        };
        ipcp.map(|i| i.port)
            .ok_or_else(|| CtlError::NotFound(format!("no port, device or IPCP named {target}")))
    }

    /// Frees a flow everywhere.
    pub fn dealloc(&self, flow: u64) {
        if self.local_dealloc(flow) || self.bc_leave(flow) {
            return;
        }
        let mut st = self.st();
        if let Some(f) = st.flows.remove(&flow) {
            if let Some(i) = st.ipcps.get_mut(f.ipcp) {
                // An eth/udp IPCP's endpoint ids are 32-bit.
                if let Ok(local) = u32::try_from(f.local) {
                    i.shim.release(local);
                }
            }
            drop(st);
            self.dp.send(&ToDp::DelFlow { flow }, &[]);
            tracing::info!("Flow {flow} ({} {}) deallocated.", f.side, f.name);
        }
    }
}
