//! The built `virtsync` binary as a child process, driven only through its config file:
//! its log is collected so tests can wait for lines, and it can be stopped, killed
//! (SIGKILL) or frozen (SIGSTOP) like a real process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct DaemonProcess {
    pub name: String,
    pub config: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    /// Extra environment for every start.
    env: Vec<(String, String)>,
}

impl DaemonProcess {
    /// Writes `config` (TOML) to `dir/<name>.toml` and starts `virtsync daemon` with it.
    pub fn start(dir: &Path, name: &str, config: &str) -> DaemonProcess {
        Self::start_with_env(dir, name, config, &[])
    }

    /// [`Self::start`] with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> DaemonProcess {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut d = DaemonProcess {
            name: name.to_string(),
            config: path,
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        d.restart();
        d
    }

    /// Starts the process again with the same config (after a kill or a stop).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        // TEST_DAEMON_WRAP="heaptrack -o /tmp/ht" runs the daemon under a profiler
        // (benchmarks; the pid measured is then the wrapper's child's parent).
        let wrap = std::env::var("TEST_DAEMON_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_virtsync"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_virtsync")),
        };
        let mut child = command
            .arg("--config")
            .arg(&self.config)
            .arg("daemon")
            .env("RUST_LOG", "info,virtsync=debug")
            .env_remove("VIRTSYNC_FAILPOINT")
            // Any free port and a socket of its own: tests run daemons side by side.
            .env("VIRTSYNC_METRICS_LISTEN", "127.0.0.1:0")
            .env("VIRTSYNC_API_SOCKET", self.socket())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        let name = self.name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TEST_DAEMON_ECHO").is_some() {
                    eprintln!("[{name}] {line}");
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until the log has at least `n` occurrences of `needle`.
    pub async fn wait_for_n(&mut self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(needle) < n {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited ({status}) while waiting for {needle:?}:\n{}",
                        self.name,
                        self.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: {needle:?} not seen {n} times within {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_n(needle, 1, timeout).await;
    }

    /// The socket API path (next to the config file).
    pub fn socket(&self) -> PathBuf {
        self.config.with_extension("sock")
    }

    /// `virtsync --socket <this daemon's socket> ARGS… --output json`, parsed; `None`
    /// when the command fails (the daemon is not answering yet).
    pub fn cli_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_virtsync"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .args(["--output", "json"])
            .env_remove("VIRTSYNC_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The metrics endpoint of the latest start (`host:port`), once it is logged.
    pub async fn metrics_addr(&mut self) -> String {
        self.wait_for("metrics at http://", Duration::from_secs(20))
            .await;
        let log = self.log();
        let at = log.rfind("metrics at http://").unwrap() + "metrics at http://".len();
        let rest = &log[at..];
        rest[..rest.find("/metrics").unwrap()].to_owned()
    }

    /// `GET /metrics` of the running daemon.
    pub async fn scrape(&mut self) -> String {
        let addr = self.metrics_addr().await;
        tokio::task::spawn_blocking(move || super::metrics::scrape(&addr))
            .await
            .unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop within 20 s:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        }
        self.kill();
        // A failed test keeps the daemon's whole log for the post-mortem.
        if std::thread::panicking() {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("failed-daemon-logs");
            let path = dir.join(format!("{}-{}.log", self.name, std::process::id()));
            let saved =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, self.log()));
            match saved {
                Ok(()) => eprintln!("daemon {}'s log: {}", self.name, path.display()),
                Err(e) => eprintln!(
                    "daemon {}'s log not saved to {}: {e}",
                    self.name,
                    path.display()
                ),
            }
        }
    }
}

/// One raw request on the socket; the whole answer (the daemon closes after it).
pub fn raw(socket: &Path, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code and JSON body of `METHOD PATH` with `extra` headers and `body`.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let text = raw(
        socket,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let status: u16 = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
