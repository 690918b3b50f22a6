//! The daemon's log formats (`log.format`), from the built binary: JSON lines, the
//! journal's native protocol to a fake journald, `<N>`-prefixed lines when there is no
//! journal socket, and `auto`'s detection of a stderr that is the journal's stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// The daemon on built-in defaults with everything in `dir`, and the configuration file
/// `dir/virtsync.toml` (`config`).
fn daemon(dir: &Path, config: &str) -> Command {
    let file = dir.join("virtsync.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtsync"));
    cmd.arg("--config")
        .arg(&file)
        .arg("--cache-path")
        .arg(dir.join("state.redb"))
        .arg("daemon")
        .env_remove("VIRTSYNC_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info")
        .env("VIRTSYNC_METRICS_LISTEN", "127.0.0.1:0")
        .env("VIRTSYNC_API_SOCKET", dir.join("api.sock"))
        // Never the host's journald.
        .env("VIRTSYNC_JOURNAL_SOCKET", dir.join("no-journal"))
        .stdin(Stdio::null());
    cmd
}

/// Kills the daemon when a test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn signal(&self, sig: i32) {
        // SAFETY: kill() with a valid pid and signal has no memory-safety preconditions.
        unsafe {
            libc::kill(self.0.id() as i32, sig);
        }
    }

    /// SIGTERM; the daemon must stop cleanly.
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

/// Spawns with stderr piped; its lines arrive on the receiver.
fn spawn_piped(cmd: &mut Command) -> (Running, Receiver<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// Lines until one satisfies `done` (included).
fn lines_until(rx: &Receiver<String>, seen: &mut Vec<String>, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = done(&line);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("no such line; so far: {seen:#?}"),
        }
    }
}

/// The rest of the lines, once the process has ended.
fn rest(rx: &Receiver<String>, seen: &mut Vec<String>) {
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push(line);
    }
}

/// A timestamp as text and JSON write it (`2026-12-07T03:08:11...`).
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(13).any(|w| {
        let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
        digits(0..4)
            && w[4] == b'-'
            && digits(5..7)
            && w[7] == b'-'
            && digits(8..10)
            && w[10] == b'T'
            || digits(0..2) && w[2] == b':' && digits(3..5) && w[5] == b':' && digits(6..8)
    })
}

#[test]
fn json_lines_carry_level_fields_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, rx) = spawn_piped(&mut daemon(dir.path(), "[log]\nformat = \"json\"\n"));
    let mut seen = Vec::new();
    lines_until(&rx, &mut seen, |l| l.contains("virtsync running"));
    daemon.stop();
    rest(&rx, &mut seen);
    let mut levels = Vec::new();
    for line in &seen {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let level = v["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        assert!(
            v["fields"]["message"].is_string(),
            "no fields.message: {line}"
        );
        assert!(v["target"].is_string(), "no target: {line}");
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        levels.push(level.to_owned());
        if v["fields"]["message"] == "virtsync running" {
            assert_eq!(v["level"], "INFO", "{line}");
            assert_eq!(v["target"], "virtsync::daemon", "{line}");
            assert!(v["fields"]["node"].is_string(), "{line}");
        }
    }
    assert!(levels.iter().any(|l| l == "WARN"), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("shutting down")),
        "{seen:#?}"
    );
}

#[test]
fn journal_without_a_socket_writes_prefixed_lines_without_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[log]\nformat = \"journal\"\n";
    let (daemon, rx) = spawn_piped(&mut daemon(dir.path(), config));
    let mut seen = Vec::new();
    lines_until(&rx, &mut seen, |l| l.contains("virtsync running"));
    // An error: SIGHUP with a configuration that does not load.
    std::fs::write(
        dir.path().join("virtsync.toml"),
        format!("role = \"leader\"\n{config}"),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    lines_until(&rx, &mut seen, |l| {
        l.contains("configuration does not load")
    });
    daemon.stop();
    rest(&rx, &mut seen);

    // Said once, first, and why.
    let missing = dir.path().join("no-journal");
    assert!(
        seen[0].starts_with(
            "<4>virtsync::logging: the journal socket cannot be used; writing <N>-prefixed lines to stderr instead"
        ) && seen[0].contains(&format!("socket={:?}", missing.display().to_string()))
            && seen[0].contains("No such file or directory"),
        "{seen:#?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|l| l.contains("journal socket cannot be used"))
            .count(),
        1,
        "{seen:#?}"
    );
    let find = |text: &str| {
        seen.iter()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no {text:?} in {seen:#?}"))
    };
    assert!(
        find("virtsync running").starts_with("<6>virtsync::daemon: virtsync running node="),
        "{seen:#?}"
    );
    assert!(
        find("no Kubernetes API configured").starts_with("<4>virtsync::daemon: "),
        "{seen:#?}"
    );
    let error = find("configuration does not load");
    assert!(
        error.starts_with("<3>virtsync::daemon::reload: SIGHUP: the configuration does not load")
            && error.ends_with("error=configuration: role: invalid value \"leader\" (expected \"node\", \"cluster\", \"all\")"),
        "{error}"
    );
    for line in &seen {
        let priority = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(n, _)| n);
        assert!(
            // RUST_LOG=info: no debug (7).
            matches!(priority, Some("3" | "4" | "6")),
            "not <N>-prefixed at err, warning or info: {line}"
        );
        assert!(!has_timestamp(line), "timestamp in {line}");
    }
}

/// A fake journald: a datagram socket at `dir/journal`.
struct FakeJournal {
    path: PathBuf,
    socket: UnixDatagram,
}

impl FakeJournal {
    fn new(dir: &Path) -> FakeJournal {
        let path = dir.join("journal");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        FakeJournal { path, socket }
    }

