//! `o7sctl capture`: streams a capture from o7sd into a pcap file (or standard output),
//! record by record, so the file is valid at every moment; Ctrl-C ends it cleanly.

use o7s::ipc::Channel;
use o7s::proto::{socket_path, Ctl, Reply, Request};
use std::io::Write;
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
    let mut out: Box<dyn Write> = if write == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(write).map_err(|e| format!("{write}: {e}"))?)
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
    let (mut frames, mut dropped, mut started) = (0u64, 0u64, false);
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match ch.recv_timeout::<Reply>(Some(Duration::from_millis(200))) {
            Ok((
                Reply::Captured {
                    frames: f,
                    dropped: d,
                },
                _,
            )) => {
                if !started {
                    started = true;
                    out.write_all(&pcap_header(snaplen))
                        .map_err(|e| e.to_string())?;
                    out.flush().map_err(|e| e.to_string())?;
                    eprintln!(
                        "o7sctl: capturing on {target}{}; Ctrl-C stops",
                        flow.map(|f| format!(", flow {f}")).unwrap_or_default()
                    );
                }
                for fr in &f {
                    out.write_all(&pcap_record(fr.ts_ns, fr.len, &fr.data))
                        .map_err(|e| e.to_string())?;
                }
                out.flush().map_err(|e| e.to_string())?;
                frames += f.len() as u64;
                dropped = d;
            }
            Ok((Reply::Ok, _)) => break Ok(()),
            Ok((Reply::Error { code, message }, _)) => break Err(format!("{code}: {message}")),
            Ok((other, _)) => break Err(format!("unexpected reply {other:?}")),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => break Err(format!("o7sd: {e}")),
        }
    };
    // Closing the channel ends the capture in the daemon.
    drop(ch);
    if started {
        eprintln!("o7sctl: {frames} frames captured, {dropped} dropped");
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
