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

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

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

/// One field's value as text, and whether text output quotes it (a `&str` value, as
/// tracing-subscriber's `fmt` does; `%` and `?` values are shown as they format).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldValue {
    text: String,
    quoted: bool,
}

/// An event's message and fields, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    message: String,
    fields: Vec<(String, FieldValue)>,
}

impl Fields {
    fn of(event: &Event<'_>) -> Fields {
        let mut f = Fields::default();
        event.record(&mut f);
        f
    }

    /// A message of our own with string fields.
    fn note(message: &str, fields: &[(&str, String)]) -> Fields {
        Fields {
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(name, text)| {
                    let value = FieldValue {
                        text: text.clone(),
                        quoted: true,
                    };
                    ((*name).to_owned(), value)
                })
                .collect(),
        }
    }

    /// `message k=v k2="v 2"`: the text format's rendering without timestamp and level.
    fn render(&self) -> String {
        let mut out = self.message.clone();
        for (name, value) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            if value.quoted {
                let _ = write!(out, "{name}={:?}", value.text);
            } else {
                let _ = write!(out, "{name}={}", value.text);
            }
        }
        out
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned(), true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"), false);
    }
}

impl Fields {
    fn put(&mut self, field: &Field, text: String, quoted: bool) {
        match field.name() {
            "message" => self.message = text,
            // The `log` crate's metadata, bridged as fields: used as metadata instead.
            name if name.starts_with("log.") => {}
            name => self
                .fields
                .push((name.to_owned(), FieldValue { text, quoted })),
        }
    }
}

/// One `<N>`-prefixed line (with its newline): `<4>virtsync::sink::postgres: delta parked
/// vm=tenant-a/web-1 error="..."`. No timestamp (journald stamps each line); line breaks
/// inside the message or a value are written as `\n` so that the event stays one line.
pub fn prefixed_line(level: &Level, target: &str, fields: &Fields) -> String {
    let text = fields.render().replace('\r', "\\r").replace('\n', "\\n");
    format!("<{}>{target}: {text}\n", priority(level))
}

/// Writes each event as a [`prefixed_line`] to its writer (stderr): the journal format
/// when the journal socket cannot be used.
pub struct PrefixLayer<W> {
    writer: W,
}

impl<W> PrefixLayer<W> {
    pub fn new(writer: W) -> Self {
        PrefixLayer { writer }
    }
}

impl<S, W> Layer<S> for PrefixLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let line = prefixed_line(meta.level(), meta.target(), &Fields::of(event));
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// Journal field names: upper-case ASCII letters, digits and `_`, starting with a letter,
/// at most 64 characters. A field of the event is named after it (`vm` → `VM`,
/// `hypervisor_type` → `HYPERVISOR_TYPE`, other characters become `_`); one that would
/// take the name of a field this module or journald sets (`PRIORITY`, `COMPONENT`,
/// `SYSLOG_*`, `CODE_*`, ...) gets an `F_` prefix.
pub fn journal_name(name: &str) -> String {
    const OURS: &[&str] = &[
        "MESSAGE",
        "MESSAGE_ID",
        "PRIORITY",
        "COMPONENT",
        "ERRNO",
        "TID",
        "DOCUMENTATION",
        "INVOCATION_ID",
        "USER_INVOCATION_ID",
        "UNIT",
        "USER_UNIT",
    ];
    const OUR_PREFIXES: &[&str] = &["SYSLOG_", "CODE_", "OBJECT_", "COREDUMP_"];
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut out = upper
        .trim_start_matches(|c: char| !c.is_ascii_uppercase())
        .to_owned();
    if out.is_empty()
        || OURS.contains(&out.as_str())
        || OUR_PREFIXES.iter().any(|p| out.starts_with(p))
    {
        out.insert_str(0, "F_");
    }
    out.truncate(64);
    out
}

