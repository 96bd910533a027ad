//! o7s-vpn: IP over an Ouroboros flow, as the reference's `ovpn`: a TUN device whose IP
//! packets travel one per SDU on a raw flow, nothing added (IFF_NO_PI, no header), so an
//! ovpn at the other end understands it. `-n NAME` allocates a flow to the server
//! registered as NAME; without it o7s-vpn serves, accepting a flow for a name it is bound
//! to. `-i IP -m MASK` set the tunnel's address. Beyond ovpn: the TUN device's MTU is the
//! flow's largest SDU, a flow that ends is allocated (or accepted) again, what is not one IP
//! packet is dropped and counted, and the counters are printed when it stops (SIGINT or
//! SIGTERM). Needs CAP_NET_ADMIN (for the TUN device), not root as such.
//!
//! `--tap`: Ethernet instead of IP (a TAP device, one frame per SDU), and every flow a port
//! of a learning switch (src/tap_mode.rs): a server joins its clients into one segment.
//! `--status` prints what a running `--tap` instance shows (switch counters, MAC table).

mod ip;
mod peers;
mod pump;
mod routes;
mod switch;
mod tap_mode;
mod tun;

use clap::Parser;
use o7s::flow::{control, Error, Flow};
use o7s::proto::{Ctl, Reply};
use o7s_wire::qos::QosSpec;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tun::Tun;

/// IP over an Ouroboros flow (a TUN device; wire-compatible with the reference's ovpn).
#[derive(Debug, Parser)]
#[command(name = "o7s-vpn", version)]
pub(crate) struct Cli {
    /// Connect to the server registered as NAME (client). Without it, serve: accept a flow
    /// for a name this process is bound to (`--bind NAME`, `o7sctl bind process PID NAME`,
    /// or a name whose `prog` is o7s-vpn).
    #[arg(short = 'n', long, value_name = "NAME")]
    name: Option<String>,
    /// Server: bind this process to NAME first (as `o7sctl bind process PID NAME`).
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    bind: Option<String>,
    /// Several peers (TUN mode): packets for PREFIX go on a flow to the server registered
    /// as NAME (e.g. `--peer vpn-b=10.94.0.2/32 --peer vpn-c=10.95.0.0/16`; longest prefix
    /// wins; IPv4 or IPv6; an address alone is a host route). Each flow is allocated, and
    /// allocated again when it ends, on its own; packets for no prefix, or for a peer
    /// whose flow is down, are dropped and counted.
    #[arg(long, value_name = "NAME=PREFIX", conflicts_with_all = ["name", "bind", "tap"])]
    peer: Vec<routes::PeerArg>,
    /// The tunnel's IPv4 address on this side.
    #[arg(
        short = 'i',
        long,
        value_name = "IP",
        required_unless_present = "status"
    )]
    ip: Option<Ipv4Addr>,
    /// The tunnel's netmask: 255.255.255.0, or a prefix length (24).
    #[arg(short = 'm', long, value_name = "MASK", value_parser = parse_mask, required_unless_present = "status")]
    mask: Option<Ipv4Addr>,
    /// Name of the TUN or TAP device (a `%d` in it is a number the kernel picks).
    #[arg(long, default_value = "o7s%d")]
    dev: String,
    /// Ethernet over the flows: a TAP device and a learning switch whose ports are the TAP
    /// device and every flow (a server accepts any number of them).
    #[arg(long)]
    tap: bool,
    /// Print the state of the `--tap` instances running here (of `--dev`, if it names
    /// one): counters, switch counters, flows and MAC table, as JSON; then exit.
    #[arg(long)]
    status: bool,
    /// Client (`-n`, `--peer`): the flows' peer timeout in ms (QoS `timeout`; the raw
    /// cube's 120000 by default, as ovpn's flows): an end that hears nothing from its peer
    /// for this long takes the flow down, and o7s-vpn allocates it again. Quiet ends send
    /// keepalives every quarter of it.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1000..))]
    peer_timeout: Option<u32>,
    /// Client: how long one allocation may take, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    alloc_timeout_s: u64,
    /// Stop when the flow ends, instead of allocating (client) or accepting (server) another.
    #[arg(long)]
    once: bool,
    /// Print the counters as one JSON object (on stdout) when it stops.
    #[arg(long)]
    json: bool,
}

/// A netmask: dotted (255.255.255.0, contiguous ones) or a prefix length (0-32).
fn parse_mask(s: &str) -> Result<Ipv4Addr, String> {
    if let Ok(len) = s.parse::<u32>() {
        if len > 32 {
            return Err(format!("prefix length {len} is above 32"));
        }
        let bits = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        return Ok(Ipv4Addr::from(bits));
    }
    let m: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("'{s}' is neither a netmask (255.255.255.0) nor a prefix length"))?;
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(format!("{m}: the ones of a netmask must be contiguous"));
    }
    Ok(m)
}

