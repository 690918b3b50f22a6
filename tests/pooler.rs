//! The sink behind a real PgBouncer in transaction mode (docs/ARCHITECTURE.md,
//! "Performance targets", fleet scale): every transaction may run on another server
//! connection, so the sink must not rely on session state — no startup `options`
//! (PgBouncer refuses them with 08P01), no named prepared statements, session limits set
//! per transaction — and its limits must still hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::pg::{self, PgCluster};
use support::pgbouncer::{PgBouncer, database_of};
use support::sync::{Db, ingest, open_store, running};
use virtsync::config::SchemaMode;
use virtsync::model::Timestamp;
use virtsync::sink::postgres::{PgSink, SinkSettings};
use virtsync::state::StateHandle;

/// What a failure to connect through the pooler most likely means.
const POOLER_HINT: &str = "the sink must work behind PgBouncer in transaction mode: no \
    startup `options` (PgBouncer refuses them: 08P01 unsupported startup parameter), \
    session limits set per transaction (SET LOCAL), unnamed statements";

/// A sink whose URL goes through `bouncer`, connected and with its managed set read.
async fn pooled_sink(
    db: &Db,
    bouncer: &PgBouncer,
    store: &StateHandle,
    node: &str,
    adjust: impl FnOnce(&mut virtsync::config::Config),
) -> PgSink {
    let url = bouncer.url_for(&db.url);
    let settings: SinkSettings = db.settings_with(|c| {
        c.node_name = node.to_owned();
        c.postgres.url = Some(url.clone());
        adjust(c);
    });
    let mut sink = support::sync::sink(settings, store);
    sink.connect().await.unwrap_or_else(|e| {
        panic!(
            "{node}: connecting through PgBouncer (transaction mode, {url}) failed: {e}\n\
             {POOLER_HINT}\npgbouncer log:\n{}",
            bouncer.log_tail(10)
        )
    });
    sink.refresh_managed().await.unwrap_or_else(|e| {
        panic!("{node}: reading the managed set through PgBouncer failed: {e}\n{POOLER_HINT}")
    });
    sink
}

/// Three sinks (three hosts' daemons) share two server connections: 20 rounds of
/// changes, each round flushed by all three at once, so consecutive transactions of one
/// sink run on different server connections. Every flush works and every row ends at
/// the last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_work_through_pgbouncer_in_transaction_mode() {
    const HOSTS: usize = 3;
    const VMS: usize = 4;
    const ROUNDS: usize = 20;
    let cluster = PgCluster::shared();
    let db = Db::new(cluster, "pooler_tx", SchemaMode::Extended).await;
    let name = |h: usize, v: usize| format!("h{h}-vm{v}");
    db.add_rows((0..HOSTS).flat_map(|h| (0..VMS).map(move |v| name(h, v))))
        .await;
    let bouncer = PgBouncer::start(cluster, "transaction", 2, 20);

    let dirs: Vec<_> = (0..HOSTS).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<_> = dirs.iter().map(|d| open_store(d, db.mode)).collect();
    let mut sinks = Vec::new();
    for (h, store) in stores.iter().enumerate() {
        sinks.push(pooled_sink(&db, &bouncer, store, &format!("host-{h}"), |_| {}).await);
    }
    let ip = |round: usize, h: usize, v: usize| format!("10.{round}.{h}.{v}");

    for round in 1..=ROUNDS {
        for (h, store) in stores.iter().enumerate() {
            let batch: Vec<_> = (0..VMS)
                .map(|v| running(&name(h, v), 2, 2048, &ip(round, h, v), round as i64))
                .collect();
            ingest(store, &batch).await;
        }
        // All sinks at once: their transactions interleave on the two server connections.
        let flushes = sinks.iter_mut().map(|s| s.flush_pending());
        let results = futures::future::join_all(flushes).await;
        for (h, r) in results.into_iter().enumerate() {
            let report = r.unwrap_or_else(|e| {
                panic!(
                    "round {round}, host-{h}: flush through PgBouncer failed: {e}\n{POOLER_HINT}"
                )
            });
            assert_eq!(
                (report.applied, report.parked),
                (VMS, 0),
                "round {round}, host-{h}: {report:?}"
            );
        }
        // The managed set too is read through the pooler, between flushes.
        if round % 5 == 0 {
            for (h, s) in sinks.iter_mut().enumerate() {
                s.refresh_managed()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}, host-{h}: refresh: {e}"));
            }
        }
    }

    for (h, store) in stores.iter().enumerate() {
        assert_eq!(store.snapshot().stats.pending, 0, "host-{h} outbox");
    }
    let rows = db.rows(&["runtime_primary_ip"]).await;
    for h in 0..HOSTS {
        for v in 0..VMS {
            assert_eq!(
                rows[&name(h, v)][0].as_deref(),
                Some(ip(ROUNDS, h, v).as_str()),
                "{}",
                name(h, v)
            );
        }
    }
    // The pooler kept to its two server connections for three clients.
    let pools = bouncer.pools(Some(database_of(&db.url))).await;
    assert!(
        pools.server_connections() <= 2,
        "PgBouncer opened more server connections than its pool: {pools:?}"
    );
}

