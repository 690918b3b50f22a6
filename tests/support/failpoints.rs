//! Tests that need failpoints (`VIRTSYNC_FAILPOINT`, `src/failpoint.rs`) call [`require`]
//! first: the binary under test has them only when built with the cargo feature
//! `failpoints` (`scripts/test` passes `--features failpoints`). Without it such a test
//! fails at once with how to run it, instead of waiting for a crash or a hang that the
//! binary ignores.

use std::process::Command;

/// Panics unless the built `virtsync` has failpoints (`virtsync version --verbose`
/// says `failpoints: yes`).
pub fn require() {
    let exe = env!("CARGO_BIN_EXE_virtsync");
    let out = Command::new(exe)
        .args(["version", "--verbose"])
        .env_remove("VIRTSYNC_FAILPOINT")
        .output()
        .unwrap_or_else(|e| panic!("running {exe} version --verbose: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.lines().any(|l| l.starts_with("failpoints: yes")),
        "this test needs failpoints (VIRTSYNC_FAILPOINT), but {exe} was built without \
         them: run with --features failpoints (scripts/test does), e.g. \
         `cargo test --features failpoints --test NAME`\n\
         `virtsync version --verbose` said ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