    /// Entries (each a field map) until one whose MESSAGE starts with `message`.
    fn until(&self, entries: &mut Vec<HashMap<String, String>>, message: &str) {
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no entry {message:?} ({e}); so far {entries:#?}"));
            if n == 0 {
                continue; // the daemon's check that journald answers
            }
            let entry = parse_entry(&buf[..n]);
            let hit = entry.get("MESSAGE").is_some_and(|m| m.starts_with(message));
            entries.push(entry);
            if hit {
                return;
            }
        }
    }
}

/// One entry of the native protocol (`NAME=value\n`, or `NAME\n` + le64 length + value
/// + `\n`).
fn parse_entry(mut data: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    while !data.is_empty() {
        let nl = data.iter().position(|&b| b == b'\n').unwrap();
        let line = &data[..nl];
        let (name, value, next) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], &line[eq + 1..], nl + 1),
            None => {
                let rest = &data[nl + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                (line, &rest[8..8 + len], nl + 1 + 8 + len + 1)
            }
        };
        let name = String::from_utf8(name.to_vec()).unwrap();
        let old = out.insert(name.clone(), String::from_utf8(value.to_vec()).unwrap());
        assert!(old.is_none(), "{name} twice");
        data = &data[next..];
    }
    out
}

fn check_running_entry(entries: &[HashMap<String, String>]) {
    let running = entries.last().unwrap();
    assert_eq!(running["PRIORITY"], "6", "{running:?}");
    assert_eq!(running["SYSLOG_IDENTIFIER"], "virtsync", "{running:?}");
    assert_eq!(running["COMPONENT"], "virtsync::daemon", "{running:?}");
    assert_eq!(running["ROLE"], "All", "{running:?}");
    assert!(
        running["MESSAGE"].starts_with(&format!("virtsync running node={}", running["NODE"])),
        "{running:?}"
    );
    let warning = entries
        .iter()
        .find(|e| e["MESSAGE"].starts_with("no Kubernetes API configured"))
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(warning["PRIORITY"], "4", "{warning:?}");
    for entry in entries {
        assert!(entry.keys().all(|k| !k.contains("TIMESTAMP")), "{entry:?}");
        assert!(!has_timestamp(&entry["MESSAGE"]), "{entry:?}");
    }
}

#[test]
fn journal_entries_go_to_the_socket_in_the_native_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FakeJournal::new(dir.path());
    let (daemon, rx) = spawn_piped(
        daemon(dir.path(), "[log]\nformat = \"text\"\n")
            // The environment overrides the file, as for every key.
            .env("VIRTSYNC_LOG_FORMAT", "journal")
            .env("VIRTSYNC_JOURNAL_SOCKET", &journal.path),
    );
    let mut entries = Vec::new();
    journal.until(&mut entries, "virtsync running");
    check_running_entry(&entries);
    daemon.stop();
    journal.until(&mut entries, "stopped");
    let mut stderr = Vec::new();
    rest(&rx, &mut stderr);
    assert!(stderr.is_empty(), "{stderr:#?}");
}

/// `auto` is the journal exactly when `$JOURNAL_STREAM` names the daemon's stderr (here
/// a file, whose device and inode the test knows).
#[test]
fn auto_uses_the_journal_when_journal_stream_names_stderr() {
    for matching in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let journal = FakeJournal::new(dir.path());
        let log = dir.path().join("stderr.log");
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let ino = if matching { meta.ino() } else { meta.ino() + 1 };
        let mut cmd = daemon(dir.path(), "");
        let daemon = Running(
            cmd.env("JOURNAL_STREAM", format!("{}:{ino}", meta.dev()))
                .env("VIRTSYNC_JOURNAL_SOCKET", &journal.path)
                .stderr(file)
                .spawn()
                .unwrap(),
        );
        if matching {
            let mut entries = Vec::new();
            journal.until(&mut entries, "virtsync running");
            check_running_entry(&entries);
            daemon.stop();
            assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
        } else {
            let deadline = Instant::now() + WAIT;
            while !std::fs::read_to_string(&log)
                .unwrap()
                .contains("virtsync running")
            {
                assert!(Instant::now() < deadline, "daemon did not come up");
                std::thread::sleep(Duration::from_millis(50));
            }
            daemon.stop();
            // Text, with timestamps; nothing to the journal socket.
            let text = std::fs::read_to_string(&log).unwrap();
            for line in text.lines() {
                assert!(has_timestamp(line), "{line}");
                assert!(!line.starts_with('<'), "{line}");
            }
            journal
                .socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0; 64];
            assert!(journal.socket.recv(&mut buf).is_err(), "an entry was sent");
        }
    }
}

/// A configuration error prints as always, before any log is set up; when stderr is the
/// journal's stream each line is `<3>`-prefixed (journald: priority err).
#[test]
fn configuration_errors_print_one_line_each_whatever_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let expected = "(expected \"auto\", \"text\", \"journal\", \"json\")";
    let cases = [
        (
            ("VIRTSYNC_LOG_FORMAT", "journald"),
            &[][..],
            "VIRTSYNC_LOG_FORMAT (log.format): invalid value \"journald\"",
        ),
        (
            ("LANG", "C"),
            &["--set", "log.format=syslog"][..],
            "--set log.format: invalid value \"syslog\"",
        ),
    ];
    for ((var, value), args, problem) in cases {
        let out = daemon(dir.path(), "[log]\nformat = \"json\"\n")
            .env(var, value)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err,
            format!("virtsync: configuration: {problem} {expected}\n"),
            "one line, as ever"
        );
    }

    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let status = daemon(dir.path(), "[log]\nformat = \"syslog\"\n")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("<3>virtsync: configuration: log.format: invalid value \"syslog\" {expected}\n")
    );
}
