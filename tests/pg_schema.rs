//! `migrate` and the start-up schema check against a real server: the partial
//! `(namespace, vm_name)` index of the live rows, created in both modes, and the warning
//! when no usable index on those columns exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::pg::{self, PgCluster};
use support::ssvirt;
use tokio_postgres::Client;
use virtsync::columns::{ColumnSet, Group};
use virtsync::config::SchemaMode;
use virtsync::sink::postgres::schema::{self, KEY_INDEX};

/// A fresh database with the SSVirt `vms` table, without the table's own
/// `(namespace, vm_name)` index, so that nothing but virtsync's index can satisfy the check.
async fn bare_vms(prefix: &str) -> Client {
    let url = PgCluster::shared().create_database(prefix);
    let client = pg::connect(&url).await;
    client.batch_execute(ssvirt::CREATE_VMS).await.unwrap();
    client
        .batch_execute("DROP INDEX idx_vms_namespace_vm_name")
        .await
        .unwrap();
    client
}

/// `(schemaname, indexdef)` of every index named `name`.
async fn indexes_named(client: &Client, name: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT schemaname::text, indexdef FROM pg_indexes WHERE indexname = $1 ORDER BY 1",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn missing(client: &Client, table: &str) -> Option<String> {
    let info = schema::table_info(client, table).await.unwrap().unwrap();
    schema::missing_key_index(client, &info).await.unwrap()
}

#[tokio::test]
async fn migrate_creates_the_live_key_index_in_both_modes_and_the_check_warns_without_it() {
    for mode in [SchemaMode::Compat, SchemaMode::Extended] {
        let mut client = bare_vms(&format!("live_key_{mode:?}")).await;

        // Before migrate: no usable index; the warning names the table and the command.
        let warning = missing(&client, "vms")
            .await
            .unwrap_or_else(|| panic!("{mode:?}: a table without the index passed the check"));
        assert_eq!(
            warning,
            "table \"public\".\"vms\" has no index on (namespace, vm_name): every flush and \
             lookup scans the whole table; run `virtsync migrate --config <your config>` \
             (creates virtsync_vms_live_key)"
        );

        // migrate (twice: idempotent) creates the partial index.
        for _ in 0..2 {
            schema::migrate(&mut client, "vms", mode, Duration::from_secs(5))
                .await
                .unwrap();
        }
        let created = indexes_named(&client, KEY_INDEX).await;
        assert_eq!(created.len(), 1, "{mode:?}: {created:?}");
        let (schemaname, def) = &created[0];
        assert_eq!(schemaname, "public");
        assert!(
            def.contains(
                "ON public.vms USING btree (namespace, vm_name) WHERE (deleted_at IS NULL)"
            ),
            "{mode:?}: {def}"
        );
        assert_eq!(missing(&client, "vms").await, None, "{mode:?}");

        // The start-up check accepts the schema with and without the index (a warning only).
        let writable = ColumnSet::of_group(Group::Status).union(ColumnSet::of_group(Group::Legacy));
        schema::check(&client, "vms", mode, writable).await.unwrap();
        client
            .batch_execute(&format!("DROP INDEX {KEY_INDEX}"))
            .await
            .unwrap();
        let warning = missing(&client, "vms").await;
        assert!(
            warning
                .as_deref()
                .is_some_and(|w| w.contains("virtsync migrate") && w.contains(KEY_INDEX)),
            "{mode:?}: {warning:?}"
        );
        let info = schema::check(&client, "vms", mode, writable).await.unwrap();
        assert_eq!(info.quoted, "\"public\".\"vms\"");
    }
}

