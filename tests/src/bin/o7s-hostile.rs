//! `o7s-hostile MODE ...`: a misbehaving local app, for the security tests. Talks to the
//! o7sd of `$O7S_RUNDIR` only and prints what happened as one JSON line.
//!
//! - `truncate NAME`: allocates a flow to NAME, then tries to shrink and grow its flow
//!   memory (a shrink used to kill the data plane with SIGBUS) and scribbles over the ring
//!   indices the data plane reads; holds the flow for a second.
//! - `kicks NAME`: allocates a flow to NAME and attacks the kicks it was handed: fills
//!   both and makes them blocking (a data plane sharing those descriptions would block on
//!   its next kick, when it removes the flow as we go); holds the flow for a second.
//! - `indices NAME`: allocates a flow to NAME and writes its tx ring's head far past its
//!   tail (more SDUs than slots, which no honest app can write), once; holds the flow for a
//!   second.
//! - `allocs COUNT LEN THREADS`: COUNT allocations to distinct names of LEN bytes (1 ms
//!   time-out each) from THREADS threads; counts the replies by error code.
//! - `accept COUNT SECONDS`: accepts COUNT flows and holds them for SECONDS.
//! - `hold COUNT NAME SECONDS`: allocates COUNT flows to NAME and holds them for SECONDS;
//!   prints how many it got and the first error.
//! - `pending COUNT NAME MS`: sends COUNT allocation requests to NAME (time-out MS) on as
//!   many connections at once, from one thread; prints `{"sent":COUNT}` once all are sent,
//!   then the replies by error code and how long the last took.
//! - `silent COUNT SECONDS`: opens COUNT connections and sends nothing; prints
//!   `{"open":COUNT}`, then how many o7sd closed within SECONDS and when the last was.
//! - `half-long COUNT SECONDS`: on COUNT connections, sends the first packet of a long
//!   o7sctl request (a 100 KiB configuration) and never the rest; prints `{"sent":COUNT}`
//!   and holds them for SECONDS.
//! - `frct-liar SECONDS`: accepts one flow (the raw protocol: it maps the flow memory
//!   itself, no FRCP of the library) and, for every PDU its peer sends, answers with lies:
//!   an ACK far beyond anything sent, a window edge anywhere in the 24-bit space, three
//!   PDUs shorter than the FRCT header, and two data packets at random sequence numbers
//!   (DRF on one); prints what it received and sent.

#![allow(unsafe_code)]

use o7s::ipc::Channel;
use o7s::proto::{socket_path, Reply, Request};
use o7s_wire::qos::QosSpec;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("truncate") => truncate(args.get(1).map_or("oping-server", String::as_str)),
        Some("kicks") => kicks(args.get(1).map_or("oping-server", String::as_str)),
        Some("indices") => indices(args.get(1).map_or("oping-server", String::as_str)),
        Some("allocs") => {
            let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            allocs(n(1, 1000), n(2, 50_000), n(3, 4))
        }
        Some("accept") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            many(None, n(1, 100), n(2, 10))
        }
        Some("hold") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            many(args.get(2).map(String::as_str), n(1, 100), n(3, 10))
        }
        Some("accept-timeout") => {
            let ms = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
            let start = std::time::Instant::now();
            let r = o7s::Flow::accept(Some(std::time::Duration::from_millis(ms)));
            Ok(format!(
                "{{\"ok\":{},\"error\":{:?},\"seconds\":{:.3}}}",
                r.is_ok(),
                r.err().map(|e| e.to_string()).unwrap_or_default(),
                start.elapsed().as_secs_f64()
            ))
        }
        Some("pending") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            pending(n(1, 100), args.get(2).map_or("nobody", String::as_str), n(3, 2000))
        }
        Some("silent") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            silent(n(1, 100), n(2, 10))
        }
        Some("frct-liar") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            frct_liar(n(1, 10))
        }
        Some("half-long") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            half_long(n(1, 100), n(2, 10))
        }
        _ => Err(
            "usage: o7s-hostile truncate NAME | kicks NAME | indices NAME | allocs COUNT LEN THREADS | accept COUNT SECONDS | hold COUNT NAME SECONDS | accept-timeout MS | pending COUNT NAME MS | silent COUNT SECONDS | half-long COUNT SECONDS | frct-liar SECONDS"
                .into(),
        ),
    };
    match r {
        Ok(json) => {
            if !json.is_empty() {
                println!("{json}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o7s-hostile: {e}");
            ExitCode::FAILURE
        }
    }
}