/// What crossed, and what was refused.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    flows: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    /// Read from the TUN device but not one IP packet (should not happen).
    tx_not_ip: AtomicU64,
    /// Larger than the flow's largest SDU (the MTU follows it; a race with a new flow).
    tx_too_big: AtomicU64,
    /// SDUs from the flow that are not one IP packet (a TAP peer, a bad peer).
    rx_not_ip: AtomicU64,
    /// Packets the TUN device would not take.
    rx_tun_errors: AtomicU64,
    /// `--peer`: packets for an address no peer's prefix holds.
    tx_no_route: AtomicU64,
    /// `--peer`: packets for a peer whose flow is not up (allocating again).
    tx_peer_down: AtomicU64,
    /// Polls of the device that found packets (tx_packets / tun_polls: the batch size).
    tun_polls: AtomicU64,
    /// `--tap`: frames a flow did not take within [`SWITCH_WRITE_TIMEOUT`] (a slow or
    /// stalled member): dropped for it, so that it cannot hold the switch.
    tx_slow_flow: AtomicU64,
}

impl Stats {
    fn json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "flows": g(&self.flows),
            "tx_packets": g(&self.tx_packets), "tx_bytes": g(&self.tx_bytes),
            "rx_packets": g(&self.rx_packets), "rx_bytes": g(&self.rx_bytes),
            "tx_not_ip": g(&self.tx_not_ip), "tx_too_big": g(&self.tx_too_big),
            "rx_not_ip": g(&self.rx_not_ip), "rx_tun_errors": g(&self.rx_tun_errors),
            "tx_no_route": g(&self.tx_no_route), "tx_peer_down": g(&self.tx_peer_down),
            "tun_polls": g(&self.tun_polls), "tx_slow_flow": g(&self.tx_slow_flow),
        })
    }
}

/// `--tap`: the longest the switch waits for one flow to take a frame.
pub(crate) const SWITCH_WRITE_TIMEOUT: Duration = Duration::from_millis(1);

/// How often the pumps look at the stop flags.
pub(crate) const TICK: Duration = Duration::from_millis(200);
/// IPv4's smallest MTU.
pub(crate) const MIN_MTU: usize = 68;