/// Appends one field in the native protocol: `NAME=value\n`, or for a value with a line
/// break `NAME\n`, its length (64-bit little endian), the value and `\n`.
fn put_field(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

/// One journal entry in the native protocol (see the module documentation).
fn journal_entry(
    level: &Level,
    target: &str,
    file: Option<&str>,
    line: Option<u32>,
    fields: &Fields,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    put_field(&mut buf, "PRIORITY", &priority(level).to_string());
    put_field(&mut buf, "SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER);
    put_field(&mut buf, "COMPONENT", target);
    put_field(&mut buf, "MESSAGE", &fields.render());
    if let Some(file) = file {
        put_field(&mut buf, "CODE_FILE", file);
    }
    if let Some(line) = line {
        put_field(&mut buf, "CODE_LINE", &line.to_string());
    }
    for (name, value) in &fields.fields {
        put_field(&mut buf, &journal_name(name), &value.text);
    }
    buf
}

/// Sends each event to journald in its native protocol. An event that cannot be sent
/// goes to `fallback` (stderr) as a [`prefixed_line`]; the first time, with a line that
/// says why.
pub struct JournalLayer<W> {
    socket: UnixDatagram,
    path: PathBuf,
    fallback: W,
    failed_once: AtomicBool,
}

impl<W> JournalLayer<W> {
    /// Checks that journald answers at `path` (an empty datagram, which it ignores).
    pub fn connect(path: &Path, fallback: W) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        socket.send_to(&[], path)?;
        Ok(JournalLayer {
            socket,
            path: path.to_owned(),
            fallback,
            failed_once: AtomicBool::new(false),
        })
    }
}

impl<S, W> Layer<S> for JournalLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let fields = Fields::of(event);
        let entry = journal_entry(
            meta.level(),
            meta.target(),
            meta.file(),
            meta.line(),
            &fields,
        );
        // Sent to the path each time, so that a restarted journald is found again.
        let Err(e) = self.socket.send_to(&entry, &self.path) else {
            return;
        };
        let mut out = String::new();
        if !self.failed_once.swap(true, Ordering::Relaxed) {
            out = prefixed_line(
                &Level::WARN,
                module_path!(),
                &Fields::note(
                    "an event could not be sent to the journal socket; such events are written to stderr",
                    &[
                        ("socket", self.path.display().to_string()),
                        ("error", e.to_string()),
                    ],
                ),
            );
        }
        out.push_str(&prefixed_line(meta.level(), meta.target(), &fields));
        let _ = self.fallback.make_writer().write_all(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// A writer whose output the test reads.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
        fn make(&self) -> impl for<'a> MakeWriter<'a> + 'static {
            let me = self.clone();
            move || me.clone()
        }
    }

    const TARGET: &str = "virtsync::logging::tests";

    #[test]
    fn journal_stream_detection() {
        // (JOURNAL_STREAM, fd 2's (dev, ino), stderr is the journal)
        type Case = (Option<&'static str>, Option<(u64, u64)>, bool);
        let cases: &[Case] = &[
            (Some("8:1234"), Some((8, 1234)), true),
            (Some("0:1"), Some((0, 1)), true),
            (
                Some("18446744073709551615:18446744073709551615"),
                Some((u64::MAX, u64::MAX)),
                true,
            ),
            // Inherited by a process whose stderr was redirected: another inode or device.
            (Some("8:1234"), Some((8, 1235)), false),
            (Some("8:1234"), Some((9, 1234)), false),
            (Some("1234:8"), Some((8, 1234)), false),
            // Not under systemd, or fd 2 closed.
            (None, Some((8, 1234)), false),
            (Some("8:1234"), None, false),
            // Malformed values never match.
            (Some(""), Some((0, 0)), false),
            (Some("8"), Some((8, 0)), false),
            (Some("8:"), Some((8, 0)), false),
            (Some(":1234"), Some((0, 1234)), false),
            (Some("8:1234:5"), Some((8, 1234)), false),
            (Some(" 8:1234"), Some((8, 1234)), false),
            (Some("8:1234\n"), Some((8, 1234)), false),
            (Some("+8:1234"), Some((8, 1234)), false),
            (Some("0x8:1234"), Some((8, 1234)), false),
            (
                Some("8:99999999999999999999999"),
                Some((8, u64::MAX)),
                false,
            ),
        ];
        for &(env, stderr, expected) in cases {
            assert_eq!(
                is_journal_stream(env, stderr),
                expected,
                "JOURNAL_STREAM={env:?}, stderr {stderr:?}"
            );
        }
    }

    #[test]
    fn formats_resolve() {
        let journal = StderrInfo {
            journal_stream: Some("8:1234".to_owned()),
            id: Some((8, 1234)),
        };
        let elsewhere = StderrInfo {
            journal_stream: Some("8:1234".to_owned()),
            id: Some((8, 99)),
        };
        let plain = StderrInfo::default();
        let cases = [
            (LogFormat::Auto, &journal, Output::Journal),
            (LogFormat::Auto, &elsewhere, Output::Text),
            (LogFormat::Auto, &plain, Output::Text),
            (LogFormat::Text, &journal, Output::Text),
            (LogFormat::Journal, &plain, Output::Journal),
            (LogFormat::Json, &journal, Output::Json),
            (LogFormat::Json, &plain, Output::Json),
        ];
        for (format, stderr, expected) in cases {
            assert_eq!(resolve(format, stderr), expected, "{format:?} {stderr:?}");
        }
    }

    #[test]
    fn level_priorities() {
        let cases = [
            (Level::ERROR, 3),
            (Level::WARN, 4),
            (Level::INFO, 6),
            (Level::DEBUG, 7),
            (Level::TRACE, 7),
        ];
        for (level, expected) in cases {
            assert_eq!(priority(&level), expected, "{level}");
        }
    }

    #[test]
    fn journal_field_names() {
        let cases = [
            ("vm", "VM"),
            ("hypervisor_type", "HYPERVISOR_TYPE"),
            ("error", "ERROR"),
            ("log.target", "LOG_TARGET"),
            ("_private", "PRIVATE"),
            ("2xx", "XX"),
            ("r#type", "R_TYPE"),
            ("priority", "F_PRIORITY"),
            ("component", "F_COMPONENT"),
            ("syslog_identifier", "F_SYSLOG_IDENTIFIER"),
            ("code_line", "F_CODE_LINE"),
            ("", "F_"),
            ("élan", "LAN"),
        ];
        for (name, expected) in cases {
            assert_eq!(journal_name(name), expected, "{name:?}");
        }
        assert_eq!(journal_name(&"a".repeat(100)).len(), 64);
    }

    /// Events through a [`PrefixLayer`] writing to a buffer.
    fn prefixed(events: impl FnOnce()) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(PrefixLayer::new(out.make()));
        tracing::subscriber::with_default(subscriber, events);
        out.text()
    }

    #[test]
    fn prefixed_lines() {
        let key = crate::model::VmKey::new("tenant-a", "web-1");
        // (what is logged, the line expected)
        let cases: Vec<(Box<dyn FnOnce()>, String)> = vec![
            (
                Box::new(|| tracing::error!(error = %"refused", "SIGHUP: no")),
                format!("<3>{TARGET}: SIGHUP: no error=refused\n"),
            ),
            (
                Box::new(move || tracing::warn!(vm = %key, problem = "too long", "delta parked")),
                format!("<4>{TARGET}: delta parked vm=tenant-a/web-1 problem=\"too long\"\n"),
            ),
            (
                Box::new(|| tracing::info!(records = 3, held = true, "opened")),
                format!("<6>{TARGET}: opened records=3 held=true\n"),
            ),
            (
                Box::new(|| tracing::debug!(columns = ?["status"], "changed")),
                format!("<7>{TARGET}: changed columns=[\"status\"]\n"),
            ),
            (
                Box::new(|| tracing::trace!("fine")),
                format!("<7>{TARGET}: fine\n"),
            ),
            // One event stays one line.
            (
                Box::new(|| tracing::warn!(detail = "a\nb", "two\nlines")),
                format!("<4>{TARGET}: two\\nlines detail=\"a\\nb\"\n"),
            ),
            (
                Box::new(|| tracing::info!(target: "virtsync::daemon", "virtsync running")),
                "<6>virtsync::daemon: virtsync running\n".to_owned(),
            ),
        ];
        for (log, expected) in cases {
            assert_eq!(prefixed(log), expected);
        }
    }

    /// A fake journald: a datagram socket in a temporary directory.
    struct FakeJournal {
        _dir: tempfile::TempDir,
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl FakeJournal {
        fn new() -> FakeJournal {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("socket");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            FakeJournal {
                _dir: dir,
                path,
                socket,
            }
        }

        fn recv(&self) -> Vec<u8> {
            let mut buf = vec![0; 65536];
            let n = self.socket.recv(&mut buf).unwrap();
            buf.truncate(n);
            buf
        }
    }

    /// Parses one native-protocol entry.
    fn parse_entry(mut data: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n').unwrap();
            let line = &data[..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                out.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    String::from_utf8(line[eq + 1..].to_vec()).unwrap(),
                ));
                data = &data[nl + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let rest = &data[nl + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                let value = String::from_utf8(rest[8..8 + len].to_vec()).unwrap();
                assert_eq!(rest[8 + len], b'\n', "{name}: no newline after the value");
                out.push((name, value));
                data = &rest[8 + len + 1..];
            }
        }
        out
    }

    #[test]
    fn journal_entries_carry_priority_identifier_component_and_fields() {
        let journal = FakeJournal::new();
        let stderr = Captured::default();
        let layer = JournalLayer::connect(&journal.path, stderr.make()).unwrap();
        // The check at connect: an empty datagram.
        assert!(journal.recv().is_empty());
        let key = crate::model::VmKey::new("tenant-a", "web-1");
        let subscriber = tracing_subscriber::registry().with(layer);
        let line = tracing::subscriber::with_default(subscriber, || {
            let line = line!() + 1;
            tracing::warn!(vm = %key, error = "column too short", "delta parked");
            tracing::error!(target: "virtsync::daemon", detail = "line 1\nline 2", "stopped");
            tracing::info!(priority = 1, "ours win");
            tracing::debug!("quiet");
            line
        });
        let entry = parse_entry(&journal.recv());
        let expected: Vec<(String, String)> = [
            ("PRIORITY", "4"),
            ("SYSLOG_IDENTIFIER", "virtsync"),
            ("COMPONENT", TARGET),
            (
                "MESSAGE",
                "delta parked vm=tenant-a/web-1 error=\"column too short\"",
            ),
            ("CODE_FILE", file!()),
            ("CODE_LINE", &line.to_string()),
            ("VM", "tenant-a/web-1"),
            ("ERROR", "column too short"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(entry, expected);
        let map: HashMap<String, String> = parse_entry(&journal.recv()).into_iter().collect();
        assert_eq!(map["PRIORITY"], "3");
        assert_eq!(map["COMPONENT"], "virtsync::daemon");
        // A value with a line break travels in the binary form, unchanged.
        assert_eq!(map["DETAIL"], "line 1\nline 2");
        assert_eq!(map["MESSAGE"], "stopped detail=\"line 1\\nline 2\"");
        // A field named like one of ours is renamed, never taken for ours.
        let entry = parse_entry(&journal.recv());
        let values = |name: &str| -> Vec<&str> {
            entry
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(values("PRIORITY"), ["6"], "{entry:?}");
        assert_eq!(values("F_PRIORITY"), ["1"], "{entry:?}");
        let map: HashMap<String, String> = parse_entry(&journal.recv()).into_iter().collect();
        assert_eq!(map["PRIORITY"], "7");
        // No timestamp of our own: journald stamps the entry.
        for key in map.keys() {
            assert!(!key.contains("TIMESTAMP"), "{key}");
        }
        assert!(stderr.text().is_empty(), "{}", stderr.text());
    }

    #[test]
    fn no_journal_socket_is_an_error_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-socket");
        assert!(JournalLayer::connect(&missing, io::stderr).is_err());
        // A path that is not a socket.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(JournalLayer::connect(&file, io::stderr).is_err());
    }

    #[test]
    fn events_the_journal_refuses_go_to_stderr_with_the_reason_once() {
        let journal = FakeJournal::new();
        let stderr = Captured::default();
        let layer = JournalLayer::connect(&journal.path, stderr.make()).unwrap();
        // journald goes away.
        drop(journal);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(vm = "a/b", "first");
            tracing::error!("second");
        });
        let text = stderr.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with(
                "<4>virtsync::logging: an event could not be sent to the journal socket"
            ),
            "{text}"
        );
        assert_eq!(lines[1], format!("<4>{TARGET}: first vm=\"a/b\""));
        assert_eq!(lines[2], format!("<3>{TARGET}: second"));
    }

    #[test]
    fn log_crate_records_keep_their_target() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(PrefixLayer::new(out.make()));
        tracing::subscriber::with_default(subscriber, || {
            let record = tracing_log::log::Record::builder()
                .args(format_args!("handshake failed"))
                .level(tracing_log::log::Level::Warn)
                .target("rustls::conn")
                .module_path_static(Some("rustls::conn"))
                .build();
            tracing_log::format_trace(&record).unwrap();
        });
        assert_eq!(out.text(), "<4>rustls::conn: handshake failed\n");
    }
}