fn alloc(
    name: &str,
    timeout_ms: u64,
) -> Result<(Channel, Reply, Vec<std::os::fd::OwnedFd>), String> {
    let ch = Channel::connect(&socket_path(None)).map_err(|e| format!("connect: {e}"))?;
    ch.send(
        &Request::Alloc {
            name: name.to_string(),
            qos: QosSpec::RAW,
            timeout_ms,
        },
        &[],
    )
    .map_err(|e| format!("send: {e}"))?;
    let (r, fds) = ch.recv::<Reply>().map_err(|e| format!("recv: {e}"))?;
    Ok((ch, r, fds))
}

fn truncate(name: &str) -> Result<String, String> {
    let (_ch, r, fds) = alloc(name, 3000)?;
    if !matches!(r, Reply::Flow(_)) {
        return Err(format!("no flow: {r:?}"));
    }
    let mem = fds.first().ok_or("no flow memory")?;
    let file = std::fs::File::from(mem.try_clone().map_err(|e| e.to_string())?);
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let shrink = file.set_len(0).map_err(|e| e.to_string());
    let grow = file.set_len(len * 2).map_err(|e| e.to_string());
    // Scribble over the header and both rings' indices, as a process sharing the memory may.
    // Safety: our own mapping of memory we were handed; the data plane must survive
    // whatever we write into it.
    let scribbled = match unsafe { memmap2::MmapMut::map_mut(&file) } {
        Ok(mut m) => {
            for b in m.iter_mut().take(64 + 256) {
                *b = 0xff;
            }
            m.len()
        }
        Err(_) => 0,
    };
    std::thread::sleep(std::time::Duration::from_secs(1));
    let len_after = file.metadata().map_err(|e| e.to_string())?.len();
    let s = |r: Result<(), String>| match r {
        Ok(()) => "done".to_string(),
        Err(e) => e,
    };
    Ok(format!(
        "{{\"shrink\":{:?},\"grow\":{:?},\"len_before\":{len},\"len_after\":{len_after},\"scribbled\":{scribbled}}}",
        s(shrink),
        s(grow)
    ))
}

fn indices(name: &str) -> Result<String, String> {
    let (_ch, r, fds) = alloc(name, 3000)?;
    if !matches!(r, Reply::Flow(_)) {
        return Err(format!("no flow: {r:?}"));
    }
    let mem = fds.first().ok_or("no flow memory")?;
    let file = std::fs::File::from(mem.try_clone().map_err(|e| e.to_string())?);
    // Safety: our own mapping of memory we were handed; the data plane must survive
    // whatever we write into it.
    let mut m = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(|e| e.to_string())?;
    // The tx ring's head (byte 128, after the header) and tail (64 bytes further).
    let word = |m: &memmap2::MmapMut, at: usize| {
        m.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    };
    let tail = word(&m, 128 + 64);
    // Half the index space ahead: more than any ring's slots.
    let head = tail.wrapping_add(0x8000_0000);
    if let Some(b) = m.get_mut(128..132) {
        b.copy_from_slice(&head.to_ne_bytes());
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    Ok(format!("{{\"tail\":{tail},\"head\":{head}}}"))
}

fn kicks(name: &str) -> Result<String, String> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let (_ch, r, fds) = alloc(name, 3000)?;
    if !matches!(r, Reply::Flow(_)) {
        return Err(format!("no flow: {r:?}"));
    }
    let (Some(tx), Some(rx)) = (fds.get(1), fds.get(2)) else {
        return Err("no kicks".into());
    };
    // Fill both as they come (an eventfd takes one 8-byte value to its maximum, a pipe
    // bytes until it is full), then make them blocking: a holder that shares our
    // description would block on its next kick.
    let mut filled = 0u64;
    for k in [tx, rx] {
        fcntl(k, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| format!("fcntl: {e}"))?;
        if nix::unistd::write(k, &0xffff_ffff_ffff_fffe_u64.to_ne_bytes()).is_ok() {
            filled += 8;
        }
        while let Ok(n) = nix::unistd::write(k, &[1u8; 512]) {
            filled += n as u64;
        }
        fcntl(k, FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| format!("fcntl: {e}"))?;
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    Ok(format!("{{\"filled\":{filled}}}"))
}

fn allocs(count: usize, len: usize, threads: usize) -> Result<String, String> {
    let threads = threads.max(1);
    let per = count.div_ceil(threads);
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut by: BTreeMap<String, u64> = BTreeMap::new();
                let mut sample = String::new();
                for i in 0..per {
                    let tag = format!("{t}-{i}-");
                    let name = format!("{tag}{}", "x".repeat(len.saturating_sub(tag.len())));
                    let key = match alloc(&name, 1) {
                        Ok((_, Reply::Error { code, message }, _)) => {
                            if sample.is_empty() {
                                sample = message.chars().take(200).collect();
                            }
                            format!("{code:?}")
                        }
                        Ok((_, other, _)) => format!("{other:?}").chars().take(20).collect(),
                        Err(e) => e,
                    };
                    *by.entry(key).or_default() += 1;
                }
                (by, sample)
            })
        })
        .collect();
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    let mut sample = String::new();
    for h in hs {
        let (by, s) = h.join().map_err(|_| "a thread panicked")?;
        for (k, v) in by {
            *all.entry(k).or_default() += v;
        }
        if sample.is_empty() {
            sample = s;
        }
    }
    let by: Vec<String> = all.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
    Ok(format!(
        "{{\"by\":{{{}}},\"sample\":{:?}}}",
        by.join(","),
        sample
    ))
}