#[tokio::test]
async fn the_check_counts_only_valid_btree_indexes_led_by_namespace_and_vm_name() {
    let client = bare_vms("key_index_shapes").await;
    // Two live rows with the same key: a unique index on them cannot be built.
    ssvirt::insert_vm(&client, "ns", "twin").await;
    ssvirt::insert_vm(&client, "ns", "twin").await;

    // (index definition, whether it serves the flush's lookup)
    let cases = [
        ("CREATE INDEX k ON vms (namespace, vm_name)", true),
        (
            "CREATE INDEX k ON vms (namespace, vm_name) WHERE deleted_at IS NULL",
            true,
        ),
        ("CREATE INDEX k ON vms (namespace, vm_name, status)", true),
        ("CREATE INDEX k ON vms (vm_name, namespace)", false),
        ("CREATE INDEX k ON vms (namespace)", false),
        ("CREATE INDEX k ON vms (namespace) INCLUDE (vm_name)", false),
        (
            "CREATE INDEX k ON vms (namespace, vm_name) WHERE status = 'POWERED_ON'",
            false,
        ),
        (
            "CREATE INDEX k ON vms (namespace, vm_name) WHERE deleted_at IS NOT NULL",
            false,
        ),
        (
            "CREATE INDEX k ON vms USING brin (namespace, vm_name)",
            false,
        ),
    ];
    for (ddl, usable) in cases {
        client.batch_execute(ddl).await.unwrap();
        assert_eq!(missing(&client, "vms").await.is_none(), usable, "{ddl}");
        client.batch_execute("DROP INDEX k").await.unwrap();
    }

    // A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind: not usable.
    let failed = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY k ON vms (namespace, vm_name)")
        .await;
    assert!(
        failed.is_err(),
        "the duplicate rows must make the build fail"
    );
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'k'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!valid);
    assert!(missing(&client, "vms").await.is_some());
}

#[tokio::test]
async fn a_schema_qualified_table_gets_the_index_in_its_own_schema() {
    let url = PgCluster::shared().create_database("live_key_schema");
    let mut client = pg::connect(&url).await;
    // The same table twice: public.vms and app.vms, each with its own index name space.
    client.batch_execute(ssvirt::CREATE_VMS).await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA app; SET search_path = app; {} RESET search_path; \
             DROP INDEX app.idx_vms_namespace_vm_name; DROP INDEX public.idx_vms_namespace_vm_name;",
            ssvirt::CREATE_VMS
        ))
        .await
        .unwrap();
    assert!(missing(&client, "app.vms").await.is_some());
    for table in ["vms", "app.vms"] {
        schema::migrate(
            &mut client,
            table,
            SchemaMode::Compat,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
    let created: Vec<String> = indexes_named(&client, KEY_INDEX)
        .await
        .into_iter()
        .map(|(s, def)| format!("{s}: {def}"))
        .collect();
    assert_eq!(
        created,
        [
            "app: CREATE INDEX virtsync_vms_live_key ON app.vms USING btree (namespace, vm_name) WHERE (deleted_at IS NULL)",
            "public: CREATE INDEX virtsync_vms_live_key ON public.vms USING btree (namespace, vm_name) WHERE (deleted_at IS NULL)",
        ]
    );
    assert_eq!(missing(&client, "app.vms").await, None);
    let warning = {
        client
            .batch_execute(&format!("DROP INDEX app.{KEY_INDEX}"))
            .await
            .unwrap();
        missing(&client, "app.vms").await.unwrap()
    };
    assert!(
        warning.starts_with("table \"app\".\"vms\" has no index"),
        "{warning}"
    );
    assert_eq!(
        missing(&client, "vms").await,
        None,
        "public.vms keeps its index"
    );
}

/// The column facts read from the catalog are the ones information_schema gives, for the
/// SSVirt table and for the types a cloud API might use instead (domains, char(n)).
#[tokio::test]
async fn column_facts_from_the_catalog_match_information_schema() {
    let client = bare_vms("schema_columns").await;
    client
        .batch_execute(
            "CREATE DOMAIN short_name AS varchar(20); \
             CREATE SCHEMA app; \
             CREATE TABLE app.odd (id text, namespace short_name, vm_name char(12), \
               guest_os varchar, cpu_count smallint, memory_mb integer, gone int8, \
               deleted_at timestamptz); \
             ALTER TABLE app.odd DROP COLUMN gone;",
        )
        .await
        .unwrap();
    for (table, schema_name, name) in [("vms", "public", "vms"), ("app.odd", "app", "odd")] {
        let info = schema::table_info(&client, table).await.unwrap().unwrap();
        let mut ours: Vec<(String, String, Option<usize>)> = info
            .columns
            .iter()
            .map(|(n, c)| (n.clone(), c.data_type.clone(), c.max_chars))
            .collect();
        ours.sort();
        let mut want: Vec<(String, String, Option<usize>)> = client
            .query(
                "SELECT column_name::text, data_type::text, character_maximum_length::int4 \
                 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&schema_name, &name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let max: Option<i32> = r.get(2);
                (r.get(0), r.get(1), max.map(|m| m as usize))
            })
            .collect();
        want.sort();
        assert!(!want.is_empty());
        assert_eq!(ours, want, "{table}");
    }
}
