//! Runs tshark with the Wireshark dissector of this repository (`tools/wireshark/o7s.lua`),
//! for the tests that compare the two dissectors' views of a capture.

use std::path::{Path, PathBuf};
use std::process::Command;

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
/// of its own so that a user's preferences and plugins stay out). `Err` with what tshark
/// said when it fails or prints anything on stderr (a Lua error, say).
pub fn run(pcap: &Path, args: &[&str]) -> Result<String, String> {
    let conf = std::env::temp_dir().join(format!("o7s-tshark-conf-{}", std::process::id()));
    std::fs::create_dir_all(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    let o = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", &conf)
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
