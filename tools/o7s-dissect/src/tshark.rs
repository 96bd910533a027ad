//! Runs tshark with the Wireshark dissector of this repository (`tools/wireshark/o7s.lua`),
//! for the tests that compare the two dissectors' views of a capture.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The Wireshark dissector's path.
pub fn lua() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wireshark/o7s.lua")
}

/// Whether tshark runs here.
pub fn available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tshark over `pcap` with the dissector and `args` (`-n`, and a configuration directory
/// of its own, removed when it ends, so that a user's preferences and plugins stay out).
/// `Err` with what tshark said when it fails or prints anything on stderr (a Lua error,
/// say).
pub fn run(pcap: &Path, args: &[&str]) -> Result<String, String> {
    let conf = ConfDir::new()?;
    let o = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", &conf.0)
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .arg("-X")
        .arg(format!("lua_script:{}", lua().display()))
        .args(args)
        .output()
        .map_err(|e| format!("tshark: {e}"))?;
    let err = String::from_utf8_lossy(&o.stderr);
    let err: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("Running as user"))
        .collect();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() || !err.is_empty() {
        return Err(format!(
            "tshark on {}: {}\n{}",
            pcap.display(),
            o.status,
            err.join("\n")
        ));
    }
    if out.contains("o7s.lua error") || out.contains("Lua Error") {
        return Err(format!("the dissector failed:\n{out}"));
    }
    Ok(out)
}

/// The prefix of the configuration folders [`run`] makes in the temporary folder, followed
/// by the process id, `-` and a number: `o7s-tshark-conf-<pid>-<n>`.
pub const CONF_DIR_PREFIX: &str = "o7s-tshark-conf-";

/// An empty configuration folder of one tshark run, removed (with whatever tshark wrote
/// into it) when dropped. One per run, so that runs on several threads do not share it.
#[derive(Debug)]
struct ConfDir(PathBuf);

impl ConfDir {
    fn new() -> Result<Self, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{CONF_DIR_PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ConfDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
