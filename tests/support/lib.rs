//! Helpers for the end-to-end tests: the `ticklane` binary (built once by
//! cargo, in the test's own profile), the shared captures, and a way to run
//! the binary and see everything it did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the `ticklane` binary, built on first use.
pub fn ticklane_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let build = escargot::CargoBuild::new()
            .package("ticklane")
            .bin("ticklane");
        let build = if cfg!(debug_assertions) {
            build
        } else {
            build.release()
        };
        build
            .run()
            .unwrap_or_else(|e| panic!("building the ticklane binary failed: {e}"))
            .path()
            .to_owned()
    })
}

/// The real NASDAQ/BX captures shipped beside the repository.
pub fn captures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/itch50-captures");
    assert!(
        dir.is_dir(),
        "{}: the shared captures must sit in shared/ beside the repository",
        dir.display()
    );
    dir
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `ticklane ARGS…` to completion.
pub fn ticklane(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(ticklane_bin())
        .args(args)
        .output()
        .expect("the ticklane binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
    }
}

/// Runs `ticklane ARGS…` and insists that it succeeded.
pub fn ticklane_ok(args: &[&str]) -> Run {
    let run = ticklane(args);
    assert_eq!(
        run.code,
        Some(0),
        "ticklane {args:?} failed:\n{}",
        run.stderr
    );
    run
}

/// A path inside `dir` as a `&str` argument.
pub fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("UTF-8 temp path").to_owned()
}
