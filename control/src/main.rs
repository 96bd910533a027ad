//! `o7sd`: the o7s control daemon.

use clap::Parser;
use o7s::ipc::Listener;
use o7s_control::config;
use o7s_control::daemon::{Daemon, Owner, Settings};
use o7s_control::dp::DpHandle;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The o7s control daemon: reads the configuration, starts the data plane, creates the
/// layers, resolves names and allocates flows for applications.
#[derive(Debug, Parser)]
#[command(name = "o7sd", version)]
struct Cli {
    /// Configuration file (the reference's TOML). Without it, start empty (use o7sctl).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log to standard output instead of standard error.
    #[arg(long)]
    stdout: bool,
    /// Runtime directory for the socket (several daemons on one host each need their own).
    /// Default: $O7S_RUNDIR or /run/o7s.
    #[arg(long)]
    rundir: Option<PathBuf>,
    /// How long a name query waits for an answer, in ms.
    #[arg(long, default_value_t = 200)]
    query_timeout_ms: u64,
    /// How long a flow request waits for an auto-started program to accept, in ms.
    #[arg(long, default_value_t = 5000)]
    autostart_wait_ms: u64,
    /// How long a flow request waits for a bound process to (re)enter accept, in ms.
    #[arg(long, default_value_t = 1000)]
    accept_wait_ms: u64,
    /// Security directory (cacert, untrusted, server/<name>, client/<name>); default: the
    /// folder `security` beside the configuration file, else /etc/o7s/security.
    #[arg(long)]
    security_dir: Option<PathBuf>,
    /// Encrypted flows rotate their key every 2^BITS packets (the reference: 20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=40))]
    key_rotation_bits: u32,
    /// I/O path of Ethernet ports: `auto` (AF_XDP when it can be had, else AF_PACKET, with
    /// the reason logged and shown by `o7sctl port list`), `af_xdp` (fail without it), or
    /// `af_packet`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "af_xdp", "af_packet"])]
    io: String,
    /// XDP attach mode: `skb` (generic; as fast or faster on veth), `driver` (native; the
    /// port falls back to AF_PACKET under --io auto when the driver has no XDP), or `auto`
    /// (driver mode where the driver has it, else skb; `o7sctl port list` says which and why).
    #[arg(long, default_value = "skb", value_parser = ["skb", "driver", "auto"])]
    xdp_mode: String,
    /// Pin the data plane's worker (one poll loop for all ports and flows) to this CPU, or,
    /// with a list (`0,1`), run one worker per CPU, each pinned and owning a share of the
    /// ports (assigned in turn) and their flows. Unpinned, one worker by default; `o7sctl
    /// stats` shows the workers' CPUs and `o7sctl port list` each port's worker.
    #[arg(long, value_name = "CPU[,CPU...]")]
    core: Option<String>,
    /// Busy polling: the data-plane worker never sleeps (lowest latency, costs a whole
    /// CPU). By default it polls for --spin-us after the last packet, then sleeps.
    #[arg(long)]
    busy_poll: bool,
    /// Adaptive polling: how long the worker keeps polling after the last packet, in µs.
    #[arg(long, default_value_t = 200, value_name = "US")]
    spin_us: u64,
    /// Members of this group (a name or a number) may, besides root, change what the daemon
    /// runs or serves (ipcp create/bootstrap/destroy, name create/destroy/register, bind,
    /// config load). Programs they bind run as them, never as root. docs/SECURITY.md.
    #[arg(long, value_name = "GROUP")]
    admin_group: Option<String>,
    /// Most flows at once (allocated and accepted); more are refused with a clear error.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_flows: u32,
    /// Most flows one peer (MAC or IP address) may have with this daemon at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_flows_per_peer: u32,
    /// Most flows one local process may hold at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_flows_per_process: u32,
    /// Management frames or datagrams accepted per second from one source (MAC or IP),
    /// burst as many; the rest are dropped and counted before they cost anything. 0: no limit.
    #[arg(long, default_value_t = 2000, value_name = "PER_S")]
    mgmt_rate_source: u32,
    /// Management frames or datagrams accepted per second on one port, all sources
    /// together. 0: no limit.
    #[arg(long, default_value_t = 10000, value_name = "PER_S")]
    mgmt_rate_port: u32,
    /// Connections to the control socket at once from one non-root user (each flow holds
    /// one); more are closed at once and logged.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns_per_user: u32,
    /// Serve Prometheus metrics (every counter o7sctl shows: names, flows, ports, layers)
    /// at http://ADDR:PORT/metrics; a PORT alone is 127.0.0.1:PORT (this host only). Off by
    /// default; anyone who reaches the address reads them (o7sd says so in its log when
    /// the address is not a loopback one).
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = o7s_control::metrics::parse_addr)]
    metrics: Option<std::net::SocketAddr>,
    /// Log filter (error, warn, info, debug, trace); $O7S_LOG overrides.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    limit_heap_arenas();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("O7S_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    use std::io::IsTerminal;
    let tty = if cli.stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(tty);
    let _ = if cli.stdout {
        builder.with_writer(std::io::stdout).try_init()
    } else {
        builder.with_writer(std::io::stderr).try_init()
    };

    match o7s::raise_fd_limit() {
        Ok(n) => tracing::debug!("open-file limit {n}"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let cfg = match &cli.config {
        Some(p) => {
            tracing::info!("Reading configuration from file {}.", p.display());
            match config::load(p) {
                Ok(c) => Some(c),
                Err(e) => {
                    // Once: in the log when it goes to stderr, else on stderr.
                    if cli.stdout {
                        tracing::error!("configuration refused: {e}");
                        eprintln!("o7sd: configuration refused: {e}");
                    } else {
                        tracing::error!("configuration refused: {e}");
                    }
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let rundir = cli
        .rundir
        .clone()
        .or_else(|| std::env::var_os(o7s::proto::RUNDIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(o7s::proto::DEFAULT_RUNDIR));
    if let Err(e) = std::fs::create_dir_all(&rundir) {
        eprintln!("o7sd: cannot create {}: {e}", rundir.display());
        return ExitCode::from(1);
    }
    // One o7sd per run directory, held for the process's life: two started together would
    // each take the other's socket and start a data plane of their own on the same devices.
    let lock_path = rundir.join("o7sd.lock");
    let _lock = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| (e, "open"))
        .and_then(|f| {
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|(_, e)| (std::io::Error::from(e), "lock"))
        }) {
        Ok(l) => l,
        Err((e, _)) if e.kind() == std::io::ErrorKind::WouldBlock => {
            eprintln!(
                "o7sd: another o7sd is running on {} (it holds {}; use --rundir for a second one)",
                rundir.display(),
                lock_path.display()
            );
            return ExitCode::from(1);
        }
        Err((e, what)) => {
            eprintln!("o7sd: cannot {what} {}: {e}", lock_path.display());
            return ExitCode::from(1);
        }
    };
    let sock = rundir.join(o7s::proto::SOCKET_NAME);
    if o7s::ipc::Channel::connect(&sock).is_ok() {
        eprintln!(
            "o7sd: another o7sd is running on {} (use --rundir for a second one)",
            sock.display()
        );
        return ExitCode::from(1);
    }
    // Apps pass o7sd no descriptors: refused, so none of theirs is ever closed by the loop.
    let (listener, rights) = match Listener::bind_refusing_descriptors(&sock) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("o7sd: cannot listen on {}: {e}", sock.display());
            return ExitCode::from(1);
        }
    };
    if let o7s::ipc::PassRights::Unsupported(e) = &rights {
        tracing::warn!(
            "this kernel cannot refuse descriptors that apps pass on {} (SO_PASSRIGHTS, \
             Linux 6.16: {e}); a local user can make o7sd close a socket of theirs, which may \
             stall its loop (docs/SECURITY.md)",
            sock.display()
        );
    }
    if let Some(c) = &cli.core {
        if let Err(e) = check_cores(c, cpus_online()) {
            eprintln!("o7sd: --core {c}: {e}");
            let _ = std::fs::remove_file(&sock);
            return ExitCode::from(2);
        }
    }
    let policy = match o7s_control::authz::Policy::new(cli.admin_group.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("o7sd: {e}");
            let _ = std::fs::remove_file(&sock);
            return ExitCode::from(2);
        }
    };
    let mut env = vec![
        (
            "O7S_DP_MGMT_RATE_SOURCE".to_string(),
            cli.mgmt_rate_source.to_string(),
        ),
        (
            "O7S_DP_MGMT_RATE_PORT".to_string(),
            cli.mgmt_rate_port.to_string(),
        ),
        ("O7S_DP_IO".to_string(), cli.io.clone()),
        ("O7S_XDP_MODE".to_string(), cli.xdp_mode.clone()),
        (
            "O7S_DP_CORE".to_string(),
            cli.core.clone().unwrap_or_default(),
        ),
        (
            "O7S_DP_BUSY_POLL".to_string(),
            if cli.busy_poll { "1" } else { "0" }.to_string(),
        ),
        ("O7S_DP_SPIN_US".to_string(), cli.spin_us.to_string()),
    ];
    // A data plane whose o7sd went away (a crash, an upgrade) is adopted with its flows.
    let dp_sock = rundir.join(o7s_abi::SOCK_NAME);
    env.push((o7s_abi::SOCK_ENV.to_string(), dp_sock.display().to_string()));
    let (dp, adopted) = match DpHandle::adopt_or_spawn(env, &dp_sock) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("o7sd: cannot start the data plane: {e}");
            let _ = std::fs::remove_file(&sock);
            return ExitCode::from(1);
        }
    };
    let settings = Settings {
        query_timeout: Duration::from_millis(cli.query_timeout_ms.max(1)),
        autostart_wait: Duration::from_millis(cli.autostart_wait_ms),
        accept_wait: Duration::from_millis(cli.accept_wait_ms),
        security_dir: cli
            .security_dir
            .clone()
            .unwrap_or_else(|| o7s_control::security::default_dir(cli.config.as_deref())),
        key_rotation_bits: cli.key_rotation_bits,
        policy,
        max_flows: cli.max_flows as usize,
        max_flows_per_peer: cli.max_flows_per_peer as usize,
        max_flows_per_process: cli.max_flows_per_process as usize,
        rundir: rundir.clone(),
    };
    let d = Daemon::new(dp, settings);
    {
        let d = d.clone();
        std::thread::spawn(move || d.dp_events());
    }
    {
        // The admin thread: o7sctl requests (they may wait on the data plane).
        let d = d.clone();
        let started = std::thread::Builder::new()
            .name("o7sd-admin".into())
            .spawn(move || d.run_admin());
        if let Err(e) = started {
            tracing::error!("cannot start the admin thread: {e}");
            return ExitCode::from(1);
        }
    }
    let event_loop = {
        // The event loop, the state's one owner: connections, allocations, acceptors, flow
        // requests from the wire, the machines' timers, and the steps other threads post
        // (start-up's first: it takes clients once start-up says it is done).
        let d = d.clone();
        let conns = std::sync::Arc::new(o7s_control::conns::Conns::new(
            cli.max_conns_per_user as usize,
        ));
        std::thread::Builder::new()
            .name("o7sd-loop".into())
            .spawn(move || match Owner::new(&d) {
                Some(o) => o.run_loop(&listener, &conns),
                None => {
                    tracing::error!("the event loop started twice; stopping");
                    o7s_control::request_stop();
                }
            })
    };
    let event_loop = match event_loop {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("cannot start the event loop: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        "o7sd started (pid {}), socket {}.",
        std::process::id(),
        sock.display()
    );
    let adopted_flows = adopted.map(|a| {
        let (ports, flows) = (a.ports, a.flows.clone());
        if let Err(e) = d.on_loop(move |o| o.adopt_ports(ports, &flows)) {
            tracing::error!("the adopted data plane's ports: {e}");
        }
        a.flows
    });
    if let Some(c) = &cfg {
        // Failures are logged; the daemon runs with the rest (as after `config load`).
        let _ = d.apply(c);
    }
    if let Some(flows) = adopted_flows {
        if let Err(e) = d.on_loop(move |o| o.adopt_flows(flows)) {
            tracing::error!("the adopted data plane's flows: {e}");
        }
    }
    if let Some(addr) = cli.metrics {
        if let Err(e) = o7s_control::metrics::serve(d.clone(), addr) {
            tracing::error!("--metrics {addr}: {e}");
            eprintln!("o7sd: --metrics {addr}: {e}");
            d.stopping.store(true, Ordering::SeqCst);
            d.waker().wake();
            // It stops the programs it started.
            if event_loop.join().is_err() {
                tracing::error!("the event loop panicked");
            }
            d.dp.stop();
            let _ = std::fs::remove_file(&sock);
            return ExitCode::from(1);
        }
    }
    d.started();
    if let Err(e) = o7s_control::install_signal_handlers() {
        tracing::warn!("signal handlers: {e}");
    }
    let mut slept = 0u32;
    while !o7s_control::stop_requested() {
        if event_loop.is_finished() {
            tracing::error!("the event loop ended on its own (see above); stopping");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        // Every 5 s: memory that bursts left in the allocator's arenas goes back to the
        // system, so o7sd's size returns to where it was after a flood (here, not on the
        // loop: it takes milliseconds).
        slept += 1;
        if slept % 50 == 0 {
            o7s_control::daemon::trim_heap();
        }
    }
    tracing::info!("o7sd shutting down.");
    d.stopping.store(true, Ordering::SeqCst);
    d.waker().wake();
    // It frees what its connections hold (flows, acceptors, captures).
    // (and the programs it started).
    if event_loop.join().is_err() {
        tracing::error!("the event loop panicked");
    }
    d.dp.stop();
    let _ = std::fs::remove_file(&sock);
    tracing::info!("o7sd stopped.");
    ExitCode::SUCCESS
}

/// Two malloc arenas instead of glibc's eight per CPU: o7sd's threads are few and not hot,
/// and memory a burst left behind in many arenas stays fragmented (RSS after a flood of
/// flow requests went back to +16 % of where it was with the default, see SECURITY.md).
fn limit_heap_arenas() {
    #[cfg(target_env = "gnu")]
    // Safety: mallopt is called first thing in main, before any other thread exists, with a
    // documented parameter; it takes no pointer.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// CPUs online on this machine: all of them, not only those this process may run on now
/// (under `taskset`, `available_parallelism` counts the allowed ones).
fn cpus_online() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// What is wrong with a `--core` list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CoreError {
    /// An entry is not a number.
    #[error("'{0}' is not a CPU number")]
    NotANumber(String),
    /// A CPU the machine does not have.
    #[error("this machine has CPUs 0 to {0}")]
    Beyond(usize),
    /// A CPU named twice.
    #[error("CPU {0} is listed twice")]
    Twice(usize),
}

/// Checks a `--core` list: CPU numbers below `online`, each at most once.
fn check_cores(spec: &str, online: usize) -> Result<(), CoreError> {
    let mut seen = std::collections::BTreeSet::new();
    for c in spec.split(',') {
        let n: usize = c
            .trim()
            .parse()
            .map_err(|_| CoreError::NotANumber(c.trim().to_string()))?;
        if n >= online {
            return Err(CoreError::Beyond(online.saturating_sub(1)));
        }
        if !seen.insert(n) {
            return Err(CoreError::Twice(n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_cores;

    #[test]
    fn core_lists() {
        assert_eq!(check_cores("0", 2), Ok(()));
        assert_eq!(check_cores("0,1", 2), Ok(()));
        assert!(check_cores("2", 2).is_err_and(|e| e.to_string().contains("CPUs 0 to 1")));
        assert!(check_cores("0,0", 2).is_err_and(|e| e.to_string().contains("twice")));
        assert!(check_cores("x", 2).is_err_and(|e| e.to_string().contains("not a CPU")));
        assert!(check_cores("0,", 2).is_err());
    }
}
