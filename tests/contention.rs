//! Two writers of the same rows: the cluster-role holder (power status and spec columns)
//! and a node daemon (runtime columns) flushing the same 500 VMs at once, as in a mass
//! power-on. Rows are locked in key order, so they wait for each other instead of
//! deadlocking, and a part that fails to serialize is retried after a pause, split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use virtsync::columns::ColumnSet;
use virtsync::config::{Owns, SchemaMode};
use virtsync::model::Timestamp;
use virtsync::sink::postgres::FlushReport;
use virtsync::state::{StateHandle, Store, StoreOptions};

use support::pg::PgCluster;
use support::sync::{Db, ingest, running};

const VMS: usize = 500;
const ROUNDS: i64 = 8;

fn store(dir: &tempfile::TempDir, name: &str, owns: &Owns) -> StateHandle {
    let options = StoreOptions {
        path: dir.path().join(format!("{name}.redb")),
        cache_size: 1 << 20,
        sync_interval: std::time::Duration::from_secs(1),
        writable: ColumnSet::writable(owns, SchemaMode::Extended),
    };
    let store = Store::open(options, Timestamp::now()).unwrap().0;
    support::sync::own(store, tokio::sync::mpsc::channel(1).1)
}

async fn deadlocks(db: &Db) -> i64 {
    db.client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_and_a_node_writing_the_same_rows_never_deadlock() {
    let db = Db::new(PgCluster::shared(), "contention", SchemaMode::Extended).await;
    let names: Vec<String> = (0..VMS).map(|i| format!("vm-{i:04}")).collect();
    db.add_rows(names.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let holder_owns = Owns {
        status: true,
        legacy: true,
        runtime: false,
    };
    let node_owns = Owns {
        status: false,
        legacy: false,
        runtime: true,
    };
    let holder_store = store(&dir, "holder", &holder_owns);
    let node_store = store(&dir, "node", &node_owns);
    let settings = |owns: Owns| {
        db.settings_with(move |cfg| {
            cfg.owns = owns;
            cfg.postgres.batch_size = 100;
        })
    };
    let mut holder = support::sync::sink(settings(holder_owns), &holder_store);
    let mut node = support::sync::sink(settings(node_owns), &node_store);
    holder.connect().await.unwrap();
    node.connect().await.unwrap();
    let before = deadlocks(&db).await;
    let (mut holder_total, mut node_total) = (FlushReport::default(), FlushReport::default());
    for round in 1..=ROUNDS {
        // The same VMs change for both; each store queues them in its own order.
        let batch: Vec<_> = names
            .iter()
            .map(|n| {
                running(
                    n,
                    1 + round,
                    1024 * round,
                    &format!("10.0.{round}.1"),
                    round,
                )
            })
            .collect();
        let mut reversed = batch.clone();
        reversed.reverse();
        ingest(&holder_store, &batch).await;
        ingest(&node_store, &reversed).await;
        let (h, n) = tokio::join!(holder.flush_pending(), node.flush_pending());
        let (h, n) = (h.unwrap(), n.unwrap());
        assert_eq!((h.applied, n.applied), (VMS, VMS), "round {round}");
        holder_total.merge(h);
        node_total.merge(n);
    }
    let deadlocked = deadlocks(&db).await - before;
    println!(
        "measured: {ROUNDS} rounds of {VMS} shared rows in batches of 100: holder {} retried \
         parts (most attempts {}), node {} retried parts (most attempts {}), {deadlocked} \
         deadlocks",
        holder_total.conflict_retries,
        holder_total.most_attempts,
        node_total.conflict_retries,
        node_total.most_attempts
    );
    assert_eq!(deadlocked, 0, "deadlocks");
    assert!(
        holder_total.most_attempts <= 3 && node_total.most_attempts <= 3,
        "a batch part was retried more than twice"
    );
    // Both writers' last values are there.
    let rows = db
        .rows(&["cpu_count", "memory_mb", "runtime_primary_ip"])
        .await;
    let last = format!("10.0.{ROUNDS}.1");
    for (name, values) in &rows {
        assert_eq!(
            values,
            &vec![
                Some((1 + ROUNDS).to_string()),
                Some((1024 * ROUNDS).to_string()),
                Some(last.clone())
            ],
            "{name}"
        );
    }
    assert_eq!(rows.len(), VMS);
}
