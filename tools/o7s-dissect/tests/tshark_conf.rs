//! `tshark::run` removes the configuration folder it makes in the temporary folder, also
//! when tshark fails or is not installed. Alone in its test binary, so that no other test
//! of this process runs tshark while it looks.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

/// The `o7s-tshark-conf-<pid>-<n>` folders of this process left in the temporary folder.
fn left_behind() -> Vec<PathBuf> {
    let prefix = format!(
        "{}{}-",
        o7s_dissect::tshark::CONF_DIR_PREFIX,
        std::process::id()
    );
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn tshark_runs_leave_no_configuration_folder() {
    let good = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/uni-small.pcap");
    let bad = std::env::temp_dir().join(format!("o7s-tshark-bad-{}.pcap", std::process::id()));
    std::fs::write(&bad, b"not a capture file").unwrap();
    // Several at once (as the wireshark tests do), each with a folder of its own.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                // Ok when tshark is installed (the wireshark tests check what it says).
                let _ = o7s_dissect::tshark::run(&good, &[]);
            });
            s.spawn(|| {
                assert!(o7s_dissect::tshark::run(&bad, &[]).is_err());
            });
        }
    });
    let _ = std::fs::remove_file(&bad);
    let left = left_behind();
    assert!(left.is_empty(), "left behind: {left:?}");
}
