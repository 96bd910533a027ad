//! TCP goodput between two hosts, for the o7s-vpn benchmark (scripts/bench-vpn.sh) where
//! iperf3 is missing: `--listen ADDR:PORT` receives until the sender closes and prints one
//! JSON line (bytes, seconds, Mbit/s, FNV-1a digest of the bytes); `--connect ADDR:PORT
//! --seconds S` sends a seeded pattern for S seconds and prints the same for what it sent,
//! so the two digests show nothing was lost or changed.

use clap::Parser;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// TCP goodput: one sender, one receiver, JSON results.
#[derive(Debug, Parser)]
#[command(name = "o7s-tcp-goodput", version)]
struct Cli {
    /// Receive: listen on ADDR:PORT, take one connection, read it to the end.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "connect")]
    listen: Option<String>,
    /// Send to ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT", required_unless_present = "listen")]
    connect: Option<String>,
    /// How long the sender sends.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// FNV-1a over a stream (a digest to compare both ends, not a security property).
#[derive(Debug)]
struct Fnv(u64);

impl Fnv {
    fn update(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn report(bytes: u64, took: Duration, digest: &Fnv) {
    let s = took.as_secs_f64().max(1e-9);
    println!(
        "{}",
        serde_json::json!({
            "bytes": bytes,
            "seconds": s,
            "mbit_s": bytes as f64 * 8.0 / s / 1e6,
            "digest": format!("{:016x}", digest.0),
        })
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut digest = Fnv(0xcbf2_9ce4_8422_2325);
    let mut buf = vec![0u8; 128 * 1024];
    if let Some(addr) = &cli.listen {
        let l = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("o7s-tcp-goodput: listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("o7s-tcp-goodput: listening on {addr}");
        let Ok((mut c, _)) = l.accept() else {
            eprintln!("o7s-tcp-goodput: accept failed");
            return ExitCode::FAILURE;
        };
        let t0 = Instant::now();
        let mut n = 0u64;
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    if let Some(b) = buf.get(..k) {
                        digest.update(b);
                    }
                    n += k as u64;
                }
                Err(e) => {
                    eprintln!("o7s-tcp-goodput: read: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        report(n, t0.elapsed(), &digest);
        return ExitCode::SUCCESS;
    }
    let Some(addr) = &cli.connect else {
        return ExitCode::FAILURE;
    };
    if !(cli.seconds > 0.0 && cli.seconds <= 3600.0) {
        eprintln!("o7s-tcp-goodput: --seconds must be in (0, 3600]");
        return ExitCode::from(2);
    }
    let mut c = match TcpStream::connect_timeout(
        &match addr.parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("o7s-tcp-goodput: {addr}: {e}");
                return ExitCode::from(2);
            }
        },
        Duration::from_secs(5),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("o7s-tcp-goodput: connect to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A seeded, non-repeating pattern (xorshift), so a dropped or reordered chunk changes
    // the digest.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let t0 = Instant::now();
    let until = Duration::from_secs_f64(cli.seconds);
    let mut n = 0u64;
    while t0.elapsed() < until {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        if let Err(e) = c.write_all(&buf) {
            eprintln!("o7s-tcp-goodput: write: {e}");
            return ExitCode::FAILURE;
        }
        digest.update(&buf);
        n += buf.len() as u64;
    }
    let _ = c.shutdown(std::net::Shutdown::Write);
    // Wait for the receiver to close: everything sent was read.
    let _ = c.read(&mut [0u8; 1]);
    report(n, t0.elapsed(), &digest);
    ExitCode::SUCCESS
}
