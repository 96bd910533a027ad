//! `--flows-csv`: per-flow throughput of a unicast layer, checked row by row on a capture
//! built here from frames of known content (two data flows whose destination addresses and
//! eids all differ, ECN marks, a FLOW_UPDATE, a DHT message, a runt, a frame cut by the
//! snaplen and a frame of no Ouroboros layer, over three bins with an empty one between).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use o7s_dissect::flows_csv::{flows_csv, FlowStats, FlowsSummary, HEADER};
use o7s_dissect::Options;

mod common;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const ADDR_A: u64 = 0x1a2b_3c4d;
const ADDR_B: u64 = 0x5e6f_7081;
/// A's endpoint of the flow B sends to.
const EID_A: u64 = 0x0000_0102_0000_1234;
/// B's endpoint of the flow A sends to.
const EID_B: u64 = 0x0000_00a5_0000_0047;
/// A's endpoint of the flow A sends on (what B's FLOW_UPDATE names).
const EID_A_TX: u64 = 0x0000_0033_0000_0050;
/// The eth-dix eids of the N-1 flows: A -> B and B -> A.
const DIX_AB: u16 = 0x40;
const DIX_BA: u16 = 0x41;
/// The first record's time: 1_700_000_000.25 s.
const T0: u64 = 1_700_000_000_250_000_000;
const MS: u64 = 1_000_000;

/// A DT PDU: dst_addr (4, LE) | qc | ttl | ecn | eid (8, LE) | sdu.
fn dt(dst: u64, ecn: u8, eid: u64, sdu: &[u8]) -> Vec<u8> {
    let mut b = (dst as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 60, ecn]);
    b.extend_from_slice(&eid.to_le_bytes());
    b.extend_from_slice(sdu);
    b
}

/// A 61-byte flow allocator FLOW_UPDATE (big-endian; only r_eid, ece and code matter).
fn flow_update(s_addr: u64, r_eid: u64, s_eid: u64, ece: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&s_addr.to_be_bytes());
    b.extend_from_slice(&r_eid.to_be_bytes());
    b.extend_from_slice(&s_eid.to_be_bytes());
    b.extend_from_slice(&0u64.to_be_bytes()); // bandwidth
    b.extend_from_slice(&[0; 4 * 6]); // response delay loss ber max_gap timeout
    b.extend_from_slice(&ece.to_be_bytes());
    b.extend_from_slice(&[2, 0, 0]); // code FLOW_UPDATE, availability, in_order
    assert_eq!(b.len(), 61);
    b
}

/// An eth-dix frame, padded to 60 bytes as on the wire.
fn dix(dst: [u8; 6], src: [u8; 6], eid: u16, sdu: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&0xA000u16.to_be_bytes());
    f.extend_from_slice(&eid.to_be_bytes());
    f.extend_from_slice(&(sdu.len() as u16).to_be_bytes());
    f.extend_from_slice(sdu);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An eth-llc frame to data SAP `sap` (logical value).
fn llc(dst: [u8; 6], src: [u8; 6], sap: u8, sdu: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&((sdu.len() + 3) as u16).to_be_bytes());
    f.extend_from_slice(&[sap.reverse_bits(), sap.reverse_bits(), 0x03]);
    f.extend_from_slice(sdu);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A record: time (ns since the epoch), the frame, and how many of its bytes were captured.
struct Rec {
    t: u64,
    frame: Vec<u8>,
    caplen: usize,
}

fn rec(t: u64, frame: Vec<u8>) -> Rec {
    let caplen = frame.len();
    Rec { t, frame, caplen }
}

/// A little-endian, nanosecond pcap of the records (incl_len < orig_len for cut ones).
fn pcap(recs: &[Rec]) -> Vec<u8> {
    let mut w = vec![0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0];
    w.extend_from_slice(&[0; 8]);
    w.extend_from_slice(&64u32.to_le_bytes()); // snaplen
    w.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    for r in recs {
        w.extend_from_slice(&((r.t / 1_000_000_000) as u32).to_le_bytes());
        w.extend_from_slice(&((r.t % 1_000_000_000) as u32).to_le_bytes());
        w.extend_from_slice(&(r.caplen as u32).to_le_bytes());
        w.extend_from_slice(&(r.frame.len() as u32).to_le_bytes());
        w.extend_from_slice(&r.frame[..r.caplen]);
    }
    w
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| 0xe0 ^ (i as u8)).collect()
}

/// A -> B data on dix eid 0x40 to B's MAC; B -> A data, a DHT message and a FLOW_UPDATE
/// on dix eid 0x41 to A's MAC.
fn ab(t: u64, ecn: u8, n: usize) -> Rec {
    rec(
        t,
        dix(MAC_B, MAC_A, DIX_AB, &dt(ADDR_B, ecn, EID_B, &payload(n))),
    )
}

fn ba(t: u64, ecn: u8, n: usize) -> Rec {
    rec(
        t,
        dix(MAC_A, MAC_B, DIX_BA, &dt(ADDR_A, ecn, EID_A, &payload(n))),
    )
}

