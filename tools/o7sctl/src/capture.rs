//! `o7sctl capture`: streams a capture from o7sd into a pcap file (or standard output),
//! record by record, so the file is valid at every moment; Ctrl-C ends it cleanly.

use o7s::ipc::Channel;
use o7s::proto::{socket_path, Ctl, Reply, Request};
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// pcap global header: microsecond timestamps, Ethernet.
fn pcap_header(snaplen: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&snaplen.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// One pcap record.
fn pcap_record(ts_ns: u64, len: u32, data: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(16 + data.len());
    r.extend_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    r.extend_from_slice(&(((ts_ns % 1_000_000_000) / 1000) as u32).to_le_bytes());
    r.extend_from_slice(&(data.len() as u32).to_le_bytes());
    r.extend_from_slice(&len.max(data.len() as u32).to_le_bytes());
    r.extend_from_slice(data);
    r
}

/// The line a capture ends with: the frames captured, and the frames dropped only when
/// some were.
fn summary(frames: u64, dropped: u64) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let mut s = format!("o7sctl: {frames} frame{} captured", plural(frames));
    if dropped > 0 {
        s.push_str(&format!(
            ", {dropped} frame{} dropped (the ring was full)",
            plural(dropped)
        ));
    }
    s
}

/// `Ok(false)` when the write failed because the reader went away (`-w - | head -c 10000`):
/// the capture ends there, quietly.
fn wrote(r: std::io::Result<()>) -> Result<bool, String> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs a capture of `target` into `write` until `count` frames (0: Ctrl-C).
pub fn run(
    target: &str,
    flow: Option<u64>,
    write: &str,
    count: u64,
    snaplen: u32,
) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(s, stop.clone()).map_err(|e| e.to_string())?;
    }
    // Buffered (flushed whenever the ring is empty): a write(2) per frame could not keep
    // up. A new file is the caller's alone: it holds every flow's frames of the port.
    let mut out: Box<dyn Write> = if write == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(write)
            .map_err(|e| format!("{write}: {e}"))?;
        Box::new(std::io::BufWriter::new(f))
    };
    let path = socket_path(None);
    let ch = Channel::connect(&path).map_err(|e| format!("no o7sd at {}: {e}", path.display()))?;
    ch.send(
        &Request::Ctl(Ctl::Capture {
            target: target.to_string(),
            flow,
            snaplen,
            count,
        }),
        &[],
    )
    .map_err(|e| e.to_string())?;
    let (reply, fds) = ch.recv::<Reply>().map_err(|e| format!("o7sd: {e}"))?;
    let snaplen = match reply {
        Reply::Capturing { snaplen } => snaplen,
        Reply::Error { code, message } => return Err(format!("{code}: {message}")),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let mem = fds.first().ok_or("o7sd sent no capture ring")?;
    let ring = o7s::ring::FlowMem::open(mem).map_err(|e| format!("capture ring: {e}"))?;
    if !wrote(
        out.write_all(&pcap_header(snaplen))
            .and_then(|()| out.flush()),
    )? {
        return Ok(());
    }
    eprintln!(
        "o7sctl: capturing on {target}{}; Ctrl-C stops",
        flow.map(|f| format!(", flow {f}")).unwrap_or_default()
    );
    let rx = ring.ring(o7s::ring::Dir::Rx);
    let mut buf = vec![0u8; ring.max_sdu()];
    let mut frames = 0u64;
    let result = loop {
        if stop.load(Ordering::Relaxed) || (count > 0 && frames >= count) {
            break Ok(());
        }
        match rx.pop(&mut buf) {
            Ok(Some(n)) => {
                let Some((h, data)) = buf.get(..n).and_then(o7s_abi::msg::CaptureRecord::parse)
                else {
                    continue;
                };
                match wrote(out.write_all(&pcap_record(h.ts_ns, h.len, data))) {
                    Ok(true) => frames += 1,
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            Ok(None) => {
                match wrote(out.flush()) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
                // The data plane ended it (its port was removed): nothing more comes.
                if ring.flags().load(Ordering::Acquire) & o7s::ring::flags::CLOSED != 0 {
                    break Err(
                        "the data plane ended the capture (its port is gone, or it lost o7sd)"
                            .to_string(),
                    );
                }
                // o7sd gone (or the capture refused later): the connection says so.
                if o7s::ipc::wait_readable(ch.as_fd(), Some(Duration::from_millis(5)))
                    .unwrap_or(true)
                {
                    break Err("o7sd ended the capture".to_string());
                }
            }
            Err(e) => break Err(format!("capture ring: {e}")),
        }
    };
    let flushed = wrote(out.flush());
    // Closing the channel ends the capture in the daemon.
    drop(ch);
    let dropped = ring.counter().load(Ordering::Relaxed);
    eprintln!("{}", summary(frames, u64::from(dropped)));
    result.and(flushed.map(|_| ()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_dropped_only_when_frames_were() {
        assert_eq!(summary(12, 0), "o7sctl: 12 frames captured");
        assert_eq!(summary(0, 0), "o7sctl: 0 frames captured");
        assert_eq!(summary(1, 0), "o7sctl: 1 frame captured");
        assert_eq!(
            summary(40, 3),
            "o7sctl: 40 frames captured, 3 frames dropped (the ring was full)"
        );
        assert_eq!(
            summary(40, 1),
            "o7sctl: 40 frames captured, 1 frame dropped (the ring was full)"
        );
        assert!(!summary(7, 0).contains("dropped"));
    }

    #[test]
    fn a_reader_gone_ends_the_capture_quietly() {
        use std::io::{Error, ErrorKind};
        assert_eq!(wrote(Ok(())), Ok(true));
        assert_eq!(wrote(Err(Error::from(ErrorKind::BrokenPipe))), Ok(false));
        assert!(wrote(Err(Error::from(ErrorKind::StorageFull))).is_err());
    }

    #[test]
    fn the_pcap_we_write_is_read_back() {
        let mut f = pcap_header(65535);
        f.extend(pcap_record(1_700_000_000_123_456_789, 60, &[0xaa; 60]));
        f.extend(pcap_record(1_700_000_001_000_000_000, 1514, &[0xbb; 100]));
        let recs = o7s_wire::capfile::parse(&f).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data.len(), 60);
        assert_eq!(recs[1].orig_len, 1514);
    }
}
