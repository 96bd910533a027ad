//! `ocbr`: the reference's constant-bit-rate tool. The client sends SDUs whose first 8 bytes
//! are a sequence number (little-endian) at a rate or flat out; the server counts what
//! arrives per interval and reports sent, received, lost and Mbit/s.
//!
//! Beyond the reference: the rest of an SDU is a pattern drawn from its sequence number
//! ([`pattern`]; the reference sends whatever its stack held), which `--verify` checks at
//! the server (`corrupt`); the server counts SDUs that come after a later one
//! (`out_of_order`); `--count` stops the client after that many SDUs.
//!
//! The server (`-l`) serves many flows at once, each on a thread of its own, and reports
//! each separately: every line names its flow by its number in accept order and its id
//! (`Flow #2 (id 7): ...`; in JSON `flow_number` and `flow`). Text output has a line per
//! flow per interval and a summary when the flow ends; `--json` a summary line per flow.
//! At most `--max-flows` are served at once: a flow accepted beyond them is closed at once
//! (said on stderr, and counted). `--flows N` takes N flows and exits when all have ended.

use clap::Parser;
use o7s::{Error, Flow, QosSpec};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ouroboros constant bit rate: a sender and a counting server.
#[derive(Debug, Parser)]
#[command(name = "ocbr", version)]
struct Cli {
    /// Run as server.
    #[arg(short = 'l', long)]
    listen: bool,
    /// Server: report interval in seconds (text output; per flow).
    #[arg(short = 'i', long, default_value_t = 1.0)]
    interval: f64,
    /// Server: a flow idle this long (s) is over and reported.
    #[arg(short = 't', long, default_value_t = 1.0)]
    timeout: f64,
    /// Client: server name.
    #[arg(
        short = 'n',
        long = "server-apn",
        alias = "server_apn",
        default_value = "ocbr"
    )]
    server: String,
    /// Client: duration in seconds.
    #[arg(short = 'd', long, default_value_t = 60.0)]
    duration: f64,
    /// Client: SDU size in bytes (8..=65535).
    #[arg(short = 's', long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(8..=65535))]
    size: u32,
    /// Client: rate in bit/s, with k, M or G suffix (e.g. 100M). Held back by the flow
    /// (congestion avoidance, a full ring), it catches up at most 100 ms of SDUs.
    #[arg(short = 'r', long, default_value = "1M", value_parser = parse_rate)]
    rate: u64,
    /// Client: send as fast as possible (ignores --rate).
    #[arg(short = 'f', long)]
    flood: bool,
    /// Client: sleep between SDUs (default).
    #[arg(long, conflicts_with = "spin")]
    sleep: bool,
    /// Client: busy-wait between SDUs (more precise, burns a core).
    #[arg(long)]
    spin: bool,
    /// QoS cube: raw, best, video, voice, data (best, video, voice and data run FRCP:
    /// in-order delivery; data also retransmits what is lost).
    #[arg(short = 'q', long, default_value = "raw")]
    qos: String,
    /// Client: the flow's peer timeout in ms (QoS `timeout`; the cubes' default is 120000):
    /// an end that hears nothing from its peer for this long takes the flow down. Quiet
    /// ends send keepalives every quarter of it, so a one-way flow stays up.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1000..))]
    peer_timeout: Option<u32>,
    /// Client: stop after this many SDUs (or at --duration, whichever comes first).
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Server: check that every SDU's bytes after its sequence number are the pattern the
    /// o7s client writes; those that are not are counted as `corrupt` (a reference client
    /// sends arbitrary bytes there).
    #[arg(long)]
    verify: bool,
    /// Print results as JSON lines (the server: one per flow, when it ends).
    #[arg(long)]
    json: bool,
    /// Runtime directory of the o7sd to use (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, value_name = "DIR")]
    rundir: Option<std::path::PathBuf>,
    /// Server: take this many flows, then exit once all of them have ended (0: never).
    #[arg(long, default_value_t = 0)]
    flows: u64,
    /// Server: serve at most this many flows at once; a flow accepted beyond them is closed
    /// at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_flows: u64,
}

