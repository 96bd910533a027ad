//! `o7s-vpn --tap`: a TAP device and any number of flows as the ports of one learning
//! switch (src/switch.rs). Ethernet frames travel one per SDU. A frame from a port goes
//! where the table says, or to every other port when the destination is unknown, broadcast
//! or multicast; so hosts on TAP devices joined by flows (a star through a server, or any
//! tree) share one Ethernet segment, ARP and IPv6 neighbour discovery included. The
//! decision is taken under the switch's lock, the frames are written after it is released.

use crate::switch::{Out, Port, Switch};
use crate::tun::Tun;
use crate::{next_flow, Cli, Stats, TICK};
use o7s::flow::{Error, Flow};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most MAC addresses the switch learns (a MAC flood beyond is counted, not stored).
pub const MAX_MACS: usize = 4096;
/// An address not seen for this long is forgotten.
pub const MAC_AGE: Duration = Duration::from_secs(300);
/// Largest Ethernet frame a TAP device hands over (a 64 KiB MTU and its header).
const MAX_FRAME: usize = 65_535 + 14;

struct Shared<'a> {
    tap: &'a Tun,
    stats: &'a Stats,
    switch: Mutex<Switch>,
    flows: Mutex<BTreeMap<u64, Arc<Flow>>>,
    stop: &'a AtomicBool,
}