/// A row lock held by another session: through the pooler the sink's flush still gives
/// up after about `postgres.lock_timeout` instead of waiting for ever, and the change
/// lands once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_holds_through_pgbouncer() {
    let cluster = PgCluster::shared();
    let db = Db::new(cluster, "pooler_lock", SchemaMode::Extended).await;
    db.add_rows(["vm-l".to_string(), "vm-o".to_string()]).await;
    let bouncer = PgBouncer::start(cluster, "transaction", 2, 20);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = pooled_sink(&db, &bouncer, &store, "host-l", |c| {
        c.postgres.lock_timeout = Duration::from_millis(200);
    })
    .await;
    ingest(
        &store,
        &[
            running("vm-l", 4, 4096, "10.0.0.4", 1),
            running("vm-o", 4, 4096, "10.0.0.5", 1),
        ],
    )
    .await;
    // The lock is held directly on PostgreSQL, not through the pooler.
    let mut locker = pg::connect(&db.url).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("SELECT 1 FROM vms WHERE vm_name = 'vm-l' FOR UPDATE")
        .await
        .unwrap();

    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), sink.flush_pending()).await;
    let took = started.elapsed();
    let r = r.unwrap_or_else(|_| {
        panic!(
            "the flush through PgBouncer still waits on the row lock after 10 s: \
             postgres.lock_timeout (200 ms) does not reach the server connection"
        )
    });
    eprintln!("flush with vm-l locked: {took:?}: {r:?}");
    let parked = match &r {
        Err(e) => {
            assert!(
                e.to_string().contains("55P03"),
                "expected a lock timeout (55P03), got: {e}"
            );
            0
        }
        Ok(report) => {
            assert!(report.applied < 2, "vm-l was written while locked");
            report.parked
        }
    };
    let rows = db.rows(&["runtime_primary_ip"]).await;
    assert_ne!(
        rows["vm-l"][0].as_deref(),
        Some("10.0.0.4"),
        "vm-l written while locked"
    );
    drop(tx);
    drop(locker);

    if parked > 0 {
        eprintln!("vm-l was parked by the lock timeout: not expected to land by itself");
        return;
    }
    // Once the lock is gone everything the error left in the outbox lands.
    let report = tokio::time::timeout(Duration::from_secs(10), sink.flush_pending())
        .await
        .expect("flush after the lock was released")
        .unwrap_or_else(|e| panic!("flush after the lock was released: {e}"));
    eprintln!("flush after the lock was released: {report:?}");
    let rows = db.rows(&["runtime_primary_ip"]).await;
    assert_eq!(rows["vm-l"][0].as_deref(), Some("10.0.0.4"));
    assert_eq!(rows["vm-o"][0].as_deref(), Some("10.0.0.5"));
    assert_eq!(store.snapshot().stats.pending, 0);
}

/// Three hosts write their capability rows at once, 10 times each with a new
/// fingerprint, through two server connections: every write works (an unnamed statement,
/// nothing prepared on one server connection and run on another) and every row ends at
/// its host's last fingerprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_capabilities_are_written_through_pgbouncer() {
    use virtsync::model::HostCapabilities;
    use virtsync::sink::postgres::host;
    const HOSTS: usize = 3;
    const ROUNDS: usize = 10;
    let cluster = PgCluster::shared();
    let db = Db::new(cluster, "pooler_caps", SchemaMode::Extended).await;
    let bouncer = PgBouncer::start(cluster, "transaction", 2, 20);
    let url = bouncer.url_for(&db.url);
    let mut clients = Vec::new();
    for _ in 0..HOSTS {
        clients.push(pg::connect(&url).await);
    }
    let caps = |h: usize, round: usize| HostCapabilities {
        fingerprint: format!("{h:08x}{round:08x}"),
        hostname: format!("host-{h}"),
        discovered_at: Timestamp::now(),
        canonical: format!("{{\"host\":{h},\"round\":{round}}}"),
        available: true,
    };
    for round in 1..=ROUNDS {
        let writes = clients.iter().enumerate().map(|(h, c)| {
            let caps = caps(h, round);
            async move { host::write(c, &format!("id-{h}"), &caps).await }
        });
        for (h, r) in futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
        {
            let wrote = r.unwrap_or_else(|e| {
                panic!(
                    "round {round}, host-{h}: capabilities through PgBouncer: {e}\n{POOLER_HINT}"
                )
            });
            assert!(
                wrote,
                "round {round}, host-{h}: a new fingerprint was not written"
            );
        }
    }
    // The same fingerprint again writes nothing.
    assert!(
        !host::write(&clients[0], "id-0", &caps(0, ROUNDS))
            .await
            .unwrap(),
        "an unchanged fingerprint was written again"
    );
    let rows = db
        .client
        .query(
            "SELECT host_id, fingerprint FROM virtsync.host_capabilities ORDER BY host_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(String, String)> = (0..HOSTS)
        .map(|h| (format!("id-{h}"), caps(h, ROUNDS).fingerprint))
        .collect();
    assert_eq!(got, want);
}
