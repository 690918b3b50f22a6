//! The glibc allocator's settings: few arenas, and memory freed after a list handed back.

/// glibc gives each thread that allocates its own arena (up to 8 per core) and keeps
/// freed memory in each: with tokio's blocking threads coming and going, RSS climbed by
/// steps to 208 MiB at 10,000 VMIs under churn, against a flat 158 MiB with two arenas
/// (tests/faults.rs memory run). `MALLOC_ARENA_MAX` set by the operator wins.
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as above. A fixed threshold stops glibc from raising it after the
        // first large free, so list bodies and pages stay mmapped and go back whole.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        }
    }
}

/// A list's response bodies and decoded pages are freed once it is stored, but glibc
/// keeps the pages; hand them back (BENCHMARKS.md: RSS after the first list).
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