fn capture() -> Vec<u8> {
    // Not Ouroboros (ARP): only sets t = 0.
    let mut arp = MAC_A.to_vec();
    arp.extend_from_slice(&MAC_B);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    let dht = dix(
        MAC_A,
        MAC_B,
        DIX_BA,
        &dt(ADDR_A, 0, 1, &[0x08, 0x01, 0x12, 0x00]),
    );
    let upd = dix(
        MAC_A,
        MAC_B,
        DIX_BA,
        &dt(ADDR_A, 0, 0, &flow_update(ADDR_B, EID_A_TX, EID_B, 0x0102)),
    );
    // 15 + 1000 bytes on the wire, 64 of the frame captured.
    let mut cut = ab(T0 + 320 * MS, 0, 1000);
    cut.caplen = 64;
    pcap(&[
        rec(T0, arp),
        // bin 0
        ab(T0 + 10 * MS, 0, 100),
        ba(T0 + 20 * MS, 3, 50),
        ab(T0 + 100 * MS - 1, 1, 20), // a runt: 35-byte SDU in a 60-byte frame
        // bin 1
        ab(T0 + 100 * MS, 0, 200),
        rec(T0 + 150 * MS, dht),
        rec(T0 + 160 * MS, upd),
        // bin 2: nothing; bin 3
        ba(T0 + 310 * MS, 7, 400),
        cut,
        ba(T0 + 330 * MS, 0, 10),
    ])
}

const EXPECTED: &str = "\
bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max,frame_bytes,frame_mbit_s
0,0.000,data,0x1a2b3c4d,0x0000010200001234,1,65,0.005200,1,3,83,0.006640
0,0.000,data,0x5e6f7081,0x000000a500000047,2,150,0.012000,1,1,193,0.015440
1,0.100,data,0x5e6f7081,0x000000a500000047,1,215,0.017200,0,0,233,0.018640
1,0.100,flow_update,0x1a2b3c4d,0x0000003300000050,1,76,0.006080,0,258,94,0.007520
3,0.300,data,0x1a2b3c4d,0x0000010200001234,2,440,0.035200,1,7,493,0.039440
3,0.300,data,0x5e6f7081,0x000000a500000047,1,1015,0.081200,0,0,1033,0.082640
";

fn expected_summary() -> FlowsSummary {
    FlowsSummary {
        frames: 10,
        data_pdus: 7,
        flow_updates: 1,
        other_dt: 1,
        undecodable: 0,
        data_flows: 2,
        update_flows: 1,
    }
}

#[test]
fn rows_with_guessing() {
    let (csv, sum) = flows_csv(&capture(), &Options::default(), 100).unwrap();
    assert_eq!(csv, EXPECTED, "\n{csv}");
    assert_eq!(sum, expected_summary());
    assert_eq!(
        sum.to_string(),
        "10 frames read; 7 DT data PDUs, 1 flow updates, 1 other DT PDUs, 0 undecodable; \
         2 data flows seen, 1 flows with updates"
    );
}

#[test]
fn rows_with_known_layers() {
    let opts = Options {
        layers: vec![
            format!("dix:eid={DIX_AB}:unicast").parse().unwrap(),
            format!("dix:eid={DIX_BA}:unicast").parse().unwrap(),
        ],
        guess: false,
        ..Options::default()
    };
    let (csv, sum) = flows_csv(&capture(), &opts, 100).unwrap();
    assert_eq!(csv, EXPECTED, "\n{csv}");
    assert_eq!(sum, expected_summary());

    // Only A -> B known: only its rows.
    let opts = Options {
        layers: vec![format!("dix:eid={DIX_AB}:unicast").parse().unwrap()],
        guess: false,
        ..Options::default()
    };
    let (csv, sum) = flows_csv(&capture(), &opts, 100).unwrap();
    let want: String = EXPECTED
        .lines()
        .filter(|l| l.starts_with("bin") || l.contains("0x5e6f7081"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(csv, want);
    assert_eq!((sum.data_pdus, sum.flow_updates), (4, 0));
}

#[test]
fn nothing_known_nothing_counted() {
    let opts = Options {
        guess: false,
        ..Options::default()
    };
    let (csv, sum) = flows_csv(&capture(), &opts, 100).unwrap();
    assert_eq!(csv, format!("{HEADER}\n"));
    assert_eq!((sum.frames, sum.data_pdus, sum.data_flows), (10, 0, 0));
}

#[test]
fn other_bin_lengths() {
    let (csv, _) = flows_csv(&capture(), &Options::default(), 1000).unwrap();
    assert_eq!(
        csv,
        "\
bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max,frame_bytes,frame_mbit_s
0,0.000,data,0x1a2b3c4d,0x0000010200001234,3,505,0.004040,2,7,576,0.004608
0,0.000,data,0x5e6f7081,0x000000a500000047,4,1380,0.011040,1,1,1459,0.011672
0,0.000,flow_update,0x1a2b3c4d,0x0000003300000050,1,76,0.000608,0,258,94,0.000752
"
    );
    let (csv, _) = flows_csv(&capture(), &Options::default(), 15).unwrap();
    let bins: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| &l[..l.find(',').unwrap()])
        .collect();
    // 10 ms, 20 ms, 99.999999 ms and 100 ms (one flow, one row), 160 ms, 310, 320, 330 ms.
    assert_eq!(bins, ["0", "1", "6", "10", "20", "21", "22"]);
    assert!(csv.contains("\n6,0.090,data,"), "{csv}");
    assert!(FlowStats::new(0).is_err());
}

/// Bins count from the first record of the first file; an earlier record falls in a
/// negative bin; rows of several files add up.
#[test]
fn several_files_share_the_clock() {
    let mut st = FlowStats::new(100).unwrap();
    st.add_file(&capture(), &Options::default()).unwrap();
    let later = pcap(&[
        ab(T0 + 1050 * MS, 5, 100),
        ab(T0 + 1060 * MS, 0, 100),
        ab(T0 + 330 * MS, 0, 100),
        ab(T0 - 50 * MS, 0, 100),
    ]);
    st.add_file(&later, &Options::default()).unwrap();
    assert!(st.add_file(b"not a capture", &Options::default()).is_err());
    let csv = st.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[1],
        "-1,-0.100,data,0x5e6f7081,0x000000a500000047,1,115,0.009200,0,0,133,0.010640"
    );
    assert_eq!(
        lines[7],
        "3,0.300,data,0x5e6f7081,0x000000a500000047,2,1130,0.090400,0,0,1166,0.093280"
    );
    assert_eq!(
        lines[8],
        "10,1.000,data,0x5e6f7081,0x000000a500000047,2,230,0.018400,1,5,266,0.021280"
    );
    assert_eq!(lines.len(), 9);
    assert_eq!(st.summary().frames, 14);
    assert_eq!(st.summary().data_pdus, 11);
}

