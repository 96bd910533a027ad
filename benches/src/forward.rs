//! The parts of `scripts/bench-forward.sh` (issue 23): a traffic source, a sink that counts,
//! and the raw forwarder o7s's worker is compared with. All three use real AF_XDP sockets
//! (the data plane's [`XdpPort`]) or a real XDP program (`bpf/xdp_count.c`).
//!
//! - `xdp-gen`: sends one frame (a DT PDU in eth-dix, or UDP/IPv4) as fast as the AF_XDP tx
//!   ring takes it, for SECONDS; JSON with what it sent.
//! - `xdp-count`: attaches `bpf/xdp_count.o` (count and drop) to a device, reads its
//!   counters over a window after a warm-up; JSON with Mpps and Gbit/s.
//! - `xdp-fwd`: the smallest AF_XDP forwarder: frames the o7s XDP program steers to the
//!   socket of one port are re-addressed (destination and source MAC) and sent on the other
//!   port in place (the two share a UMEM), one kick per batch, no other logic.

use anyhow::{anyhow, bail, Context, Result};
use o7s_dataplane::queue_spread::QueueSet;
use o7s_dataplane::xdp::{AttachMode, XdpPort};
use std::time::{Duration, Instant};

/// The counting program, committed next to its source.
static COUNT_PROGRAM: &[u8] = include_bytes!("../../bpf/xdp_count.o");

/// What the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenKind {
    /// A DT PDU (PCI to ADDR, TTL 60) in an eth-dix frame (Ethertype 0xA000) to EID.
    Dt,
    /// A UDP/IPv4 datagram from SRC_IP to DST_IP (port 9 to 9).
    Ipv4,
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        let p = parts
            .next()
            .ok_or_else(|| anyhow!("{s}: not a MAC address"))?;
        *b = u8::from_str_radix(p, 16).with_context(|| format!("{s}: not a MAC address"))?;
    }
    if parts.next().is_some() {
        bail!("{s}: not a MAC address");
    }
    Ok(mac)
}

/// The MAC of device `dev` (sysfs).
pub fn mac_of(dev: &str) -> Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
        .with_context(|| format!("{dev}: no such device here"))?;
    parse_mac(&s)
}

