//! Where log lines go and how they look (`log.format`).
//!
//! - `text`: lines with a timestamp on stderr (tracing-subscriber's `fmt`; colours only
//!   on a terminal). Every command but `virtsync daemon` logs this way, and so does the
//!   daemon until its configuration is read.
//! - `journal`: the journal's native protocol, one datagram per event to
//!   `/run/systemd/journal/socket` ([`JOURNAL_SOCKET`]; tests point
//!   `VIRTSYNC_JOURNAL_SOCKET` elsewhere). No timestamp of our own (journald stamps each
//!   entry), and these fields:
//!   - `PRIORITY`: error 3, warn 4, info 6, debug and trace 7 ([`priority`]);
//!   - `SYSLOG_IDENTIFIER=virtsync`;
//!   - `COMPONENT`: the event's tracing target, i.e. the Rust module that logged it
//!     (`virtsync::sink::postgres`; the same names `RUST_LOG` filters on);
//!   - `MESSAGE`: the message followed by its fields as in text (`delta parked
//!     vm=tenant-a/web-1 error=...`), so that `journalctl -u virtsync` shows them;
//!   - each field of the event as a journal field of its own, named in upper case
//!     ([`journal_name`]): `VM` ("namespace/name": every event about one VM has a `vm`
//!     field), `ERROR`, `PROBLEM`, `KIND`, ...;
//!   - `CODE_FILE` and `CODE_LINE` where known.
//!
//!   When the socket cannot be used at start, the same events are written to stderr as
//!   `<N>`-prefixed lines ([`prefixed_line`]: journald's stream transport reads the
//!   prefix as the priority) and one line says why. An event the socket refuses later
//!   (journald restarting, an event too large for a datagram) is written that way too.
//! - `json`: one JSON object per line on stderr (`timestamp`, `level`, `fields`,
//!   `target`), for log shippers.
//! - `auto` (the default): `journal` when stderr is connected to the journal
//!   ([`is_journal_stream`]: `$JOURNAL_STREAM` names fd 2's device and inode), else
//!   `text`.
//!
//! `RUST_LOG` is the level filter in every format (default `info`).

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

mod fields;
mod journal;
#[cfg(test)]
mod tests;

pub use fields::{Fields, PrefixLayer, prefixed_line};
pub use journal::{JournalLayer, journal_name};

/// journald's socket for the native protocol.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Overrides [`JOURNAL_SOCKET`] (for tests: a fake journald, or none at all).
pub const JOURNAL_SOCKET_ENV: &str = "VIRTSYNC_JOURNAL_SOCKET";
/// `SYSLOG_IDENTIFIER` of every entry (`journalctl -t virtsync`).
pub const SYSLOG_IDENTIFIER: &str = "virtsync";

/// How long one event may wait for journald before it goes to stderr instead.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// What the log goes to, once `auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Journal,
    Json,
}

/// What the process knows about its stderr, read once ([`StderrInfo::of_process`]) and
/// passed to the pure functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StderrInfo {
    /// `$JOURNAL_STREAM`.
    pub journal_stream: Option<String>,
    /// fd 2's device and inode (`fstat`), when fd 2 is open.
    pub id: Option<(u64, u64)>,
}

impl StderrInfo {
    pub fn of_process() -> StderrInfo {
        StderrInfo {
            journal_stream: std::env::var("JOURNAL_STREAM").ok(),
            id: stderr_id(),
        }
    }

    /// Whether stderr is the journal's stream ([`is_journal_stream`]).
    pub fn is_journal(&self) -> bool {
        is_journal_stream(self.journal_stream.as_deref(), self.id)
    }
}

/// fd 2's `(st_dev, st_ino)`.
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether stderr is connected to the journal: systemd sets `$JOURNAL_STREAM` to
/// `DEV:INODE` (decimal) of the stream it gives a service whose stdout or stderr goes to
/// the journal. The variable is inherited by children whose stderr goes elsewhere (a
/// pipe, a terminal), so it counts only when it names fd 2 itself (systemd.exec(5)).
pub fn is_journal_stream(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(value), Some(stderr)) = (journal_stream, stderr) else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u64>().ok()
    };
    matches!((number(dev), number(ino)), (Some(d), Some(i)) if (d, i) == stderr)
}

/// The output `format` means for a process whose stderr is `stderr`.
pub fn resolve(format: LogFormat, stderr: &StderrInfo) -> Output {
    match format {
        LogFormat::Auto if stderr.is_journal() => Output::Journal,
        LogFormat::Auto | LogFormat::Text => Output::Text,
        LogFormat::Journal => Output::Journal,
        LogFormat::Json => Output::Json,
    }
}

/// The syslog priority of a level: error 3 (err), warn 4 (warning), info 6 (info),
/// debug and trace 7 (debug).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The `RUST_LOG` filter, `info` when unset or invalid.
fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber for `format`; `journal_socket` is journald's socket
/// ([`JOURNAL_SOCKET`] but in tests). Returns what the log goes to. Does nothing (but
/// say what it would have done) when a subscriber is already installed.
pub fn init(format: LogFormat, journal_socket: &Path) -> Output {
    let output = resolve(format, &StderrInfo::of_process());
    // `try_init` also routes the `log` crate's records (rustls, ...) into tracing.
    // An error means a subscriber is installed already: it stays.
    let _ = match output {
        Output::Text => tracing_subscriber::fmt()
            .with_env_filter(env_filter())
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(io::stderr)
            .try_init()
            .is_ok(),
        Output::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(env_filter())
            .with_ansi(false)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(io::stderr)
            .try_init()
            .is_ok(),
        Output::Journal => match JournalLayer::connect(journal_socket, io::stderr) {
            Ok(layer) => tracing_subscriber::registry()
                .with(layer.with_filter(env_filter()))
                .try_init()
                .is_ok(),
            Err(e) => {
                let why = prefixed_line(
                    &Level::WARN,
                    module_path!(),
                    &Fields::note(
                        "the journal socket cannot be used; writing <N>-prefixed lines to stderr instead",
                        &[
                            ("socket", journal_socket.display().to_string()),
                            ("error", e.to_string()),
                        ],
                    ),
                );
                let _ = io::stderr().write_all(why.as_bytes());
                tracing_subscriber::registry()
                    .with(PrefixLayer::new(io::stderr).with_filter(env_filter()))
                    .try_init()
                    .is_ok()
            }
        },
    };
    output
}

/// The journal socket's path: `$VIRTSYNC_JOURNAL_SOCKET`, else [`JOURNAL_SOCKET`].
pub fn journal_socket_path() -> PathBuf {
    std::env::var_os(JOURNAL_SOCKET_ENV)
        .map_or_else(|| PathBuf::from(JOURNAL_SOCKET), PathBuf::from)
}
