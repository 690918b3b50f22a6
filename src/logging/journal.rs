//! The journal's native protocol: one datagram per event to journald's socket.

use std::io::{self, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use super::fields::{Fields, prefixed_line};
use super::{SEND_TIMEOUT, SYSLOG_IDENTIFIER, priority};

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
pub(super) fn put_field(buf: &mut Vec<u8>, name: &str, value: &str) {
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
pub(super) fn journal_entry(
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
