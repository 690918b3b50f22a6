//! Crash points for the crash-safety tests: `VIRTSYNC_FAILPOINT=<name>` makes the process
//! kill itself with SIGKILL when it reaches that point (no destructors, no flushes — the
//! same as a power cut for everything above the kernel).

use std::sync::OnceLock;

static ACTIVE: OnceLock<Option<String>> = OnceLock::new();

/// Names of all failpoints, in pipeline order.
pub const NAMES: &[&str] = &[
    "after_redb_commit",
    "before_pg_commit",
    "after_pg_commit",
    "before_outbox_delete",
];

pub fn hit(name: &str) {
    let active = ACTIVE.get_or_init(|| std::env::var("VIRTSYNC_FAILPOINT").ok());
    if active.as_deref() == Some(name) {
        eprintln!("virtsync: failpoint {name} reached, killing myself with SIGKILL");
        // SAFETY: raise() has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
