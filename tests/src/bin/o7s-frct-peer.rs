//! `o7s-frct-peer [SECONDS]`: a reference-style FRCP peer written from the facts alone
//! (`o7s-0.23-facts.md` §1.8.8), not from `o7s_proto::frcp`, for the interop tests. It
//! accepts one flow with the raw protocol (mapping the flow memory itself, no FRCP of the
//! library) and echoes every SDU that arrives in order as its own data stream:
//!
//! - header `flags | rwe (24 bit) | seqno | ackno`, 12 bytes, big-endian;
//! - receiving: a run starts at a `DRF` packet's seqno; in-order data is taken (anything
//!   else dropped: the sender's retransmission repairs it); each is acknowledged with an
//!   ACK-only packet as the capture's (`04 000000 00000000 <ackno>`, no window); an `RDVS`
//!   is answered at once with `FC` and the window edge (lwe + 64, the start window);
//! - sending: the first packet `DATA|DRF` with no window at a random seqno, later ones
//!   `DATA|ACK|FC` with the ackno and window edge; nothing is retransmitted (the path is
//!   clean) and the peer's window is honoured (64 at the start, then its FC).
//!
//! Checks what the o7s end sends against the facts and prints one JSON line: SDUs echoed,
//! PDUs seen by kind, and every violation found (`bad`: a first data packet without DRF,
//! a header shorter than 12 bytes, an ACK for something never sent).

#![allow(unsafe_code)]

use o7s::ipc::Channel;
use o7s::proto::{socket_path, Reply, Request};
use o7s::ring::{Dir, FlowMem, Kick, Ring};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const DATA: u8 = 0x01;
const DRF: u8 = 0x02;
const ACK: u8 = 0x04;
const FC: u8 = 0x08;
const RDVS: u8 = 0x10;
const WINDOW: u32 = 64;

fn header(flags: u8, rwe: u32, seqno: u32, ackno: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = flags;
    h[1..4].copy_from_slice(&rwe.to_be_bytes()[1..]);
    h[4..8].copy_from_slice(&seqno.to_be_bytes());
    h[8..12].copy_from_slice(&ackno.to_be_bytes());
    h
}

fn main() -> ExitCode {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    match run(Duration::from_secs(secs)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o7s-frct-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::indexing_slicing)]
fn run(secs: Duration) -> Result<String, String> {
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
    let (rx_ring, tx_ring): (Ring<'_>, Ring<'_>) = if info.swapped {
        (mem.ring(Dir::Tx), mem.ring(Dir::Rx))
    } else {
        (mem.ring(Dir::Rx), mem.ring(Dir::Tx))
    };
    let push = |p: &[u8]| -> Result<(), String> {
        for _ in 0..10_000 {
            match tx_ring.push(p) {
                Ok(_) => {
                    tx.kick();
                    return Ok(());
                }
                Err(o7s::ring::RingError::Full) => std::thread::sleep(Duration::from_micros(100)),
                Err(e) => return Err(format!("tx ring: {e}")),
            }
        }
        Err("tx ring full for a second".into())
    };
    // Receiving side.
    let mut lwe: Option<u32> = None;
    // Sending side: our stream of echoes.
    let mut next: u32 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    let first = next;
    let mut peer_rwe = next.wrapping_add(WINDOW);
    let mut acked = next;
    let mut pending: std::collections::VecDeque<Vec<u8>> = Default::default();
    let (mut echoed, mut data_in, mut acks_in, mut fc_in, mut rdvs_in, mut dropped) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut bad: Vec<String> = vec![];
    let until = Instant::now() + secs;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        let n = match rx_ring.pop(&mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            Err(e) => return Err(format!("rx ring: {e}")),
        };
        if n == 0 {
            continue; // a keepalive
        }
        if n < 12 {
            bad.push(format!("a PDU of {n} bytes"));
            continue;
        }
        let p = &buf[..n];
        let flags = p[0];
        let rwe = u32::from_be_bytes([0, p[1], p[2], p[3]]);
        let seqno = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let ackno = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if flags & ACK != 0 {
            acks_in += 1;
            // The next it expects: between what it had and what we sent.
            if ackno.wrapping_sub(acked) > next.wrapping_sub(acked) {
                bad.push(format!(
                    "ACK {ackno:#x} for nothing sent (sent up to {next:#x})"
                ));
            } else {
                acked = ackno;
            }
        }
        if flags & FC != 0 {
            fc_in += 1;
            // A 24-bit edge: the full number nearest our next.
            let base = next & 0xff00_0000;
            let cands = [
                base.wrapping_sub(1 << 24) | rwe,
                base | rwe,
                base.wrapping_add(1 << 24) | rwe,
            ];
            peer_rwe = cands
                .into_iter()
                .min_by_key(|c| {
                    let d = c.wrapping_sub(next);
                    d.min(d.wrapping_neg())
                })
                .unwrap_or(peer_rwe);
        }
        if flags & RDVS != 0 {
            rdvs_in += 1;
            let edge = lwe.map_or(0, |l| l.wrapping_add(WINDOW));
            push(&header(FC, edge & 0x00ff_ffff, 0, 0))?;
        }
        if flags & DATA != 0 {
            data_in += 1;
            match lwe {
                None if flags & DRF == 0 => {
                    bad.push(format!("first data packet {seqno:#x} without DRF"));
                    dropped += 1;
                    continue;
                }
                None => lwe = Some(seqno),
                Some(_) if flags & DRF != 0 && lwe != Some(seqno) => {
                    // A new run (the sender was idle): the facts allow it.
                    lwe = Some(seqno);
                }
                _ => {}
            }
            let Some(l) = lwe else { continue };
            if seqno != l {
                dropped += 1;
                push(&header(ACK, 0, 0, l))?;
                continue;
            }
            let l = l.wrapping_add(1);
            lwe = Some(l);
            // The capture's ACK-only: 04 000000 00000000 ackno.
            push(&header(ACK, 0, 0, l))?;
            pending.push_back(p[12..].to_vec());
        }
        // Echo what the peer's window lets go.
        while let Some(sdu) = pending.front() {
            if next.wrapping_sub(acked) >= peer_rwe.wrapping_sub(acked) {
                break;
            }
            let h = if next == first {
                header(DATA | DRF, 0, next, 0)
            } else {
                let edge = lwe.map_or(0, |l| l.wrapping_add(WINDOW));
                header(DATA | ACK | FC, edge & 0x00ff_ffff, next, lwe.unwrap_or(0))
            };
            let mut pdu = h.to_vec();
            pdu.extend_from_slice(sdu);
            push(&pdu)?;
            pending.pop_front();
            next = next.wrapping_add(1);
            echoed += 1;
        }
    }
    let bad_json: Vec<String> = bad.iter().take(20).map(|b| format!("{b:?}")).collect();
    Ok(format!(
        "{{\"flow\":{},\"echoed\":{echoed},\"data_in\":{data_in},\"acks_in\":{acks_in},\"fc_in\":{fc_in},\"rdvs_in\":{rdvs_in},\"dropped\":{dropped},\"unacked\":{},\"bad\":[{}]}}",
        info.id,
        next.wrapping_sub(acked),
        bad_json.join(",")
    ))
}
