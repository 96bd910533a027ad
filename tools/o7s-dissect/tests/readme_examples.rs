//! The command lines of README.md's "Using the dissector" block, run as they are written
//! (from the repository's root, `target/release/o7s-dissect` replaced by the binary cargo
//! built) against the small capture kept in the repository,
//! `tools/o7s-dissect/testdata/uni-small.pcap`: each prints something and no error.
//!
//! That capture is frames 1-4, 43-47, 86 and 192 of `../shared/captures/uni.pcap` (a unicast
//! layer over udp4, snaplen 400), records copied byte for byte: a flow allocation with qos
//! preset raw and its oping echo, an LSA on the management flow (udp eid 0x40), a second
//! allocation with FRCT and its first PDUs, an FRCT ACK, and a 1461-byte frame cut by the
//! snaplen.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

const CAPTURE: &str = "tools/o7s-dissect/testdata/uni-small.pcap";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines of the first ```sh block after `## Using the dissector`, comments left out.
fn example_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split_once("## Using the dissector")
        .expect("README.md has a 'Using the dissector' section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("an sh block in that section")
        .1
        .split_once("```")
        .unwrap()
        .0;
    block
        .lines()
        .map(|l| {
            l.split_once(" #")
                .map_or(l, |(cmd, _)| cmd)
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

struct Run {
    line: String,
    stdout: String,
}

/// Runs one README line's o7s-dissect command; a pipeline into `o7s-dissect -` gets the
/// capture on its standard input instead of the live capture.
fn run(line: &str) -> Option<Run> {
    let (cmd, stdin_capture) = match line.rsplit_once('|') {
        Some((_, right)) => (right.trim(), true),
        None => (line, false),
    };
    let mut words = cmd.split_whitespace();
    if words.next() != Some("target/release/o7s-dissect") {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let mut c = Command::new(env!("CARGO_BIN_EXE_o7s-dissect"));
    c.current_dir(root())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin_capture {
        assert_eq!(
            args,
            ["-"],
            "{line}: a pipeline into o7s-dissect reads stdin"
        );
        c.stdin(std::fs::File::open(root().join(CAPTURE)).unwrap());
    } else {
        c.stdin(Stdio::null());
    }
    let o = c.output().unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{line}: {}\n{stderr}", o.status);
    assert!(
        stderr.trim().is_empty(),
        "{line}: said on stderr:\n{stderr}"
    );
    assert!(!stdout.trim().is_empty(), "{line}: printed nothing");
    assert!(!stdout.contains("MALFORMED"), "{line}:\n{stdout}");
    Some(Run {
        line: line.to_string(),
        stdout,
    })
}

#[test]
fn readme_dissector_examples_run_on_the_capture_in_the_repo() {
    let lines = example_lines();
    for l in &lines {
        assert!(
            !l.contains("../shared"),
            "{l}: a clone has no ../shared; use {CAPTURE}"
        );
    }
    let runs: Vec<Run> = lines.iter().filter_map(|l| run(l)).collect();
    assert_eq!(runs.len(), 5, "{lines:?}");
    let on_capture: Vec<&Run> = runs.iter().filter(|r| r.line.contains(CAPTURE)).collect();
    assert_eq!(on_capture.len(), 3, "{lines:?}");
    let summary = "11 frames: 0 eth-dix, 0 eth-llc, 11 udp-layer, 0 other; 0 malformed, \
                   1 truncated by the capture";
    for r in &runs {
        let (line, out) = (&r.line, &r.stdout);
        if line.contains("--help") {
            assert!(out.contains("--layer"), "{line}:\n{out}");
        } else if line.contains("--json") {
            let objs: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(objs.len(), 12, "{line}: 11 frames and a summary");
            let s = &objs[11]["summary"];
            assert_eq!(
                (s["udp"].as_u64(), s["malformed"].as_u64()),
                (Some(11), Some(0))
            );
            assert!(out.contains("FLOW_REQ"), "{line}:\n{out}");
        } else if line.contains("--layer") {
            // What --layer is for: the data-transfer flow is known, nothing is guessed.
            assert!(!out.contains("GUESS"), "{line}:\n{out}");
            assert!(out.contains("[unicast layer data-transfer flow (--layer)]"));
            assert!(out.contains("flow-allocator FLOW_REPLY"), "{line}:\n{out}");
            assert!(out.contains(summary), "{line}:\n{out}");
        } else {
            // Without --layer the dissector guesses, and says so.
            assert!(
                out.contains("GUESS: unicast layer data-transfer flow"),
                "{line}:\n{out}"
            );
            assert!(out.contains("GUESS: unicast layer management flow"));
            assert!(out.contains("link-state-advertisement"), "{line}:\n{out}");
            assert!(out.contains("oping type ECHO_REPLY"), "{line}:\n{out}");
            assert!(out.contains("frct flags"), "{line}:\n{out}");
            assert!(out.contains(summary), "{line}:\n{out}");
        }
    }
}
