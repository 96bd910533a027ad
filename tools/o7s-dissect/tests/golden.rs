//! The dissector's output on known captures is what a reader checked once (golden files in
//! tests/golden; regenerate with UPDATE_GOLDEN=1 after checking the difference).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use o7s_dissect::{dissect_file, render_json, render_text, Options};
use std::path::PathBuf;

mod common;

fn golden(name: &str, actual: &str) {
    common::golden(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        name,
        actual,
    );
}

fn seed_pcap() -> Vec<u8> {
    let frames = o7s_dissect::seed::frames();
    let refs: Vec<&[u8]> = frames.iter().map(|(_, b)| b.as_slice()).collect();
    o7s_wire::capfile::write_pcap(&refs)
}

fn shared_capture(name: &str) -> Option<Vec<u8>> {
    Some(std::fs::read(common::shared_captures_dir()?.join(name)).unwrap())
}

#[test]
fn seed_frames_text() {
    let (frames, sum) = dissect_file(&seed_pcap(), &Options::default()).unwrap();
    assert_eq!((sum.frames, sum.dix, sum.malformed), (20, 20, 0));
    let text = render_text(&frames, &sum, false);
    assert!(text.contains("mgmt-0.21 FLOW_REQ seid 0x0040"));
    assert!(text.contains("oap-0.22 id 518a56ff6f5ba69d037da1cfc30f3077"));
    assert!(text.contains(
        "name-hash value ecf815ad983df6bf81fdc7cb636eec15636e605a94b1ad66c1690c9e5f92828a"
    ));
    golden("seed.txt", &text);
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn dix_small_text() {
    let Some(file) = shared_capture("dix-small.pcap") else {
        return;
    };
    let (frames, sum) = dissect_file(&file, &Options::default()).unwrap();
    assert_eq!((sum.dix, sum.other, sum.malformed), (52, 8, 0));
    let text = render_text(&frames, &sum, false);
    assert!(text.contains("mgmt NAME_QUERY_REQ"));
    assert!(text.contains("oping type ECHO_REPLY id 9"));
    golden("dix-small.txt", &text);
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn uni_text_with_known_layers() {
    let Some(file) = shared_capture("uni.pcap") else {
        return;
    };
    let opts = Options {
        layers: vec![
            "udp:eid=0x40:unicast".parse().unwrap(),
            "udp:eid=0x41:unicast".parse().unwrap(),
        ],
        guess: false,
        ..Options::default()
    };
    let (frames, sum) = dissect_file(&file, &opts).unwrap();
    assert_eq!((sum.udp, sum.truncated, sum.malformed), (232, 40, 0));
    let text = render_text(&frames, &sum, false);
    assert!(
        !text.contains("GUESS"),
        "nothing is guessed when the layers are given"
    );
    assert!(text.contains("link-state-advertisement d_addr 0x6c8a0ce2 s_addr 0x8178abbc seqno 1"));
    assert!(text.contains("flow-allocator FLOW_REQ"));
    golden("uni.txt", &text);
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn auth_json() {
    let Some(file) = shared_capture("auth.pcap") else {
        return;
    };
    let (frames, sum) = dissect_file(&file, &Options::default()).unwrap();
    let json = render_json(&frames, &sum, false);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 23, "22 frames and a summary");
    let reply = lines[1].to_string();
    assert!(reply.contains("\"subject\":\"CN=oping\""), "{reply}");
    assert!(reply.contains("\"layer\":\"signature\""));
    assert_eq!(lines[22]["summary"]["udp"], 22);
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn guesses_are_labelled_and_knowledge_wins() {
    let Some(file) = shared_capture("uni-dix.pcap") else {
        return;
    };
    let (frames, sum) = dissect_file(&file, &Options::default()).unwrap();
    let text = render_text(&frames, &sum, false);
    assert!(text.contains("GUESS: unicast layer management flow"));
    assert!(text.contains("GUESS: unicast layer data-transfer flow"));
    let (frames, sum) = dissect_file(
        &file,
        &Options {
            guess: false,
            ..Options::default()
        },
    )
    .unwrap();
    let text = render_text(&frames, &sum, false);
    assert!(
        !text.contains("dt dst"),
        "without knowledge or guessing, no DT PCI is claimed"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(dissect_file(b"", &Options::default()).is_err());
    assert!(dissect_file(b"definitely not a capture file", &Options::default()).is_err());
    // A file whose last record is cut short (still being written): the complete records.
    let mut file = seed_pcap();
    file.truncate(file.len() - 3);
    let (_, sum) = dissect_file(&file, &Options::default()).unwrap();
    assert_eq!(sum.frames, 19);
    // Frames cut anywhere inside: each is decoded or reported malformed, never a panic.
    for (_, f) in o7s_dissect::seed::frames() {
        for cut in 0..f.len() {
            let pcap = o7s_wire::capfile::write_pcap(&[&f[..cut]]);
            let (_, sum) = dissect_file(&pcap, &Options::default()).unwrap();
            assert_eq!(sum.frames, 1);
        }
    }
}

#[test]
fn layer_spec_parsing() {
    use o7s_dissect::{LayerSpec, Lower};
    let s: LayerSpec = "dix:eid=0x41:unicast,addr=8".parse().unwrap();
    assert_eq!(
        (s.lower, s.id, s.dt.addr_size, s.dt.eid_size),
        (Some(Lower::Dix), 0x41, 8, 8)
    );
    let s: LayerSpec = "eid=65:unicast".parse().unwrap();
    assert_eq!((s.lower, s.id), (None, 65));
    for bad in [
        "eid=0x41",
        "eid=zz:unicast",
        "eid=1:broadcast",
        "eid=1:unicast,addr=9",
        "x=1:unicast",
    ] {
        assert!(bad.parse::<LayerSpec>().is_err(), "{bad}");
    }
}

/// A capture still being written (its last record cut short) is read up to that record,
/// with a note; standard input is read with `-`; frames are numbered from 1.
#[test]
fn cut_captures_stdin_and_numbering() {
    let mut pcap = seed_pcap();
    let whole = o7s_wire::capfile::parse(&pcap).unwrap().len();
    pcap.truncate(pcap.len() - 10);
    let (recs, cut) = o7s_wire::capfile::parse_partial(&pcap).unwrap();
    assert_eq!(recs.len(), whole - 1);
    assert!(cut > 0);
    let bin = env!("CARGO_BIN_EXE_o7s-dissect");
    let mut child = std::process::Command::new(bin)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&pcap).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("#1 "), "{}", &text[..80.min(text.len())]);
    assert!(!text.contains("#0 "));
    assert!(text.contains(&format!("#{} ", whole - 1)));
    assert!(!text.contains(&format!("#{} ", whole)));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cut short"),
        "{o:?}"
    );
}

/// The three-node captures from their first frame: every N-1 flow of the unicast layer is
/// recognised from its own connection-establishment message, so nothing is guessed and no
/// `--layer` is needed.
#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn uni_chain_layers_are_learnt_from_their_cep() {
    for name in ["uni-chain-ab.pcap", "uni-chain-bc.pcap"] {
        let Some(file) = shared_capture(name) else {
            return;
        };
        let (frames, sum) = dissect_file(&file, &Options::default()).unwrap();
        let text = render_text(&frames, &sum, false);
        assert!(!text.contains("GUESS"), "{name}: a guess:\n{text}");
        assert_eq!(sum.malformed, 0, "{name}:\n{text}");
        for want in [
            "ocep cep_msg",
            "unicast layer management flow (its CEP says so)",
            "unicast layer data-transfer flow (its CEP says so)",
            "link-state-advertisement",
            "flow-allocator",
            // The protobuf messages, field by field (o7s_wire::unicast::pb).
            "comp_name Data Transfer protocol dtp version 1 syntax FIXED",
            "oep enroll_req (protobuf) id ",
            "oep enroll_resp (protobuf)",
            "dht alpha 3 k 8 t_expire 86400 t_refresh 900 t_replicate 900 peer 0x",
            "oep enroll_ack (protobuf)",
            "dht_msg (protobuf) code FIND_NODE_RSP",
            "dht_msg (protobuf) code STORE",
        ] {
            assert!(text.contains(want), "{name}: no '{want}' in\n{text}");
        }
        golden(&name.replace(".pcap", ".txt"), &text);
    }
}
