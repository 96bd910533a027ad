//! `operf`: the reference's performance tool (facts §1.5), working where 0.23's is not (its
//! client's send loop condition is inverted, so it sends nothing).
//!
//! Protocol, as the facts give it: the client's first SDU is `struct conf { uint32
//! test_type }` (host byte order; o7s takes 0 for `uni` and 1 for `bi`, values the facts do
//! not give), then SDUs of `--size` bytes starting with a `uint32 id` (host order, counting
//! from 0). In a `uni` test the server counts them; in a `bi` test it also sends each back
//! and the client counts the echoes. Each side reports packets, bytes, Mbit/s, and what
//! is missing (ids never seen) and out of order.

use clap::Parser;
use o7s::{Error, Flow, QosSpec};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `conf.test_type` of a one-way test.
const TEST_UNI: u32 = 0;
/// `conf.test_type` of an echoed test.
const TEST_BI: u32 = 1;

/// Ouroboros performance test: a one-way (uni) or echoed (bi) stream, counted at both ends.
#[derive(Debug, Parser)]
#[command(name = "operf", version)]
struct Cli {
    /// Run as server.
    #[arg(short = 'l', long)]
    listen: bool,
    /// Client: the test, `uni` (one way) or `bi` (the server echoes every packet).
    #[arg(short = 't', long, default_value = "uni", value_parser = ["uni", "bi"])]
    test: String,
    /// Client: the server's name.
    #[arg(short = 'n', long = "server-name", default_value = "operf")]
    name: String,
    /// Client: duration in seconds.
    #[arg(short = 'd', long, default_value_t = 60.0)]
    duration: f64,
    /// Client: rate in packets per second (ignored with --flood).
    #[arg(short = 'r', long, default_value_t = 1000)]
    rate: u64,
    /// Client: packet size in bytes (4..=65535).
    #[arg(short = 's', long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(4..=65535))]
    size: u32,
    /// Client: send as fast as possible.
    #[arg(short = 'f', long)]
    flood: bool,
    /// Client: sleep between packets (the default; busy-waiting is not offered).
    #[arg(long)]
    sleep: bool,
    /// QoS cube: raw, best, video, voice, data.
    #[arg(short = 'q', long, default_value = "raw")]
    qos: String,
    /// Server: a flow quiet this long (s) is over and reported.
    #[arg(long, default_value_t = 2.0)]
    idle: f64,
    /// Server: exit after this many flows (0: never).
    #[arg(long, default_value_t = 0)]
    flows: u64,
    /// Print the results as one JSON line (per flow at the server).
    #[arg(long)]
    json: bool,
    /// Runtime directory of the o7sd to use (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, value_name = "DIR")]
    rundir: Option<std::path::PathBuf>,
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

/// Counts packets by their ids: how many, bytes, ids never seen below the highest, and
/// those that came after a higher one.
#[derive(Debug, Default)]
struct Count {
    packets: u64,
    bytes: u64,
    /// One past the highest id seen.
    next: u64,
    out_of_order: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Count {
    fn packet(&mut self, p: &[u8], now: Instant) {
        self.packets += 1;
        self.bytes += p.len() as u64;
        self.first.get_or_insert(now);
        self.last = Some(now);
        if let Some(id) = p.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            let id = u64::from(u32::from_ne_bytes(id));
            if id < self.next {
                self.out_of_order += 1;
            }
            self.next = self.next.max(id + 1);
        }
    }

    /// Ids below the highest never seen (a duplicate hides one).
    fn missing(&self) -> u64 {
        self.next.saturating_sub(self.packets)
    }

    fn span(&self) -> Duration {
        match (self.first, self.last) {
            (Some(a), Some(b)) => b.duration_since(a),
            _ => Duration::ZERO,
        }
    }
}

/// Serves one flow: reads the test type, then counts (and in a bi test echoes) packets
/// until the peer goes or the flow is quiet for `idle`.
fn serve(f: &mut Flow, cli: &Cli) {
    let idle = Duration::from_secs_f64(cli.idle.max(0.01));
    f.set_read_timeout(Some(idle));
    let mut buf = vec![0u8; 65536];
    let test = match f.read(&mut buf) {
        Ok(n) if n >= 4 => {
            let mut w = [0u8; 4];
            w.copy_from_slice(buf.get(..4).unwrap_or(&[0; 4]));
            let t = u32::from_ne_bytes(w);
            match t {
                TEST_UNI | TEST_BI => t,
                _ => {
                    eprintln!("operf: flow {}: unknown test type {t}: closed", f.info().id);
                    return;
                }
            }
        }
        Ok(n) => {
            eprintln!(
                "operf: flow {}: a first message of {n} bytes is no test: closed",
                f.info().id
            );
            return;
        }
        Err(e) => {
            eprintln!("operf: flow {}: no test type: {e}", f.info().id);
            return;
        }
    };
    let name = if test == TEST_BI { "bi" } else { "uni" };
    if !cli.json {
        println!(
            "New flow {}: {name} test over {}.",
            f.info().id,
            f.info().layer
        );
    }
    let mut c = Count::default();
    let mut echo_failed = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(n) => {
                let p = buf.get(..n).unwrap_or_default();
                c.packet(p, Instant::now());
                if test == TEST_BI && f.write(p).is_err() {
                    echo_failed += 1;
                }
            }
            Err(Error::Timeout) | Err(Error::PeerGone) => break,
            Err(e) => {
                eprintln!("operf: flow {}: {e}", f.info().id);
                break;
            }
        }
    }
    let d = c.span();
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"flow": f.info().id, "test": name, "received": c.packets, "bytes": c.bytes,
                "missing": c.missing(), "out_of_order": c.out_of_order, "echo_failed": echo_failed,
                "seconds": d.as_secs_f64(), "mbps": mbps(c.bytes, d)})
        );
    } else {
        println!(
            "Flow {} done ({name}): received {} packets ({} bytes), missing {}, out of order {}, {:.3} Mbit/s over {:.3} s.",
            f.info().id,
            c.packets,
            c.bytes,
            c.missing(),
            c.out_of_order,
            mbps(c.bytes, d),
            d.as_secs_f64()
        );
    }
}

