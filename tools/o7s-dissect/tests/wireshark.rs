//! The Wireshark dissector (tools/wireshark/o7s.lua) run by tshark over the reference
//! captures (../shared/captures) and the tutorials' frames kept in the repo: every
//! Ouroboros frame decoded, no Lua error, no malformed frame, and the output equal to
//! golden files in tools/wireshark/golden (regenerate with UPDATE_GOLDEN=1 after checking
//! the difference). Malformed frames get the `o7s.malformed` expert info and no Lua error.
//!
//! Needs tshark (scripts/setup.sh installs it); without it these tests say SKIPPED, and
//! fail when O7S_REQUIRE_TSHARK=1 (CI sets it).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have_tshark() -> bool {
    let ok = o7s_dissect::tshark::available();
    if !ok {
        assert_ne!(
            std::env::var("O7S_REQUIRE_TSHARK").as_deref(),
            Ok("1"),
            "O7S_REQUIRE_TSHARK=1 but tshark is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("SKIPPED: tshark is not installed (scripts/setup.sh installs it)");
    }
    ok
}

fn tshark(pcap: &Path, args: &[&str]) -> String {
    o7s_dissect::tshark::run(pcap, args).unwrap_or_else(|e| panic!("{e}"))
}

fn count(pcap: &Path, filter: &str) -> usize {
    tshark(pcap, &["-Y", filter]).lines().count()
}

mod common;

fn golden(name: &str, actual: &str) {
    common::golden(&root().join("tools/wireshark/golden"), name, actual);
}

/// The checks every good capture must pass, and its golden output: one line per frame
/// (number, layer, summary), and the full o7s tree for captures of up to 100 frames.
fn check_capture(pcap: &Path, name: &str) {
    let ours = "(eth.type == 0xa000 || udp.port == 3435 || llc.dsap == 0x80)";
    let missed = count(pcap, &format!("{ours} && !o7s"));
    assert_eq!(missed, 0, "{name}: Ouroboros frames left undecoded");
    let decoded = count(pcap, "o7s");
    assert!(decoded > 0, "{name}: nothing decoded");
    let bad = tshark(
        pcap,
        &[
            "-Y",
            "o7s.malformed || _ws.malformed",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ],
    );
    assert!(bad.is_empty(), "{name}: malformed frames:\n{bad}");
    let lines = tshark(
        pcap,
        &[
            "-Y",
            "o7s",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "o7s.layer",
            "-e",
            "_ws.col.Info",
        ],
    );
    golden(&format!("{name}.info.txt"), &lines);
    if decoded <= 100 {
        let tree = tshark(pcap, &["-Y", "o7s", "-O", "o7s", "-V"]);
        golden(&format!("{name}.tree.txt"), &tree);
    }
}

