//! Crash points for the crash-safety tests: `VIRTSYNC_FAILPOINT=<name>` makes the process
//! kill itself with SIGKILL when it reaches that point (no destructors, no flushes — the
//! same as a power cut for everything above the kernel). `VIRTSYNC_FAILPOINT=stall:<name>`
//! makes the task that reaches a [`stall`] point hang there forever (a stuck loop, for
//! the watchdog test).
//!
//! Only in builds with the cargo feature `failpoints` (`scripts/test` turns it on; the
//! packages are built without it). Without it [`hit`] and [`stall`] are empty inline
//! functions, the variable is never acted on, and [`warn_if_set`] logs one warning when
//! it is set anyway.

/// Whether this build has failpoints (the cargo feature `failpoints`); also printed by
/// `virtsync version --verbose`.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The environment variable that chooses a failpoint.
pub const ENV: &str = "VIRTSYNC_FAILPOINT";

/// Names of all failpoints, in pipeline order.
pub const NAMES: &[&str] = &[
    "after_redb_commit",
    "before_pg_commit",
    "after_pg_commit",
    "before_outbox_delete",
];

#[cfg(feature = "failpoints")]
mod imp {
    use std::sync::OnceLock;

    static ACTIVE: OnceLock<Option<String>> = OnceLock::new();

    fn active() -> Option<&'static str> {
        ACTIVE
            .get_or_init(|| std::env::var(super::ENV).ok())
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

    /// Kills the process with SIGKILL when `name` is active.
    pub fn hit(name: &str) {
        if active() == Some(name) {
            eprintln!("virtsync: failpoint {name} reached, killing myself with SIGKILL");
            // SAFETY: raise() has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}

#[cfg(not(feature = "failpoints"))]
mod imp {
    /// No failpoints in this build: nothing.
    #[inline(always)]
    pub async fn stall(_name: &str) {}

    /// No failpoints in this build: nothing.
    #[inline(always)]
    pub fn hit(_name: &str) {}
}

pub use imp::{hit, stall};

/// Logs one warning when `VIRTSYNC_FAILPOINT` is set in a build without failpoints (a
/// package): the variable has no effect there. Called once at start, after logging is
/// set up.
pub fn warn_if_set() {
    if ENABLED {
        return;
    }
    if let Some(value) = std::env::var_os(ENV) {
        tracing::warn!(
            value = %value.to_string_lossy(),
            "{ENV} is set but this build has no failpoints (cargo feature \"failpoints\"); ignored"
        );
    }
}