impl Shared<'_> {
    /// Sends `frame`, which came in on `from`, where the switch says.
    fn forward(&self, from: Port, frame: &[u8]) {
        let out = match self.switch.lock() {
            Ok(mut s) => s.frame(Instant::now(), from, frame),
            Err(_) => return,
        };
        let (to_tap, flows): (bool, Vec<Arc<Flow>>) = {
            let Ok(all) = self.flows.lock() else { return };
            match out {
                None | Some(Out::Drop) => (false, vec![]),
                Some(Out::To(Port::Tap)) => (true, vec![]),
                Some(Out::To(Port::Flow(id))) => {
                    (false, all.get(&id).cloned().into_iter().collect())
                }
                Some(Out::Flood) => (
                    from != Port::Tap,
                    all.iter()
                        .filter(|(id, _)| from != Port::Flow(**id))
                        .map(|(_, f)| f.clone())
                        .collect(),
                ),
            }
        };
        if to_tap {
            match self.tap.write(frame) {
                Ok(_) => {
                    self.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .rx_bytes
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.rx_tun_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for f in flows {
            match f.write(frame) {
                Ok(_) => {
                    self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .tx_bytes
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                }
                Err(Error::TooBig(..)) => {
                    self.stats.tx_too_big.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::Timeout | Error::WouldBlock) => {
                    self.stats.tx_slow_flow.fetch_add(1, Ordering::Relaxed);
                }
                // A flow that ended: its reader removes it.
                Err(_) => {}
            }
        }
    }

    /// Reads flow `id` until it ends, then forgets it and its addresses.
    fn serve_flow(&self, id: u64, flow: &Flow) {
        let mut buf = vec![0u8; MAX_FRAME];
        while !self.stop.load(Ordering::Relaxed) {
            match flow.read(&mut buf) {
                Ok(n) => {
                    if let Some(frame) = buf.get(..n) {
                        self.forward(Port::Flow(id), frame);
                    }
                }
                Err(Error::Timeout) => {}
                Err(e) => {
                    eprintln!("o7s-vpn: flow {id} ended: {e}");
                    break;
                }
            }
        }
        if let Ok(mut f) = self.flows.lock() {
            f.remove(&id);
        }
        if let Ok(mut s) = self.switch.lock() {
            s.forget(Port::Flow(id));
        }
    }

    /// The state `--status` prints: counters, switch counters, flows, MAC table.
    fn state(&self) -> serde_json::Value {
        let now = Instant::now();
        let (counters, table, size) = match self.switch.lock() {
            Ok(s) => (s.counters(), s.entries(now), s.len()),
            Err(_) => return serde_json::Value::Null,
        };
        let flows: Vec<u64> = self
            .flows
            .lock()
            .map(|f| f.keys().copied().collect())
            .unwrap_or_default();
        serde_json::json!({
            "mode": "tap",
            "device": self.tap.name(),
            "counters": self.stats.json(),
            "switch": {
                "learnt": counters.learnt, "moved": counters.moved,
                "table_full": counters.table_full, "port_full": counters.port_full,
                "tap_held": counters.tap_held, "aged": counters.aged,
                "flooded": counters.flooded, "same_port": counters.same_port,
                "not_ethernet": counters.malformed, "size": size, "max": MAX_MACS,
                "max_per_flow": (MAX_MACS / 4).max(1),
                "age_s": MAC_AGE.as_secs(),
            },
            "flows": flows,
            "macs": table.iter().map(|(m, p, s)| serde_json::json!({
                "mac": m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                "port": match p { Port::Tap => "tap".to_string(), Port::Flow(i) => format!("flow {i}") },
                "seen_s_ago": (s * 10.0).round() / 10.0,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Runs the switch until stopped; `state_file` is rewritten every second for `--status`.
pub fn run(
    cli: &Cli,
    tap: &Tun,
    stats: &Stats,
    stop: &AtomicBool,
    state_file: &PathBuf,
) -> ExitCode {
    let sh = Shared {
        tap,
        stats,
        switch: Mutex::new(Switch::new(MAX_MACS, MAC_AGE)),
        flows: Mutex::new(BTreeMap::new()),
        stop,
    };
    let configured = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        // TAP -> switch, and the switch's ageing and the state file once a second.
        s.spawn(|| {
            let mut buf = vec![0u8; MAX_FRAME];
            let mut last: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                if last.is_none_or(|l| l.elapsed() >= Duration::from_secs(1)) {
                    let now = Instant::now();
                    last = Some(now);
                    if let Ok(mut sw) = sh.switch.lock() {
                        sw.expire(now);
                    }
                    // Written aside and renamed: `--status` never reads a half-written
                    // (or just truncated, empty) file.
                    let tmp = state_file.with_extension("json.tmp");
                    if std::fs::write(&tmp, sh.state().to_string()).is_ok() {
                        let _ = std::fs::rename(&tmp, state_file);
                    }
                }
                match tap.readable(TICK) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        eprintln!("o7s-vpn: reading {}: {e}", tap.name());
                        failed.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                }
                if let Ok(n) = tap.read(&mut buf) {
                    if let Some(frame) = buf.get(..n) {
                        sh.forward(Port::Tap, frame);
                    }
                }
            }
        });
        // Flows: accepted (server) or allocated (client), each served by its own reader.
        while !stop.load(Ordering::Relaxed) {
            let flow = match next_flow(cli, stop) {
                Ok(Some(mut f)) => {
                    // Its reader looks at the stop flag between reads.
                    f.set_read_timeout(Some(TICK));
                    // A member whose ring or window stays full cannot hold the switch:
                    // every frame it does not take at once is dropped for it.
                    f.set_write_timeout(Some(crate::SWITCH_WRITE_TIMEOUT));
                    Arc::new(f)
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("o7s-vpn: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let mtu = flow.info().mtu.saturating_sub(crate::switch::ETH_HEADER);
            if mtu < crate::MIN_MTU {
                eprintln!(
                    "o7s-vpn: the flow's largest SDU leaves an MTU of {mtu}, below {}",
                    crate::MIN_MTU
                );
                failed.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                break;
            }
            if !configured.swap(true, Ordering::Relaxed) {
                let m = u32::try_from(mtu.min(65_535)).unwrap_or(1500);
                if let Err(e) = tap.configure(cli.ip(), cli.mask(), m) {
                    eprintln!("o7s-vpn: configuring {}: {e}", tap.name());
                    failed.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
            let id = flow.info().id;
            stats.flows.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "o7s-vpn: switch port up: {} {}/{} flow {id} ({}, layer {}, MTU {mtu})",
                tap.name(),
                cli.ip(),
                u32::from(cli.mask()).count_ones(),
                flow.info().name,
                flow.info().layer,
            );
            if let Ok(mut f) = sh.flows.lock() {
                f.insert(id, flow.clone());
            }
            let sh = &sh;
            let handle = s.spawn(move || sh.serve_flow(id, &flow));
            // A client has one flow: it waits for it to end before allocating again.
            if cli.name.is_some() {
                let _ = handle.join();
                if cli.once {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let _ = std::fs::remove_file(state_file);
    let _ = std::fs::remove_file(state_file.with_extension("json.tmp"));
    if failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