impl Cli {
    fn ip(&self) -> Ipv4Addr {
        self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
    fn mask(&self) -> Ipv4Addr {
        self.mask.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
    /// The QoS of the flows we allocate: raw, with `--peer-timeout`.
    pub(crate) fn qos(&self) -> QosSpec {
        QosSpec {
            timeout: self.peer_timeout.unwrap_or(QosSpec::RAW.timeout),
            ..QosSpec::RAW
        }
    }
}

/// Where a running `--tap` instance keeps its state for `--status`.
fn state_dir() -> std::path::PathBuf {
    std::env::var_os("O7S_RUNDIR").map_or_else(
        || std::path::PathBuf::from(o7s::proto::DEFAULT_RUNDIR),
        Into::into,
    )
}

fn state_file(dev: &str) -> std::path::PathBuf {
    state_dir().join(format!("o7s-vpn-{dev}.json"))
}

/// `--status`: every state file here (or `--dev`'s), one JSON object per line.
fn status(cli: &Cli) -> ExitCode {
    let dir = state_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("o7s-vpn-") && n.ends_with(".json"))
                })
                .collect()
        })
        .unwrap_or_default();
    if !cli.dev.contains('%') {
        files.retain(|p| *p == state_file(&cli.dev));
    }
    files.sort();
    if files.is_empty() {
        eprintln!(
            "o7s-vpn: no o7s-vpn --tap runs here{} (no o7s-vpn-*.json in {})",
            if cli.dev.contains('%') {
                String::new()
            } else {
                format!(" with device {}", cli.dev)
            },
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("o7s-vpn: {}: {e}", f.display()),
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.status {
        return status(&cli);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(s, stop.clone()) {
            eprintln!("o7s-vpn: cannot handle signal {s}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let routes = match routes::Routes::new(&cli.peer) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("o7s-vpn: --peer: {e}");
            return ExitCode::from(2);
        }
    };
    let tun = match Tun::create(&cli.dev, cli.tap) {
        Ok(t) => t,
        Err(e) => {
            let kind = if cli.tap { "TAP" } else { "TUN" };
            eprintln!("o7s-vpn: cannot create {kind} device '{}': {e}", cli.dev);
            return ExitCode::FAILURE;
        }
    };
    if let Some(name) = &cli.bind {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        match control(Ctl::BindProcess {
            pid,
            name: name.clone(),
        }) {
            Ok(Reply::Ok) => {}
            Ok(Reply::Error { message, .. }) => {
                eprintln!("o7s-vpn: cannot bind to '{name}': {message}");
                return ExitCode::FAILURE;
            }
            Ok(other) => {
                eprintln!("o7s-vpn: cannot bind to '{name}': unexpected reply {other:?}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("o7s-vpn: cannot bind to '{name}': {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let stats = Stats::default();
    let code = if cli.tap {
        tap_mode::run(&cli, &tun, &stats, &stop, &state_file(tun.name()))
    } else if !cli.peer.is_empty() {
        peers::run(&cli, &routes, &tun, &stats, &stop)
    } else {
        run(&cli, &tun, &stats, &stop)
    };
    if cli.json {
        println!("{}", stats.json());
    } else {
        eprintln!("o7s-vpn: {}", stats.json());
    }
    code
}

/// A flow: allocated (client) or accepted (server); `None` once stopped.
pub(crate) fn next_flow(cli: &Cli, stop: &AtomicBool) -> Result<Option<Flow>, Error> {
    let qos = cli.qos();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let got = match &cli.name {
            Some(n) => Flow::alloc(n, qos, Duration::from_secs(cli.alloc_timeout_s)),
            None => Flow::accept(Some(Duration::from_secs(1))),
        };
        match got {
            Ok(f) => return Ok(Some(f)),
            // A server waits on; a client's allocation that timed out is the caller's.
            Err(Error::Timeout) if cli.name.is_none() => {}
            Err(e) => return Err(e),
        }
    }
}

fn run(cli: &Cli, tun: &Tun, stats: &Stats, stop: &AtomicBool) -> ExitCode {
    let mut mtu_set = None;
    loop {
        let mut flow = match next_flow(cli, stop) {
            Ok(Some(f)) => f,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                let what = cli.name.as_deref().map_or_else(
                    || "accepting a flow".to_string(),
                    |n| format!("allocating a flow to {n}"),
                );
                eprintln!("o7s-vpn: {what}: {e}");
                if cli.once || matches!(e, Error::NoDaemon { .. }) && cli.name.is_some() {
                    return ExitCode::FAILURE;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mtu = flow.info().mtu.min(pump::MAX_PACKET);
        if mtu < MIN_MTU {
            eprintln!(
                "o7s-vpn: the flow's largest SDU is {mtu} bytes, below IPv4's smallest MTU ({MIN_MTU})"
            );
            return ExitCode::FAILURE;
        }
        if mtu_set != Some(mtu) {
            let m = u32::try_from(mtu).unwrap_or(u32::MAX);
            if let Err(e) = tun.configure(cli.ip(), cli.mask(), m) {
                eprintln!("o7s-vpn: configuring {}: {e}", tun.name());
                return ExitCode::FAILURE;
            }
            mtu_set = Some(mtu);
        }
        stats.flows.fetch_add(1, Ordering::Relaxed);
        let info = flow.info();
        eprintln!(
            "o7s-vpn: tunnel up: {} {}/{} over flow {} ({} {}, layer {}, MTU {mtu})",
            tun.name(),
            cli.ip(),
            u32::from(cli.mask()).count_ones(),
            info.id,
            if cli.name.is_some() { "to" } else { "for" },
            info.name,
            info.layer,
        );
        flow.set_read_timeout(Some(TICK));
        let why = pump(tun, &flow, stats, stop);
        eprintln!("o7s-vpn: flow {} ended: {why}", flow.info().id);
        drop(flow);
        if cli.once || stop.load(Ordering::Relaxed) {
            return ExitCode::SUCCESS;
        }
    }
}

/// Moves packets both ways until the flow ends, the device fails or we are stopped; says
/// which.
fn pump(tun: &Tun, flow: &Flow, stats: &Stats, stop: &AtomicBool) -> String {
    let done = AtomicBool::new(false);
    let why = std::sync::Mutex::new(None::<String>);
    let finished = |w: String| {
        done.store(true, Ordering::Relaxed);
        if let Ok(mut s) = why.lock() {
            s.get_or_insert(w);
        }
    };
    let is_done = || done.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    std::thread::scope(|s| {
        s.spawn(|| {
            finished(pump::from_tun(tun, stats, &is_done, &mut |p| {
                pump::to_flow(flow, p).map_err(|e| format!("writing to the flow: {e}"))
            }));
        });
        finished(pump::from_flow(tun, flow, stats, &is_done));
    });
    if stop.load(Ordering::Relaxed) {
        return "stopped (signal)".into();
    }
    why.into_inner()
        .ok()
        .flatten()
        .unwrap_or_else(|| "stopped".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_dotted_and_contiguous_or_prefix_lengths() {
        assert_eq!(parse_mask("24").unwrap(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(parse_mask("0").unwrap(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(parse_mask("32").unwrap(), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(
            parse_mask("255.255.240.0").unwrap(),
            Ipv4Addr::new(255, 255, 240, 0)
        );
        assert!(parse_mask("33").unwrap_err().contains("above 32"));
        assert!(parse_mask("255.0.255.0")
            .unwrap_err()
            .contains("contiguous"));
        assert!(parse_mask("ten").unwrap_err().contains("neither"));
    }
}
