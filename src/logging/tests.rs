//! Formats, detection and the journal protocol, against captured writers and a fake
//! journald socket.

use super::*;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
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
            "<4>virtsync::logging::journal: an event could not be sent to the journal socket"
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
