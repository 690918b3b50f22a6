//! Crash points for the crash-safety tests: `VIRTSYNC_FAILPOINT=<name>` makes the process
//! kill itself with SIGKILL when it reaches that point (no destructors, no flushes — the
//! same as a power cut for everything above the kernel). `VIRTSYNC_FAILPOINT=stall:<name>`
//! makes the task that reaches a [`stall`] point hang there forever (a stuck loop, for
//! the watchdog test).

use std::sync::OnceLock;

static ACTIVE: OnceLock<Option<String>> = OnceLock::new();

/// Names of all failpoints, in pipeline order.
pub const NAMES: &[&str] = &[
    "after_redb_commit",
    "before_pg_commit",
    "after_pg_commit",
    "before_outbox_delete",
];

fn active() -> Option<&'static str> {
    ACTIVE
        .get_or_init(|| std::env::var("VIRTSYNC_FAILPOINT").ok())
        .as_deref()
}

/// Hangs the calling task forever when `stall:<name>` is active.
pub async fn stall(name: &str) {
    if active().and_then(|a| a.strip_prefix("stall:")) == Some(name) {
        tracing::warn!(
            failpoint = name,
            "failpoint reached: this task hangs from now on"
        );
        std::future::pending::<()>().await;
    }
}

pub fn hit(name: &str) {
    if active() == Some(name) {
        eprintln!("virtsync: failpoint {name} reached, killing myself with SIGKILL");
        // SAFETY: raise() has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
