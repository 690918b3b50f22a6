//! Debian's `prometheus` package in the tests: `promtool`, and a throw-away Prometheus
//! server (`/usr/bin/prometheus`, or `$PROMETHEUS`) with its HTTP API; plus a small
//! PromQL reader that lists the metric selectors of an expression (the dashboard and the
//! alert rules are checked against what the daemon exports).
//!
//! The server runs like the clusters of `pg.rs`: in its own temp dir (config, TSDB, log),
//! started by a tiny `sh` guardian whose stdin is a pipe held by the test process. When
//! that pipe closes (the [`PrometheusServer`] is dropped, or the test process exits,
//! panics or is SIGKILLed) the guardian stops Prometheus (SIGTERM, then waits) and
//! removes the temp dir; the drop waits for that. A missing binary or a server that does
//! not come up makes the test FAIL with the log tail, never skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const INSTALL_HINT: &str =
    "install Debian's package `prometheus` (scripts/install-deps installs it)";

/// The path of a binary of the `prometheus` package: `$ENV_VAR`, else `default`. Panics
/// (the test fails, it is never skipped) when it is not there.
fn package_bin(env_var: &str, default: &str) -> PathBuf {
    let bin = std::env::var_os(env_var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        bin.is_file(),
        "{} not found ({env_var} to use another): {INSTALL_HINT}",
        bin.display()
    );
    bin
}

/// `promtool ARGS` in `dir`; its output, whatever the exit status.
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(package_bin("PROMTOOL", "/usr/bin/promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running promtool: {e} ({INSTALL_HINT})"))
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The guardian: starts Prometheus, says `started PID`, then waits for EOF on stdin
/// (the test is done, or gone) to stop it and remove the temp dir.
const GUARDIAN: &str = r#"
trap '' PIPE
"$PROM_BIN" --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
  --web.listen-address="$PROM_LISTEN" --storage.tsdb.retention.time=1d \
  </dev/null >>"$PROM_DIR/prometheus.log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  rm -rf "$PROM_DIR"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
echo "started $pid"
while read -r _; do :; done
"#;

/// A running Prometheus server; dropped = stopped (waited for) and its temp dir removed.
pub struct PrometheusServer {
    port: u16,
    pid: i32,
    dir: tempfile::TempDir,
    guardian: Child,
    stdin: Option<ChildStdin>,
}

impl PrometheusServer {
    /// Starts Prometheus with `config` (the contents of `prometheus.yml`; rule files by
    /// absolute path) on a free port of 127.0.0.1; returns once `/-/ready` answers 200.
    pub fn start(config: &str) -> PrometheusServer {
        let bin = package_bin("PROMETHEUS", "/usr/bin/prometheus");
        for attempt in 1.. {
            let server = Self::spawn(&bin, config);
            match server.wait_ready() {
                Ok(()) => return server,
                // Another process took the free port in between: try another.
                Err(log) if log.contains("address already in use") && attempt < 5 => {}
                Err(log) => panic!(
                    "prometheus did not become ready within {READY_TIMEOUT:?}; its log:\n{log}"
                ),
            }
        }
        unreachable!()
    }

