//! Proves the PostgreSQL test harness in tests/support.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pg::{self, PgCluster};
use support::ssvirt;

async fn vms_db(prefix: &str) -> tokio_postgres::Client {
    let url = PgCluster::shared().create_database(prefix);
    let client = pg::connect(&url).await;
    client.batch_execute(ssvirt::CREATE_VMS).await.unwrap();
    client
        .batch_execute(ssvirt::CREATE_COLUMN_LOG)
        .await
        .unwrap();
    client
}

fn set(cols: &[&str]) -> BTreeSet<String> {
    cols.iter().map(|c| (*c).to_owned()).collect()
}

#[tokio::test]
async fn shared_cluster_answers_select_1() {
    let t = Instant::now();
    let cluster = PgCluster::shared();
    eprintln!(
        "shared cluster ready after {:?} (port {})",
        t.elapsed(),
        cluster.port()
    );
    assert!(
        std::ptr::eq(cluster, PgCluster::shared()),
        "one cluster per process"
    );
    let client = pg::connect(&cluster.url("postgres")).await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(preload, "pg_stat_statements");
    let max: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max, "200");
}

#[tokio::test]
async fn create_database_gives_separate_databases() {
    let cluster = PgCluster::shared();
    let t = Instant::now();
    let a = cluster.create_database("Sep-A");
    eprintln!("create_database took {:?}", t.elapsed());
    let b = cluster.create_database("Sep-A");
    assert_ne!(a, b);
    assert!(a.starts_with(&format!(
        "postgres://postgres@127.0.0.1:{}/sep_a_",
        cluster.port()
    )));
    let ca = pg::connect(&a).await;
    let cb = pg::connect(&b).await;
    ca.batch_execute("CREATE TABLE only_in_a (x int)")
        .await
        .unwrap();
    let n_a: i64 = ca
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let n_b: i64 = cb
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((n_a, n_b), (1, 0));
    let ext: i64 = cb
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ext, 1);
}

#[tokio::test]
async fn stop_start_keeps_data_and_port() {
    let t = Instant::now();
    let cluster = PgCluster::start_new();
    eprintln!("start_new (initdb + start) took {:?}", t.elapsed());
    let port = cluster.port();
    let url = cluster.create_database("restart");
    let client = pg::connect(&url).await;
    client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    let pid = cluster.server_pid().expect("running");
    let t = Instant::now();
    cluster.stop();
    eprintln!("stop took {:?}", t.elapsed());
    assert!(cluster.server_pid().is_none());
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "server should be down"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let t = Instant::now();
    cluster.start();
    eprintln!("restart took {:?}", t.elapsed());
    assert_eq!(cluster.port(), port);
    assert_ne!(cluster.server_pid(), Some(pid));
    let client = pg::connect(&url).await;
    let x: i32 = client
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
    let dir = cluster.dir().to_owned();
    drop(cluster);
    assert!(!dir.exists(), "drop removes {}", dir.display());
}

