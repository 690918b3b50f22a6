//! The built binary as an operator runs it: check-config, migrate, and the daemon's
//! start-up checks and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::pg::{self, PgCluster};
use support::ssvirt;

fn virtsync(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtsync"));
    cmd.args(args)
        .env_remove("VIRTSYNC_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "info");
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn config_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("virtsync.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_config_accepts_the_shipped_file_and_names_the_bad_key() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/virtsync.toml");
    let (code, out, err) = run(&mut virtsync(&["check-config", "--config", shipped]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "[postgres]\nflush_intervall = \"1s\"\n",
            "postgres.flush_intervall",
            "unknown key",
        ),
        (
            "[postgres]\nflush_interval = \"5 parsecs\"\n",
            "postgres.flush_interval",
            "invalid duration",
        ),
        (
            "[postgres]\nurl = \"mysql://x\"\n",
            "postgres.url",
            "invalid PostgreSQL URL",
        ),
        (
            "[postgres]\npassword_file = \"/nonexistent/pw\"\n",
            "postgres.password_file",
            "/nonexistent/pw",
        ),
        ("role = \"leader\"\n", "role", "leader"),
        (
            "[postgres]\nurl = \"postgres://u@db/x?sslmode=require\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "postgres.ca_file",
            "/nonexistent/ca.pem",
        ),
        ("[cache\n", "config", "line 1"),
    ];
    for (text, key, problem) in cases {
        let path = config_file(&dir, text);
        let (code, _, err) = run(&mut virtsync(&["check-config", "--config", &path]));
        assert_eq!(code, 2, "{text:?}: {err}");
        let message = err.trim();
        assert_eq!(message.lines().count(), 1, "one message: {message}");
        assert!(
            message.contains(key) && message.contains(problem),
            "{text:?}: {message}"
        );
    }
    // Environment overrides are checked the same way and named.
    let (code, _, err) = run(virtsync(&["check-config", "--config", shipped])
        .env("VIRTSYNC_POSTGRES_BATCH_SIZE", "many"));
    assert_eq!(code, 2);
    assert!(err.contains("VIRTSYNC_POSTGRES_BATCH_SIZE"), "{err}");
    // A missing explicit config file is a usage error too.
    let (code, _, err) = run(&mut virtsync(&[
        "check-config",
        "--config",
        "/nonexistent.toml",
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}

#[test]
fn check_config_and_the_daemon_report_every_problem_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        &dir,
        "role = \"leader\"\n\
         [postgres]\n\
         flush_intervall = \"1s\"\n\
         batch_size = 0\n\
         lock_timeout = \"soon\"\n\
         [metrics]\n\
         listen = \"localhost\"\n",
    );
    let expected = [
        ("postgres.flush_intervall", "unknown key"),
        ("postgres.lock_timeout", "invalid duration \"soon\""),
        ("role", "invalid value \"leader\""),
        ("postgres.batch_size", "must be between 1 and 10000, got 0"),
        (
            "VIRTSYNC_CACHE_SYNC_INTERVAL (cache.sync_interval)",
            "at most 1m",
        ),
        ("metrics.listen", "invalid socket address \"localhost\""),
        ("--set owns", "expected KEY=VALUE"),
    ];
    for command in ["check-config", "daemon"] {
        let (code, out, err) = run(virtsync(&["--config", &path, "--set", "owns", command])
            .env("VIRTSYNC_CACHE_SYNC_INTERVAL", "2m"));
        assert_eq!(code, 2, "{command}: {err}");
        assert!(out.is_empty(), "{command}: {out}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines.len(),
            expected.len(),
            "{command}: one line each:\n{err}"
        );
        for (line, (key, problem)) in lines.iter().zip(expected) {
            assert!(
                line.starts_with(&format!("virtsync: configuration: {key}: "))
                    && line.contains(problem),
                "{command}: {line:?} is not {key}: {problem}\n{err}"
            );
        }
    }
}

#[test]
fn version_verbose_says_whether_failpoints_are_built_in_and_a_package_ignores_them() {
    let (code, out, err) =
        run(virtsync(&["version", "--verbose"]).env_remove("VIRTSYNC_FAILPOINT"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("virtsync "), "{out}");
    let built_in = cfg!(feature = "failpoints");
    let want = if built_in {
        "failpoints: yes"
    } else {
        "failpoints: no"
    };
    assert!(
        out.lines().any(|l| l.starts_with(want)),
        "{out:?} lacks {want:?}"
    );
    let (code, out, _) = run(&mut virtsync(&["version"]));
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");
    // Set anyway: a build without failpoints says once that it ignores the variable.
    let (code, _, err) = run(virtsync(&["version"]).env("VIRTSYNC_FAILPOINT", "stall:kube_event"));
    assert_eq!(code, 0, "{err}");
    let warned = err.matches("build has no failpoints").count();
    assert_eq!(warned, usize::from(!built_in), "{err}");
}

#[test]
fn status_without_a_daemon_says_how_to_reach_one_started_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let path = config_file(&dir, &format!("[api]\nsocket = \"{}\"\n", socket.display()));
    // The socket of the configuration: the service, or --socket for another daemon.
    let (code, _, err) = run(&mut virtsync(&["--config", &path, "status"]));
    assert_eq!(code, 1, "{err}");
    for words in [
        "no socket at",
        "the daemon is not running",
        "systemctl status virtsync",
        "--socket PATH",
        "dev-state/virtsync.sock",
    ] {
        assert!(err.contains(words), "{err:?} lacks {words:?}");
    }
    // A socket given with --socket: no advice about the service.
    let given = socket.display().to_string();
    let (code, _, err) = run(&mut virtsync(&["--socket", &given, "vms"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("(--socket)") && err.contains("not running"),
        "{err}"
    );
    assert!(!err.contains("systemctl"), "{err}");
}

async fn schema_dump(client: &tokio_postgres::Client) -> Vec<String> {
    let columns = client
        .query(
            "SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(character_maximum_length::text, '') \
             FROM information_schema.columns WHERE table_schema IN ('public', 'virtsync') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let indexes = client
        .query(
            "SELECT schemaname || ' ' || indexdef FROM pg_indexes WHERE schemaname IN ('public', 'virtsync') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    columns
        .iter()
        .chain(indexes.iter())
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test]
async fn migrate_is_idempotent_and_the_daemon_refuses_a_schema_that_does_not_match() {
    let url = PgCluster::shared().create_database("migrate");
    let client = pg::connect(&url).await;
    client.batch_execute(ssvirt::CREATE_VMS).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("state.redb").display().to_string();
    let migrate = |schema: &str| {
        run(&mut virtsync(&[
            "--postgres-url",
            &url,
            "--set",
            &format!("postgres.schema={schema}"),
            "migrate",
        ]))
    };

    // compat: virtsync's own schema, no column changes, and no second (namespace,
    // vm_name) index: the SSVirt table has a usable one (pg_schema.rs: the index is
    // created where none is).
    let before = schema_dump(&client).await;
    let (code, out, err) = migrate("compat");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrated"), "{out}");
    let compat = schema_dump(&client).await;
    assert!(
        compat
            .iter()
            .any(|c| c.starts_with("virtsync.vm_fence.vmi_resource_version"))
    );
    let vms_cols = |dump: &[String]| -> Vec<String> {
        dump.iter()
            .filter(|c| c.starts_with("public.vms."))
            .cloned()
            .collect()
    };
    assert_eq!(
        vms_cols(&before),
        vms_cols(&compat),
        "compat leaves the columns of vms alone"
    );
    let live_key = "public CREATE INDEX virtsync_vms_live_key ON public.vms USING btree \
                    (namespace, vm_name) WHERE (deleted_at IS NULL)";
    assert!(!before.iter().any(|i| i == live_key), "{before:#?}");
    assert!(!compat.iter().any(|i| i == live_key), "{compat:#?}");
    assert!(
        compat
            .iter()
            .any(|i| i.contains("idx_vms_namespace_vm_name")),
        "{compat:#?}"
    );

    // The daemon in extended mode on a compat database: exit 2, naming what is missing.
    let (code, _, err) = run(&mut virtsync(&[
        "--postgres-url",
        &url,
        "--cache-path",
        &cache,
        "--set",
        "postgres.schema=extended",
        "daemon",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lacks columns runtime_cpu_cores"), "{err}");
    assert!(err.contains("runtime_hypervisor_type"), "{err}");
    assert!(err.contains("virtsync migrate"), "{err}");

    // extended, twice: the same schema both times.
    assert_eq!(migrate("extended").0, 0);
    let once = schema_dump(&client).await;
    let (code, _, err) = migrate("extended");
    assert_eq!(code, 0, "{err}");
    assert_eq!(schema_dump(&client).await, once);
    for index in [
        "idx_vms_runtime_primary_ip",
        "idx_vms_runtime_node_name",
        "idx_vms_runtime_guest_os_id",
        "idx_vms_runtime_phase",
    ] {
        assert!(once.iter().any(|i| i.contains(index)), "{index}");
    }
    let versions: Vec<String> = client
        .query(
            "SELECT component || '=' || version FROM virtsync.schema_version ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec!["core=1", "extended=1"]);

    // migrate connects with postgres.owner_url when set (the daemon's URL may lack rights).
    let (code, _, err) = run(&mut virtsync(&[
        "--postgres-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--set",
        &format!("postgres.owner_url={url}"),
        "--set",
        "postgres.schema=extended",
        "migrate",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(schema_dump(&client).await, once);
}

#[test]
fn the_daemon_runs_on_built_in_defaults_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("state.redb");
    let mut child = virtsync(&["--cache-path", cache.to_str().unwrap(), "daemon"])
        .env("VIRTSYNC_METRICS_LISTEN", "127.0.0.1:0")
        .env("VIRTSYNC_API_SOCKET", dir.path().join("api.sock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("virtsync running")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("daemon did not come up: {seen:#?}"),
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("no postgres.url configured")),
        "{seen:#?}"
    );
    assert!(cache.exists(), "state file created");
    // SAFETY: kill() with a valid pid and signal has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("shutting down")),
        "{rest:#?}"
    );
}
