//! `o7s-inject DEV HEXFRAME...`: sends raw Ethernet frames on a device (AF_PACKET).
//! `o7s-inject --udp SRC DST HEX...`: sends UDP datagrams from SRC (ip:port) to DST.
//! `o7s-inject --capture DEV SECONDS OUT.pcap`: writes what DEV sees for SECONDS to a pcap.
//! A test helper for bad-input tests; sends only where it is told (a test namespace).

use o7s_dataplane::afpacket::{dev_info, PacketSocket};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--capture") {
        return capture(args.get(1..).unwrap_or(&[]));
    }
    if args.first().map(String::as_str) == Some("--udp") {
        return udp(args.get(1..).unwrap_or(&[]));
    }
    let Some((dev, frames)) = args.split_first() else {
        eprintln!("usage: o7s-inject DEV HEXFRAME...");
        return ExitCode::from(2);
    };
    let info = match dev_info(dev) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("o7s-inject: {dev}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sock = match PacketSocket::open(info.ifindex, 0x0003) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o7s-inject: {dev}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for h in frames {
        let Ok(f) = hex::decode(h) else {
            eprintln!("o7s-inject: not hex: {h}");
            return ExitCode::from(2);
        };
        if let Err(e) = sock.send(&f) {
            eprintln!("o7s-inject: send: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn udp(args: &[String]) -> ExitCode {
    let (Some(src), Some(dst)) = (args.first(), args.get(1)) else {
        eprintln!("usage: o7s-inject --udp SRC DST HEX...");
        return ExitCode::from(2);
    };
    let sock = match std::net::UdpSocket::bind(src.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o7s-inject: bind {src}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for h in args.get(2..).unwrap_or(&[]) {
        let Ok(d) = hex::decode(h) else {
            eprintln!("o7s-inject: not hex: {h}");
            return ExitCode::from(2);
        };
        if let Err(e) = sock.send_to(&d, dst.as_str()) {
            eprintln!("o7s-inject: send to {dst}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn capture(args: &[String]) -> ExitCode {
    let (Some(dev), Some(secs), Some(out)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: o7s-inject --capture DEV SECONDS OUT.pcap");
        return ExitCode::from(2);
    };
    let Ok(secs) = secs.parse::<f64>() else {
        eprintln!("o7s-inject: '{secs}' is not a number of seconds");
        return ExitCode::from(2);
    };
    let sock = match dev_info(dev).and_then(|i| PacketSocket::open(i.ifindex, 0x0003)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o7s-inject: {dev}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(Some(n)) => frames.push(buf.get(..n).unwrap_or(&[]).to_vec()),
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(e) => {
                eprintln!("o7s-inject: recv: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    if let Err(e) = std::fs::write(out, o7s_wire::capfile::write_pcap(&refs)) {
        eprintln!("o7s-inject: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