/// How far behind its schedule a rate-limited client catches up: after a longer hold (a
/// flow sharing a bottleneck for seconds) it goes on at its rate from now instead of sending
/// flat out until it has made up for all of it.
const MAX_BEHIND: Duration = Duration::from_millis(100);

/// The bytes the client writes after an SDU's sequence number: byte `i` of the SDU is
/// the low byte of `seq * 31 + i`.
fn pattern(seq: u64, sdu: &mut [u8]) {
    let base = seq.wrapping_mul(31);
    for (i, b) in sdu.iter_mut().enumerate().skip(8) {
        *b = base.wrapping_add(i as u64) as u8;
    }
}

/// Whether an SDU's bytes after its sequence number are [`pattern`]'s.
fn pattern_ok(seq: u64, sdu: &[u8]) -> bool {
    let base = seq.wrapping_mul(31);
    sdu.iter()
        .enumerate()
        .skip(8)
        .all(|(i, b)| *b == base.wrapping_add(i as u64) as u8)
}

/// When the next SDU is due: `next`, unless that is more than [`MAX_BEHIND`] before `now`.
fn due(next: Instant, now: Instant) -> Instant {
    match now.checked_sub(MAX_BEHIND) {
        Some(floor) if next < floor => floor,
        _ => next,
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, mul) = if let Some(n) = s.strip_suffix(['k', 'K']) {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('M') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('G') {
        (n, 1e9)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected a rate such as 100M"))?;
    if !(v > 0.0 && v * mul < 1e13) {
        return Err(format!("'{s}': out of range"));
    }
    Ok((v * mul) as u64)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(r) = &cli.rundir {
        std::env::set_var(o7s::proto::RUNDIR_ENV, r);
    }
    if cli.listen {
        server(&cli)
    } else {
        client(&cli)
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        bytes as f64 * 8.0 / d.as_secs_f64() / 1e6
    }
}

/// Set by SIGINT or SIGTERM: stop, and print the statistics so far.
fn interrupted_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(s, flag.clone()) {
            eprintln!("ocbr: cannot catch signal {s}: {e}");
        }
    }
    flag
}

fn stop(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// Writes one report line; stdout is locked for the line, so lines of different flows'
/// threads never mix. A closed stdout is not worth dying for.
fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
}

/// What the accept loop shares with the threads that serve the flows.
#[derive(Debug)]
struct Server<'a> {
    cli: &'a Cli,
    interrupted: &'a AtomicBool,
    /// A flow idle this long is over.
    idle: Duration,
    /// Report interval (text output).
    every: Duration,
    /// Flows being served now.
    active: AtomicU64,
    /// Flows closed at once for want of room (`--max-flows`) or of a thread.
    refused: AtomicU64,
}

/// Which flow a report is about: its number in accept order and what o7sd says of it.
#[derive(Debug)]
struct Tag {
    n: u64,
    id: u64,
    name: String,
    layer: String,
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} (id {})", self.n, self.id)
    }
}

/// Counts a flow's thread out of [`Server::active`] however the thread ends.
struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn server(cli: &Cli) -> ExitCode {
    let interrupted = interrupted_flag();
    let srv = Server {
        cli,
        interrupted: &interrupted,
        idle: Duration::from_secs_f64(cli.timeout.max(0.01)),
        every: Duration::from_secs_f64(cli.interval.max(0.01)),
        active: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    };
    // The scope waits for every flow's thread: the flows accepted end and report first.
    let status = std::thread::scope(|s| accept_loop(&srv, s));
    let refused = srv.refused.load(Ordering::Relaxed);
    if refused > 0 {
        eprintln!(
            "ocbr: {refused} flow(s) refused in all (--max-flows {})",
            cli.max_flows
        );
    }
    status
}

/// Accepts flows and hands each to a thread of its own, until `--flows` have been taken, a
/// signal, or an error.
fn accept_loop<'scope, 'env>(
    srv: &'env Server<'env>,
    s: &'scope std::thread::Scope<'scope, 'env>,
) -> ExitCode {
    let (mut accepted, mut served, mut away) = (0u64, 0u64, false);
    while srv.cli.flows == 0 || served < srv.cli.flows {
        match next_flow(srv, &mut away) {
            Next::Flow(f) => {
                accepted += 1;
                if admit(srv, s, accepted, *f) {
                    served += 1;
                }
            }
            Next::Retry => {}
            Next::Stop => break,
            Next::Failed => return ExitCode::FAILURE,
        }
    }
    ExitCode::SUCCESS
}