#[tokio::test]
async fn column_log_records_exactly_the_changed_columns() {
    let client = vms_db("column_log").await;
    let id = ssvirt::insert_vm(&client, "ns1", "vm-a").await;
    ssvirt::insert_vm(&client, "ns1", "vm-b").await;
    assert!(id.starts_with("urn:vcloud:vm:"));
    assert!(
        ssvirt::changed_columns(&client).await.is_empty(),
        "INSERT is not logged"
    );

    client
        .execute("UPDATE vms SET status = 'POWERED_ON' WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(ssvirt::changed_columns(&client).await, set(&["status"]));
    assert_eq!(
        ssvirt::column_changes(&client).await,
        vec![(id.clone(), "status".to_owned())]
    );

    // A no-op write (same value) logs nothing.
    ssvirt::clear_column_log(&client).await;
    client
        .execute("UPDATE vms SET status = 'POWERED_ON' WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert!(ssvirt::changed_columns(&client).await.is_empty());

    // Columns added later are covered by the generic trigger.
    client
        .batch_execute(
            "ALTER TABLE vms ADD COLUMN runtime_state text, ADD COLUMN runtime_seen_at timestamptz",
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE vms SET runtime_state = 'Running', updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        ssvirt::changed_columns(&client).await,
        set(&["runtime_state", "updated_at"])
    );

    ssvirt::clear_column_log(&client).await;
    assert_eq!(ssvirt::soft_delete(&client, "ns1", "vm-b").await, 1);
    assert_eq!(ssvirt::soft_delete(&client, "ns1", "vm-b").await, 0);
    assert_eq!(ssvirt::changed_columns(&client).await, set(&["deleted_at"]));
}

#[tokio::test]
async fn check_constraint_rejects_zero_cpus() {
    let client = vms_db("check").await;
    let id = ssvirt::insert_vm(&client, "ns", "vm").await;
    let err = client
        .execute("UPDATE vms SET cpu_count = 0 WHERE id = $1", &[&id])
        .await
        .expect_err("cpu_count = 0 must be rejected");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    let err = client
        .execute("UPDATE vms SET memory_mb = -1 WHERE id = $1", &[&id])
        .await
        .expect_err("memory_mb = -1 must be rejected");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
}

#[tokio::test]
async fn statistics_count_updates() {
    let client = vms_db("stats").await;
    let id = ssvirt::insert_vm(&client, "ns", "vm").await;
    ssvirt::reset_statements(&client).await;
    assert_eq!(ssvirt::statements_touching(&client, "UPDATE vms").await, 0);
    for status in ["A", "B", "C"] {
        client
            .execute("UPDATE vms SET status = $1 WHERE id = $2", &[&status, &id])
            .await
            .unwrap();
    }
    assert_eq!(
        ssvirt::statements_touching(&client, "update VMS set status").await,
        3
    );
    assert_eq!(ssvirt::statements_touching(&client, "UPDATE vms").await, 3);

    // n_tup_upd: this connection's own updates are visible after the forced flush.
    let t = Instant::now();
    assert_eq!(ssvirt::n_tup_upd(&client, "vms").await, 3);
    eprintln!("n_tup_upd (own connection) took {:?}", t.elapsed());

    // Another connection's counts arrive when that backend flushes: at once for
    // its first transaction, else up to 10 s later (PG15 PGSTAT_IDLE_INTERVAL),
    // or immediately when the connection closes. Closing it is the fast path.
    let other = pg::connect(&PgCluster::shared().url(&current_db(&client).await)).await;
    for _ in 0..2 {
        other
            .execute(
                "UPDATE vms SET cpu_count = cpu_count + 1 WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
    }
    assert_eq!(
        ssvirt::statement_rows_touching(&client, "SET cpu_count").await,
        2
    );
    drop(other);
    let t = Instant::now();
    let v = ssvirt::wait_n_tup_upd_at_least(&client, "vms", 5, Duration::from_secs(15)).await;
    eprintln!(
        "n_tup_upd after closing the other connection: {:?}",
        t.elapsed()
    );
    assert_eq!(v, 5);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "flush on disconnect should be quick"
    );
}

async fn current_db(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0)
}

const CHILD_ENV: &str = "PGT_CLEANUP_CHILD";

/// Not a real test: the body of the child process used by `cluster_dies_with_test_process`.
#[test]
fn cleanup_child_helper() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let cluster = PgCluster::start_new();
    println!(
        "READY {} {} {} {}",
        cluster.server_pid().unwrap(),
        cluster.guardian_pid(),
        cluster.port(),
        cluster.dir().display()
    );
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn cluster_dies_with_test_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "cleanup_child_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints "test cleanup_child_helper ... " without a newline first.
        if let Some(at) = line.find("READY ") {
            ready = Some(line[at + "READY ".len()..].to_owned());
            break;
        }
    }
    let ready = ready.expect("child never reported READY");
    let parts: Vec<&str> = ready.splitn(4, ' ').collect();
    let (server, guardian): (u32, u32) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
    let port: u16 = parts[2].parse().unwrap();
    let dir = std::path::PathBuf::from(parts[3]);
    assert!(dir.join("data").exists());
    assert!(pg::process_alive(server) && pg::process_alive(guardian));

    child.kill().unwrap(); // SIGKILL: no destructors, no atexit
    child.wait().unwrap();
    let t = Instant::now();
    let deadline = t + Duration::from_secs(10);
    loop {
        let leftovers = processes_mentioning(&dir.display().to_string());
        let port_open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let clean = !dir.exists()
            && !pg::process_alive(server)
            && !pg::process_alive(guardian)
            && leftovers.is_empty()
            && !port_open;
        if clean {
            eprintln!("cleanup after SIGKILL took {:?}", t.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after SIGKILL: dir exists={} server alive={} guardian alive={} \
             port open={port_open} processes={leftovers:?}",
            dir.exists(),
            pg::process_alive(server),
            pg::process_alive(guardian),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PIDs whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}
