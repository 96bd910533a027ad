//! `o7s-bench`: benchmark drivers that print JSON.
//!
//! - `o7s-bench alloc-server`: accepts flows and drops them at once (bind its program to a
//!   name first).
//! - `o7s-bench alloc-client -n NAME -c 1000`: allocates and deallocates flows one after the
//!   other and reports the allocation latency (p50, p99, mean, min, max in ms).
//! - `o7s-bench pkt-path`: the data plane's per-packet work in isolation: the workers' own
//!   decision (`packet_path::step_eth`) over a received eth-dix frame of a plain flow,
//!   and the frame of an SDU to the peer (`frames::build_dix`): ns per packet.
//!   `scripts/bench-pkt-path.sh` adds instructions per packet (perf stat).
//! - `o7s-bench dt-path --action forward|deliver|punt|drop`: the unicast layer's DT path as
//!   the workers run it: `packet_path::step_eth` over the frame of a DT PDU (one parse,
//!   the flow lookup, the route; `dt::decide_from` for a PDU not forwarded), and for a PDU
//!   to forward `Fwd::apply` (TTL and header, in place), as an AF_XDP worker does.

mod forward;

use clap::{Parser, Subcommand};
use o7s::{Flow, QosSpec};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Benchmark drivers with JSON output.
#[derive(Debug, Parser)]
#[command(name = "o7s-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Accept flows and drop them.
    AllocServer,
    /// Allocate COUNT flows to NAME one after the other; print latency statistics as JSON.
    AllocClient {
        /// Destination name.
        #[arg(short = 'n', long)]
        name: String,
        /// Number of allocations.
        #[arg(short = 'c', long, default_value_t = 1000)]
        count: u32,
        /// Allocation time-out in ms.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Per-packet path in isolation: parse, look up, frame; ns per packet as JSON.
    PktPath {
        /// Packets to process.
        #[arg(short = 'c', long, default_value_t = 10_000_000)]
        count: u64,
        /// SDU size in bytes.
        #[arg(short = 's', long, default_value_t = 64)]
        size: usize,
        /// Flows in the table.
        #[arg(long, default_value_t = 1024)]
        flows: u32,
    },
    /// The unicast layer's DT path as the workers run it: a DT PDU in an eth-dix frame
    /// from a neighbour through `packet_path::step_eth`; to forward: the frame re-headed
    /// in place (`packet_path::Fwd::apply`); ns per packet as JSON.
    DtPath {
        /// What the PDUs are: forward (to another address), deliver (to a flow of ours),
        /// punt (to o7sd's flow allocator) or drop (no route).
        #[arg(long, default_value = "forward")]
        action: PathAction,
        /// Packets to process.
        #[arg(short = 'c', long, default_value_t = 10_000_000)]
        count: u64,
        /// SDU size in bytes (after the 15-byte PCI).
        #[arg(short = 's', long, default_value_t = 64)]
        size: usize,
        /// Routes in the table.
        #[arg(long, default_value_t = 1024)]
        routes: u32,
    },
    /// Per-packet encryption in isolation: seal then open one SDU with the data plane's
    /// cipher state; ns per packet (both operations) as JSON.
    Crypt {
        /// Packets to process.
        #[arg(short = 'c', long, default_value_t = 2_000_000)]
        count: u64,
        /// SDU size in bytes.
        #[arg(short = 's', long, default_value_t = 1400)]
        size: usize,
        /// Cipher: aes-128-gcm, aes-256-gcm or chacha20-poly1305.
        #[arg(long, default_value = "aes-256-gcm")]
        cipher: String,
    },
    /// Traffic source of scripts/bench-forward.sh: one frame sent flat out on an AF_XDP
    /// socket of DEV for SECONDS; JSON.
    XdpGen {
        /// Device to send on.
        #[arg(long)]
        dev: String,
        /// What to send.
        #[arg(long, value_enum, default_value = "dt")]
        kind: forward::GenKind,
        /// Frame size without FCS (60: a 64-byte frame on the wire).
        #[arg(short = 's', long, default_value_t = 60)]
        size: usize,
        /// Destination MAC.
        #[arg(long)]
        dst_mac: String,
        /// Source MAC (default: DEV's).
        #[arg(long)]
        src_mac: Option<String>,
        /// eth-dix endpoint id (dt).
        #[arg(long, default_value_t = 64)]
        eid: u16,
        /// The DT PCI's destination address, hexadecimal (dt).
        #[arg(long, default_value = "0")]
        addr: String,
        /// Source IPv4 address (ipv4).
        #[arg(long, default_value = "10.0.0.1")]
        src_ip: std::net::Ipv4Addr,
        /// Destination IPv4 address (ipv4).
        #[arg(long, default_value = "10.0.0.2")]
        dst_ip: std::net::Ipv4Addr,
        /// How long.
        #[arg(short = 'd', long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Sink of scripts/bench-forward.sh: count and drop what reaches DEV (bpf/xdp_count.o),
    /// over SECONDS after WARMUP; JSON with Mpps and Gbit/s.
    XdpCount {
        /// Device.
        #[arg(long)]
        dev: String,
        /// Counting window.
        #[arg(short = 'd', long, default_value_t = 3.0)]
        seconds: f64,
        /// Time before the window.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// The raw AF_XDP forwarder of scripts/bench-forward.sh: frames from IN re-addressed to
    /// DST_MAC and sent out of OUT in place, for SECONDS; JSON.
    XdpFwd {
        /// Receiving device.
        #[arg(long = "in")]
        inp: String,
        /// Sending device.
        #[arg(long)]
        out: String,
        /// Next hop's MAC.
        #[arg(long)]
        dst_mac: String,
        /// How long.
        #[arg(short = 'd', long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Kernel UDP baseline: echo every datagram back.
    UdpEchoServer {
        /// Address to bind.
        addr: String,
    },
    /// Kernel UDP baseline: COUNT ping-pongs of SIZE bytes every INTERVAL_US; RTT as JSON.
    UdpPing {
        /// Echo server address.
        addr: String,
        /// Number of pings.
        #[arg(short = 'c', long, default_value_t = 500)]
        count: u32,
        /// Datagram size.
        #[arg(short = 's', long, default_value_t = 64)]
        size: usize,
        /// Interval in microseconds.
        #[arg(short = 'i', long, default_value_t = 10_000)]
        interval_us: u64,
    },
    /// Kernel UDP baseline: count datagrams until IDLE seconds pass without one; JSON.
    UdpSink {
        /// Address to bind.
        addr: String,
        /// Idle time that ends the count.
        #[arg(long, default_value_t = 1.0)]
        idle: f64,
    },
    /// Kernel UDP baseline: send SIZE-byte datagrams flat out for SECONDS; JSON.
    UdpBlast {
        /// Sink address.
        addr: String,
        /// Datagram size.
        #[arg(short = 's', long, default_value_t = 1400)]
        size: usize,
        /// Duration.
        #[arg(short = 'd', long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::AllocServer => loop {
            match Flow::accept(None) {
                Ok(f) => drop(f),
                Err(e) => {
                    eprintln!("o7s-bench: accept: {e}");
                    return ExitCode::FAILURE;
                }
            }
        },
        Cmd::PktPath { count, size, flows } => pkt_path(count, size, flows),
        Cmd::DtPath {
            action,
            count,
            size,
            routes,
        } => dt_path(action, count, size, routes),
        Cmd::Crypt {
            count,
            size,
            cipher,
        } => crypt(count, size, &cipher),
        Cmd::XdpGen {
            dev,
            kind,
            size,
            dst_mac,
            src_mac,
            eid,
            addr,
            src_ip,
            dst_ip,
            seconds,
        } => json_or_fail("xdp-gen", || {
            let dst = forward::parse_mac(&dst_mac)?;
            let src = match &src_mac {
                Some(m) => forward::parse_mac(m)?,
                None => forward::mac_of(&dev)?,
            };
            let addr = u32::from_str_radix(addr.trim_start_matches("0x"), 16)?;
            let frame = forward::gen_frame(kind, size, dst, src, eid, addr, src_ip, dst_ip)?;
            forward::generate(&dev, &frame, seconds)
        }),
        Cmd::XdpCount {
            dev,
            seconds,
            warmup,
        } => json_or_fail("xdp-count", || forward::count(&dev, seconds, warmup)),
        Cmd::XdpFwd {
            inp,
            out,
            dst_mac,
            seconds,
        } => json_or_fail("xdp-fwd", || {
            forward::forward(&inp, &out, forward::parse_mac(&dst_mac)?, seconds)
        }),
        Cmd::UdpEchoServer { addr } => udp_echo(&addr),
        Cmd::UdpPing {
            addr,
            count,
            size,
            interval_us,
        } => udp_ping(&addr, count, size, interval_us),
        Cmd::UdpSink { addr, idle } => udp_sink(&addr, idle),
        Cmd::UdpBlast {
            addr,
            size,
            seconds,
        } => udp_blast(&addr, size, seconds),
        Cmd::AllocClient {
            name,
            count,
            timeout_ms,
        } => {
            let Ok(mut h) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            else {
                return ExitCode::FAILURE;
            };
            let mut failures = 0u32;
            let mut first_error = None;
            let start = Instant::now();
            for _ in 0..count {
                let t = Instant::now();
                match Flow::alloc(&name, QosSpec::RAW, Duration::from_millis(timeout_ms)) {
                    Ok(f) => {
                        let ns = t.elapsed().as_nanos() as u64;
                        let _ = h.record(ns.max(1));
                        drop(f);
                    }
                    Err(e) => {
                        failures += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            let ms = |ns: u64| ns as f64 / 1e6;
            let j = serde_json::json!({
                "allocations": h.len(), "failures": failures, "first_error": first_error,
                "total_s": start.elapsed().as_secs_f64(),
                "latency_ms": {"p50": ms(h.value_at_quantile(0.5)), "p99": ms(h.value_at_quantile(0.99)),
                               "mean": h.mean() / 1e6, "min": ms(h.min()), "max": ms(h.max())}
            });
            println!("{j}");
            if failures > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// The kinds of DT PDU `o7s-bench dt-path` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PathAction {
    /// To another address: forwarded (TTL decremented, re-headed in place).
    Forward,
    /// To an endpoint of ours: delivered to its flow.
    Deliver,
    /// To our flow allocator (eid 0): for o7sd.
    Punt,
    /// To an address without a route: dropped.
    Drop,
}

/// The port frames arrive on in the benchmarks, our MAC and the neighbour's.
const PORT: u32 = 1;
const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// The decision and, on the way out, the frame of an SDU: `packet_path::step_eth` over a
/// received eth-dix frame of one of 1024 plain flows (the action a worker applies:
/// deliver), then `frames::build_dix` of an SDU back to the peer.
fn pkt_path(count: u64, size: usize, flows: u32) -> ExitCode {
    use o7s_dataplane::frames;
    use o7s_dataplane::msg::PortKind;
    use o7s_dataplane::packet_path::{step_eth, Action, FlowEntry, PortView, Step, Tables};
    use std::hint::black_box;
    let port = PortView {
        id: PORT,
        kind: PortKind::Dix { ethertype: 0xA000 },
        mac: OUR_MAC,
    };
    let flows = flows.clamp(1, 0xffff - 64);
    let mut t = Tables::default();
    for e in 0..flows {
        let entry = FlowEntry {
            flow: u64::from(e) * 7,
            mac: PEER_MAC,
            addr: None,
            encrypted: false,
            dt_of: None,
        };
        t.insert_flow(PORT, e + 64, entry);
    }
    let sdu = vec![0x5au8; size];
    // A few received frames for different flows, built once.
    let mut rx: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let mut f = Vec::new();
            let eid = (i % flows + 64) as u16;
            let _ = frames::build_dix(&mut f, OUR_MAC, PEER_MAC, 0xA000, eid, &sdu);
            f
        })
        .collect();
    let mut out = Vec::with_capacity(2048);
    let mut found = 0u64;
    let start = Instant::now();
    for i in 0..count {
        let Some(frame) = rx.get_mut((i % 64) as usize) else {
            continue;
        };
        if let Step::Decided(Action::Deliver { flow, sdu }) = step_eth(port, black_box(frame), &t) {
            found += flow & 1;
            let body = frame.get(sdu).unwrap_or(&[]);
            let _ = frames::build_dix(&mut out, PEER_MAC, OUR_MAC, 0xA000, 64, body);
            black_box(&out);
        }
    }
    let ns = start.elapsed().as_nanos() as f64;
    println!(
        "{}",
        serde_json::json!({"packets": count, "size": size, "flows": flows, "found": found,
            "ns_per_packet": if count == 0 { 0.0 } else { ns / count as f64 }})
    );
    ExitCode::SUCCESS
}

/// The DT path as a worker runs it on a frame of an AF_XDP port: `step_eth` (one parse,
/// the DT N-1 flow by (port, eid), the route over `routes` routes to one of 16 next hops;
/// `dt::decide_from` for a PDU not forwarded), and for a PDU to forward `Fwd::apply`, in
/// the frame's own buffer. The next hop re-heads the frame exactly as it arrived, so every
/// round sees the same frames (only the TTL is put back).
fn dt_path(action: PathAction, count: u64, size: usize, routes: u32) -> ExitCode {
    use o7s_dataplane::dt::{self, DtAction, DtTables};
    use o7s_dataplane::frames;
    use o7s_dataplane::msg::PortKind;
    use o7s_dataplane::packet_path::{
        rewrite_dix_with, step_eth, Action, Egress, EthDest, FlowEntry, PortView, Step, Tables,
    };
    use std::hint::black_box;
    const IPCP: u32 = 7;
    const OWN: u32 = 0xe30f_5e97;
    const TTL: u8 = 60;
    let kind = PortKind::Dix { ethertype: 0xA000 };
    let port = PortView {
        id: PORT,
        kind,
        mac: OUR_MAC,
    };
    let routes = routes.max(1);
    let mut u = DtTables::new(OWN);
    let mut t = Tables::default();
    // 16 DT N-1 flows (eids 65..81 from the neighbour), each a next hop.
    for f in 0..16u32 {
        let n1 = u64::from(f) + 100;
        let entry = FlowEntry {
            flow: n1,
            mac: PEER_MAC,
            addr: None,
            encrypted: false,
            dt_of: Some(IPCP),
        };
        t.insert_flow(PORT, 65 + f, entry);
        let d = EthDest {
            kind,
            src: PEER_MAC,
            dst: OUR_MAC,
            // The eid the PDUs for this next hop arrive on (below): the same header again.
            remote: 65 + (f + 1) % 16,
            local: 65 + f,
        };
        t.set_egress(n1, Egress::Eth { port: PORT, d });
    }
    let table: Vec<(u32, u64)> = (0..routes)
        .map(|r| (0x1000 + r, u64::from(r % 16) + 100))
        .collect();
    u.set_routes(&table);
    for e in 0..1024u64 {
        u.local.insert(64 + e, 5000 + e);
    }
    t.set_uni(IPCP, u);
    let payload = vec![0x5au8; size];
    let mut rx: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let route = 0x1000 + (i * 37) % routes;
            // The N-1 flow the PDU comes on is never its next hop (no loop).
            let eid = 65 + (route - 0x1000 + 1) % 16;
            let (dst, pdu_eid) = match action {
                PathAction::Forward => (route, 0x42),
                PathAction::Deliver => (OWN, 64 + u64::from(i) * 13 % 1024),
                PathAction::Punt => (OWN, 0),
                PathAction::Drop => (0x9999_0000 + i, 0x42),
            };
            let mut pdu = Vec::with_capacity(size + dt::PCI_LEN);
            dt::write_pci(&mut pdu, dst, TTL, pdu_eid);
            pdu.extend_from_slice(&payload);
            let mut f = Vec::new();
            let _ = frames::build_dix(&mut f, OUR_MAC, PEER_MAC, 0xA000, eid as u16, &pdu);
            f
        })
        .collect();
    let mut outcome = [0u64; 4];
    let start = Instant::now();
    for i in 0..count {
        let Some(frame) = rx.get_mut((i % 64) as usize) else {
            continue;
        };
        // As a worker: the forwarding hop's common case in one pass, else the full decision.
        let action = match step_eth(port, black_box(frame), &t) {
            Step::Forward(f) => {
                if f.apply(frame).is_some() {
                    outcome[0] += 1;
                }
                black_box(&frame);
                // The next round sees the frame as it arrived.
                if let Some(ttl) = frame.get_mut(f.pdu().start + 5) {
                    *ttl = TTL;
                }
                continue;
            }
            Step::Decided(a) => a,
        };
        match action {
            Action::Dt {
                ipcp,
                dt: DtAction::Forward { n1, hop },
                pdu,
                ..
            } => {
                if let Some((Egress::Eth { .. }, Some(h))) = t.hop_out(ipcp, n1, hop) {
                    if rewrite_dix_with(frame, &pdu, h).is_some() {
                        outcome[0] += 1;
                    }
                }
                black_box(&frame);
                // The next round sees the frame as it arrived.
                if let Some(ttl) = frame.get_mut(pdu.start + 5) {
                    *ttl = TTL;
                }
            }
            Action::Dt {
                dt: DtAction::Deliver { .. },
                ..
            } => outcome[1] += 1,
            Action::Dt {
                dt: DtAction::Control { .. },
                ..
            } => outcome[2] += 1,
            Action::Dt {
                dt: DtAction::Drop(_),
                ..
            } => outcome[3] += 1,
            _ => {}
        }
    }
    let ns = start.elapsed().as_nanos() as f64;
    let [forwarded, delivered, punted, dropped] = outcome;
    println!(
        "{}",
        serde_json::json!({"action": format!("{action:?}").to_lowercase(), "packets": count,
            "size": size, "routes": routes, "forwarded": forwarded, "delivered": delivered,
            "punted": punted, "dropped": dropped,
            "ns_per_packet": if count == 0 { 0.0 } else { ns / count as f64 }})
    );
    // Every packet took the action asked for, or the benchmark measured something else.
    let want = match action {
        PathAction::Forward => forwarded,
        PathAction::Deliver => delivered,
        PathAction::Punt => punted,
        PathAction::Drop => dropped,
    };
    if want == count {
        ExitCode::SUCCESS
    } else {
        eprintln!("o7s-bench dt-path: {want} of {count} packets took the action {action:?}");
        ExitCode::FAILURE
    }
}

/// Seal and open `count` SDUs of `size` bytes with the data plane's [`Crypt`] (the IV from its
/// generator, the tag, the copy into the scratch buffer and the in-place open included).
///
/// [`Crypt`]: o7s_dataplane::crypt::Crypt
fn crypt(count: u64, size: usize, cipher: &str) -> ExitCode {
    use o7s_dataplane::crypt::{Crypt, DEFAULT_ROTATION_BITS};
    use std::hint::black_box;
    let nid = match cipher {
        "aes-128-gcm" => 895,
        "aes-256-gcm" => 901,
        "chacha20-poly1305" => 1018,
        other => {
            eprintln!(
                "o7s-bench: unknown cipher {other:?} (aes-128-gcm, aes-256-gcm, chacha20-poly1305)"
            );
            return ExitCode::from(2);
        }
    };
    let (Some(mut tx), Some(mut rx)) = (
        Crypt::new(nid, [7; 32], DEFAULT_ROTATION_BITS),
        Crypt::new(nid, [7; 32], DEFAULT_ROTATION_BITS),
    ) else {
        eprintln!("o7s-bench: cannot make the cipher state");
        return ExitCode::FAILURE;
    };
    let sdu = vec![0x5au8; size];
    // Batches of sealed SDUs, then the same opened: the clock is read twice a batch.
    const BATCH: usize = 256;
    let mut wires: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(size + 64)).collect();
    let (mut seal_ns, mut open_ns, mut failed, mut done) = (0u128, 0u128, 0u64, 0u64);
    let mut plain = Vec::with_capacity(size + 64);
    while done < count {
        let n = usize::try_from(count - done).map_or(BATCH, |n| n.min(BATCH));
        let t = Instant::now();
        for w in wires.iter_mut().take(n) {
            w.clear();
            if tx.seal(black_box(&sdu), w).is_err() {
                failed += 1;
            }
        }
        let t2 = Instant::now();
        for w in wires.iter_mut().take(n) {
            match rx.open_in_place(w) {
                Ok(Some(_)) => {}
                // A packet of the next key phase: the worker's path for it.
                Ok(None) => {
                    if rx.open(w, &mut plain).is_err() {
                        failed += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        open_ns += t2.elapsed().as_nanos();
        seal_ns += t2.duration_since(t).as_nanos();
        black_box(&wires);
        done += n as u64;
    }
    let per = |ns: u128| {
        if count == 0 {
            0.0
        } else {
            ns as f64 / count as f64
        }
    };
    let (s, o) = (per(seal_ns), per(open_ns));
    println!(
        "{}",
        serde_json::json!({"packets": count, "size": size, "cipher": cipher, "failed": failed,
            "seal_ns_per_packet": s, "open_ns_per_packet": o,
            "seal_gbit_s": if s > 0.0 { size as f64 * 8.0 / s } else { 0.0 },
            "open_gbit_s": if o > 0.0 { size as f64 * 8.0 / o } else { 0.0 }})
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the JSON `f` gives, or its error.
fn json_or_fail(what: &str, f: impl FnOnce() -> anyhow::Result<serde_json::Value>) -> ExitCode {
    match f() {
        Ok(j) => {
            println!("{j}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o7s-bench {what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fail(what: &str, e: std::io::Error) -> ExitCode {
    eprintln!("o7s-bench: {what}: {e}");
    ExitCode::FAILURE
}

fn udp_echo(addr: &str) -> ExitCode {
    let s = match std::net::UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => return fail(addr, e),
    };
    let mut buf = [0u8; 65536];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = s.send_to(buf.get(..n).unwrap_or(&[]), from);
            }
            Err(e) => return fail("recv", e),
        }
    }
}

fn udp_ping(addr: &str, count: u32, size: usize, interval_us: u64) -> ExitCode {
    let s = match std::net::UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => return fail("bind", e),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if let Err(e) = s.connect(addr) {
        return fail(addr, e);
    }
    let Ok(mut h) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3) else {
        return ExitCode::FAILURE;
    };
    let mut buf = vec![0u8; size.max(8)];
    let mut lost = 0;
    let start = Instant::now();
    for i in 0..count {
        if let Some(b) = buf.get_mut(..4) {
            b.copy_from_slice(&i.to_be_bytes());
        }
        let t = Instant::now();
        if s.send(&buf).is_err() {
            lost += 1;
            continue;
        }
        let mut r = [0u8; 65536];
        loop {
            match s.recv(&mut r) {
                Ok(_) if r.get(..4) == buf.get(..4) => {
                    let _ = h.record((t.elapsed().as_nanos() as u64).max(1));
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        let next = start + Duration::from_micros(interval_us * u64::from(i + 1));
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "{}",
        serde_json::json!({"n": h.len(), "lost": lost, "rtt_ms": {"p50": ms(h.value_at_quantile(0.5)),
            "p99": ms(h.value_at_quantile(0.99)), "min": ms(h.min()), "max": ms(h.max()), "mean": h.mean() / 1e6}})
    );
    ExitCode::SUCCESS
}

fn udp_sink(addr: &str, idle: f64) -> ExitCode {
    let s = match std::net::UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => return fail(addr, e),
    };
    let mut buf = [0u8; 65536];
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        // Wait for the first datagram without a limit, then stop after `idle` of silence.
        let _ = s.set_read_timeout(first.map(|_| Duration::from_secs_f64(idle.max(0.01))));
        match s.recv(&mut buf) {
            Ok(k) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                n += 1;
                bytes += k as u64;
            }
            Err(_) => break,
        }
    }
    let d = first
        .map(|f| last.duration_since(f))
        .unwrap_or_default()
        .as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"received": n, "bytes": bytes, "seconds": d,
            "mbps": if d > 0.0 { bytes as f64 * 8.0 / d / 1e6 } else { 0.0 },
            "pps": if d > 0.0 { n as f64 / d } else { 0.0 }})
    );
    ExitCode::SUCCESS
}

fn udp_blast(addr: &str, size: usize, seconds: f64) -> ExitCode {
    let s = match std::net::UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => return fail("bind", e),
    };
    if let Err(e) = s.connect(addr) {
        return fail(addr, e);
    }
    let buf = vec![0u8; size];
    let dur = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..64 {
            if s.send(&buf).is_ok() {
                n += 1;
            }
        }
    }
    let d = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": n, "bytes": n * size as u64, "seconds": d, "mbps": (n * size as u64) as f64 * 8.0 / d / 1e6})
    );
    ExitCode::SUCCESS
}