/// What one wait for a flow came to.
#[derive(Debug)]
enum Next {
    Flow(Box<Flow>),
    /// Nothing yet: wait again.
    Retry,
    /// A signal: take no more flows.
    Stop,
    /// Accepting failed for good.
    Failed,
}

/// Waits a second at most for a flow (so that a signal ends the wait); while o7sd is away
/// (its flows go on) waits for it to come back.
fn next_flow(srv: &Server<'_>, away: &mut bool) -> Next {
    if stop(srv.interrupted) {
        return Next::Stop;
    }
    match Flow::accept(Some(Duration::from_secs(1))) {
        Ok(f) => {
            if std::mem::take(away) {
                eprintln!("ocbr: o7sd is back");
            }
            Next::Flow(Box::new(f))
        }
        Err(Error::Timeout) => Next::Retry,
        Err(e) if e.daemon_away() => {
            if !std::mem::replace(away, true) {
                eprintln!("ocbr: o7sd is away ({e}); waiting for it");
            }
            std::thread::sleep(Duration::from_millis(200));
            Next::Retry
        }
        Err(e) => {
            eprintln!("ocbr: accept failed: {e}");
            Next::Failed
        }
    }
}

/// Serves flow number `n` on a thread of its own, or closes it when `--max-flows` are
/// being served already (or no thread can be had). Whether it is served.
fn admit<'scope, 'env>(
    srv: &'env Server<'env>,
    s: &'scope std::thread::Scope<'scope, 'env>,
    n: u64,
    f: Flow,
) -> bool {
    let info = f.info();
    let tag = Tag {
        n,
        id: info.id,
        name: info.name.clone(),
        layer: info.layer.clone(),
    };
    let max = srv.cli.max_flows;
    if srv.active.load(Ordering::Relaxed) >= max {
        drop(f);
        let refused = srv.refused.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!(
            "ocbr: flow {tag} closed: already serving {max} flows (--max-flows); {refused} refused so far"
        );
        return false;
    }
    srv.active.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name(format!("ocbr-flow-{n}"))
        .spawn_scoped(s, move || {
            let _active = ActiveGuard(&srv.active);
            serve(srv, &tag, f);
        });
    if let Err(e) = spawned {
        // The closure, and with it the flow, is gone: the flow is closed.
        srv.active.fetch_sub(1, Ordering::Relaxed);
        srv.refused.fetch_add(1, Ordering::Relaxed);
        eprintln!("ocbr: flow #{n} closed: no thread for it: {e}");
        return false;
    }
    true
}

/// One flow's counters.
#[derive(Debug)]
struct Counts {
    total: u64,
    bytes: u64,
    lost: u64,
    /// SDUs whose sequence number is below one seen before (late or again).
    out_of_order: u64,
    /// With `--verify`: SDUs whose bytes are not the client's pattern.
    corrupt: u64,
    verify: bool,
    /// One past the highest sequence number seen.
    next_seq: u64,
    int_pkts: u64,
    int_bytes: u64,
    first: Option<Instant>,
    last: Instant,
    /// Start of the current report interval.
    tick: Instant,
}

impl Counts {
    fn new(verify: bool) -> Self {
        let now = Instant::now();
        Self {
            total: 0,
            bytes: 0,
            lost: 0,
            out_of_order: 0,
            corrupt: 0,
            verify,
            next_seq: 0,
            int_pkts: 0,
            int_bytes: 0,
            first: None,
            last: now,
            tick: now,
        }
    }