/// Accepts (`name` None) or allocates COUNT flows and holds them for `secs`.
fn many(name: Option<&str>, count: u64, secs: u64) -> Result<String, String> {
    let _ = o7s::raise_fd_limit();
    let mut flows = Vec::new();
    let mut first_error = String::new();
    let start = std::time::Instant::now();
    for _ in 0..count {
        let r = match name {
            Some(n) => o7s::Flow::alloc(n, QosSpec::RAW, std::time::Duration::from_secs(5)),
            None => o7s::Flow::accept(Some(std::time::Duration::from_secs(30))),
        };
        match r {
            Ok(f) => flows.push(f),
            Err(e) => {
                first_error = e.to_string();
                break;
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    // Say so at once (the test lists flows meanwhile), then hold them.
    {
        use std::io::Write;
        // The reader may be gone by then: not a reason to panic.
        let _ = writeln!(
            std::io::stdout(),
            "{{\"flows\":{},\"seconds\":{took:.3},\"error\":{first_error:?}}}",
            flows.len()
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(secs));
    drop(flows);
    Ok(String::new())
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn connect_many(count: u64) -> Result<Vec<Channel>, String> {
    let _ = o7s::raise_fd_limit();
    (0..count)
        .map(|_| Channel::connect(&socket_path(None)).map_err(|e| format!("connect: {e}")))
        .collect()
}

/// COUNT allocation requests in flight at once on COUNT connections (one thread).
fn pending(count: u64, name: &str, timeout_ms: u64) -> Result<String, String> {
    let chans = connect_many(count)?;
    let start = std::time::Instant::now();
    for ch in &chans {
        ch.send(
            &Request::Alloc {
                name: name.to_string(),
                qos: QosSpec::RAW,
                timeout_ms,
            },
            &[],
        )
        .map_err(|e| format!("send: {e}"))?;
    }
    say(&format!("{{\"sent\":{count}}}"));
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for ch in &chans {
        let key = match ch.recv::<Reply>() {
            Ok((Reply::Error { code, .. }, _)) => format!("{code:?}"),
            Ok((Reply::Flow(_), _)) => "Flow".into(),
            Ok((other, _)) => format!("{other:?}").chars().take(20).collect(),
            Err(e) => e.to_string(),
        };
        *by.entry(key).or_default() += 1;
    }
    let by: Vec<String> = by.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
    Ok(format!(
        "{{\"by\":{{{}}},\"seconds\":{:.3}}}",
        by.join(","),
        start.elapsed().as_secs_f64()
    ))
}

/// COUNT connections that never send their request; how many o7sd closes, and when.
fn silent(count: u64, secs: u64) -> Result<String, String> {
    let chans = connect_many(count)?;
    let start = std::time::Instant::now();
    say(&format!("{{\"open\":{count}}}"));
    let mut closed = 0u64;
    let mut last = 0.0f64;
    for ch in &chans {
        let left = std::time::Duration::from_secs(secs).saturating_sub(start.elapsed());
        if let Ok(true) = o7s::ipc::wait_readable(ch.as_fd(), Some(left)) {
            if let Err(e) = ch.recv::<Reply>() {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    closed += 1;
                    last = start.elapsed().as_secs_f64();
                }
            }
        }
    }
    Ok(format!(
        "{{\"closed\":{closed},\"last_seconds\":{last:.3}}}"
    ))
}

/// COUNT connections that send the first packet of a long request and stall.
fn half_long(count: u64, secs: u64) -> Result<String, String> {
    let chans = connect_many(count)?;
    let req = Request::Ctl(o7s::proto::Ctl::ConfigLoad {
        path: "hostile.toml".into(),
        content: Some(format!("# {}\n", "x".repeat(100 * 1024))),
    });
    let packets = o7s::ipc::encode(&req).map_err(|e| e.to_string())?;
    let first = packets.first().ok_or("no packet")?;
    if packets.len() < 2 {
        return Err("the request fits one packet".into());
    }
    for ch in &chans {
        ch.try_send_packet(first, &[])
            .map_err(|e| format!("send: {e}"))?;
    }
    say(&format!("{{\"sent\":{count}}}"));
    std::thread::sleep(std::time::Duration::from_secs(secs));
    Ok(String::new())
}

/// See the module's `frct-liar`.
fn frct_liar(secs: u64) -> Result<String, String> {
    use o7s::ring::{Dir, FlowMem, Kick};
    use o7s_wire::frct::flags;
    let ch = Channel::connect(&socket_path(None)).map_err(|e| format!("connect: {e}"))?;
    ch.send(&Request::Accept { timeout_ms: None }, &[])
        .map_err(|e| format!("send: {e}"))?;
    let (r, fds) = ch.recv::<Reply>().map_err(|e| format!("recv: {e}"))?;
    let Reply::Flow(info) = r else {
        return Err(format!("no flow: {r:?}"));
    };
    let mut it = fds.into_iter();
    let (Some(mem), Some(tx)) = (it.next(), it.next()) else {
        return Err("a flow without its descriptors".into());
    };
    let mem = FlowMem::open(&mem).map_err(|e| format!("map: {e}"))?;
    let tx = Kick::from_fd(tx).map_err(|e| format!("kick: {e}"))?;
    say(&format!("{{\"accepted\":{}}}", info.id));
    // splitmix64, seeded from the clock: lies need no good randomness.
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut draw = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let pdu = |f: u8, rwe: u32, seq: u32, ack: u32, body: &[u8]| {
        let mut p = vec![f];
        p.extend_from_slice(&rwe.to_be_bytes()[1..]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(body);
        p
    };
    let (mut received, mut sent, mut full) = (0u64, 0u64, 0u64);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < until {
        match mem.ring(Dir::Rx).pop(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => {
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            Err(e) => return Err(format!("rx ring: {e}")),
        }
        received += 1;
        let seq = buf
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes);
        let lies = [
            pdu(flags::ACK, 0, 0, seq.wrapping_add(100_000), &[]),
            pdu(flags::FC, draw() as u32, 0, 0, &[]),
            vec![flags::DATA; 1],
            vec![flags::ACK, 0, 0, 0, 0],
            vec![0xff; 11],
            pdu(flags::DATA | flags::DRF, 0, draw() as u32, 0, b"lie"),
            pdu(
                flags::DATA | flags::ACK | flags::FC,
                draw() as u32,
                draw() as u32,
                draw() as u32,
                b"lie",
            ),
        ];
        for l in &lies {
            match mem.ring(Dir::Tx).push(l) {
                Ok(_) => sent += 1,
                Err(_) => full += 1,
            }
        }
        tx.kick();
    }
    Ok(format!(
        "{{\"received\":{received},\"sent\":{sent},\"ring_full\":{full}}}"
    ))
}
