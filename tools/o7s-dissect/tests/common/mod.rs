//! What the dissector's test files share: golden files and the reference captures.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// Compares `actual` with the golden file `dir/name`; with UPDATE_GOLDEN=1 writes it
/// instead (after a reader checked the difference).
pub fn golden(dir: &Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{name} differs from the golden file {} (first differing line {first:?});\n--- actual ---\n{actual}",
            path.display()
        );
    }
}

/// `../shared/captures` (or `$O7S_SHARED/captures`); `None` and a SKIPPED line when it is
/// absent, a failure when O7S_REQUIRE_SHARED=1.
pub fn shared_captures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("O7S_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("captures");
    if dir.is_dir() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("O7S_REQUIRE_SHARED").as_deref(),
        Ok("1"),
        "O7S_REQUIRE_SHARED=1 but {} is absent",
        dir.display()
    );
    eprintln!(
        "SKIPPED: {} is absent (set O7S_SHARED to the shared/ folder)",
        dir.display()
    );
    None
}
