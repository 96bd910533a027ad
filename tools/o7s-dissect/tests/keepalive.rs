//! Keepalives on the N-1 flows of a unicast layer (issue 24): an o7s flow end that has sent
//! nothing for a quarter of its QoS timeout sends an empty SDU (docs/WIRE.md). On an eth-dix
//! N-1 flow that is the eth-dix header with the peer's eid and length 0, with no DT PCI: a
//! keepalive, not a DT PDU cut short. A DT PDU that is really shorter than its PCI is
//! still malformed.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use o7s_dissect::flows_csv::FlowStats;
use o7s_dissect::{dissect_file, render_text, Options};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// The eth-dix eids of the data-transfer N-1 flow: at A (what B sends to) and at B.
const EID_AT_A: u16 = 0x41;
const EID_AT_B: u16 = 0x47;

/// An eth-dix frame `src` -> `dst` with endpoint id `eid`, the SDU and `pad` bytes of padding.
fn dix(dst: [u8; 6], src: [u8; 6], eid: u16, sdu: &[u8], pad: usize) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&0xa000u16.to_be_bytes());
    f.extend_from_slice(&eid.to_be_bytes());
    f.extend_from_slice(&u16::try_from(sdu.len()).unwrap().to_be_bytes());
    f.extend_from_slice(sdu);
    f.extend(std::iter::repeat_n(0u8, pad));
    f
}

/// A DT PDU to address 0x11223344: dst (4, LE) | qc | ttl | ecn | eid (8, LE) | sdu.
fn dt(eid: u64, sdu: &[u8]) -> Vec<u8> {
    let mut b = 0x1122_3344u32.to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 60, 0]);
    b.extend_from_slice(&eid.to_le_bytes());
    b.extend_from_slice(sdu);
    b
}

/// The OCEP `cep_msg` that opens a data-transfer N-1 flow.
fn cep_dt() -> Vec<u8> {
    let mut c = vec![0x0a, 13];
    c.extend_from_slice(b"Data Transfer");
    c.extend_from_slice(&[0x12, 3]);
    c.extend_from_slice(b"dtp");
    c.extend_from_slice(&[0x18, 1, 0x28, 2, 0x40, 0x7b]);
    c
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    o7s_wire::capfile::write_pcap(&refs)
}

/// Both ends of the flow given with `--layer dix:eid=..:unicast`, nothing guessed.
fn known_layers() -> Options {
    Options {
        layers: vec![
            format!("dix:eid={EID_AT_A}:unicast").parse().unwrap(),
            format!("dix:eid={EID_AT_B}:unicast").parse().unwrap(),
        ],
        guess: false,
        ..Options::default()
    }
}

/// The frames of `text` (one block per frame, from its `#n` line).
fn frames_of(text: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in text.lines() {
        if l.starts_with('#') {
            v.push(String::new());
        }
        if let Some(f) = v.last_mut() {
            f.push_str(l);
            f.push('\n');
        }
    }
    v
}

#[test]
fn empty_sdu_on_a_unicast_dt_n1_flow_is_a_keepalive() {
    let frames = [
        // A -> B and B -> A: the 18 bytes a keepalive has (eids differ at the two ends).
        dix(MAC_B, MAC_A, EID_AT_B, &[], 0),
        dix(MAC_A, MAC_B, EID_AT_A, &[], 0),
        // As real NICs send it: padded to 60 bytes, which the length field makes harmless.
        dix(MAC_B, MAC_A, EID_AT_B, &[], 42),
        // A DT PDU 3 bytes long: shorter than its 15-byte PCI, still malformed.
        dix(MAC_B, MAC_A, EID_AT_B, &[0x44, 0x33, 0x22], 0),
        // A DT PDU whose N+1 SDU is empty: the keepalive of a flow over the unicast layer.
        dix(MAC_B, MAC_A, EID_AT_B, &dt(0x1234_0000_0041, &[]), 0),
    ];
    let (out, sum) = dissect_file(&pcap(&frames), &known_layers()).unwrap();
    let text = render_text(&out, &sum, false);
    assert_eq!((sum.frames, sum.dix, sum.malformed), (5, 5, 1), "{text}");
    let f = frames_of(&text);
    assert_eq!(f.len(), 5, "{text}");
    for (i, eid) in [(0, EID_AT_B), (1, EID_AT_A), (2, EID_AT_B)] {
        assert!(
            f[i].contains(&format!("eth-dix eid 0x{eid:04x} length 0")),
            "frame {}: {}",
            i + 1,
            f[i]
        );
        assert!(
            f[i].contains("keepalive [unicast layer flow (--layer)]"),
            "frame {}: {}",
            i + 1,
            f[i]
        );
        assert!(!f[i].contains("MALFORMED"), "frame {}: {}", i + 1, f[i]);
        assert!(!f[i].contains("dt dst"), "frame {}: {}", i + 1, f[i]);
    }
    assert!(f[2].contains("padding 42"), "{}", f[2]);
    assert!(f[3].contains("[MALFORMED: "), "{}", f[3]);
    assert!(!f[3].contains("keepalive"), "{}", f[3]);
    assert!(f[4].contains("dt dst 0x11223344"), "{}", f[4]);
    assert!(f[4].contains("keepalive [empty SDU]"), "{}", f[4]);
    assert!(!f[4].contains("MALFORMED"), "{}", f[4]);
}