    /// Counts an SDU whose first 8 bytes are its sequence number.
    fn sdu(&mut self, sdu: &[u8]) {
        let n = sdu.len();
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = now;
        self.total += 1;
        self.bytes += n as u64;
        self.int_pkts += 1;
        self.int_bytes += n as u64;
        if let Some(seq) = sdu.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            let seq = u64::from_le_bytes(seq);
            if seq < self.next_seq {
                self.out_of_order += 1;
            }
            if self.verify && !pattern_ok(seq, sdu) {
                self.corrupt += 1;
            }
            self.lost = self.lost.saturating_add(seq.saturating_sub(self.next_seq));
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
        }
    }

    /// Reports the interval (text output) once it has lasted `every`, and starts the next.
    fn interval(&mut self, tag: &Tag, every: Duration, text: bool) {
        let d = self.last.duration_since(self.tick);
        if d < every {
            return;
        }
        if text {
            emit(format_args!(
                "Flow {tag}: {} SDUs ({} bytes) in {:.0} ms: {:.3} Mbit/s, lost so far {}",
                self.int_pkts,
                self.int_bytes,
                d.as_secs_f64() * 1e3,
                mbps(self.int_bytes, d),
                self.lost
            ));
        }
        self.tick = self.last;
        self.int_pkts = 0;
        self.int_bytes = 0;
    }

    /// The flow's summary, as text or as a JSON line.
    fn done(&self, tag: &Tag, json: bool) {
        let d = self
            .first
            .map(|t| self.last.duration_since(t))
            .unwrap_or_default();
        let (total, bytes, lost) = (self.total, self.bytes, self.lost);
        if json {
            let pps = if d.is_zero() {
                0.0
            } else {
                total as f64 / d.as_secs_f64()
            };
            let v = serde_json::json!({"flow": tag.id, "flow_number": tag.n, "name": tag.name,
                "layer": tag.layer, "received": total, "bytes": bytes, "lost": lost,
                "out_of_order": self.out_of_order, "corrupt": self.verify.then_some(self.corrupt),
                "highest_seq": self.next_seq, "seconds": d.as_secs_f64(), "mbps": mbps(bytes, d),
                "pps": pps});
            emit(format_args!("{v}"));
        } else {
            emit(format_args!(
                "Flow {tag} done: received {total} SDUs ({bytes} bytes), lost {lost}, out of order {}{}, {:.3} Mbit/s over {:.3} s.",
                self.out_of_order,
                if self.verify { format!(", corrupt {}", self.corrupt) } else { String::new() },
                mbps(bytes, d),
                d.as_secs_f64()
            ));
        }
    }
}

/// Counts one flow's SDUs until it goes quiet for `--timeout`, its peer goes or a signal
/// comes, reporting per interval and at the end.
fn serve(srv: &Server<'_>, tag: &Tag, mut f: Flow) {
    let json = srv.cli.json;
    if !json {
        emit(format_args!(
            "New flow {tag}: {} over {}.",
            tag.name, tag.layer
        ));
    }
    // Reads wake at least every 100 ms to see a signal.
    f.set_read_timeout(Some(srv.idle.min(Duration::from_millis(100))));
    let mut quiet_since = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut c = Counts::new(srv.cli.verify);
    loop {
        match f.read(&mut buf) {
            Ok(n) => {
                quiet_since = Instant::now();
                c.sdu(buf.get(..n).unwrap_or_default());
            }
            Err(Error::Timeout) if quiet_since.elapsed() < srv.idle && !stop(srv.interrupted) => {
                continue
            }
            Err(Error::Timeout) | Err(Error::PeerGone) => break,
            Err(e) => {
                eprintln!("ocbr: flow {tag}: {e}");
                break;
            }
        }
        if stop(srv.interrupted) {
            break;
        }
        c.interval(tag, srv.every, !json);
    }
    c.done(tag, json);
}

