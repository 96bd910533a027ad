//! The built `o7sctl`: output piped into a reader that stops early (`o7sctl completions bash
//! | head -1`) ends quietly with status 0, and the help lists every verb (issue 24).

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_o7sctl");

/// Runs `o7sctl args` with its standard output a pipe whose reader reads `lines` lines
/// and then closes it (0: closed before the command writes anything). Returns the lines
/// read, the exit status and the standard error.
fn closed_early(args: &[&str], lines: usize) -> (Vec<String>, std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut read = vec![];
    {
        let mut r = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..lines {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            read.push(l);
        }
        // `r` dropped here: the pipe has no reader any more.
    }
    let out = child.wait_with_output().unwrap();
    (
        read,
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ends_quietly(args: &[&str]) {
    for lines in [1, 0] {
        let (read, status, stderr) = closed_early(args, lines);
        assert!(
            status.success(),
            "o7sctl {args:?} with its reader gone after {lines} line(s): {status}, stderr: {stderr}"
        );
        assert!(stderr.is_empty(), "o7sctl {args:?}: stderr: {stderr}");
        for l in read {
            assert!(!l.trim().is_empty(), "o7sctl {args:?}: an empty first line");
        }
    }
}

#[test]
fn completions_piped_into_head_end_with_status_0() {
    // The bash script (about 90 KB) is longer than a pipe holds: o7sctl is still writing
    // when the reader goes.
    ends_quietly(&["completions", "bash"]);
    ends_quietly(&["completions", "zsh"]);
}

#[test]
fn man_piped_into_head_ends_with_status_0() {
    ends_quietly(&["man"]);
}

/// The words of `text`, split at anything but letters, digits and '-'.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .collect()
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "o7sctl {args:?}: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_every_ipcp_verb() {
    const VERBS: [&str; 7] = [
        "list",
        "create",
        "bootstrap",
        "enroll",
        "connect",
        "disconnect",
        "destroy",
    ];
    let top = help(&["--help"]);
    let line = top
        .lines()
        .find(|l| l.trim_start().starts_with("ipcp "))
        .unwrap_or_else(|| panic!("no ipcp line in --help:\n{top}"));
    let said = words(line);
    for v in VERBS {
        assert!(said.contains(&v), "--help's ipcp line lacks {v}: {line}");
    }
    let sub = help(&["ipcp", "--help"]);
    let listed: Vec<&str> = sub
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for v in VERBS {
        assert!(listed.contains(&v), "ipcp --help lacks {v}:\n{sub}");
    }
}