/// eth-llc data SAPs named with --layer, a frame cut by the snaplen included.
#[test]
fn eth_llc_layer() {
    let sdu = dt(ADDR_B, 2, EID_B, &payload(300));
    let mut cut = rec(T0 + 5 * MS, llc(MAC_B, MAC_A, 0x10, &sdu));
    cut.caplen = 40;
    let file = pcap(&[rec(T0, llc(MAC_B, MAC_A, 0x10, &sdu)), cut]);
    let opts = Options {
        layers: vec!["llc:sap=0x10:unicast".parse().unwrap()],
        guess: false,
        ..Options::default()
    };
    let (csv, sum) = flows_csv(&file, &opts, 100).unwrap();
    assert_eq!(
        csv,
        format!("{HEADER}\n0,0.000,data,0x5e6f7081,0x000000a500000047,2,630,0.050400,2,2,664,0.053120\n")
    );
    assert_eq!(sum.data_pdus, 2);
}

/// The binary: `--flows-csv --bin-ms`, the CSV on standard output, the summary on standard
/// error, and flags that do not go together refused.
#[test]
fn command_line() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_o7s-dissect");
    let mut child = Command::new(bin)
        .args(["--flows-csv", "--bin-ms", "100", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&capture()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), EXPECTED);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!("o7s-dissect: {}", expected_summary()),
        "{err}"
    );
    for bad in [
        &["--flows-csv", "--json", "x.pcap"][..],
        &["--bin-ms", "10", "x.pcap"],
        &["--flows-csv", "--bin-ms", "0", "x.pcap"],
    ] {
        let o = Command::new(bin).args(bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {o:?}");
    }
}

/// The reference capture of a unicast layer over udp (its 40 frames cut by the snaplen
/// counted at their length on the wire): the PDUs the dissector shows, as rows.
#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn reference_capture_uni() {
    let Some(dir) = common::shared_captures_dir() else {
        return;
    };
    let file = std::fs::read(dir.join("uni.pcap")).unwrap();
    let opts = Options {
        layers: vec![
            "udp:eid=0x40:unicast".parse().unwrap(),
            "udp:eid=0x41:unicast".parse().unwrap(),
        ],
        guess: false,
        ..Options::default()
    };
    let (csv, sum) = flows_csv(&file, &opts, 100).unwrap();
    assert_eq!(
        (sum.frames, sum.data_pdus, sum.flow_updates, sum.other_dt),
        (232, 220, 0, 10)
    );
    assert_eq!((sum.undecodable, sum.data_flows), (0, 10));
    let pdus: u64 = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(pdus, 220);
    // 1461-byte frames, 400 bytes of each captured: 1461 - 14 - 20 - 8 - 4 bytes of DT PDU,
    // and the whole frames: 7 x 1461.
    assert!(
        csv.contains(
            "\n101,10.100,data,0x6c8a0ce2,0x3bbec53800000046,7,9905,0.792400,0,0,10227,0.818160\n"
        ),
        "{csv}"
    );
    // Guessing finds the same flows.
    let (guessed, _) = flows_csv(&file, &Options::default(), 100).unwrap();
    assert_eq!(guessed, csv);
}
