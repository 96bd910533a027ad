//! `o7s-inject DEV HEXFRAME...`: sends raw Ethernet frames on a device (AF_PACKET).
//! `o7s-inject --udp SRC DST HEX...`: sends UDP datagrams from SRC (ip:port) to DST.
//! `o7s-inject --capture DEV SECONDS OUT.pcap`: writes what DEV sees for SECONDS to a pcap.
//! `o7s-inject --flood DEV COUNT KIND [name=N] [eid=E] [dst=MAC] [src=MAC|random-src]`: sends COUNT
//! eth-dix frames of KIND (`nq-req`, `nq-reply`, `flow-req`, `data`, `random`) as fast as
//! the socket takes them; prints what it sent as JSON.
//! `o7s-inject --udp-flood SRC DST COUNT name=N`: COUNT udp FLOW_REQ datagrams for N.
//! `o7s-inject --udp-ref-server BIND SECONDS`: answers one udp FLOW_REQ the way the
//! reference does (facts 1.8.3: requester's eid first in the FLOW_REPLY) with its own eid
//! = the requester's + 7, and reports the eid of the first data datagram, as JSON.
//! `o7s-inject --udp-ref-client SRC DST NAME EID`: sends a reference FLOW_REQ with eid EID
//! and reports the FLOW_REPLY's two eid fields, as JSON.
//! The messages are laid out here byte by byte from the facts, not with o7s's codecs, so
//! that a field order o7s gets wrong on both ends cannot pass.
//! A test helper for bad-input tests; sends only where it is told (a test namespace).

use o7s_dataplane::afpacket::{dev_info, PacketSocket};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--capture") {
        return capture(args.get(1..).unwrap_or(&[]));
    }
    if args.first().map(String::as_str) == Some("--flood") {
        return flood(args.get(1..).unwrap_or(&[]));
    }
    if args.first().map(String::as_str) == Some("--udp-flood") {
        return udp_flood(args.get(1..).unwrap_or(&[]));
    }
    if args.first().map(String::as_str) == Some("--udp-ref-server") {
        return udp_ref_server(args.get(1..).unwrap_or(&[]));
    }
    if args.first().map(String::as_str) == Some("--udp-ref-client") {
        return udp_ref_client(args.get(1..).unwrap_or(&[]));
    }
    if args.first().map(String::as_str) == Some("--udp") {
        return udp(args.get(1..).unwrap_or(&[]));
    }
    let Some((dev, frames)) = args.split_first() else {
        eprintln!("usage: o7s-inject DEV HEXFRAME...");
        return ExitCode::from(2);
    };
    let (_, sock) = match open_dev(dev) {
        Ok(x) => x,
        Err(code) => return code,
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

/// The device's address and an AF_PACKET socket on it (all protocols), or the exit status
/// after saying why not.
fn open_dev(dev: &str) -> Result<(o7s_dataplane::afpacket::DevInfo, PacketSocket), ExitCode> {
    let fail = |e: std::io::Error| {
        eprintln!("o7s-inject: {dev}: {e}");
        ExitCode::FAILURE
    };
    let info = dev_info(dev).map_err(fail)?;
    let sock = PacketSocket::open(info.ifindex, 0x0003).map_err(fail)?;
    Ok((info, sock))
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
    let (_, sock) = match open_dev(dev) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // The test waits for this line before it makes traffic.
    eprintln!("ready");
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

/// `key=value` options and flags after the positional arguments.
fn opts(args: &[String]) -> std::collections::HashMap<String, String> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), String::new()),
        })
        .collect()
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// A valid unsigned OAP request header (a fresh id each time, so no replay check stops it).
fn oap_request(rng: &mut u64) -> Vec<u8> {
    let mut id = [0u8; 16];
    for b in &mut id {
        *b = next(rng) as u8;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    o7s_wire::oap::OapHdr::unsigned(id, now, vec![])
        .to_bytes()
        .unwrap_or_default()
}

/// xorshift64: cheap, seeded by the pid, good enough for junk.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn mgmt(code: o7s_wire::code::EthCode, s: u32, tail: Vec<u8>) -> o7s_control::eth::Mgmt {
    o7s_control::eth::Mgmt {
        code,
        s,
        d: 0,
        // Flows a flood manages to set up time out after a second.
        qos: o7s_wire::qos::QosSpec {
            timeout: 1000,
            ..o7s_wire::qos::QosSpec::RAW
        },
        response: 0,
        tail,
    }
}

