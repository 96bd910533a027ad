//! Whether the reference's captures (`../shared/captures` beside the checkout, or
//! `$O7S_SHARED/captures`) are here. When they are not (a user's clone), the tests that read
//! them are compiled with `cfg(o7s_no_shared)`, which marks them ignored with a reason
//! instead of letting them pass without checking anything. With `O7S_REQUIRE_SHARED=1`
//! (set by CI) their absence fails the build.
//!
//! The folder is watched while it exists (removing it reruns this script). An absent
//! one is not: cargo would then rerun this script, and rebuild this crate and all that
//! depends on it, on every build. After adding `../shared`,
//! `touch tools/o7s-dissect/build.rs` (or set `O7S_SHARED`) makes those tests run again.

use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(o7s_no_shared)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=O7S_SHARED");
    println!("cargo:rerun-if-env-changed=O7S_REQUIRE_SHARED");
    // The same folder as the tests' helper (tests/common/mod.rs) looks in.
    let shared = std::env::var_os("O7S_SHARED").map_or_else(
        || {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
                .join("../../../shared")
        },
        PathBuf::from,
    );
    let captures = shared.join("captures");
    if captures.is_dir() {
        println!("cargo:rerun-if-changed={}", captures.display());
        return;
    }
    if std::env::var("O7S_REQUIRE_SHARED").as_deref() == Ok("1") {
        eprintln!(
            "error: O7S_REQUIRE_SHARED=1 but {} does not exist: the tests that need the \
             reference's captures would be ignored (put shared/ beside the checkout, or set \
             O7S_SHARED to it)",
            captures.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rustc-cfg=o7s_no_shared");
}