    fn spawn(bin: &Path, config: &str) -> PrometheusServer {
        let dir = tempfile::Builder::new()
            .prefix("virtsync-prometheus-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = super::pg::free_port();
        let mut guardian = Command::new("/bin/sh")
            .arg("-c")
            .arg(GUARDIAN)
            .env("PROM_BIN", bin)
            .env("PROM_DIR", dir.path())
            .env("PROM_LISTEN", format!("127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Own process group: a terminal ^C must not kill the guardian first.
            .process_group(0)
            .spawn()
            .expect("spawn /bin/sh prometheus guardian");
        let stdin = guardian.stdin.take();
        let mut line = String::new();
        BufReader::new(guardian.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line
            .trim()
            .strip_prefix("started ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("prometheus guardian said {line:?}"));
        PrometheusServer {
            port,
            pid,
            dir,
            guardian,
            stdin,
        }
    }

    /// `Err(log)` when Prometheus exits or is not ready in time.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, _)) = self.try_get("/-/ready") {
                return Ok(());
            }
            let alive = unsafe { libc::kill(self.pid, 0) } == 0;
            if !alive || Instant::now() > deadline {
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        // HTTP/1.0: the answer is neither chunked nor kept alive.
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.find("\r\n\r\n").map_or("", |at| &out[at + 4..]);
        Ok((status, body.to_owned()))
    }

    /// `GET path` of the HTTP API; the `data` of a `"status": "success"` answer.
    pub fn api(&self, path: &str) -> Value {
        self.try_api(path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::api`], with what went wrong as `Err`.
    pub fn try_api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self
            .try_get(path)
            .map_err(|e| format!("GET {path} from prometheus: {e}"))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: {status}, not JSON ({e}): {body}"))?;
        if status == 200 && v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("GET {path}: {status} {body}"))
        }
    }

    /// An instant query: the `result` vector (one object per series).
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The label sets of every series matching `selector` (as `/api/v1/series` has them).
    pub fn series(&self, selector: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/series?match[]={}", encode(selector)));
        data.as_array().cloned().unwrap_or_default()
    }

    /// Polls `check` (every 250 ms) until it returns `Some`; panics with `what`, the last
    /// `Err` and the server's log after `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&PrometheusServer) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match check(self) {
                Ok(v) => return v,
                Err(last) if Instant::now() > deadline => panic!(
                    "prometheus: {what} not seen within {timeout:?}; last: {last}\n--- log ---\n{}",
                    self.log()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "prometheus log (last {} lines):\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        // EOF for the guardian: it stops Prometheus, waits for it and removes the dir.
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.guardian.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("prometheus did not stop within {STOP_TIMEOUT:?}: SIGKILL");
                    unsafe { libc::kill(self.pid, libc::SIGKILL) };
                    let _ = self.guardian.kill();
                    let _ = self.guardian.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // (The TempDir's own drop removes whatever the guardian could not.)
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `# TYPE` lines of a scrape: family name → type.
pub fn scrape_types(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// Sample lines of a scrape: (sample name, label names) for every series.
pub fn scrape_samples(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            let name = l[..end].to_owned();
            let labels = if l[end..].starts_with('{') {
                let close = l.rfind('}').expect("closing brace");
                matchers(&l[end + 1..close]).expect("scrape labels")
            } else {
                Vec::new()
            };
            (name, labels)
        })
        .collect()
}

/// One metric selector of a PromQL expression: the metric name and the label names its
/// matchers use (`{instance=~"$instance"}` → `instance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    pub labels: Vec<String>,
}

/// Aggregation operators: an identifier followed by `by`/`without` or `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// The metric selectors of a PromQL expression (a lexer, not a parser: strings, ranges
/// `[..]`, label lists of `by (..)` etc. and function names are told apart from metric
/// names; Grafana's `$variables` are skipped). `Err` for what it cannot read, such as a
/// selector without a metric name.
pub fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => i = skip_string(b, i)?,
            b'[' => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map(|p| i + p + 1)
                    .ok_or_else(|| format!("unclosed [ in {expr:?}"))?;
            }
            b'{' => return Err(format!("a selector without a metric name in {expr:?}")),
            b'$' => {
                // A Grafana variable: $name or ${name}.
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i = b[i..]
                        .iter()
                        .position(|&c| c == b'}')
                        .map(|p| i + p + 1)
                        .ok_or_else(|| format!("unclosed ${{ in {expr:?}"))?;
                } else {
                    while i < b.len() && ident_char(b[i]) {
                        i += 1;
                    }
                }
            }
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                // A number or a duration (1e3, 0x1f, 5m, 1h30m).
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ if ident_start(c) => {
                let start = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = skip_ws(i);
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&word) {
                    if b.get(next) == Some(&b'(') {
                        i = b[next..]
                            .iter()
                            .position(|&c| c == b')')
                            .map(|p| next + p + 1)
                            .ok_or_else(|| format!("unclosed label list in {expr:?}"))?;
                    }
                } else if AGGREGATIONS.contains(&word)
                    || KEYWORDS.contains(&lower.as_str())
                    || b.get(next) == Some(&b'(')
                {
                    // An operator, keyword or function name.
                } else {
                    let mut labels = Vec::new();
                    if b.get(next) == Some(&b'{') {
                        let close = closing_brace(b, next)
                            .ok_or_else(|| format!("unclosed {{ in {expr:?}"))?;
                        labels = matchers(&expr[next + 1..close])?;
                        i = close + 1;
                    }
                    out.push(Selector {
                        metric: word.to_owned(),
                        labels,
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// Index after the string literal starting at `i`.
fn skip_string(b: &[u8], i: usize) -> Result<usize, String> {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'\\' && quote != b'`' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            return Ok(j + 1);
        }
        j += 1;
    }
    Err(format!(
        "unclosed string in {:?}",
        String::from_utf8_lossy(b)
    ))
}

/// The `}` closing the `{` at `open`, strings skipped.
fn closing_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'"' | b'\'' | b'`' => j = skip_string(b, j).ok()?,
            b'}' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

/// The label names of a matcher list (`a="x", b=~"y"`), or of a scrape's label set.
fn matchers(inner: &str) -> Result<Vec<String>, String> {
    let b = inner.as_bytes();
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            return Ok(labels);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if start == i {
            return Err(format!("no label name at {:?}", &inner[start..]));
        }
        labels.push(inner[start..i].to_owned());
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        while i < b.len() && b"=!~".contains(&b[i]) {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || !b"\"'`".contains(&b[i]) {
            return Err(format!("no quoted value after a label in {inner:?}"));
        }
        i = skip_string(b, i)?;
    }
}