fn flood(args: &[String]) -> ExitCode {
    use o7s_control::eth::build_mgmt;
    use o7s_dataplane::msg::PortKind;
    use o7s_wire::code::EthCode;
    let (Some(dev), Some(count), Some(kind)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!(
            "usage: o7s-inject --flood DEV COUNT KIND [name=N] [eid=E] [dst=MAC] [random-src]"
        );
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("o7s-inject: '{count}' is not a count");
        return ExitCode::from(2);
    };
    let o = opts(args.get(3..).unwrap_or(&[]));
    let name = o
        .get("name")
        .cloned()
        .unwrap_or_else(|| "oping-server".into());
    let eid: u16 = o.get("eid").and_then(|e| e.parse().ok()).unwrap_or(0x40);
    let dst = o.get("dst").and_then(|d| parse_mac(d)).unwrap_or([0xff; 6]);
    let random_src = o.contains_key("random-src");
    let fixed_src = o.get("src").and_then(|m| parse_mac(m));
    let (info, sock) = match open_dev(dev) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let kind_dix = PortKind::Dix { ethertype: 0xA000 };
    let hash = o7s_wire::hash::HashAlgo::Sha3_256.hash(&name);
    let mut rng = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut frame = Vec::with_capacity(2048);
    let start = std::time::Instant::now();
    for i in 0..count {
        let payload = match kind.as_str() {
            "nq-req" => build_mgmt(kind_dix, &mgmt(EthCode::NameQueryReq, 0, hash.clone())),
            "nq-reply" => {
                // A different, made-up name each time: cache poisoning and growth.
                let mut h = vec![0u8; 32];
                for b in &mut h {
                    *b = next(&mut rng) as u8;
                }
                build_mgmt(kind_dix, &mgmt(EthCode::NameQueryReply, 0, h))
            }
            "flow-req" => {
                let mut tail = hash.clone();
                tail.extend_from_slice(&oap_request(&mut rng));
                build_mgmt(
                    kind_dix,
                    &mgmt(EthCode::FlowReq, 0x40 + (i % 4000) as u32, tail),
                )
            }
            "data" | "random" => {
                let n = 1 + (next(&mut rng) % 200) as usize;
                (0..n).map(|_| next(&mut rng) as u8).collect()
            }
            other => {
                eprintln!("o7s-inject: unknown kind {other}");
                return ExitCode::from(2);
            }
        };
        let mut src = fixed_src.unwrap_or(info.mac);
        if random_src {
            let r = next(&mut rng).to_be_bytes();
            src = [0x02, r[0], r[1], r[2], r[3], r[4]];
        }
        let e = if kind == "data" { eid } else { 0 };
        if o7s_dataplane::frames::build_dix(&mut frame, dst, src, 0xA000, e, &payload).is_err() {
            failed += 1;
            continue;
        }
        // The socket's queue may fill: wait a little rather than count a loss.
        let mut tries = 0;
        loop {
            match sock.send(&frame) {
                Ok(()) => {
                    sent += 1;
                    break;
                }
                Err(_) if tries < 1000 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                Err(_) => {
                    failed += 1;
                    break;
                }
            }
        }
    }
    println!(
        "{{\"kind\":\"{kind}\",\"sent\":{sent},\"failed\":{failed},\"seconds\":{:.3}}}",
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn udp_flood(args: &[String]) -> ExitCode {
    use o7s_control::eth::build_mgmt;
    use o7s_dataplane::msg::PortKind;
    use o7s_wire::code::EthCode;
    let (Some(src), Some(dst), Some(count)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: o7s-inject --udp-flood SRC DST COUNT [name=N]");
        return ExitCode::from(2);
    };
    let (Ok(count), Ok(dst_addr)) = (count.parse::<u64>(), dst.parse::<std::net::SocketAddr>())
    else {
        eprintln!("o7s-inject: bad count or destination");
        return ExitCode::from(2);
    };
    let o = opts(args.get(3..).unwrap_or(&[]));
    let name = o
        .get("name")
        .cloned()
        .unwrap_or_else(|| "unknown-name".into());
    let sock = match std::net::UdpSocket::bind(src.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o7s-inject: bind {src}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kind = PortKind::Udp { addr: dst_addr };
    let hash = o7s_wire::hash::HashAlgo::Md5.hash(&name);
    let mut rng = 0x1234_5678_9abc_def0 ^ u64::from(std::process::id());
    let (mut sent, mut failed) = (0u64, 0u64);
    let start = std::time::Instant::now();
    for i in 0..count {
        let mut tail = hash.clone();
        tail.extend_from_slice(&oap_request(&mut rng));
        let d = build_mgmt(
            kind,
            &mgmt(EthCode::FlowReq, 0x40 + (i % 4000) as u32, tail),
        );
        match sock.send_to(&d, dst_addr) {
            Ok(_) => sent += 1,
            Err(_) => failed += 1,
        }
    }
    println!(
        "{{\"kind\":\"udp-flow-req\",\"sent\":{sent},\"failed\":{failed},\"seconds\":{:.3}}}",
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// A udp management message laid out as the facts give it (47 bytes): eid 0, the
/// requester's eid, the responder's eid, response, QoS raw (zeros but timeout 120 s), code.
fn ref_udp_mgmt(requester: u32, responder: u32, code: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(47);
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&requester.to_be_bytes());
    m.extend_from_slice(&responder.to_be_bytes());
    m.extend_from_slice(&0i32.to_be_bytes()); // response
    m.extend_from_slice(&0u64.to_be_bytes()); // bandwidth
    m.extend_from_slice(&[0; 16]); // delay, loss, ber, max_gap
    m.extend_from_slice(&120_000u32.to_be_bytes()); // timeout
    m.push(code);
    m.extend_from_slice(&[0, 0]); // availability, in_order
    m
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

fn udp_ref_server(args: &[String]) -> ExitCode {
    let (Some(bind), Some(secs)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: o7s-inject --udp-ref-server BIND SECONDS");
        return ExitCode::from(2);
    };
    let sock = match std::net::UdpSocket::bind(bind.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o7s-inject: bind {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_millis(100)));
    // The test waits for this line before it allocates.
    eprintln!("ready");
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let (mut requester, mut responder, mut data_eid) = (None, None, None);
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < end && data_eid.is_none() {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let d = buf.get(..n).unwrap_or(&[]);
        let eid = be32(d, 0);
        if eid != 0 {
            data_eid = Some(eid);
            continue;
        }
        // FLOW_REQ: code 1 at offset 44; then the 16-byte hash and the OAP request.
        if d.get(44) != Some(&1) || requester.is_some() {
            continue;
        }
        let req_eid = be32(d, 4);
        let oap_req = d.get(47 + 16..).unwrap_or(&[]);
        let Ok(req) = o7s_wire::oap::OapHdr::parse_as(oap_req, o7s_wire::oap::Role::Request, 0)
        else {
            eprintln!("o7s-inject: bad OAP request");
            return ExitCode::FAILURE;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let Ok(hash) = o7s_control::daemon::req_hash(oap_req, req.md_nid) else {
            return ExitCode::FAILURE;
        };
        let resp = o7s_wire::oap::OapHdr::unsigned(req.id, now, hash)
            .to_bytes()
            .unwrap_or_default();
        let mine = req_eid.wrapping_add(7);
        let mut reply = ref_udp_mgmt(req_eid, mine, 2);
        reply.extend_from_slice(&resp);
        if let Err(e) = sock.send_to(&reply, from) {
            eprintln!("o7s-inject: reply: {e}");
            return ExitCode::FAILURE;
        }
        requester = Some(req_eid);
        responder = Some(mine);
    }
    let j = |v: Option<u32>| v.map_or("null".to_string(), |x| x.to_string());
    println!(
        "{{\"requester_eid\":{},\"responder_eid\":{},\"data_eid\":{}}}",
        j(requester),
        j(responder),
        j(data_eid)
    );
    ExitCode::SUCCESS
}

fn udp_ref_client(args: &[String]) -> ExitCode {
    let (Some(src), Some(dst), Some(name), Some(eid)) = (
        args.first(),
        args.get(1),
        args.get(2),
        args.get(3).and_then(|e| e.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: o7s-inject --udp-ref-client SRC DST NAME EID");
        return ExitCode::from(2);
    };
    let sock = match std::net::UdpSocket::bind(src.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("o7s-inject: bind {src}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rng = 0x5555_aaaa_1234_4321 ^ u64::from(std::process::id());
    let mut req = ref_udp_mgmt(eid, 0, 1);
    req.extend_from_slice(&o7s_wire::hash::HashAlgo::Md5.hash(name));
    req.extend_from_slice(&oap_request(&mut rng));
    if let Err(e) = sock.send_to(&req, dst.as_str()) {
        eprintln!("o7s-inject: send: {e}");
        return ExitCode::FAILURE;
    }
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => {
            let d = buf.get(..n).unwrap_or(&[]);
            println!(
                "{{\"code\":{},\"response\":{},\"first_eid\":{},\"second_eid\":{}}}",
                d.get(44).copied().unwrap_or(0),
                be32(d, 12) as i32,
                be32(d, 4),
                be32(d, 8)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o7s-inject: no FLOW_REPLY: {e}");
            ExitCode::FAILURE
        }
    }
}