/// A flow learnt from its CEP: the keepalive is labelled with what the CEP said; the JSON
/// output has no error for it.
#[test]
fn keepalive_on_a_flow_learnt_from_its_cep() {
    let frames = [
        dix(MAC_B, MAC_A, EID_AT_B, &cep_dt(), 0),
        dix(MAC_A, MAC_B, EID_AT_A, &cep_dt(), 0),
        dix(MAC_B, MAC_A, EID_AT_B, &[], 0),
        dix(MAC_A, MAC_B, EID_AT_A, &[], 42),
        dix(MAC_B, MAC_A, EID_AT_B, &[1, 2, 3], 0),
    ];
    let (out, sum) = dissect_file(&pcap(&frames), &Options::default()).unwrap();
    let text = render_text(&out, &sum, false);
    assert_eq!(sum.malformed, 1, "{text}");
    let f = frames_of(&text);
    for i in [2, 3] {
        assert!(
            f[i].contains("keepalive [unicast layer data-transfer flow (its CEP says so)]"),
            "frame {}: {}",
            i + 1,
            f[i]
        );
        assert!(!out[i].node.has_error(), "frame {}: {}", i + 1, f[i]);
    }
    assert!(out[4].node.has_error(), "{}", f[4]);
    let json = o7s_dissect::render_json(&out, &sum, false);
    let third: serde_json::Value = serde_json::from_str(json.lines().nth(2).unwrap()).unwrap();
    assert!(
        third.to_string().contains("\"layer\":\"keepalive\""),
        "{third}"
    );
    assert!(!third.to_string().contains("\"error\""), "{third}");
}

/// Keepalives say nothing of what a flow carries: a data-transfer flow not seen set up is
/// still guessed from its DT PDUs when most of its SDUs are keepalives.
#[test]
fn keepalives_do_not_spoil_the_guess() {
    let mut frames = vec![];
    for i in 0..3u8 {
        frames.push(dix(
            MAC_B,
            MAC_A,
            EID_AT_B,
            &dt(0x1234_0000_0041, &[i; 20]),
            0,
        ));
        frames.push(dix(MAC_B, MAC_A, EID_AT_B, &[], 42));
        frames.push(dix(MAC_B, MAC_A, EID_AT_B, &[], 42));
    }
    let (out, sum) = dissect_file(&pcap(&frames), &Options::default()).unwrap();
    let text = render_text(&out, &sum, false);
    assert_eq!(sum.malformed, 0, "{text}");
    assert_eq!(
        text.matches("GUESS: unicast layer data-transfer flow")
            .count(),
        9,
        "{text}"
    );
    assert_eq!(text.matches("dt dst 0x11223344").count(), 3, "{text}");
    assert_eq!(text.matches("keepalive [GUESS").count(), 6, "{text}");
}

/// `--flows-csv` counts no keepalive as a PDU, nor as undecodable; the 3-byte DT PDU is.
#[test]
fn flows_csv_leaves_keepalives_out() {
    let frames = [
        dix(MAC_B, MAC_A, EID_AT_B, &[], 0),
        dix(MAC_A, MAC_B, EID_AT_A, &[], 42),
        dix(MAC_B, MAC_A, EID_AT_B, &[1, 2, 3], 0),
        dix(MAC_B, MAC_A, EID_AT_B, &dt(0x1234_0000_0041, &[7; 30]), 0),
    ];
    let mut f = FlowStats::new(100).unwrap();
    f.add_file(&pcap(&frames), &known_layers()).unwrap();
    let s = f.summary();
    assert_eq!((s.frames, s.data_pdus, s.undecodable), (4, 1, 1), "{s}");
}