fn shared_captures() -> Option<Vec<PathBuf>> {
    let dir = common::shared_captures_dir()?;
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    Some(v)
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("o7s-ws-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn tshark_decodes_every_reference_capture() {
    if !have_tshark() {
        return;
    }
    let Some(caps) = shared_captures() else {
        return;
    };
    assert!(caps.len() >= 10, "{caps:?}");
    for c in &caps {
        let name = c.file_stem().unwrap().to_string_lossy().into_owned();
        check_capture(c, &name);
    }
    // The unicast chain captures show every N-1 flow being set up: nothing is guessed.
    for name in ["uni-chain-ab", "uni-chain-bc"] {
        let c = caps
            .iter()
            .find(|c| c.file_stem().is_some_and(|s| s == name))
            .unwrap();
        assert_eq!(count(c, "o7s.n1_role contains \"GUESS\""), 0, "{name}");
        assert!(count(c, "o7s.n1_role contains \"its CEP says so\"") > 20);
        assert!(count(c, "o7s.cep.comp_name == \"Data Transfer\"") >= 2);
        assert!(count(c, "o7s.dht.code == 0") >= 1, "{name}: a DHT STORE");
        assert!(
            count(c, "o7s.fa.code == 0") >= 1,
            "{name}: a flow allocator FLOW_REQ"
        );
    }
}

#[test]
fn tshark_decodes_the_tutorial_frames() {
    if !have_tshark() {
        return;
    }
    let frames = o7s_dissect::seed::frames();
    let refs: Vec<&[u8]> = frames.iter().map(|(_, b)| b.as_slice()).collect();
    let p = temp("seed.pcap", &o7s_wire::capfile::write_pcap(&refs));
    check_capture(&p, "seed");
    // Tutorial 04 is 0.21, tutorial 06 is 0.22: both recognised as such.
    assert_eq!(count(&p, "o7s.cypher_s"), 2);
    assert!(count(&p, "o7s.oap.eph || o7s.oap.id") >= 4);
    let _ = std::fs::remove_file(p);
}

fn eth(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn dix(eid: u16, sdu: &[u8]) -> Vec<u8> {
    let mut p = eid.to_be_bytes().to_vec();
    p.extend_from_slice(&(sdu.len() as u16).to_be_bytes());
    p.extend_from_slice(sdu);
    eth(A, B, 0xa000, &p)
}

fn udp4(payload: &[u8]) -> Vec<u8> {
    let len = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    ip.extend_from_slice(&3435u16.to_be_bytes());
    ip.extend_from_slice(&3435u16.to_be_bytes());
    ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    eth(A, B, 0x0800, &ip)
}

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// A DT PCI to address 0x11223344 for `eid` (little-endian, as the reference writes it).
fn pci(eid: u64) -> Vec<u8> {
    let mut p = 0x1122_3344u32.to_le_bytes().to_vec();
    p.extend_from_slice(&[0, 60, 0]);
    p.extend_from_slice(&eid.to_le_bytes());
    p
}

#[test]
fn malformed_frames_get_expert_info_and_no_lua_error() {
    if !have_tshark() {
        return;
    }
    let mut mgmt_req = vec![0u8; 39];
    mgmt_req[37] = 0; // FLOW_REQ
    mgmt_req.extend_from_slice(&[0xab; 32]); // a hash
    mgmt_req.extend_from_slice(&[0x01; 20]); // an OAP header cut short
    let mut unknown_code = vec![0u8; 39];
    unknown_code[37] = 9;
    // The CEP that opens a data-transfer flow on eid 0x41 towards A.
    let mut cep = vec![0x0a, 13];
    cep.extend_from_slice(b"Data Transfer");
    cep.extend_from_slice(&[0x12, 3]);
    cep.extend_from_slice(b"dtp");
    cep.extend_from_slice(&[0x18, 1, 0x28, 2, 0x40, 0x7b]);
    let mut dht_bad = pci(1);
    dht_bad.extend_from_slice(&[0x08, 0x01, 0x12, 100, 1, 2, 3]); // src claims 100 bytes
    let mut fa_short = pci(0);
    fa_short.extend_from_slice(&[0; 20]);
    let mut udp_short = vec![0u8; 4];
    udp_short.extend_from_slice(&[1; 10]);
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("length beyond the frame", {
            let mut f = dix(0x40, &[1; 10]);
            f[16] = 0xff; // the length field's high byte
            f
        }),
        ("FLOW_REQ with a cut OAP header", dix(0, &mgmt_req)),
        ("unknown management code", dix(0, &unknown_code)),
        ("shorter than eid and length", eth(A, B, 0xa000, &[0x00])),
        ("udp management message too short", udp4(&udp_short)),
        ("CEP (good)", dix(0x41, &cep)),
        ("DT PDU shorter than its PCI", dix(0x41, &[1, 2, 3, 4, 5])),
        ("keepalive on the DT flow (good)", dix(0x41, &[])),
        ("DT PDU of 3 bytes", dix(0x41, &[1, 2, 3])),
        ("DHT protobuf with a bad length", dix(0x41, &dht_bad)),
        ("flow allocator message too short", dix(0x41, &fa_short)),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(|(_, b)| b.as_slice()).collect();
    let p = temp("bad.pcap", &o7s_wire::capfile::write_pcap(&refs));
    let flagged = tshark(
        &p,
        &["-Y", "o7s.malformed", "-T", "fields", "-e", "frame.number"],
    );
    let flagged: Vec<usize> = flagged.lines().map(|l| l.parse().unwrap()).collect();
    for (i, (what, _)) in frames.iter().enumerate() {
        let n = i + 1;
        let good = what.ends_with("(good)");
        assert_eq!(
            flagged.contains(&n),
            !good,
            "frame {n} ({what}): flagged frames {flagged:?}"
        );
    }
    // Every frame still shows as Ouroboros, with its summary.
    assert_eq!(count(&p, "o7s"), frames.len());
    let _ = std::fs::remove_file(p);
}

/// ocbr SDUs (sequence number, little-endian, then filler) are recognised from the second
/// SDU of a run on a flow on, on eth and inside a unicast layer's DT PDUs alike.
#[test]
fn ocbr_payloads_are_recognised_by_their_sequence() {
    if !have_tshark() {
        return;
    }
    let sdu = |seq: u64| {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&[0x5a; 100]);
        b
    };
    let mut cep = vec![0x0a, 13];
    cep.extend_from_slice(b"Data Transfer");
    cep.extend_from_slice(&[0x12, 3]);
    cep.extend_from_slice(b"dtp");
    let in_dt = |seq: u64| {
        let mut p = pci(0x1234_0000_0041);
        p.extend_from_slice(&sdu(seq));
        p
    };
    let frames = [
        dix(0x42, &sdu(7)),
        dix(0x42, &sdu(8)),
        dix(0x42, &sdu(9)),
        dix(0x43, &sdu(100)), // another flow: a run of its own
        dix(0x41, &cep),
        dix(0x41, &in_dt(1)),
        dix(0x41, &in_dt(2)),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let p = temp("ocbr.pcap", &o7s_wire::capfile::write_pcap(&refs));
    let info = tshark(
        &p,
        &["-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"],
    );
    let lines: Vec<&str> = info.lines().collect();
    assert!(lines[0].ends_with("sdu 108 bytes"), "{info}");
    assert!(lines[1].ends_with("ocbr seqnr 8"), "{info}");
    assert!(lines[2].ends_with("ocbr seqnr 9"), "{info}");
    assert!(lines[3].ends_with("sdu 108 bytes"), "{info}");
    assert!(lines[5].ends_with("sdu 108 bytes"), "{info}");
    assert!(lines[6].ends_with("ocbr seqnr 2"), "{info}");
    assert_eq!(count(&p, "o7s.ocbr.seqnr == 9"), 1);
    let _ = std::fs::remove_file(p);
}

/// An eth-dix frame `src` -> `dst` with endpoint id `eid`, the SDU and `pad` bytes of padding.
fn dix_to(dst: [u8; 6], src: [u8; 6], eid: u16, sdu: &[u8], pad: usize) -> Vec<u8> {
    let mut p = eid.to_be_bytes().to_vec();
    p.extend_from_slice(&(sdu.len() as u16).to_be_bytes());
    p.extend_from_slice(sdu);
    p.extend(std::iter::repeat_n(0u8, pad));
    eth(dst, src, 0xa000, &p)
}

/// Keepalives (empty SDUs, issue 24) on the N-1 flows of a unicast layer (both ends, eids
/// differing, with and without runt padding, learnt from the CEP or guessed), on an eth
/// flow of an application, on a udp flow, and inside a DT PDU (a flow over the unicast
/// layer): each shown as a keepalive, none malformed; golden files keepalive.*.txt.
#[test]
fn keepalives_are_not_malformed() {
    if !have_tshark() {
        return;
    }
    let mut cep = vec![0x0a, 13];
    cep.extend_from_slice(b"Data Transfer");
    cep.extend_from_slice(&[0x12, 3]);
    cep.extend_from_slice(b"dtp");
    cep.extend_from_slice(&[0x18, 1, 0x28, 2, 0x40, 0x7b]);
    let mut data = pci(0x1234_0000_0041);
    data.extend_from_slice(&[0x5a; 30]);
    let frames = [
        dix_to(A, B, 0x41, &cep, 0),
        dix_to(B, A, 0x47, &cep, 0),
        dix_to(A, B, 0x41, &[], 0),
        dix_to(B, A, 0x47, &[], 42),
        dix_to(A, B, 0x41, &data, 0),
        dix_to(A, B, 0x41, &pci(0x1234_0000_0041), 0),
        // A data-transfer flow not seen set up: keepalives do not spoil the guess.
        dix_to(A, B, 0x50, &data, 0),
        dix_to(A, B, 0x50, &[], 42),
        dix_to(A, B, 0x50, &[], 42),
        dix_to(A, B, 0x50, &data, 0),
        // An application's eth flow and a udp flow.
        dix_to(A, B, 0x60, &[], 42),
        udp4(&0x41u32.to_be_bytes()),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let p = temp("keepalive.pcap", &o7s_wire::capfile::write_pcap(&refs));
    check_capture(&p, "keepalive");
    let info = tshark(
        &p,
        &["-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"],
    );
    let lines: Vec<&str> = info.lines().collect();
    for n in [3, 4, 6, 8, 9, 11, 12] {
        assert!(lines[n - 1].ends_with("keepalive"), "frame {n}:\n{info}");
    }
    assert!(lines[9].contains("DT dst 0x11223344"), "{info}");
    assert_eq!(count(&p, "o7s.n1_role contains \"GUESS\""), 4, "{info}");
    let _ = std::fs::remove_file(p);
}