fn server(cli: &Cli) -> ExitCode {
    std::thread::scope(|s| {
        let mut served = 0u64;
        while cli.flows == 0 || served < cli.flows {
            match Flow::accept(None) {
                Ok(mut f) => {
                    served += 1;
                    s.spawn(move || serve(&mut f, cli));
                }
                Err(e) if e.daemon_away() => {
                    eprintln!("operf: o7sd is away ({e}); waiting for it");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => {
                    eprintln!("operf: accept failed: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        ExitCode::SUCCESS
    })
}

fn client(cli: &Cli) -> ExitCode {
    let Some(qos) = QosSpec::by_name(&cli.qos) else {
        eprintln!(
            "operf: unknown QoS '{}' (raw, best, video, voice, data)",
            cli.qos
        );
        return ExitCode::from(2);
    };
    let bi = cli.test == "bi";
    let mut f = match Flow::alloc(&cli.name, qos, Duration::from_secs(5)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Failed to allocate flow: {e}.");
            return ExitCode::FAILURE;
        }
    };
    // The echo reader wakes now and then to see whether the sending is over.
    f.set_read_timeout(Some(Duration::from_millis(100)));
    let test = if bi { TEST_BI } else { TEST_UNI };
    if let Err(e) = f.write(&test.to_ne_bytes()) {
        eprintln!("operf: cannot send the test type: {e}");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let size = cli.size as usize;
    let gap = if cli.flood {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(1.0 / cli.rate.max(1) as f64)
    };
    let dur = Duration::from_secs_f64(cli.duration.max(0.0));
    let sent = AtomicU64::new(0);
    let sending = AtomicBool::new(true);
    let (echo, took, status) = std::thread::scope(|s| {
        // The echoes, in a bi test: counted by a reader of their own.
        let reader = bi.then(|| {
            s.spawn(|| {
                let mut c = Count::default();
                let mut buf = vec![0u8; 65536];
                let f = &f;
                let mut quiet_since: Option<Instant> = None;
                loop {
                    match f.read(&mut buf) {
                        Ok(n) => {
                            quiet_since = None;
                            c.packet(buf.get(..n).unwrap_or_default(), Instant::now());
                        }
                        Err(Error::Timeout) | Err(Error::WouldBlock) => {}
                        Err(_) => break,
                    }
                    if !sending.load(Ordering::Relaxed) {
                        // After the last packet: the echoes still on their way, for a second.
                        let q = *quiet_since.get_or_insert_with(Instant::now);
                        if c.packets >= sent.load(Ordering::Relaxed)
                            || q.elapsed() > Duration::from_secs(1)
                        {
                            break;
                        }
                    }
                }
                c
            })
        });
        let start = Instant::now();
        let mut next = start;
        let mut pkt = vec![0u8; size];
        let mut id = 0u32;
        let mut status = ExitCode::SUCCESS;
        while start.elapsed() < dur && !stop.load(Ordering::Relaxed) {
            if !gap.is_zero() {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                next += gap;
            }
            if let Some(h) = pkt.get_mut(..4) {
                h.copy_from_slice(&id.to_ne_bytes());
            }
            match f.write(&pkt) {
                Ok(_) => {
                    id = id.wrapping_add(1);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("operf: write failed after {id} packets: {e}");
                    status = ExitCode::FAILURE;
                    break;
                }
            }
        }
        let took = start.elapsed();
        f.wait_acked();
        sending.store(false, Ordering::Relaxed);
        let echo = reader.and_then(|r| r.join().ok());
        (echo, took, status)
    });
    let n = sent.load(Ordering::Relaxed);
    let bytes = n * size as u64;
    if cli.json {
        let e = echo.as_ref().map(|c| {
            serde_json::json!({"received": c.packets, "missing": n.saturating_sub(c.packets),
                               "out_of_order": c.out_of_order, "mbps": mbps(c.bytes, c.span())})
        });
        println!(
            "{}",
            serde_json::json!({"test": cli.test, "qos": cli.qos, "sent": n, "bytes": bytes,
                "seconds": took.as_secs_f64(), "mbps": mbps(bytes, took),
                "echo": e, "frcp": f.frcp_stats()})
        );
    } else {
        println!(
            "Sent {n} packets ({bytes} bytes) in the {} test: {:.3} Mbit/s over {:.3} s.",
            cli.test,
            mbps(bytes, took),
            took.as_secs_f64()
        );
        if let Some(c) = &echo {
            println!(
                "Echoes: {} of {n} ({} missing, {} out of order), {:.3} Mbit/s back.",
                c.packets,
                n.saturating_sub(c.packets),
                c.out_of_order,
                mbps(c.bytes, c.span())
            );
        }
    }
    status
}
