//! `oping`: the reference's ping over a flow, with the same flags and summary line, plus
//! p50/p99 from an HDR histogram.

use clap::Parser;
use o7s::{Error, Flow, QosSpec};
use o7s_wire::app::{OpingMsg, OPING_HEADER_LEN};
use o7s_wire::field::Writer;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ouroboros ping: sends ECHO_REQUESTs over a flow to a server and reports round-trip times.
#[derive(Debug, Parser)]
#[command(name = "oping", version)]
struct Cli {
    /// Run as server: accept flows and answer every request.
    #[arg(short = 'l', long)]
    listen: bool,
    /// Server name to ping.
    #[arg(short = 'n', long = "server-name", default_value = "oping")]
    server_name: String,
    /// Number of requests (0: until interrupted or --duration).
    #[arg(short = 'c', long, default_value_t = 0)]
    count: u64,
    /// Interval between requests, e.g. 1000, 200ms, 1s (max 10 s).
    #[arg(short = 'i', long, default_value = "1000ms", value_parser = parse_duration)]
    interval: Duration,
    /// Run for this long, e.g. 10s.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// SDU size in bytes (64..1500).
    #[arg(short = 's', long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=1500))]
    size: u16,
    /// QoS cube: raw, best, video, voice, data.
    #[arg(short = 'q', long, default_value = "raw")]
    qos: String,
    /// Flood: send the next request when the reply arrives.
    #[arg(short = 'f', long)]
    flood: bool,
    /// Quiet: print only the summary.
    #[arg(short = 'Q', long)]
    quiet: bool,
    /// Print the time of day on each line.
    #[arg(short = 'D', long)]
    timeofday: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Runtime directory of the o7sd to use (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, value_name = "DIR")]
    rundir: Option<std::path::PathBuf>,
    /// Server: deallocate flows idle this long (s).
    #[arg(long, default_value_t = 10)]
    server_timeout: u64,
    /// Flow allocation time-out (ms).
    #[arg(long, default_value_t = 5000)]
    alloc_timeout: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': expected a number with an optional unit (us, ms, s, m)"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&(v * mul)) {
        return Err(format!("'{s}': out of range"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

fn monotonic() -> (u64, u64) {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64, t.tv_nsec() as u64),
        Err(_) => (0, 0),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(r) = &cli.rundir {
        std::env::set_var(o7s::proto::RUNDIR_ENV, r);
    }
    if cli.listen {
        // Say so at once when there is no daemon, not after "server started".
        let path = o7s::proto::socket_path(None);
        if let Err(e) = o7s::ipc::Channel::connect(&path) {
            eprintln!(
                "oping: no o7sd at {}: {e} (start o7sd, or give its runtime directory with --rundir or O7S_RUNDIR)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        return server(&cli);
    }
    let Some(qos) = QosSpec::by_name(&cli.qos) else {
        eprintln!(
            "oping: unknown QoS '{}' (raw, best, video, voice, data)",
            cli.qos
        );
        return ExitCode::from(2);
    };
    if cli.interval > Duration::from_secs(10) {
        eprintln!("oping: interval above 10 s");
        return ExitCode::from(2);
    }
    client(&cli, qos)
}

fn server(cli: &Cli) -> ExitCode {
    let idle = Duration::from_secs(cli.server_timeout.max(1));
    if !cli.quiet {
        println!("Ouroboros ping server started.");
    }
    let mut away = false;
    std::thread::scope(|s| loop {
        match Flow::accept(None) {
            Ok(mut f) => {
                if std::mem::take(&mut away) {
                    eprintln!("oping: o7sd is back");
                }
                let id = f.info().id;
                if !cli.quiet {
                    println!("New flow {id}.");
                }
                f.set_read_timeout(Some(idle));
                let quiet = cli.quiet;
                s.spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match f.read(&mut buf) {
                            Ok(n) if n >= OPING_HEADER_LEN => {
                                let Some(msg) = buf.get_mut(..n) else {
                                    continue;
                                };
                                // ECHO_REQUEST (0) -> ECHO_REPLY (1); the rest is echoed.
                                if msg.get(..4) == Some(&[0, 0, 0, 0]) {
                                    if let Some(t) = msg.get_mut(3) {
                                        *t = 1;
                                    }
                                    if f.write(msg).is_err() {
                                        break;
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(Error::Timeout) => {
                                if !quiet {
                                    println!("Flow {id} timed out.");
                                }
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                });
            }
            // o7sd went away (its flows go on): wait for it to come back.
            Err(e) if e.daemon_away() => {
                if !away {
                    eprintln!(
                        "oping: o7sd is away ({e}); serving the flows there are and waiting for it"
                    );
                    away = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                eprintln!("oping: accept failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    })
}

struct Stats {
    hist: hdrhistogram::Histogram<u64>,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
    n: u64,
}

/// Set by SIGINT or SIGTERM: stop, and print the statistics so far (as ping does).
fn interrupted_flag() -> std::sync::Arc<AtomicBool> {
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(s, flag.clone()) {
            eprintln!("oping: cannot catch signal {s}: {e}");
        }
    }
    flag
}

fn client(cli: &Cli, qos: QosSpec) -> ExitCode {
    let interrupted = interrupted_flag();
    let alloc_start = Instant::now();
    let flow = match Flow::alloc(
        &cli.server_name,
        qos,
        Duration::from_millis(cli.alloc_timeout),
    ) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Failed to allocate flow: {e}.");
            return ExitCode::FAILURE;
        }
    };
    let alloc_ms = alloc_start.elapsed().as_secs_f64() * 1e3;
    let size = usize::from(cli.size);
    if !cli.quiet && !cli.json {
        println!(
            "Pinging {} with {size} bytes of data ({} packets):\n",
            cli.server_name,
            if cli.count == 0 {
                "∞".into()
            } else {
                cli.count.to_string()
            }
        );
    }
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let got_reply = AtomicU64::new(0);
    let Ok(hist) = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3) else {
        eprintln!("oping: cannot create a histogram");
        return ExitCode::FAILURE;
    };
    let stats = Mutex::new(Stats {
        hist,
        min: f64::MAX,
        max: 0.0,
        mean: 0.0,
        m2: 0.0,
        n: 0,
    });
    let start = Instant::now();
    let end = cli.duration.map(|d| start + d);
    let mut status = ExitCode::SUCCESS;
    std::thread::scope(|s| {
        // Writer.
        let w = s.spawn(|| {
            let mut seq = 0u64;
            loop {
                if done.load(Ordering::Relaxed)
                    || interrupted.load(Ordering::Relaxed)
                    || (cli.count != 0 && seq >= cli.count)
                    || end.is_some_and(|e| Instant::now() >= e)
                {
                    break;
                }
                let (sec, nsec) = monotonic();
                let m = OpingMsg {
                    kind: 0,
                    id: seq as u32,
                    tv_sec: sec,
                    tv_nsec: nsec,
                    padding: vec![0; size - OPING_HEADER_LEN],
                };
                let mut buf = Writer::default();
                m.write(&mut buf);
                // Counted before it goes: its reply may be read before this thread
                // runs again, and only a sent id's reply counts.
                sent.store(seq + 1, Ordering::SeqCst);
                if let Err(e) = flow.write(&buf.0) {
                    sent.store(seq, Ordering::SeqCst);
                    eprintln!("oping: write failed: {e}");
                    break;
                }
                seq += 1;
                if cli.flood {
                    // Wait for this reply (or 1 s) before the next request.
                    let t0 = Instant::now();
                    while got_reply.load(Ordering::SeqCst) < seq
                        && t0.elapsed() < Duration::from_secs(1)
                        && !done.load(Ordering::Relaxed)
                    {
                        std::hint::spin_loop();
                    }
                } else {
                    // Sleep until the next request, a slice at a time (a signal ends it).
                    let next = start + cli.interval * seq as u32;
                    while let Some(d) = next.checked_duration_since(Instant::now()) {
                        if interrupted.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(d.min(Duration::from_millis(50)));
                    }
                }
            }
        });
        // Reader.
        let mut buf = vec![0u8; 65536];
        let mut reader_flow_timeout_base: Option<Instant> = None;
        // The ids answered lately (slot id % 65536 holds id + 1): a reply counts once,
        // and only for a request this run sent.
        let mut answered = vec![0u64; 65536];
        loop {
            if interrupted.load(Ordering::Relaxed) {
                break;
            }
            let writer_done = w.is_finished();
            if writer_done {
                let t = *reader_flow_timeout_base.get_or_insert_with(Instant::now);
                let all = got_reply.load(Ordering::SeqCst) >= sent.load(Ordering::SeqCst);
                if all || t.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            match read_timeout(&flow, &mut buf, Duration::from_millis(100)) {
                Ok(Some(n)) => {
                    let Some(bytes) = buf.get(..n) else { continue };
                    let Ok(m) = OpingMsg::parse(bytes) else {
                        continue;
                    };
                    if m.kind != 1 {
                        continue;
                    }
                    let id = u64::from(m.id);
                    let slot = answered.get_mut((id % 65536) as usize);
                    let first = id < sent.load(Ordering::SeqCst)
                        && slot.as_deref().is_some_and(|a| *a != id + 1);
                    if !first {
                        // A duplicate, or an id this run never sent: not a reply.
                        continue;
                    }
                    if let Some(a) = slot {
                        *a = id + 1;
                    }
                    let (sec, nsec) = monotonic();
                    let now_ns = sec as i128 * 1_000_000_000 + nsec as i128;
                    let then_ns = m.tv_sec as i128 * 1_000_000_000 + m.tv_nsec as i128;
                    let rtt_ms = (now_ns - then_ns) as f64 / 1e6;
                    got_reply.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut st) = stats.lock() {
                        st.n += 1;
                        st.min = st.min.min(rtt_ms);
                        st.max = st.max.max(rtt_ms);
                        let d = rtt_ms - st.mean;
                        st.mean += d / st.n as f64;
                        st.m2 += d * (rtt_ms - st.mean);
                        let _ = st.hist.record(((rtt_ms * 1e6) as u64).max(1));
                    }
                    if !cli.quiet && !cli.json {
                        let tod = if cli.timeofday {
                            format!(
                                "[{:.6}] ",
                                std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map(|d| d.as_secs_f64())
                                    .unwrap_or(0.0)
                            )
                        } else {
                            String::new()
                        };
                        println!(
                            "{tod}{n} bytes from {}: seq={} time={:.3} ms",
                            cli.server_name, m.id, rtt_ms
                        );
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("oping: {e}");
                    status = ExitCode::FAILURE;
                    break;
                }
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    let st = stats.lock().unwrap_or_else(|p| p.into_inner());
    let sent = sent.load(Ordering::SeqCst);
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (sent - st.n.min(sent)) as f64 / sent as f64
    };
    let mdev = if st.n > 1 {
        (st.m2 / (st.n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let p = |q: f64| st.hist.value_at_quantile(q) as f64 / 1e6;
    if cli.json {
        let j = serde_json::json!({"server": cli.server_name, "transmitted": sent, "received": st.n, "loss_pct": loss,
            "time_ms": elapsed, "alloc_ms": alloc_ms, "rtt_ms": {"min": if st.n > 0 { st.min } else { 0.0 }, "avg": st.mean, "max": st.max, "mdev": mdev, "p50": p(0.5), "p99": p(0.99)}});
        println!("{j}");
    } else {
        println!("\n--- {} ping statistics ---", cli.server_name);
        println!(
            "{sent} SDUs transmitted, {} received, {loss:.0}% packet loss, time: {elapsed:.3} ms",
            st.n
        );
        if st.n > 0 {
            println!(
                "rtt min/avg/max/mdev = {:.3}/{:.3}/{:.3}/{:.3} ms",
                st.min, st.mean, st.max, mdev
            );
            println!(
                "rtt p50/p99 = {:.3}/{:.3} ms (flow allocation {alloc_ms:.3} ms)",
                p(0.5),
                p(0.99)
            );
        }
    }
    if st.n == 0 && sent > 0 {
        return ExitCode::FAILURE;
    }
    status
}

fn read_timeout(f: &Flow, buf: &mut [u8], t: Duration) -> Result<Option<usize>, Error> {
    let ready = o7s::wait_any(&[f], Some(t))?;
    if ready.is_empty() {
        return Ok(None);
    }
    if !f.readable() {
        // Down, or the daemon closed the flow.
        return Err(Error::PeerGone);
    }
    match f.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(Error::WouldBlock) => Ok(None),
        Err(e) => Err(e),
    }
}