/// The Internet checksum of an IPv4 header.
fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| {
            let hi = c.first().copied().unwrap_or(0);
            u32::from(u16::from_be_bytes([hi, c.get(1).copied().unwrap_or(0)]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame the generator sends: `size` bytes (without FCS; at least 60).
#[allow(clippy::too_many_arguments)]
pub fn gen_frame(
    kind: GenKind,
    size: usize,
    dst: [u8; 6],
    src: [u8; 6],
    eid: u16,
    addr: u32,
    src_ip: std::net::Ipv4Addr,
    dst_ip: std::net::Ipv4Addr,
) -> Result<Vec<u8>> {
    if !(60..=1514).contains(&size) {
        bail!("frame size {size}: 60 to 1514 bytes");
    }
    let mut f = Vec::with_capacity(size);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    match kind {
        GenKind::Dt => {
            let pdu = size - 18;
            f.extend_from_slice(&0xA000u16.to_be_bytes());
            f.extend_from_slice(&eid.to_be_bytes());
            f.extend_from_slice(&(pdu as u16).to_be_bytes());
            o7s_dataplane::dt::write_pci(&mut f, addr, 60, 0x42);
        }
        GenKind::Ipv4 => {
            let total = (size - 14) as u16;
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&src_ip.octets());
            ip[16..20].copy_from_slice(&dst_ip.octets());
            let c = ip_checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
            f.extend_from_slice(&9u16.to_be_bytes());
            f.extend_from_slice(&9u16.to_be_bytes());
            f.extend_from_slice(&(total - 20).to_be_bytes());
            f.extend_from_slice(&[0, 0]); // no UDP checksum
        }
    }
    f.resize(size, 0x5a);
    Ok(f)
}

/// Sends `frame` on `dev` flat out for `secs`: JSON {sent, mpps}.
pub fn generate(dev: &str, frame: &[u8], secs: f64) -> Result<serde_json::Value> {
    let mut port = XdpPort::open(
        dev,
        Some(0xA000),
        false,
        mac_of(dev)?,
        AttachMode::Skb,
        &mut None,
        QueueSet::ALL,
    )
    .map_err(|e| anyhow!("{dev}: {e}"))?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let mut turns = 0u64;
    while turns % 64 != 0 || Instant::now() < end {
        sent += u64::from(port.send_copies(frame, 64));
        port.flush();
        turns += 1;
    }
    let took = start.elapsed().as_secs_f64();
    Ok(
        serde_json::json!({"dev": dev, "frame_bytes": frame.len(), "sent": sent,
        "seconds": took, "mpps": sent as f64 / took / 1e6,
        "tx_dropped": port.tx_dropped}),
    )
}

/// Counts (and drops) what reaches `dev` for `secs` after `warmup`: JSON with the rate.
pub fn count(dev: &str, secs: f64, warmup: f64) -> Result<serde_json::Value> {
    use aya::maps::{MapData, PerCpuArray};
    use aya::programs::{Xdp, XdpMode};
    let mut ebpf = aya::Ebpf::load(COUNT_PROGRAM).context("loading bpf/xdp_count.o")?;
    let prog: &mut Xdp = ebpf
        .program_mut("xdp_count")
        .ok_or_else(|| anyhow!("no xdp_count program in bpf/xdp_count.o"))?
        .try_into()?;
    prog.load()
        .context("the verifier refused bpf/xdp_count.o")?;
    prog.attach(dev, XdpMode::Skb)
        .with_context(|| format!("attaching the counter to {dev}"))?;
    let read = |ebpf: &aya::Ebpf| -> Result<(u64, u64)> {
        let m = ebpf.map("counts").ok_or_else(|| anyhow!("no counts map"))?;
        let a = PerCpuArray::<&MapData, u64>::try_from(m)?;
        let sum = |i: u32| -> Result<u64> { Ok(a.get(&i, 0)?.iter().sum()) };
        Ok((sum(0)?, sum(1)?))
    };
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (p0, b0) = read(&ebpf)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (p1, b1) = read(&ebpf)?;
    let took = t0.elapsed().as_secs_f64();
    let (p, b) = (p1 - p0, b1 - b0);
    // On the wire a frame also takes its FCS, preamble and gap: 24 bytes.
    Ok(
        serde_json::json!({"dev": dev, "packets": p, "bytes": b, "seconds": took,
        "mpps": p as f64 / took / 1e6, "gbps": b as f64 * 8.0 / took / 1e9,
        "gbps_on_wire": (b + 24 * p) as f64 * 8.0 / took / 1e9}),
    )
}

/// Forwards what the o7s XDP program steers to `inp`'s socket out of `out` to `dst` for
/// `secs`, in place: JSON with what it moved.
pub fn forward(inp: &str, out: &str, dst: [u8; 6], secs: f64) -> Result<serde_json::Value> {
    let src = mac_of(out)?;
    let mut pool = None;
    let mut a = XdpPort::open(
        inp,
        Some(0xA000),
        false,
        mac_of(inp)?,
        AttachMode::Skb,
        &mut pool,
        QueueSet::ALL,
    )
    .map_err(|e| anyhow!("{inp}: {e}"))?;
    let mut b = XdpPort::open(
        out,
        Some(0xA000),
        false,
        src,
        AttachMode::Skb,
        &mut pool,
        QueueSet::ALL,
    )
    .map_err(|e| anyhow!("{out}: {e}"))?;
    if a.umem_id() != b.umem_id() {
        bail!("{inp} and {out} do not share a UMEM: no in-place forwarding");
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut moved, mut dropped, mut turns) = (0u64, 0u64, 0u64);
    while turns % 1024 != 0 || Instant::now() < end {
        turns += 1;
        let n = a.recv(|frame, slot| {
            let Ok(len) = u32::try_from(frame.len()) else {
                return;
            };
            let Ok(mut eth) = o7s_wire::ethernet::Frame::new_checked(frame) else {
                return;
            };
            eth.set_dst(dst);
            eth.set_src(src);
            if b.send_in_place(slot, len) {
                moved += 1;
            } else {
                dropped += 1;
            }
        });
        if n > 0 || b.tx_pending() {
            b.flush();
        }
    }
    Ok(serde_json::json!({"in": inp, "out": out, "forwarded": moved, "dropped_tx_full": dropped}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv4_checksum_is_the_internet_checksum() {
        // RFC 1071's usual example header (checksum field zero): 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ip_checksum(&h), 0xb861);
    }

    #[test]
    fn frames_have_the_size_and_headers_asked_for() {
        let (d, s) = ([2, 0, 0, 0, 0, 0xd], [2, 0, 0, 0, 0, 0x5]);
        let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        let f = gen_frame(
            GenKind::Dt,
            60,
            d,
            s,
            0x41,
            0x2993_a26e,
            ip("1.1.1.1"),
            ip("2.2.2.2"),
        )
        .unwrap();
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 0xd, 2, 0, 0, 0, 0, 5]);
        // Ethertype, eid 0x41, length 42, PCI: dst LE, qc 0, ttl 60.
        assert_eq!(&f[12..18], &[0xa0, 0, 0, 0x41, 0, 42]);
        assert_eq!(&f[18..24], &[0x6e, 0xa2, 0x93, 0x29, 0, 60]);
        let g = gen_frame(
            GenKind::Ipv4,
            1514,
            d,
            s,
            0,
            0,
            ip("10.81.1.1"),
            ip("10.81.2.3"),
        )
        .unwrap();
        assert_eq!(g.len(), 1514);
        assert_eq!(&g[12..14], &[8, 0]);
        assert_eq!(u16::from_be_bytes([g[16], g[17]]), 1500);
        assert_eq!(
            ip_checksum(&g[14..34]),
            0,
            "a header with its checksum sums to zero"
        );
        assert_eq!(&g[26..34], &[10, 81, 1, 1, 10, 81, 2, 3]);
        assert!(gen_frame(GenKind::Dt, 59, d, s, 0, 0, ip("1.1.1.1"), ip("1.1.1.1")).is_err());
        assert!(gen_frame(GenKind::Dt, 1515, d, s, 0, 0, ip("1.1.1.1"), ip("1.1.1.1")).is_err());
    }

    #[test]
    fn macs_parse_from_sysfs_form_only() {
        assert_eq!(
            parse_mac("9e:5b:0a:00:38:f0\n").unwrap(),
            [0x9e, 0x5b, 0xa, 0, 0x38, 0xf0]
        );
        assert!(parse_mac("9e:5b:0a:00:38").is_err());
        assert!(parse_mac("9e:5b:0a:00:38:f0:01").is_err());
        assert!(parse_mac("zz:5b:0a:00:38:f0").is_err());
    }
}
