//! A disk that fills up, for one test process: RLIMIT_FSIZE makes writes beyond a size
//! fail with EFBIG (what redb sees on a full disk). Process-wide, so tests using it live
//! in their own test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Makes an oversized write fail with EFBIG instead of killing the process (SIGXFSZ).
pub fn fail_oversized_writes_instead_of_dying() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Files of this process may not grow beyond `bytes` (libc::RLIM_INFINITY lifts it).
pub fn set_file_size_limit(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
}