fn client(cli: &Cli) -> ExitCode {
    let Some(qos) = QosSpec::by_name(&cli.qos) else {
        eprintln!(
            "ocbr: unknown QoS '{}' (raw, best, video, voice, data)",
            cli.qos
        );
        return ExitCode::from(2);
    };
    let mut qos = qos;
    if let Some(t) = cli.peer_timeout {
        qos.timeout = t;
    }
    let interrupted = interrupted_flag();
    let mut flow = match Flow::alloc(&cli.server, qos, Duration::from_secs(5)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Failed to allocate flow: {e}.");
            return ExitCode::FAILURE;
        }
    };
    flow.set_write_timeout(Some(Duration::from_secs(2)));
    let size = cli.size as usize;
    let mut buf = vec![0u8; size];
    let gap = if cli.flood {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(size as f64 * 8.0 / cli.rate as f64)
    };
    let dur = Duration::from_secs_f64(cli.duration.max(0.0));
    let start = Instant::now();
    let mut seq = 0u64;
    let mut next = start;
    let mut status = ExitCode::SUCCESS;
    loop {
        // Flooding: look at the clock every 64 SDUs only (it costs more than a write).
        if (!gap.is_zero() || seq % 64 == 0) && (start.elapsed() >= dur || stop(&interrupted)) {
            break;
        }
        if cli.count.is_some_and(|c| seq >= c) {
            break;
        }
        if !gap.is_zero() {
            let now = Instant::now();
            next = due(next, now);
            if now < next {
                if cli.spin {
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::sleep(next - now);
                }
            }
            next += gap;
        }
        if let Some(h) = buf.get_mut(..8) {
            h.copy_from_slice(&seq.to_le_bytes());
        }
        pattern(seq, &mut buf);
        match flow.write(&buf) {
            Ok(_) => seq += 1,
            Err(e) => {
                eprintln!("ocbr: write failed after {seq} SDUs: {e}");
                status = ExitCode::FAILURE;
                break;
            }
        }
    }
    let d = start.elapsed();
    // With retransmission: until the server has it all (the figures count the sending).
    flow.wait_acked();
    let bytes = seq * size as u64;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"sent": seq, "bytes": bytes, "seconds": d.as_secs_f64(), "mbps": mbps(bytes, d),
                "pps": seq as f64 / d.as_secs_f64().max(1e-9), "size": size, "qos": cli.qos,
                "frcp": flow.frcp_stats()})
        );
    } else {
        println!(
            "Sent {seq} SDUs ({bytes} bytes) in {:.3} s: {:.3} Mbit/s.",
            d.as_secs_f64(),
            mbps(bytes, d)
        );
    }
    // Let the data plane drain the ring before the flow goes (a flow with retransmission
    // also lingers on drop until the server has every SDU).
    std::thread::sleep(Duration::from_millis(200));
    drop(flow);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdu(seq: u64) -> Vec<u8> {
        let mut b = vec![0u8; 100];
        b[..8].copy_from_slice(&seq.to_le_bytes());
        pattern(seq, &mut b);
        b
    }

    #[test]
    fn the_server_counts_late_corrupt_and_lost_sdus() {
        let mut c = Counts::new(true);
        for seq in [0, 1, 3, 2, 4] {
            c.sdu(&sdu(seq));
        }
        let mut bad = sdu(5);
        bad[50] ^= 1;
        c.sdu(&bad);
        assert_eq!(
            (c.total, c.out_of_order, c.corrupt, c.lost, c.next_seq),
            (6, 1, 1, 1, 6)
        );
        // Without --verify, bytes are not judged.
        let mut c = Counts::new(false);
        c.sdu(&bad);
        assert_eq!((c.corrupt, c.out_of_order), (0, 0));
    }

    #[test]
    fn the_pattern_differs_between_sequence_numbers_and_leaves_the_number() {
        let (a, b) = (sdu(7), sdu(8));
        assert_ne!(a[8..], b[8..]);
        assert_eq!(a[..8], 7u64.to_le_bytes());
        assert!(pattern_ok(7, &a) && !pattern_ok(8, &a));
        assert_eq!(a[9], (7u64 * 31 + 9) as u8);
    }

    #[test]
    fn a_client_held_back_catches_up_at_most_100_ms() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        // On time, or ahead: unchanged.
        assert_eq!(due(later, later), later);
        assert_eq!(
            due(later + Duration::from_millis(5), later),
            later + Duration::from_millis(5)
        );
        // 50 ms behind: caught up in full; 100 ms behind: still in full.
        let behind = |ms| later - Duration::from_millis(ms);
        assert_eq!(due(behind(50), later), behind(50));
        assert_eq!(due(behind(100), later), behind(100));
        // 9 s behind: only the last 100 ms are made up for.
        assert_eq!(due(behind(9_000), later), behind(100));
    }
}
