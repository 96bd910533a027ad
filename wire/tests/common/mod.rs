//! Helpers shared by the integration tests: the seed vectors kept in the repo and the
//! reference captures in ../shared (optional outside CI).
#![allow(dead_code)]

use std::path::PathBuf;

/// One frame of `vectors/seed_frames.txt`.
pub struct SeedFrame {
    pub id: String,
    pub kind: String,
    pub bytes: Vec<u8>,
}

pub fn seed_frames() -> Vec<SeedFrame> {
    let text = include_str!("../vectors/seed_frames.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split('\t');
            let id = it.next().unwrap().to_string();
            let kind = it.next().unwrap().to_string();
            let bytes = hex::decode(it.next().unwrap()).unwrap();
            SeedFrame { id, kind, bytes }
        })
        .collect()
}

pub fn seed(id_prefix: &str) -> Vec<u8> {
    seed_frames()
        .into_iter()
        .find(|f| f.id.starts_with(id_prefix))
        .unwrap()
        .bytes
}

/// The captures folder, or `None` (with a message) when it is absent. With
/// `O7S_REQUIRE_SHARED=1` (set by .ci/run) absence is a failure, not a skip.
pub fn captures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("O7S_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("captures");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("O7S_REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("O7S_REQUIRE_SHARED=1 but {} does not exist", dir.display());
    }
    eprintln!(
        "SKIPPED: {} is absent (set O7S_SHARED to the shared/ folder)",
        dir.display()
    );
    None
}

/// All records of a pcap or pcapng file (owned), with their on-the-wire length.
pub fn read_capture(path: &std::path::Path) -> Vec<(Vec<u8>, usize)> {
    let data = std::fs::read(path).unwrap();
    o7s_wire::capfile::parse(&data)
        .unwrap()
        .into_iter()
        .map(|r| (r.data.to_vec(), r.orig_len))
        .collect()
}

/// The complete frames of a capture; frames cut short by the capture's snaplen are left out
/// and counted in the second value.
pub fn capture_counted(name: &str) -> Option<(Vec<Vec<u8>>, usize)> {
    let recs = read_capture(&captures_dir()?.join(name));
    let total = recs.len();
    let full: Vec<Vec<u8>> = recs
        .into_iter()
        .filter(|(d, orig)| d.len() == *orig)
        .map(|(d, _)| d)
        .collect();
    let cut = total - full.len();
    Some((full, cut))
}

pub fn capture(name: &str) -> Option<Vec<Vec<u8>>> {
    capture_counted(name).map(|(f, _)| f)
}
