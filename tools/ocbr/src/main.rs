//! `ocbr`: the reference's constant-bit-rate tool. The client sends SDUs whose first 8 bytes
//! are a sequence number (little-endian) at a rate or flat out; the server counts what
//! arrives per interval and reports sent, received, lost and Mbit/s.

use clap::Parser;
use o7s::{Error, Flow, QosSpec};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Ouroboros constant bit rate: a sender and a counting server.
#[derive(Debug, Parser)]
#[command(name = "ocbr", version)]
struct Cli {
    /// Run as server.
    #[arg(short = 'l', long)]
    listen: bool,
    /// Server: report interval in seconds.
    #[arg(short = 'i', long, default_value_t = 1.0)]
    interval: f64,
    /// Server: a flow idle this long (s) is over.
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
    /// Client: rate in bit/s, with k, M or G suffix (e.g. 100M).
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
    /// QoS cube: raw, best, video, voice, data.
    #[arg(short = 'q', long, default_value = "raw")]
    qos: String,
    /// Client: the flow's peer timeout in ms (QoS `timeout`; the cubes' default is 120000):
    /// an end that hears nothing from its peer for this long takes the flow down. Quiet
    /// ends send keepalives every quarter of it, so a one-way flow stays up.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1000..))]
    peer_timeout: Option<u32>,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
    /// Runtime directory of the o7sd to use (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, value_name = "DIR")]
    rundir: Option<std::path::PathBuf>,
    /// Server: exit after this many flows (0: never).
    #[arg(long, default_value_t = 0)]
    flows: u64,
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

fn stop(flag: &std::sync::atomic::AtomicBool) -> bool {
    flag.load(std::sync::atomic::Ordering::Relaxed)
}

fn server(cli: &Cli) -> ExitCode {
    let interrupted = interrupted_flag();
    let mut served = 0u64;
    let mut away = false;
    let idle = Duration::from_secs_f64(cli.timeout.max(0.01));
    let every = Duration::from_secs_f64(cli.interval.max(0.01));
    loop {
        // Accept a second at a time, so that a signal ends the wait.
        let mut f = match Flow::accept(Some(Duration::from_secs(1))) {
            Ok(f) => f,
            Err(Error::Timeout) if !stop(&interrupted) => continue,
            Err(Error::Timeout) => return ExitCode::SUCCESS,
            // o7sd went away (its flows go on): wait for it to come back.
            Err(e) if e.daemon_away() && !stop(&interrupted) => {
                if !away {
                    eprintln!("ocbr: o7sd is away ({e}); waiting for it");
                    away = true;
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(e) => {
                eprintln!("ocbr: accept failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        if std::mem::take(&mut away) {
            eprintln!("ocbr: o7sd is back");
        }
        let id = f.info().id;
        if !cli.json {
            println!("New flow {id}.");
        }
        // Reads wake at least every 100 ms to see a signal.
        f.set_read_timeout(Some(idle.min(Duration::from_millis(100))));
        let mut quiet_since = Instant::now();
        let mut buf = vec![0u8; 65536];
        let (mut total, mut bytes, mut lost, mut next_seq) = (0u64, 0u64, 0u64, 0u64);
        let (mut int_pkts, mut int_bytes) = (0u64, 0u64);
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let mut tick = Instant::now();
        loop {
            match f.read(&mut buf) {
                Ok(n) => {
                    let now = Instant::now();
                    quiet_since = now;
                    first.get_or_insert(now);
                    last = now;
                    total += 1;
                    bytes += n as u64;
                    int_pkts += 1;
                    int_bytes += n as u64;
                    if let Some(seq) = buf.get(..8).map(|b| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        u64::from_le_bytes(a)
                    }) {
                        if seq > next_seq {
                            lost += seq - next_seq;
                        }
                        next_seq = next_seq.max(seq + 1);
                    }
                }
                Err(Error::Timeout) if quiet_since.elapsed() < idle && !stop(&interrupted) => {
                    continue
                }
                Err(Error::Timeout) | Err(Error::PeerGone) => break,
                Err(e) => {
                    eprintln!("ocbr: flow {id}: {e}");
                    break;
                }
            }
            if stop(&interrupted) {
                break;
            }
            if last.duration_since(tick) >= every {
                let d = last.duration_since(tick);
                if !cli.json {
                    println!(
                        "Flow {id}: {int_pkts} SDUs ({int_bytes} bytes) in {:.0} ms: {:.3} Mbit/s, lost so far {lost}",
                        d.as_secs_f64() * 1e3,
                        mbps(int_bytes, d)
                    );
                }
                tick = last;
                int_pkts = 0;
                int_bytes = 0;
            }
        }
        let d = first.map(|t| last.duration_since(t)).unwrap_or_default();
        if cli.json {
            println!(
                "{}",
                serde_json::json!({"flow": id, "received": total, "bytes": bytes, "lost": lost,
                    "highest_seq": next_seq, "seconds": d.as_secs_f64(), "mbps": mbps(bytes, d),
                    "pps": if d.is_zero() { 0.0 } else { total as f64 / d.as_secs_f64() }})
            );
        } else {
            println!(
                "Flow {id} done: received {total} SDUs ({bytes} bytes), lost {lost}, {:.3} Mbit/s over {:.3} s.",
                mbps(bytes, d),
                d.as_secs_f64()
            );
        }
        served += 1;
        if (cli.flows != 0 && served >= cli.flows) || stop(&interrupted) {
            return ExitCode::SUCCESS;
        }
    }
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
        if !gap.is_zero() {
            let now = Instant::now();
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
    let bytes = seq * size as u64;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"sent": seq, "bytes": bytes, "seconds": d.as_secs_f64(), "mbps": mbps(bytes, d),
                "pps": seq as f64 / d.as_secs_f64().max(1e-9), "size": size})
        );
    } else {
        println!(
            "Sent {seq} SDUs ({bytes} bytes) in {:.3} s: {:.3} Mbit/s.",
            d.as_secs_f64(),
            mbps(bytes, d)
        );
    }
    // Let the data plane drain the ring before the flow goes.
    std::thread::sleep(Duration::from_millis(200));
    status
}
